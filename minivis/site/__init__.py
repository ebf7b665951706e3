"""The main job as a static site: ``minivis gallery`` (``build_site``) writes ``index.html`` and PNGs.

Sections, each a ``Stage`` (``minivis.site.stages.default_stages``):

* Photos: every attribution method on each offline photo (``photos``);
* Microscope: per model, layer and channel, the filter, a feature visualisation, the top-9 dataset
  patches and dead-filter statistics, with a layer overview grid (``microscope``);
* Embeddings: the t-SNE map of ``fashion_cnn`` codes, its image grid and an interactive map (``embeddings``);
* Synthesis: class models, DeepDream, inversion, adversarial examples (``synthesis``).

No server, no network: plain HTML and CSS from Jinja2 templates, one small script for the map.
Results are cached under ``OUT/_cache`` (``.npz``, keyed by the parameters and the model's weights),
so a second run only redraws.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from minivis.site.core import MODES, BuildContext, Cache, Figure, Page, Section, Stage
from minivis.site.render import render_site

DEFAULT_PHOTOS = ("chelsea", "coffee", "rocket")  # default mode (the photos stage is half the build); --full: all
CACHE_DIR = "_cache"


def default_photos(mode: str) -> tuple[str, ...]:
    """The photos of a build: two in fast mode, three by default, every offline photo with ``--full``."""
    from minivis.data import PHOTOS  # noqa: PLC0415

    return {"fast": DEFAULT_PHOTOS[:2], "default": DEFAULT_PHOTOS, "full": PHOTOS}[mode]


def build_site(out: str | Path, mode: str = "default", photos: Sequence[str] | None = None,
               stages: Sequence[Stage] | None = None, models: dict[str, Any] | None = None,
               photo_arrays: dict[str, Any] | None = None, fashion: tuple[Any, Any] | None = None,
               cache: bool = True, progress: bool = True) -> Path:
    """Build the site into ``out`` and return the path of ``index.html``.

    mode: "fast" (tiny sizes: tests), "default" (a representative subset) or "full" (every channel of
    every layer). photos: photo names (default: ``default_photos(mode)``). stages: the sections
    (default: ``stages.default_stages()``). models / photo_arrays / fashion: replace the zoo models, the
    photos or the Fashion-MNIST set (tests use tiny fixtures). cache: keep results in ``out/_cache``.

    A stage whose dataset or optional package is missing is skipped with a note on the index page
    (the message says how to install it); any other error stops the build.
    """
    if mode not in MODES:
        raise ValueError(f"build_site: mode must be one of {MODES}, got {mode!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if stages is None:
        from minivis.site.stages import default_stages  # noqa: PLC0415

        stages = default_stages()
    names = tuple(photos) if photos else (tuple(photo_arrays) if photo_arrays else default_photos(mode))
    ctx = BuildContext(out=out, mode=mode, cache=Cache(out / CACHE_DIR if cache else None),
                       models=dict(models or {}), photo_names=names, photos=dict(photo_arrays or {}),
                       fashion=fashion, progress=progress)
    built, notes = [], []
    for stage in stages:
        start = time.perf_counter()
        try:
            pages = stage.build(ctx)
        except (FileNotFoundError, ImportError) as err:  # missing data or optional package: say so, go on
            notes.append(f"{stage.group} / {stage.title} skipped: {err}")
            if progress:
                tqdm.write(f"site: skipped {stage.name}: {err}")
            continue
        built.append((stage, pages))
        if progress:
            tqdm.write(f"site: {stage.name}: {len(pages)} pages in {time.perf_counter() - start:.1f} s")
    ctx.notes.extend(notes)
    return render_site(out, built, mode, ctx.notes)


__all__ = ["DEFAULT_PHOTOS", "MODES", "BuildContext", "Cache", "Figure", "Page", "Section", "Stage", "build_site",
           "default_photos"]
