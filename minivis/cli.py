"""The ``minivis`` command: one verb per job.

    minivis gallery [--fast|--full] [--workers N] [--out DIR]   the static site (photos, microscope, ...)
    minivis explain IMAGE [--method ...] [--target tabby|281] --out DIR   attribution maps for your image
    minivis classviz --target flamingo --out DIR  the image a class likes best
    minivis dream IMAGE [--layer L] --out DIR      DeepDream
    minivis invert IMAGE [--layer L] --out DIR     feature inversion
    minivis attack IMAGE [--target goldfish] --out DIR   FGSM or a targeted attack
    minivis style IMAGE --style mosaic|waves|... [--mix mosaic=0.5,waves=0.5] [--optimize] --out DIR
                                                   your image in a trained style (or by optimisation)
    minivis lessons [--fast] [--out DIR]          run every lesson script, saving its figures to DIR
    minivis train fashion_cnn [--epochs N]        train the Fashion-MNIST CNN into ./runs/fashion_cnn
    minivis train fashion_cnn --permute-labels    the same CNN on shuffled labels (sanity checks)
    minivis train decoder --layer L          train the decoder of fashion_cnn's layer L into ./runs/decoder
    minivis train style --style NAME [NAME ...] [--steps N]
                                             train a feed-forward style network (several names: one
                                             network for all, conditional instance norm) into ./runs/style

`minivis VERB --help` shows each verb's options and examples.

A mistake in what you typed (an unknown photo, an unwritable folder, a missing dataset, a bad
number) prints one line saying what is wrong and how to fix it, and exits with status 2;
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from minivis.cli_methods import UsageError, add_verbs, run_verb
from minivis.cli_style import add_style_verb, run_style

REPO = Path(__file__).resolve().parent.parent
TRAIN_OUT = Path("runs")  # `minivis train MODEL` writes to runs/MODEL under the current folder
IMAGE_VERBS = ("explain", "classviz", "dream", "invert", "attack")


def writable_folder(path: Path, verb: str) -> Path:
    """``path`` created if need be, and checked writable before any work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {path}: cannot create the folder ({err.strerror}); choose another with --out") from err
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: not a writable folder; choose another with --out")
    return path


def default_workers() -> int:
    """Processes for ``minivis gallery``: two where there are two CPUs (the build is about one CPU-second
    per wall-second in one process); more would mostly add memory (each loads its own models)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_lessons(out: Path, fast: bool, only: list[str] | None = None) -> int:
    """Run each ``lessons/NN_*.py`` as a script; figures go to ``out``. Returns the number that failed."""
    lessons = sorted((REPO / "lessons").glob("[0-9][0-9]_*.py"))
    if only:
        lessons = [p for p in lessons if any(p.name.startswith(o) for o in only)]
    if not lessons:
        print(f"minivis lessons: no lessons found under {REPO / 'lessons'} (run from a source checkout)")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg", MINIVIS_FIGURES=str(out.resolve()))
    # a script's sys.path starts at lessons/: put this checkout first, so the lessons run the minivis
    # they sit beside even where another copy is the one installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if fast:
        env["MINIVIS_FAST"] = "1"
    failed = 0
    for path in lessons:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(path)], env=env, cwd=REPO)
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        failed += result.returncode != 0
        print(f"{path.name:50s} {status:20s} {time.perf_counter() - start:6.1f} s", flush=True)
    print(f"figures in {out.resolve()}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minivis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    debug = argparse.ArgumentParser(add_help=False)  # --debug is accepted after the verb too
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    verbs = parser.add_subparsers(dest="verb", required=True)
    gallery = verbs.add_parser(
        "gallery", parents=[debug], help="build the static site (open OUT/index.html)",
        description="Build the minivis site: photos through every attribution method, a microscope per model "
                    "and layer, the t-SNE map, and the synthesis family. Results are cached in OUT/_cache, so a "
                    "second run only redraws.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  minivis gallery --out gallery            default: a representative subset, a few "
               "minutes\n  minivis gallery --fast --out /tmp/site    tiny settings, for a quick look\n"
               "  minivis gallery --full --out gallery     every photo, every channel of every layer (long)\n"
               "  minivis gallery chelsea coffee           only these photos")
    gallery.add_argument("--out", type=Path, default=Path("gallery"), help="folder for the site")
    size = gallery.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="tiny settings (tests, a quick look)")
    size.add_argument("--full", action="store_true", help="every photo, every channel of every layer")
    gallery.add_argument("--no-cache", action="store_true", help="recompute everything (and keep no cache)")
    gallery.add_argument("--workers", type=int, default=None,
                         help=f"processes building parts of the site side by side, each on one CPU thread "
                              f"(default {default_workers()}: min(2, CPUs); 1: one process, the kernels on all "
                              f"threads)")
    gallery.add_argument("photos", nargs="*", help="photo names (default: four photos; --full: all)")
    add_verbs(verbs, [debug])
    add_style_verb(verbs, [debug])
    lessons = verbs.add_parser("lessons", parents=[debug], help="run every lesson and save its figures")
    lessons.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG figures")
    lessons.add_argument("--fast", action="store_true", help="small sizes (MINIVIS_FAST=1)")
    lessons.add_argument("only", nargs="*", help="lesson number prefixes to run, e.g. 01 04")
    train = verbs.add_parser("train", parents=[debug], help="train a zoo model from scratch")
    train.add_argument("model", choices=["fashion_cnn", "decoder", "style"],
                       help="fashion_cnn; decoder: the up-convolutional decoder of one fashion_cnn layer; style: a "
                            "feed-forward style network")
    train.add_argument("--layer", default=None, help="decoder only: the fashion_cnn layer whose code it inverts")
    train.add_argument("--epochs", type=int, default=None, help="default 4 (fashion_cnn), 2 (decoder)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="default 128 (fashion_cnn), 64 (decoder), 4 (style)")
    train.add_argument("--train-images", type=int, default=None,
                       help="train on the first N training images only (default: all 60,000)")
    train.add_argument("--lr", type=float, default=None, help="Adam's step; default 1e-3 (fashion_cnn, decoder), "
                                                              "2e-3 (style)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--permute-labels", action="store_true",
                       help="fashion_cnn: train on the training labels permuted with --seed (Adebayo et al.'s "
                            "data-randomisation test); saved as fashion_cnn_permuted_labels.npz")
    train.add_argument("--style", nargs="+", default=None, help="style: the style image name(s) (mv.data.STYLES)")
    train.add_argument("--steps", type=int, default=300, help="style: training steps (batches)")
    train.add_argument("--crop", type=int, default=64, help="style: side of the random photo crops")
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                       help="style: constant Adam step, or cosine annealing to 0 over --steps")
    train.add_argument("--unbounded", action="store_true",
                       help="style: output x + f(x) unclipped (the networks shipped before 2026-12-06) instead of "
                            "sigmoid(logit(x) + f(x))")
    train.add_argument("--style-weight", type=float, default=20.0, help="style: weight of the style loss")
    train.add_argument("--upsample", choices=["transpose", "resize"], default="transpose",
                       help="style: transposed convolution (Johnson) or nearest resize + convolution")
    train.add_argument("--checkpoint-every", type=int, default=200, help="style: steps between checkpoints")
    train.add_argument("--out", type=Path, default=None, help="folder for the weights (default: runs/MODEL)")
    train.add_argument("--into-package", action="store_true",
                       help="overwrite the weights shipped inside the installed package (maintainers only)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, ImportError) as err:
        if args.debug:
            raise
        print(f"minivis {args.verb}: error: {err}", file=sys.stderr)
        print("  (run again with --debug for the full traceback)", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command; user errors raise ValueError/TypeError/OSError for ``main`` to print."""
    if args.verb == "gallery":
        from minivis.data import PHOTOS  # noqa: PLC0415
        from minivis.site import build_site  # noqa: PLC0415
        from minivis.site.render import environment  # noqa: PLC0415

        unknown = [name for name in args.photos if name not in PHOTOS]
        if unknown:
            raise UsageError(f"unknown photo(s) {', '.join(map(repr, unknown))}; choose from {', '.join(PHOTOS)}")
        environment()  # a missing Jinja2 is reported before any work
        workers = default_workers() if args.workers is None else args.workers
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        mode = "fast" if args.fast else "full" if args.full else "default"
        index = build_site(writable_folder(args.out, "gallery"), mode=mode, photos=args.photos or None,
                           cache=not args.no_cache, workers=workers)
        print(f"site written: open {index.resolve()}")
        return 0
    if args.verb in IMAGE_VERBS:
        return run_verb(args, writable_folder)
    if args.verb == "style":
        return run_style(args, writable_folder)
    if args.verb == "lessons":
        return 1 if run_lessons(writable_folder(args.out, "lessons"), args.fast, args.only) else 0
    if args.verb == "train" and args.model == "style":
        return run_train_style(args)
    if args.verb == "train":
        from minivis.data import fashion_mnist  # noqa: PLC0415
        from minivis.models import WEIGHTS_DIR  # noqa: PLC0415
        from minivis.train import check_settings, train_fashion_cnn  # noqa: PLC0415

        if args.into_package and args.out is not None:
            raise UsageError("--into-package and --out exclude each other")
        decoder = args.model == "decoder"
        epochs = args.epochs if args.epochs is not None else (2 if decoder else 4)
        batch_size = args.batch_size if args.batch_size is not None else (64 if decoder else 128)
        lr = 1e-3 if args.lr is None else args.lr
        check_settings(epochs, batch_size, lr)
        if args.train_images is not None and args.train_images < batch_size:
            raise UsageError(f"--train-images must be at least the batch size ({batch_size}), got {args.train_images}")
        if decoder:
            from minivis.train_decoder import check_layer_name, train_decoder  # noqa: PLC0415

            if args.layer is None:
                raise UsageError("train decoder needs --layer (e.g. --layer features.4)")
            check_layer_name(args.layer)
        elif args.layer is not None:
            raise UsageError("--layer is for `minivis train decoder` only")
        if decoder and args.permute_labels:
            raise UsageError("--permute-labels is for `minivis train fashion_cnn` only")
        fashion_mnist("test")  # a missing dataset is reported before any folder is made
        out = WEIGHTS_DIR if args.into_package else (args.out or TRAIN_OUT / args.model)
        folder = writable_folder(out, "train")
        if decoder:
            log = train_decoder(folder, args.layer, epochs, batch_size, lr, args.seed, limit=args.train_images)
            print(f"test image error {log['test_image_error']:.4f} after {log['total_seconds']:.0f} s; "
                  f"weights in {out}")
            return 0
        subset = {} if args.train_images is None else {"limit": args.train_images}
        log = train_fashion_cnn(folder, epochs, batch_size, lr, args.seed, **subset,
                                permute_labels=args.permute_labels, command=" ".join(["minivis", *sys.argv[1:]]))
        memorised = f"train accuracy {log['train_accuracy']:.4f}, " if args.permute_labels else ""
        print(f"{memorised}test accuracy {log['test_accuracy']:.4f} after {log['total_seconds']:.0f} s; "
              f"weights in {out}")
        return 0
    return 2


