"""The layering of DESIGN.md section 1, checked over every import in minivis/ (``ast``, no new dependency).

Layers, bottom to top; a module may import from its own layer or the ones below it, never above:

    0  backend, rules       the array module and kernel dispatch; the rule names and codes (import nothing from minivis)
    1  kernels              the hot loops (Numba, Numba-CUDA) on plain arrays
    2  autograd             Tensor and backward()
    3  functional           every differentiable op, forward and backward on one page
    4  nn, optim            layers and hooks; optimisers
    5  models, io, data     the zoo, weight files, datasets
    6  vis                  the methods
    7  plot                 figures
    8  gallery, cli, train  the programs (and a future site/)

and three more rules:

* nothing under ``minivis/vis`` or ``minivis/plot`` imports Numba or ``minivis.kernels``: a method
  reaches a kernel only through ``backend.kernels(family, array, op)``;
* ``minivis/kernels`` imports from minivis only ``backend``, ``rules`` (the rule codes) and itself;
* no module imports another package's ``_private`` names (``from minivis.nn.hooks import _X``,
  ``import minivis.functional._validate``, or ``backend._x`` on an imported module).

Imports inside functions count too (``ast.walk`` sees them). ``minivis/__init__.py`` is exempt: it
gathers the public API from every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "minivis"

LAYERS = [
    {"backend", "rules"},
    {"kernels"},
    {"autograd", "validate"},  # validate: the argument checks every layer above shares
    {"functional"},
    {"nn", "optim"},
    {"models", "io", "data"},
    {"vis"},
    {"plot"},
    {"gallery", "cli", "cli_methods", "cli_style", "train", "train_decoder", "train_style", "site"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}

# Upward imports that are there on purpose: (importing module, imported module) -> why.
UPWARD_ALLOWED = {
    # Tensor's operators (x + y, x @ w, x[i], ...) are the ops of functional.math; autograd._math
    # imports it lazily, inside the function, because functional imports autograd.
    ("minivis.autograd", "minivis.functional.math"): "Tensor's operator methods forward to the ops",
}

# Private names imported across packages, each with its reason. Empty: what is shared is public
# (minivis/validate.py, functional.conv.same_padding, nn.hooks.StopForward).
PRIVATE_ALLOWED: tuple[str, ...] = ()

KERNEL_MAY_IMPORT = ("minivis.backend", "minivis.rules", "minivis.kernels")


# ----------------------------------------------------------------------------- reading imports
def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(dotted: str) -> bool:
    return (ROOT.parent / Path(*dotted.split(".")) / "__init__.py").is_file()


def imports(module: str, source: str, package: bool = False) -> list[tuple[int, str, str]]:
    """Every import of ``source`` (module ``module``) as (line, imported module, full dotted name).

    ``from a.b import c`` gives (a.b.c if it is a submodule else a.b, a.b.c); ``import a.b`` gives
    (a.b, a.b). Relative imports are resolved against ``module``.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                submodule = is_package(full) or (ROOT.parent / (full.replace(".", "/") + ".py")).is_file()
                target = full if submodule else base
                found.append((node.lineno, target, full))
    return found


def private_attributes(source: str) -> list[tuple[int, str]]:
    """``alias._name`` where ``alias`` is a minivis module bound by an import: (line, dotted name)."""
    tree = ast.parse(source)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minivis") and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minivis") and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return [(node.lineno, f"{aliases[node.value.id]}.{node.attr}") for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
            and node.attr.startswith("_") and not node.attr.startswith("__")]


def owner(dotted: str, index: int) -> str:
    """The package that owns the private component ``dotted.split('.')[index]``: the package it sits
    in (a private module or a name in a package's ``__init__``), or the package of the module that
    defines it. A top-level module (``minivis.backend``) is its own package."""
    parts = dotted.split(".")
    holder = ".".join(parts[:index])
    if is_package(holder) or holder == "minivis":
        return holder
    return holder if holder.count(".") == 1 else holder.rsplit(".", 1)[0]


def layer_of(dotted: str) -> int | None:
    parts = dotted.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


