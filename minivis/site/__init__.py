"""The main job as a static site: ``minivis gallery`` (``build_site``) writes ``index.html`` and PNGs.

Sections, each a ``Stage`` (``minivis.site.stages.default_stages``):

* Photos: every attribution method on each offline photo: gradients, the CAM family, LRP,
  gradient x input, DeepLIFT, occlusion (``photos``);
* Microscope: per model, layer and channel, the filter, a feature visualisation, the top-9 dataset
  patches with their DeconvNet projections and dead-filter statistics, with a layer overview grid
  (``microscope``);
* Embeddings: the t-SNE map of ``fashion_cnn`` codes, its image grid and an interactive map (``embeddings``);
* Synthesis: class models, DeepDream, inversion, adversarial examples (``synthesis``), feed-forward
  style networks, textures and style by optimisation (``style_pages``), decoder inversion
  (``decoder_page``).

No server, no network: plain HTML and CSS from Jinja2 templates, one small script for the map.
Results are cached under ``OUT/_cache`` (``.npz``, keyed by the parameters and the model's weights),
so a second run only redraws. A stage is made of independent ``Part``s (a photo, a model's
microscope, a synthesis page), which ``workers`` processes build side by side (``parallel``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from minivis.site.core import MODES, BuildContext, Cache, Figure, Page, Part, Section, Stage, stage_of_parts
from minivis.site.parallel import run_parts, stage_parts
from minivis.site.render import render_site
from minivis.validate import check_str

DEFAULT_PHOTOS = ("chelsea", "coffee", "rocket")  # default mode (the photos stage is half the build); --full: all
CACHE_DIR = "_cache"


def default_photos(mode: str) -> tuple[str, ...]:
    """The photos of a build: two in fast mode, three by default, every offline photo with ``--full``."""
    from minivis.data import PHOTOS  # noqa: PLC0415

    return {"fast": DEFAULT_PHOTOS[:2], "default": DEFAULT_PHOTOS, "full": PHOTOS}[mode]


def build_site(out: str | Path, mode: str = "default", photos: Sequence[str] | None = None,
               stages: Sequence[Stage] | None = None, models: dict[str, Any] | None = None,
               photo_arrays: dict[str, Any] | None = None, fashion: tuple[Any, Any] | None = None,
               cache: bool = True, progress: bool = True, workers: int = 1) -> Path:
    """Build the site into ``out`` and return the path of ``index.html``.

    mode: "fast" (tiny sizes: tests), "default" (a representative subset) or "full" (every channel of
    every layer). photos: photo names (default: ``default_photos(mode)``). stages: the sections
    (default: ``stages.default_stages()``). models / photo_arrays / fashion: replace the zoo models, the
    photos or the Fashion-MNIST set (tests use tiny fixtures). cache: keep results in ``out/_cache``.
    workers: processes that build the stages' parts side by side (``minivis.site.parallel``; the
    pages are the same for any number).

    A stage (or a part of one) whose dataset or optional package is missing is skipped with a note on
    the index page (the message says how to install it); any other error stops the build.
    """
    if check_str(mode, "build_site", "mode", MODES) not in MODES:
        raise ValueError(f"build_site: mode must be one of {MODES}, got {mode!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"build_site: workers must be an integer >= 1, got {workers!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if stages is None:
        from minivis.site.stages import default_stages  # noqa: PLC0415

        stages = default_stages()
    names = tuple(photos) if photos else (tuple(photo_arrays) if photo_arrays else default_photos(mode))
    ctx = BuildContext(out=out, mode=mode, cache=Cache(out / CACHE_DIR if cache else None),
                       models=dict(models or {}), photo_names=names, photos=dict(photo_arrays or {}),
                       fashion=fashion, progress=progress)
    jobs = [(s, i, part) for s, stage in enumerate(stages) for i, part in enumerate(stage_parts(stage, ctx))]
    results = run_parts(ctx, jobs, workers)
    built, notes = [], []
    for s, stage in enumerate(stages):
        mine = sorted((r for r in results if r.stage == s), key=lambda r: r.part)
        for result in mine:
            notes.extend(result.notes)
        pages = [page for r in mine if r.pages is not None for page in r.pages]
        skipped = [r for r in mine if r.pages is None]
        for r in skipped:  # missing data or optional package: say so, go on
            where = stage.title if len(mine) == 1 else f"{stage.title} ({r.name})"
            notes.append(f"{stage.group} / {where} skipped: {r.skipped}")
            if progress:
                tqdm.write(f"site: skipped {r.name}: {r.skipped}")
        if pages or not skipped:
            built.append((stage, pages))
        if progress:
            tqdm.write(f"site: {stage.name}: {len(pages)} pages in {sum(r.seconds for r in mine):.1f} s")
    ctx.notes.extend(notes)
    return render_site(out, built, mode, ctx.notes)


__all__ = ["DEFAULT_PHOTOS", "MODES", "BuildContext", "Cache", "Figure", "Page", "Part", "Section", "Stage",
           "build_site", "default_photos", "stage_of_parts"]
