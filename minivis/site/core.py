"""What a site is made of: pages of captioned figures, the stages that make them, and the build context.

A *stage* (``Stage``) is one section of the site (photos, the microscope of one model, embeddings,
synthesis...). Its ``build(ctx)`` computes what it needs through ``ctx.cached`` (so a second run
only redraws), writes PNGs under ``ctx.out`` and returns ``Page`` objects; the renderer turns the
pages into HTML with the Jinja2 templates. Every ``Figure`` carries a caption (method and
parameters) and the one-line minivis call that reproduces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minivis.validate import host

MODES = ("fast", "default", "full")


@dataclass
class Figure:
    """One picture: ``src`` is a path relative to the site root; ``href`` makes it a link (to a page)."""

    src: str
    caption: str
    call: str = ""
    href: str | None = None
    title: str | None = None


@dataclass
class Section:
    """A heading, optional prose, and figures laid out as ``"wide"`` (one per row), ``"row"`` (side by
    side) or ``"grid"`` (thumbnails). ``table`` is a list of rows (first row the header); ``embedding``
    holds an interactive map (see ``minivis.site.embeddings``)."""

    heading: str
    figures: list[Figure] = field(default_factory=list)
    text: str = ""
    layout: str = "row"
    table: list[list[str]] | None = None
    embedding: dict[str, Any] | None = None


@dataclass
class Page:
    """One HTML file at the site root. ``card`` (a thumbnail src) lists it on the index under its stage."""

    name: str
    title: str
    sections: list[Section]
    intro: str = ""
    parent: str | None = None
    card: str | None = None
    blurb: str = ""


@dataclass
class Part:
    """One independent piece of a stage's work (a photo, a model's microscope, a synthesis page): a build
    may run the parts of all stages side by side (``minivis.site.parallel``). ``cost`` is a rough guess
    of its seconds in default mode: the costliest start first, so that the workers finish together."""

    name: str
    build: Callable[[BuildContext], list[Page]]
    cost: float = 1.0


@dataclass
class Stage:
    """A section of the site: ``group`` is the index heading it appears under (Photos, Microscope...).

    ``build(ctx)`` makes all its pages; a stage whose work splits into independent pieces also gives
    ``parts(ctx)`` (``Part`` list, pages in order), which a parallel build runs instead of ``build``.
    """

    name: str
    group: str
    title: str
    build: Callable[[BuildContext], list[Page]]
    about: str = ""
    parts: Callable[[BuildContext], list[Part]] | None = None


def stage_of_parts(name: str, group: str, title: str, parts: Callable[[BuildContext], list[Part]],
                   about: str = "") -> Stage:
    """A stage made of parts; its ``build`` runs them one after the other."""

    def build(ctx: BuildContext) -> list[Page]:
        return [page for part in parts(ctx) for page in part.build(ctx)]

    return Stage(name, group, title, build, about, parts)


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def fingerprint(model: Any) -> str:
    """A short hash of a model's class and weights, so cached results follow the model they came from.

    Each state-dict value is hashed as its array's bytes (``validate.host``: a Tensor's data, a GPU
    array copied to the host); for an ndarray these are the bytes its ``.data`` memoryview gave
    before, so earlier fingerprints, and the caches keyed by them, are unchanged."""
    digest = hashlib.sha1(type(model).__name__.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(host(value))).tobytes())
    return digest.hexdigest()[:16]


class Cache:
    """Arrays computed by a stage, stored as ``.npz`` (no pickles) under ``folder``, keyed by a name and the
    parameters (hashed). ``folder=None`` caches nothing."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.hits = self.misses = 0

    def path(self, key: str, params: Mapping[str, Any]) -> Path | None:
        if self.folder is None:
            return None
        text = json.dumps(dict(params), sort_keys=True, default=str)
        return self.folder / f"{slug(key)}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.npz"

    def get(self, key: str, params: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """``compute()`` (a dict of arrays), or its stored copy from an earlier run with the same key and params."""
        path = self.path(key, params)
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    result = {name: stored[name] for name in stored.files}
                self.hits += 1
                return result
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # truncated by an interrupted run
                path.unlink(missing_ok=True)
        self.misses += 1
        result = {name: np.asarray(value) for name, value in compute().items()}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial.npz")  # parallel workers never share one
            np.savez(partial, **result)
            partial.replace(path)  # a reader never sees half a file
        return result


@dataclass
class BuildContext:
    """Everything a stage needs: where to write, how much to compute, the models and the data.

    mode: "fast" (smallest sizes, for tests), "default" (a representative subset, a few minutes) or
    "full" (every channel of every layer). ``models`` maps a zoo name to a loaded model (filled on
    first use with ``minivis.models.load``; tests put fixture models there). ``fashion`` is the
    (images, labels) set the fashion_cnn pages mine (default: the Fashion-MNIST test set); ``photos``
    maps photo names to HxWx3 uint8 arrays (default: ``minivis.data.photo``).
    """

    out: Path
    mode: str = "default"
    cache: Cache = field(default_factory=lambda: Cache(None))
    models: dict[str, Any] = field(default_factory=dict)
    photo_names: Sequence[str] = ()
    photos: dict[str, np.ndarray] = field(default_factory=dict)
    fashion: tuple[np.ndarray, np.ndarray] | None = None
    progress: bool = True
    notes: list[str] = field(default_factory=list)

    def sized(self, fast: Any, default: Any, full: Any) -> Any:
        """The value for the current mode."""
        return {"fast": fast, "default": default, "full": full}[self.mode]

    def model(self, name: str) -> Any:
        if name not in self.models:
            from minivis.models import load  # noqa: PLC0415

            self.models[name] = load(name)
        return self.models[name]

    def photo(self, name: str) -> np.ndarray:
        if name not in self.photos:
            from minivis.data import photo  # noqa: PLC0415

            self.photos[name] = photo(name)
        return self.photos[name]

    def fashion_set(self) -> tuple[np.ndarray, np.ndarray]:
        if self.fashion is None:
            from minivis.data import fashion_mnist  # noqa: PLC0415

            self.fashion = fashion_mnist("test")
        return self.fashion

    def cached(self, key: str, params: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]],
               model: Any = None) -> dict[str, Any]:
        """``compute()`` through the cache; the model's weights are part of the key."""
        full = dict(params, mode=self.mode)
        if model is not None:
            full["model"] = fingerprint(model)
        return self.cache.get(key, full, compute)

    def image_path(self, *parts: str) -> tuple[Path, str]:
        """(absolute path, site-relative src) for a PNG under ``img/``; folders are created."""
        rel = "/".join(["img", *(slug(p) for p in parts[:-1]), slug(parts[-1]) + ".png"])
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel
