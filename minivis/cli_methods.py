"""The ``minivis`` verbs that run one method family on your own image and model:

    minivis explain IMAGE [--method saliency,grad_cam,...] [--target tabby|281] --out DIR
    minivis classviz --target flamingo --out DIR
    minivis dream IMAGE --layer _blocks.6 --out DIR
    minivis invert IMAGE --layer _blocks.7 --out DIR
    minivis attack IMAGE [--target goldfish] [--epsilon 8/255] --out DIR

Every verb takes ``--model NAME`` (a zoo model with shipped weights) or ``--weights FILE --arch NAME``
(a .pth/.npz/.safetensors file for one of the zoo's architectures), ``--fast`` for small settings,
and writes PNGs into ``--out``. Images are read with Pillow in any mode (grey, palette, RGBA,
16-bit, CMYK...) and turned upright by their EXIF orientation. Classes are given by name or index;
a misspelt name gets suggestions. Everything the command line says is checked before any work.
"""

from __future__ import annotations

import argparse
import difflib
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

# Models whose weights ship (the others need --weights FILE --arch NAME).
SHIPPED = ("efficientnet_lite0", "fashion_cnn")
ARCHS = ("efficientnet_lite0", "fashion_cnn", "alexnet", "vgg16", "vgg19")
# The layer Grad-CAM reads and the defaults for dream/invert, per architecture.
CAM_LAYERS = {"efficientnet_lite0": "_blocks.15", "fashion_cnn": "features.7", "alexnet": "features.10",
              "vgg16": "features.28", "vgg19": "features.34"}
DREAM_LAYERS = {"efficientnet_lite0": "_blocks.6", "fashion_cnn": "features.5", "alexnet": "features.6",
                "vgg16": "features.19", "vgg19": "features.21"}
INVERT_LAYERS = {"efficientnet_lite0": "_blocks.7", "fashion_cnn": "features.5", "alexnet": "features.6",
                 "vgg16": "features.15", "vgg19": "features.17"}

EXAMPLES = {
    "explain": """examples:
  minivis explain cat.jpg --out explained                      all methods, the top-1 class of EfficientNet-Lite0
  minivis explain cat.jpg --method saliency,grad_cam --target tabby --out explained
  minivis explain shoe.png --model fashion_cnn --target Sneaker --out explained
  minivis explain cat.jpg --weights vgg16.pth --arch vgg16 --target 281 --out explained""",
    "classviz": """examples:
  minivis classviz --target flamingo --out classes             FFT image with robust transforms
  minivis classviz --target 130 --steps 300 --size 224 --out classes
  minivis classviz --model fashion_cnn --target Sneaker --out classes""",
    "dream": """examples:
  minivis dream cat.jpg --out dreams                           layer _blocks.6 of EfficientNet-Lite0
  minivis dream cat.jpg --layer _blocks.10 --octaves 4 --steps 10 --out dreams""",
    "invert": """examples:
  minivis invert cat.jpg --out inverted                        from layer _blocks.7 of EfficientNet-Lite0
  minivis invert cat.jpg --layer _blocks.2 --steps 200 --out inverted""",
    "attack": """examples:
  minivis attack cat.jpg --out attacked                        FGSM away from the top-1 class, epsilon 2/255
  minivis attack cat.jpg --target goldfish --epsilon 8/255 --out attacked     targeted, projected gradient""",
}


class UsageError(ValueError):
    """A mistake in the command line: printed as one line, exit status 2 (``minivis.cli`` catches it)."""


# --------------------------------------------------------------------------- parsing helpers
def add_model_arguments(parser: argparse.ArgumentParser, default: str | None = "efficientnet_lite0") -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None, help=f"a zoo model with shipped weights: {', '.join(SHIPPED)} "
                                                     f"(default {default})")
    group.add_argument("--weights", type=Path, default=None, help="a .pth/.npz/.safetensors file (with --arch)")
    group.add_argument("--arch", default=None, help=f"the architecture of --weights: {', '.join(ARCHS)}")
    parser.set_defaults(default_model=default)