def run_train_style(args: argparse.Namespace) -> int:
    """``minivis train style --style NAME ...``: settings and names checked before any work or folder."""
    from minivis.models import WEIGHTS_DIR  # noqa: PLC0415
    from minivis.train_style import check_style_settings, check_styles, train_style, weights_name  # noqa: PLC0415

    if args.style is None:
        raise UsageError("train style needs --style NAME (one or more of mv.data.STYLES)")
    if args.into_package and args.out is not None:
        raise UsageError("--into-package and --out exclude each other")
    styles = check_styles(args.style)
    batch_size = 4 if args.batch_size is None else args.batch_size
    lr = 2e-3 if args.lr is None else args.lr
    check_style_settings(args.steps, batch_size, args.crop, lr, [args.style_weight])
    if args.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    name = weights_name(styles)
    out = WEIGHTS_DIR if args.into_package else (args.out or TRAIN_OUT / name)
    checkpoints = (TRAIN_OUT / name / "checkpoints") if args.into_package else None  # never into the package
    log = train_style(writable_folder(out, "train"), styles, steps=args.steps, batch_size=batch_size,
                      crop=args.crop, lr=lr, style_weight=args.style_weight, upsample=args.upsample, seed=args.seed,
                      lr_schedule=args.lr_schedule, bounded=not args.unbounded,
                      checkpoint_every=args.checkpoint_every, checkpoint_dir=checkpoints,
                      command=" ".join(["minivis", *sys.argv[1:]]))
    print(f"final loss {log['final_loss']:.4f} after {log['total_seconds']:.0f} s; weights in {out / name}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
