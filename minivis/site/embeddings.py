"""Embeddings: the t-SNE map of ``fashion_cnn`` codes of the test set, as a scatter, as an image grid
(``tsne_grid``) and as an interactive map (hover or click a point to see its image and label).

The interactive map is drawn in the browser from a JSON of coordinates (inline in the page, and
written beside it as ``tsne_points.json``); the images come from one sprite sheet (an atlas PNG),
so the page loads two files rather than thousands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from minivis import plot, vis
from minivis.site.core import BuildContext, Figure, Page, Section, Stage
from minivis.site.images import save_image


@dataclass
class EmbeddingSpec:
    model: str = "fashion_cnn"
    layer: str = "classifier.1"  # the 128 ReLU units before the logits
    points: tuple[int, int, int] = (300, 2500, 10000)  # fast, default, full
    grid: tuple[int, int, int] = (10, 30, 40)  # side of the tsne_grid mosaic


def embedding_stage(spec: EmbeddingSpec | None = None) -> Stage:
    spec = spec or EmbeddingSpec()

    def build(ctx: BuildContext) -> list[Page]:
        return [_embedding_page(ctx, spec)]

    return Stage("embeddings", "Embeddings", "t-SNE of fashion_cnn codes", build,
                 "Which images does the network consider alike? Its codes, mapped to two dimensions.")


def _embedding_page(ctx: BuildContext, spec: EmbeddingSpec) -> Page:
    model = ctx.model(spec.model)
    images, labels = ctx.fashion_set()
    n = min(len(images), ctx.sized(*spec.points))
    images, labels = np.asarray(images[:n]), np.asarray(labels[:n])
    perplexity = float(min(30.0, (n - 1) / 3.0 - 1))

    def run() -> dict[str, np.ndarray]:
        codes = np.asarray(vis.feature_codes(model, images, spec.layer), dtype=np.float64)
        reduced = vis.pca(codes, 50) if codes.shape[1] > 50 else codes
        return {"embedding": vis.tsne(reduced, perplexity=perplexity, seed=0, progress=ctx.progress)}

    Y = ctx.cached(f"tsne-{spec.model}-{spec.layer}", {"n": n, "perplexity": perplexity}, run, model)["embedding"]
    names = list(model.labels)
    call = (f"Y = mv.vis.tsne(mv.vis.pca(mv.vis.feature_codes(m, images[:{n}], {spec.layer!r}), 50), "
            f"perplexity={perplexity:g}, seed=0)")
    path, scatter = ctx.image_path("embeddings", "scatter")
    plot.save(plot.embedding_scatter(Y, labels.astype(np.int64), names, title=f"t-SNE of {n} test images",
                                     size=6.0), path)
    side = ctx.sized(*spec.grid)
    pick = np.random.default_rng(0).choice(n, size=min(n, side * side), replace=False)
    layout = vis.tsne_grid(Y[pick], images[pick], grid=side)
    path, grid = ctx.image_path("embeddings", "grid")
    plot.save(plot.embedding_mosaic(layout, title=f"{len(pick)} of the images, snapped to a {side}x{side} grid"),
              path)
    embedding = _interactive_map(ctx, Y, images, labels, names)
    sections = [
        Section("Interactive map", text="Hover over or click a point to see its image and label; the colour is "
                "the true class.", embedding=embedding),
        Section("Scatter", [Figure(scatter, f"t-SNE (Barnes-Hut, perplexity {perplexity:g}) of the {spec.layer} "
                                            f"codes (PCA to 50) of the first {n} Fashion-MNIST test images",
                                   call)], layout="wide"),
        Section("Image grid", [Figure(grid, f"{len(pick)} images placed on a {side}x{side} grid by their t-SNE "
                                            "position (an optimal assignment of points to cells)",
                                      f"mv.vis.tsne_grid(Y[pick], images[pick], grid={side}).mosaic")],
                layout="wide"),
    ]
    return Page("embeddings", f"t-SNE of {spec.model} codes", sections, card=grid, blurb=f"{n} test images",
                intro=f"van der Maaten & Hinton 2008; m = mv.models.load({spec.model!r}).")


def _interactive_map(ctx: BuildContext, Y: np.ndarray, images: np.ndarray, labels: np.ndarray,
                     names: list[str]) -> dict:
    """The atlas PNG, the points JSON, and what the template needs to draw them."""
    n = len(Y)
    tile = int(images.shape[1])
    cols = int(np.ceil(np.sqrt(n)))
    atlas = np.ones((-(-n // cols) * tile, cols * tile) + images.shape[3:], dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        atlas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = images[i] / 255.0
    path, atlas_src = ctx.image_path("embeddings", "atlas")
    save_image(atlas, path, min_size=0)
    span = np.where(np.ptp(Y, axis=0) > 0, np.ptp(Y, axis=0), 1.0)
    unit = (Y - Y.min(axis=0)) / span
    points = {"x": np.round(unit[:, 0], 4).tolist(), "y": np.round(1.0 - unit[:, 1], 4).tolist(),
              "label": labels.astype(int).tolist(), "classes": names, "tile": tile, "cols": cols,
              "atlas": atlas_src}
    text = json.dumps(points, separators=(",", ":"))
    (ctx.out / "tsne_points.json").write_text(text)
    return {"json": text.replace("</", "<\\/"), "atlas": atlas_src, "tile": tile, "cols": cols,
            "rows": -(-n // cols), "count": n}
