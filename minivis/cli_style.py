"""``minivis style``: your own image in a trained style (one forward pass) or by optimisation (Gatys).

    minivis style IMAGE --style mosaic --out DIR                    a shipped feed-forward network
    minivis style IMAGE --mix mosaic=0.5,waves=0.5 --out DIR        a blend in the multi-style network
    minivis style IMAGE --style waves --optimize --steps 100 --out DIR   Gatys style transfer

Without ``--optimize`` the style is one of the shipped networks: a single-style ``fast_style_NAME`` or a
style of the multi-style ``fast_style_multi`` (``--mix`` blends several of those). With ``--optimize``
any style image works: a name from ``mv.data.STYLES`` or an image file. Everything the command line
says is checked before any work; the image is read with Pillow (any mode, EXIF orientation).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from minivis.cli_methods import UsageError, add_model_arguments, check_model_choice, positive, read_image, suggest

EXAMPLES = """examples:
  minivis style cat.jpg --style mosaic --out styled                  the shipped mosaic network, one pass
  minivis style cat.jpg --style immunohistochemistry --out styled    a style of the multi-style network
  minivis style cat.jpg --mix mosaic=0.7,waves=0.3 --out styled      a blend of two trained styles
  minivis style cat.jpg --style waves --optimize --steps 100 --out styled      Gatys et al., L-BFGS
  minivis style cat.jpg --style my_painting.png --optimize --out styled       any style image"""


def add_style_verb(verbs: Any, parents: list[argparse.ArgumentParser]) -> None:
    style = verbs.add_parser("style", parents=parents, help="your image in a trained style, or by optimisation",
                             description="Feed-forward style transfer with the shipped networks (Johnson et al. "
                                         "2016; Dumoulin et al. 2017), or with --optimize the optimisation of "
                                         "Gatys et al. 2016 through a classifier.",
                             epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    style.add_argument("image", type=Path, help="an image file (JPEG, PNG, ...)")
    which = style.add_mutually_exclusive_group(required=True)
    which.add_argument("--style", default=None,
                       help="a shipped style (mosaic, waves, or a style of the multi-style network); with "
                            "--optimize also any mv.data.STYLES name or an image file")
    which.add_argument("--mix", default=None, help="a blend of the multi-style network's styles, e.g. "
                                                   "mosaic=0.5,waves=0.5 (weights >= 0, scaled to sum to 1)")
    style.add_argument("--size", type=int, default=None,
                       help="shorter side of the output in pixels (default: the image's, at most 512; --optimize "
                            "192; --fast 96)")
    style.add_argument("--optimize", action="store_true", help="Gatys style transfer by L-BFGS instead of a "
                                                               "trained network (slower, any style image)")
    style.add_argument("--steps", type=int, default=None, help="--optimize: L-BFGS steps (default 100, --fast 5)")
    style.add_argument("--style-weight", type=float, default=10.0, help="--optimize: style weight (content 1)")
    add_model_arguments(style)  # --optimize: the classifier whose Gram matrices define the style
    style.add_argument("--out", type=Path, default=Path("styled"), help="folder for the PNGs (default: ./styled)")
    style.add_argument("--fast", action="store_true", help="small settings (a quick look, or a test)")


def network_styles() -> tuple[list[str], list[str]]:
    """(styles with a single-style network, styles of the multi-style network)."""
    import json  # noqa: PLC0415

    from minivis.models import WEIGHTS_DIR, shipped_styles  # noqa: PLC0415

    log = WEIGHTS_DIR / "fast_style_multi_train_log.json"
    multi = list(json.loads(log.read_text())["styles"]) if log.is_file() else []
    return shipped_styles(), multi


def parse_mix(text: str, known: list[str]) -> dict[str, float]:
    """``mosaic=0.5,waves=0.5`` -> {"mosaic": 0.5, "waves": 0.5}, names checked against ``known``."""
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--mix {item!r}: expected NAME=WEIGHT, e.g. --mix mosaic=0.5,waves=0.5")
        if name not in known:
            raise UsageError(f"--mix: {name!r} is not a style of the multi-style network; choose from "
                             f"{', '.join(known)}" + suggest(name, known))
        try:
            weight = float(value)
        except ValueError as err:
            raise UsageError(f"--mix {item!r}: the weight must be a number, got {value!r}") from err
        if not np.isfinite(weight) or weight < 0:
            raise UsageError(f"--mix {item!r}: weights must be >= 0")
        mix[name] = mix.get(name, 0.0) + weight
    if not mix or sum(mix.values()) <= 0:
        raise UsageError(f"--mix {text!r}: give at least one positive weight, e.g. --mix mosaic=0.5,waves=0.5")
    total = sum(mix.values())
    return {name: weight / total for name, weight in mix.items()}


def _style_choice(args: argparse.Namespace) -> tuple[str, Any]:
    """("single", name) | ("multi", name or mixture) | ("image", name or path), checked."""
    from minivis.data import STYLES  # noqa: PLC0415

    singles, multi = network_styles()
    if args.mix is not None:
        if args.optimize:
            raise UsageError("--mix blends the trained networks' styles; it does not go with --optimize")
        return "multi", parse_mix(args.mix, multi)
    name = args.style
    if args.optimize:
        if name in STYLES:
            return "image", name
        if Path(name).exists():
            return "image", Path(name)
        raise UsageError(f"--style {name!r} is neither a style image name ({', '.join(STYLES)}) nor an image "
                         f"file" + suggest(name, STYLES))
    if name in singles:
        return "single", name
    if name in multi:
        return "multi", name
    known = sorted(set(singles) | set(multi))
    hint = " (or any style image with --optimize)" if name in STYLES or Path(name).exists() else ""
    raise UsageError(f"--style {name!r}: no trained network for it; choose from {', '.join(known)}{hint}"
                     + suggest(name, known))


def _resized(image: np.ndarray, size: int | None) -> np.ndarray:
    """HxWx3 uint8 -> floats in [0, 1], the shorter side ``size`` (None: unchanged)."""
    from minivis.data import resize_shorter_side, to_float  # noqa: PLC0415

    img = to_float(image)
    return img if size is None else np.ascontiguousarray(resize_shorter_side(img, size), dtype=np.float32)


def run_style(args: argparse.Namespace, writable_folder: Any) -> int:
    """Check the command line, then stylise and write ``STEM_style_NAME.png`` and a side-by-side figure."""
    from PIL import Image  # noqa: PLC0415

    from minivis import plot, vis  # noqa: PLC0415
    from minivis.data import style_image  # noqa: PLC0415
    from minivis.site.core import slug  # noqa: PLC0415

    kind, choice = _style_choice(args)
    if args.optimize:
        arch, weights = check_model_choice(args)
        steps = positive(args.steps, 5 if args.fast else 100, "--steps")
        if not np.isfinite(args.style_weight) or args.style_weight < 0:
            raise UsageError(f"--style-weight must be >= 0, got {args.style_weight}")
    elif args.steps is not None or args.model is not None or args.weights is not None:
        raise UsageError("--steps, --model and --weights go with --optimize (a trained network needs none)")
    size = args.size if args.size is not None else (96 if args.fast else 192 if args.optimize else None)
    if size is not None and size < 16:
        raise UsageError(f"--size must be at least 16 pixels, got {size}")
    photo = read_image(args.image)
    if kind == "image":
        style_pixels = read_image(choice) if isinstance(choice, Path) else style_image(choice)
        model = check_and_load(arch, weights)
    out = writable_folder(args.out, "style")
    if size is None and min(photo.shape[:2]) > 512:
        size = 512  # a phone photo: the network's cost grows with the pixels
    content = _resized(photo, size)
    label = (choice.stem if isinstance(choice, Path) else choice) if not isinstance(choice, dict) else \
        "+".join(f"{name}{weight:.2f}" for name, weight in choice.items())
    if kind == "image":
        result = vis.style_transfer(model, vis.style_input(model, content),
                                    vis.style_input(model, style_pixels, min(content.shape[:2])),
                                    style_weight=args.style_weight, steps=steps)
        styled, shown_style = result.image, style_pixels
        call = (f"mv.vis.style_transfer(m, mv.vis.style_input(m, photo), mv.vis.style_input(m, style), "
                f"style_weight={args.style_weight:g}, steps={steps})")
    else:
        from minivis.models import load_fast_style  # noqa: PLC0415

        net = load_fast_style(choice if kind == "single" else None)
        styled = vis.stylize(net, content, 0 if kind == "single" else choice)
        names = [choice] if isinstance(choice, str) else list(choice)
        shown_style = style_image(names[0]) if kind == "single" or len(names) == 1 else None
        which = f"{choice!r}" if kind == "single" else "None"
        call = (f"mv.vis.stylize(mv.models.load_fast_style({which}), photo"
                + ("" if kind == "single" else f", {choice!r}") + ")")
    stem = f"{slug(args.image.stem)}_style_{slug(label)}"
    path = out / f"{stem}.png"
    Image.fromarray(np.round(np.clip(styled, 0, 1) * 255).astype(np.uint8)).save(path)
    figure = out / f"{stem}_figure.png"
    results = {label: styled}
    fig = (plot.style_grid(content, shown_style, results, size=3.2) if shown_style is not None else
           plot.synthesis_grid([content, styled], ["content", label], size=3.2))
    plot.save(fig, figure)
    print(f"{args.image.name} in the style {label}: {styled.shape[1]}x{styled.shape[0]}\n  {path}\n  {figure}\n"
          f"  ({call})")
    return 0


def check_and_load(arch: str, weights: Path | None) -> Any:
    """The classifier for --optimize, refused when it has no style layers."""
    from minivis.cli_methods import load_model  # noqa: PLC0415

    model = load_model(arch, weights)
    if not getattr(model, "style_layers", None):
        raise UsageError(f"--optimize needs a model with style layers (efficientnet_lite0, vgg16, vgg19); "
                         f"{arch} has none")
    return model