def add_common(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(out), help=f"folder for the PNGs (default: ./{out})")
    parser.add_argument("--fast", action="store_true", help="small settings (a quick look, or a test)")


def epsilon_value(text: str) -> float:
    """``0.03`` or ``8/255`` -> a float (argparse type)."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.03 or 8/255, got {text!r}") from err
    return value


def check_model_choice(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(architecture, weights file or None) from --model / --weights / --arch; checked before loading anything."""
    if args.weights is not None:
        if args.model is not None:
            raise UsageError("--model and --weights exclude each other: use --weights FILE --arch NAME for your "
                             "own weights")
        if args.arch is None:
            raise UsageError(f"--weights needs --arch NAME (one of {', '.join(ARCHS)})")
        if args.arch not in ARCHS:
            raise UsageError(f"--arch {args.arch!r} is not an architecture minivis knows; choose from "
                             f"{', '.join(ARCHS)}")
        if not args.weights.is_file():
            raise UsageError(f"--weights {args.weights}: no such file")
        return args.arch, args.weights
    if args.arch is not None:
        raise UsageError("--arch goes with --weights FILE; for a shipped model use --model NAME")
    name = args.model or args.default_model
    if name not in SHIPPED:
        if name in ARCHS:
            raise UsageError(f"--model {name}: no weights ship for it; give your own with --weights FILE --arch "
                             f"{name}")
        raise UsageError(f"--model {name!r} is unknown; choose from {', '.join(SHIPPED)}" + suggest(name, SHIPPED))
    return name, None


def load_model(arch: str, weights: Path | None) -> Any:
    from minivis.models import load  # noqa: PLC0415

    return load(arch, weights=weights)


def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def resolve_class(model: Any, target: str, flag: str = "--target") -> int:
    """A class index from a number or a class name (case-insensitive); a misspelt name gets suggestions."""
    labels = list(model.labels)
    text = target.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise UsageError(f"{flag} {index} is out of range: this model has classes 0..{len(labels) - 1}")
        return index
    lowered = {label.lower(): i for i, label in enumerate(labels)}
    if text.lower() in lowered:
        return lowered[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(lowered), n=3, cutoff=0.6)
    hint = (f"; did you mean {', '.join(repr(labels[lowered[c]]) for c in close)}?" if close else
            f"; give a class index 0..{len(labels) - 1} or a name such as {labels[0]!r}")
    raise UsageError(f"{flag} {target!r} is not a class of this model{hint}")