# ----------------------------------------------------------------------------- the rules
def violations(module: str, source: str, package: bool = False) -> list[str]:
    """What ``source``, the code of ``module``, breaks (an empty list when nothing)."""
    out = []
    here = layer_of(module)
    top = module.split(".")[1] if "." in module else ""
    for line, target, full in imports(module, source, package):
        where = f"{module}:{line} imports {full}"
        parts = target.split(".")
        if top in ("vis", "plot") and (parts[0] == "numba" or target.startswith("minivis.kernels")):
            out.append(f"{where}: vis and plot reach kernels only through backend.kernels, never Numba")
        if parts[0] != "minivis":
            continue
        if top == "kernels" and not target.startswith(KERNEL_MAY_IMPORT):
            out.append(f"{where}: a kernel imports only backend, rules and other kernels from minivis")
        theirs = layer_of(target)
        if theirs is None:  # minivis itself, or a name from its __init__
            if module != "minivis":
                out.append(f"{where}: the top package minivis imports everything; import the module you need")
        elif here is not None and theirs is not None and theirs > here:
            allowed = any(module == a and target.startswith(b) for a, b in UPWARD_ALLOWED)
            if not allowed:
                out.append(f"{where}: an upward import (layer {here} {top} -> layer {theirs} {parts[1]})")
        names = full.split(".")
        for i, name in enumerate(names):
            if i == 0 or not name.startswith("_") or name.startswith("__"):
                continue
            home = owner(full, i)
            if (module != home and not module.startswith(home + ".")) and not full.startswith(PRIVATE_ALLOWED):
                out.append(f"{where}: {name} is private to {home}")
            break
    for line, full in private_attributes(source):
        names = full.split(".")
        i = len(names) - 1
        home = owner(full, i)
        if module != home and not module.startswith(home + ".") and not full.startswith(PRIVATE_ALLOWED):
            out.append(f"{module}:{line} uses {full}: {names[i]} is private to {home}")
    return out


def all_modules() -> list[tuple[str, Path]]:
    return [(module_name(p), p) for p in sorted(ROOT.rglob("*.py"))]


def test_every_package_under_minivis_has_a_layer():
    packages = {module.split(".")[1] for module, _ in all_modules() if "." in module}
    assert packages <= set(LAYER), f"add {packages - set(LAYER)} to LAYERS"


def test_minivis_keeps_its_layers():
    found = []
    for module, path in all_modules():
        if module == "minivis":
            continue
        found += violations(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_the_allow_lists_are_still_needed():
    """An exception nobody uses any more is removed, so the lists only shrink."""
    sources = {module: path.read_text(encoding="utf-8") for module, path in all_modules()}
    for importer, imported in UPWARD_ALLOWED:
        assert any(t.startswith(imported) for _, t, _ in imports(importer, sources[importer])), (importer, imported)
    for prefix in PRIVATE_ALLOWED:
        assert any(full.startswith(prefix) for m, s in sources.items() for _, _, full in imports(m, s)), prefix


# ----------------------------------------------------------------------------- the check itself
BAD = [
    ("minivis.vis.features.x", "import numba\n", "never Numba"),
    ("minivis.vis.features.x", "def f():\n    from minivis.kernels import cpu_topk\n", "backend.kernels"),
    ("minivis.plot.x", "from minivis.kernels.cpu_topk import naive_topk\n", "backend.kernels"),
    ("minivis.vis.features.x", "from minivis.nn.hooks import _Stop\n", "_Stop is private to minivis.nn"),
    ("minivis.vis.x", "import minivis.data._optional\n", "_optional is private to minivis.data"),
    ("minivis.functional.x", "from minivis import backend\nbackend._cupy()\n", "_cupy is private to minivis.backend"),
    ("minivis.kernels.cpu_x", "from minivis.autograd import Tensor\n", "a kernel imports only"),
    ("minivis.nn.x", "def f():\n    from minivis.vis import common\n", "an upward import"),
    ("minivis.autograd", "from minivis.nn import Module\n", "an upward import"),
    ("minivis.vis.x", "import minivis as mv\n", "the top package"),
]


@pytest.mark.parametrize("module, source, message", BAD)
def test_a_violation_is_flagged(module, source, message):
    found = violations(module, source)
    assert any(message in v for v in found), found


@pytest.mark.parametrize("module, source", [
    ("minivis.vis.features.x", "from minivis import backend\nk = backend.kernels('topk', a, 'x')\n"),
    ("minivis.kernels.cpu_x", "from minivis.rules import GUIDED\nfrom minivis.kernels import cpu_threads\n"),
    ("minivis.functional.conv", "from minivis.validate import check_tensor\n"),
    ("minivis.vis.synthesis.a", "from minivis.vis.synthesis.b import _helper\n"),
    ("minivis.nn.x", "from minivis.functional import relu\nfrom minivis.autograd import Tensor\n"),
    ("minivis.autograd", "def _math():\n    from minivis.functional import math\n"),
])
def test_allowed_imports_pass(module, source):
    assert violations(module, source) == []