def read_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8, upright by its EXIF orientation; a clear error when it cannot be read."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415

    if not path.exists():
        raise UsageError(f"IMAGE {path}: no such file")
    if not path.is_file():
        raise UsageError(f"IMAGE {path}: not a file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit grey: scale to 8 bits first
                arr = np.asarray(img, dtype=np.float64)
                high = arr.max() if arr.max() > 0 else 1.0
                img = Image.fromarray(np.round(arr / high * 255).astype(np.uint8))
            rgb = img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except UnidentifiedImageError as err:
        raise UsageError(f"IMAGE {path}: not an image Pillow can read (JPEG, PNG, ...)") from err
    except OSError as err:
        raise UsageError(f"IMAGE {path}: cannot read it ({err})") from err


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities of one model input (1, C, H, W)."""
    from minivis.autograd import no_grad, tensor  # noqa: PLC0415

    with no_grad():
        logits = np.asarray(model(tensor(x)).numpy()[0], np.float64)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _layer(model: Any, arch: str, layer: str | None, table: dict[str, str], flag: str = "--layer") -> str:
    name = layer or table.get(arch)
    if name is None:
        raise UsageError(f"{flag} is needed for this model")
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        raise UsageError(f"{flag} {name!r} is not a layer of {arch}" + suggest(name, names))
    return name


# --------------------------------------------------------------------------- the verbs
def explain_methods() -> dict[str, Any]:
    from minivis.site.photos import PHOTO_METHODS  # noqa: PLC0415

    return {m.key: m for m in PHOTO_METHODS}


def add_verbs(verbs: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add explain, classviz, dream, invert and attack to the ``minivis`` sub-command parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    explain = verbs.add_parser("explain", parents=parents, help="attribution maps for your own image",
                               description="Which pixels made the model say what it said? One PNG per method.",
                               epilog=EXAMPLES["explain"], formatter_class=fmt)
    explain.add_argument("image", type=Path, help="an image file (JPEG, PNG, ...)")
    explain.add_argument("--method", default="all",
                         help="comma-separated: saliency, smoothgrad, guided_backprop, deconvnet, "
                              "integrated_gradients, grad_cam, guided_grad_cam, cam_variants (Grad-CAM++, XGrad-CAM, "
                              "HiRes-CAM, LayerCAM, Eigen-CAM), gradient_x_input, lrp, deeplift, occlusion "
                              "(default: all)")
    explain.add_argument("--target", default=None, help="class name or index (default: the top-1 class)")
    explain.add_argument("--layer", default=None, help="layer for Grad-CAM (default: the model's last block)")
    add_model_arguments(explain)
    add_common(explain, "explained")

    classviz = verbs.add_parser("classviz", parents=parents, help="the image a class likes best",
                                description="Class-model visualisation: gradient ascent on a class logit, "
                                            "Fourier parameterisation and robust transforms.",
                                epilog=EXAMPLES["classviz"], formatter_class=fmt)
    classviz.add_argument("--target", required=True, help="class name or index")
    classviz.add_argument("--steps", type=int, default=None, help="ascent steps (default 200, --fast 20)")
    classviz.add_argument("--size", type=int, default=None, help="image side in pixels (default: 160, --fast 64)")
    classviz.add_argument("--lr", type=float, default=0.05)
    add_model_arguments(classviz)
    add_common(classviz, "classviz")

    dream = verbs.add_parser("dream", parents=parents, help="DeepDream on your own image",
                             description="Amplify what a layer sees in the image, octave by octave.",
                             epilog=EXAMPLES["dream"], formatter_class=fmt)
    dream.add_argument("image", type=Path)
    dream.add_argument("--layer", default=None, help="layer to amplify (default: a middle block)")
    dream.add_argument("--steps", type=int, default=None, help="steps per octave (default 10, --fast 2)")
    dream.add_argument("--octaves", type=int, default=None, help="octaves (default 3, --fast 1)")
    dream.add_argument("--lr", type=float, default=0.02)
    add_model_arguments(dream)
    add_common(dream, "dreams")

    invert = verbs.add_parser("invert", parents=parents, help="reconstruct your image from a layer's code",
                              description="Feature inversion (Mahendran & Vedaldi): the image whose code at "
                                          "the layer matches yours, with alpha-norm and TV priors.",
                              epilog=EXAMPLES["invert"], formatter_class=fmt)
    invert.add_argument("image", type=Path)
    invert.add_argument("--layer", default=None, help="layer whose code is matched")
    invert.add_argument("--steps", type=int, default=None, help="L-BFGS iterations (default 100, --fast 5)")
    add_model_arguments(invert)
    add_common(invert, "inverted")

    attack = verbs.add_parser("attack", parents=parents, help="an adversarial version of your image",
                              description="Without --target: FGSM away from the top-1 class. With --target: "
                                          "projected signed-gradient steps until the model says that class.",
                              epilog=EXAMPLES["attack"], formatter_class=fmt)
    attack.add_argument("image", type=Path)
    attack.add_argument("--target", default=None, help="class to reach (name or index); none: FGSM")
    attack.add_argument("--epsilon", type=epsilon_value, default=None,
                        help="L-infinity budget in pixel units, e.g. 8/255 (default 2/255 FGSM, 8/255 targeted)")
    attack.add_argument("--steps", type=int, default=None, help="targeted steps (default 40, --fast 5)")
    add_model_arguments(attack)
    add_common(attack, "attacked")


def positive(value: int | None, default: int, flag: str) -> int:
    value = default if value is None else value
    if value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}")
    return value


def run_verb(args: argparse.Namespace, writable_folder: Any) -> int:
    """Check everything the command line says, then load, compute and write; returns the exit status."""
    arch, weights = check_model_choice(args)
    image = read_image(args.image) if hasattr(args, "image") else None
    if args.verb == "explain":
        methods = explain_methods()
        wanted = list(methods) if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown or not wanted:
            bad = unknown[0] if unknown else args.method
            raise UsageError(f"--method {bad!r} is unknown; choose from {', '.join(methods)}"
                             + suggest(bad, methods))
    if args.verb == "classviz":
        steps = positive(args.steps, 20 if args.fast else 200, "--steps")
        size = positive(args.size, 64 if args.fast else 160, "--size")
    out = writable_folder(args.out, args.verb)
    model = load_model(arch, weights)
    if args.verb == "explain":
        return _explain(args, model, arch, image, wanted, out)
    if args.verb == "classviz":
        return _classviz(args, model, steps, size, out)
    if args.verb == "dream":
        return _dream(args, model, arch, image, out)
    if args.verb == "invert":
        return _invert(args, model, arch, image, out)
    if args.verb == "attack":
        return _attack(args, model, image, out)
    raise UsageError(f"unknown verb {args.verb!r}")


def _stem(args: argparse.Namespace) -> str:
    from minivis.site.core import slug  # noqa: PLC0415

    return slug(args.image.stem)


def _explain(args: argparse.Namespace, model: Any, arch: str, image: np.ndarray, wanted: list[str],
             out: Path) -> int:
    from minivis import plot  # noqa: PLC0415
    from minivis.site.core import BuildContext  # noqa: PLC0415

    cams = {"grad_cam", "guided_grad_cam", "cam_variants"}
    layer = _layer(model, arch, args.layer, CAM_LAYERS) if cams & set(wanted) else ""
    x = model.preprocess(image)
    probs = predict(model, x)
    target = resolve_class(model, args.target) if args.target is not None else int(probs.argmax())
    label = model.labels[target]
    print(f"{args.image.name}: top-1 {model.labels[int(probs.argmax())]} ({probs.max():.1%}); explaining "
          f"{label} (class {target}, p = {probs[target]:.1%})")
    shown = model.deprocess(x)[0]
    settings = BuildContext(out=out, mode="fast" if args.fast else "default")
    methods = explain_methods()
    for key in wanted:
        method = methods[key]
        params = method.params(settings, layer)
        result = method.compute(model, x, target, params)
        path = out / f"{_stem(args)}_{key}.png"
        plot.save(method.draw(shown, result, params, f"{args.image.name}: {method.name}, target {label}"), path)
        print(f"  {method.name:22s} {path}   ({method.call.format(target=target, **params)})")
    return 0


def _classviz(args: argparse.Namespace, model: Any, steps: int, size: int, out: Path) -> int:
    from minivis import plot, vis  # noqa: PLC0415
    from minivis.site.core import slug  # noqa: PLC0415

    target = resolve_class(model, args.target)
    label = model.labels[target]
    fft = model.in_channels == 3  # the decorrelated Fourier image is defined for RGB
    kwargs = ({"param": "fft", "transforms": "standard", "l2": 0.0} if fft else
              {"jitter": 2, "blur_every": 4, "blur_sigma": 0.5, "l2": 0.0})
    size_arg = size if model.in_channels == 3 else None  # fashion_cnn takes 28x28 only
    result = vis.class_model(model, target, steps=steps, lr=args.lr, size=size_arg, seed=0, **kwargs)
    path = out / f"class_{target}_{slug(label)}.png"
    plot.save(plot.synthesis_grid([result.image], [f"{label} (logit {result.history[-1]:.1f})"], size=4.0), path)
    curve = out / f"class_{target}_{slug(label)}_history.png"
    plot.save(plot.history_plot({label: result.history}, ylabel="class logit"), curve)
    extra = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    print(f"{label} (class {target}): logit {result.history[0]:.2f} -> {result.history[-1]:.2f}\n  {path}\n  {curve}"
          f"\n  (mv.vis.class_model(model, {target}, steps={steps}, lr={args.lr}, size={size_arg}, {extra}))")
    return 0


def _dream(args: argparse.Namespace, model: Any, arch: str, image: np.ndarray, out: Path) -> int:
    from minivis import plot, vis  # noqa: PLC0415

    layer = _layer(model, arch, args.layer, DREAM_LAYERS)
    steps = positive(args.steps, 2 if args.fast else 10, "--steps")
    octaves = positive(args.octaves, 1 if args.fast else 3, "--octaves")
    x = model.preprocess(image)
    result = vis.deepdream(model, x, layer, steps=steps, lr=args.lr, octaves=octaves)
    image_out = result.image[0] if result.image.ndim == 4 else result.image
    path = out / f"{_stem(args)}_dream_{layer}.png"
    plot.save(plot.synthesis_grid([model.deprocess(x)[0], image_out], ["original", f"DeepDream at {layer}"],
                                  size=4.0), path)
    print(f"{path}\n  (mv.vis.deepdream(model, x, {layer!r}, steps={steps}, lr={args.lr}, octaves={octaves}))")
    return 0


def _invert(args: argparse.Namespace, model: Any, arch: str, image: np.ndarray, out: Path) -> int:
    from minivis import plot, vis  # noqa: PLC0415

    layer = _layer(model, arch, args.layer, INVERT_LAYERS)
    steps = positive(args.steps, 5 if args.fast else 100, "--steps")
    x = model.preprocess(image)[0]
    result = vis.invert(model, x, layer, steps=steps)
    path = out / f"{_stem(args)}_inverted_{layer}.png"
    plot.save(plot.synthesis_grid([model.deprocess(x), result.image],
                                  ["original", f"from {layer} (image error {result.info['image_error']:.2f})"],
                                  size=4.0), path)
    print(f"{path}\n  (mv.vis.invert(model, x, {layer!r}, steps={steps}))")
    return 0


def _attack(args: argparse.Namespace, model: Any, image: np.ndarray, out: Path) -> int:
    from minivis import plot, vis  # noqa: PLC0415

    x = model.preprocess(image)[0]
    probs = predict(model, x[None])
    label = int(probs.argmax())
    labels = model.labels
    if args.target is None:
        eps = 2 / 255 if args.epsilon is None else args.epsilon
        result = vis.fgsm(model, x, label, epsilon=eps)
        call = f"mv.vis.fgsm(model, x, {label}, epsilon={eps:.5g})"
        title = f"FGSM {eps * 255:.1f}/255: {labels[int(result.prediction)]}"
    else:
        target = resolve_class(model, args.target)
        eps = 8 / 255 if args.epsilon is None else args.epsilon
        steps = positive(args.steps, 5 if args.fast else 40, "--steps")
        result = vis.targeted_attack(model, x, target, epsilon=eps, step_size=eps / 4, steps=steps)
        call = f"mv.vis.targeted_attack(model, x, {target}, epsilon={eps:.5g}, steps={steps})"
        title = f"targeted {eps * 255:.1f}/255: {labels[int(result.prediction)]} (p {result.target_prob:.3f})"
    clean = model.deprocess(x)
    diff = np.clip(0.5 + (result.image - clean) * (0.5 / max(eps, 1e-12)), 0, 1)
    path = out / f"{_stem(args)}_attack.png"
    plot.save(plot.synthesis_grid([clean, result.image, diff], [f"clean: {labels[label]} ({probs[label]:.1%})",
                                                                title, "difference, scaled to the budget"],
                                  size=3.2), path)
    print(f"prediction {labels[label]} -> {labels[int(result.prediction)]}\n  {path}\n  ({call})")
    return 0
