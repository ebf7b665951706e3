"""Non-parametric texture synthesis: grow a texture pixel by pixel by copying from the sample.

Efros & Leung, "Texture Synthesis by Non-parametric Sampling" (ICCV 1999), in the raster order of
Wei & Levoy, "Fast Texture Synthesis using Tree-structured Vector Quantization" (SIGGRAPH 2000).
The texture is modelled as a Markov random field: a pixel depends only on its neighbourhood. So,
for each output pixel p in raster order,

1. take the *causal* neighbourhood of p: the pixels of the ``window x window`` square centred on
   p that are already synthesised (the rows above, and the pixels to its left);
2. compare it with the same-shaped neighbourhood of every sample pixel q, by the
   Gaussian-weighted sum of squared differences (Efros & Leung's sigma = window / 6.4)

       d(q) = sum_k w_k ||out[p + o_k] - sample[q + o_k]||^2        o_k: the causal offsets;

3. copy the colour of a sample pixel chosen uniformly among those with ``d(q) <= (1 + eps) min d``.

Step 2 is the hot loop. With ``P`` the (Q, K) matrix of every candidate's neighbourhood (one row per
sample pixel q, computed once) and ``t`` the output neighbourhood, the expansion

    d = (P * P) @ w - 2 P @ (w * t) + (w * t) . t

turns it into one BLAS matrix-vector product per output pixel (``(P * P) @ w`` is fixed wherever
the whole neighbourhood lies inside the output). That product runs in float32 (several times
faster than float64 here), and only the short list of candidates it puts within reach of the best
is measured again exactly, in float64, before the choice: the result is the float64 method's.
The loop over output pixels is the method's own: each pixel depends on the ones before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import threadpoolctl
from tqdm.auto import tqdm

from minivis.validate import check_array_size, check_bool, check_float, check_int, int_pair


def causal_offsets(window: int) -> np.ndarray:
    """(K, 2) offsets (dy, dx) of the already-synthesised half of a ``window x window`` square."""
    r = window // 2
    return np.array([(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if dy < 0 or dx < 0])


def gaussian_weights(offsets: np.ndarray, window: int) -> np.ndarray:
    """Efros & Leung's Gaussian weight of each offset, sigma = window / 6.4 (close pixels matter most)."""
    sigma = window / 6.4
    return np.exp(-(offsets ** 2).sum(axis=1) / (2 * sigma * sigma))


def candidate_matrix(sample: np.ndarray, offsets: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate's neighbourhood: sample (H, W, C) -> P (Q, K * C), and the candidates' (Q, 2) positions.

    Candidates are the sample pixels whose causal neighbourhood lies inside the sample.
    """
    h, w, c = sample.shape
    r = window // 2
    ys, xs = np.meshgrid(np.arange(r, h), np.arange(r, w - r), indexing="ij")
    centres = np.stack([ys.ravel(), xs.ravel()], axis=1)
    rows = centres[:, None, 0] + offsets[None, :, 0]
    cols = centres[:, None, 1] + offsets[None, :, 1]
    return sample[rows, cols].reshape(len(centres), len(offsets) * c), centres


def masked_distances(p: np.ndarray, p2w: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``d_q = sum_k w_k (P_qk - t_k)^2`` for every row q of P, from the expansion in the module docstring.

    p: (Q, K); p2w: ``(P * P) @ weights`` (Q,); target t, weights w: (K,). Rounding can make an exact
    match slightly negative; it is clipped to 0.
    """
    wt = weights * target
    return np.maximum(p2w - 2.0 * (p @ wt) + float(wt @ target), 0.0)


def _as_float_image(sample: Any, method: str) -> np.ndarray:
    array = np.asarray(sample)
    if array.dtype.kind not in "uif" or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise ValueError(f"{method}: sample must be an HxW or HxWxC image (C <= 4), got shape {array.shape} "
                         f"dtype {array.dtype}")
    image = array.astype(np.float64) / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    if not np.isfinite(image).all():
        raise ValueError(f"{method}: sample contains NaN or infinite values")
    return image[:, :, None] if image.ndim == 2 else image


def _grow(out: np.ndarray, source: np.ndarray, image: np.ndarray, p: np.ndarray, p32: np.ndarray,
          p32_sq: np.ndarray, p2w_full: np.ndarray, g: np.ndarray, centres: np.ndarray, offsets: np.ndarray,
          eps: float, band: float, rng: np.random.Generator, progress: bool, method: str) -> None:
    """The raster scan: fill ``out`` (H, W, C) and ``source`` (H, W, 2) pixel by pixel, in place."""
    out_h, out_w, c = out.shape
    for i in tqdm(range(out_h), desc=method, disable=not progress, leave=False):
        rows = i + offsets[:, 0]
        for j in range(out_w):
            cols = j + offsets[:, 1]
            inside = (rows >= 0) & (cols >= 0) & (cols < out_w)
            if not inside.any():                                            # the first pixel: a random start
                pick = int(rng.integers(len(centres)))
            else:
                if inside.all():
                    weights, p2w = g, p2w_full
                    target = out[rows, cols].ravel()
                else:
                    weights = g * np.repeat(inside, c)
                    p2w = p32_sq @ weights.astype(np.float32)
                    target = out[np.clip(rows, 0, out_h - 1), np.clip(cols, 0, out_w - 1)].ravel()
                rough = masked_distances(p32, p2w, target.astype(np.float32), weights.astype(np.float32))
                short = np.flatnonzero(rough <= rough.min() * (1.0 + eps) + band)
                diff = p[short] - target                                    # exact, float64, few rows
                d = (diff * diff) @ weights
                close = short[d <= d.min() * (1.0 + eps) + 1e-12 * float(weights.sum())]
                pick = int(close[rng.integers(len(close))])
            cy, cx = centres[pick]
            out[i, j] = image[cy, cx]
            source[i, j] = (cy, cx)


def efros_leung(sample: Any, size: int | tuple[int, int], window: int = 11, eps: float = 0.1, seed: int = 0,
                progress: bool = True, return_source: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Synthesise an (H, W) texture from ``sample`` by non-parametric sampling (module docstring).

    sample: HxW (grey) or HxWxC image, uint8 or float. size: the output (H, W), an int for a square,
    larger or smaller than the sample. window: the odd neighbourhood side (larger: more structure
    kept, slower); the sample must be at least ``window`` pixels in each direction. eps: the
    tolerance of the best match (0: always the best; ties broken at random).

    Returns the texture, shaped like the sample (HxW or HxWxC) with its dtype's range (uint8 stays
    uint8), and, with ``return_source``, the (H, W, 2) sample position each pixel was copied from.
    """
    method = "efros_leung"
    progress = check_bool(progress, method, "progress")
    image = _as_float_image(sample, method)
    out_h, out_w = int_pair(size, method, "size")
    check_array_size((out_h, out_w, 3), np.float64, method, "output")  # at most 3 channels, synthesised in float64
    window = check_int(window, method, "window", 3)
    if window % 2 == 0:
        raise ValueError(f"{method}: window must be odd (a square centred on the pixel), got {window}")
    eps = check_float(eps, method, "eps", low=0.0)
    seed = check_int(seed, method, "seed", 0)
    h, w, c = image.shape
    if h < window or w < window:
        raise ValueError(f"{method}: the sample ({h}x{w}) is smaller than the {window}x{window} neighbourhood; "
                         f"use a smaller window or a larger sample")
    rng = np.random.default_rng(seed)
    offsets = causal_offsets(window)
    g = np.repeat(gaussian_weights(offsets, window), c)                     # (K * C,) channels side by side
    p, centres = candidate_matrix(image, offsets, window)
    p32 = p.astype(np.float32)
    p32_sq = p32 * p32
    g32 = g.astype(np.float32)
    p2w_full = p32_sq @ g32
    # Float32 rounding of the expansion is below ~5e-7 (|P^2 w| + 2|P wt| + |wt t|) <= 2e-6 sum(w) for
    # pixels in [0, 1]; a band of 1e-5 (2 + eps) sum(w) keeps every candidate the exact test accepts.
    band = 1e-5 * (2.0 + eps) * float(g.sum() * max(1.0, np.abs(image).max()) ** 2)

    out = np.zeros((out_h, out_w, c))
    source = np.zeros((out_h, out_w, 2), dtype=np.int64)
    # One product is ~1 MFLOP: splitting it over BLAS threads costs more in wake-ups than it saves
    # (several times slower on a busy machine), so the loop runs with single-threaded BLAS.
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        _grow(out, source, image, p, p32, p32_sq, p2w_full, g, centres, offsets, eps, band, rng, progress, method)
    array = np.asarray(sample)
    result = out[:, :, 0] if array.ndim == 2 else out
    if array.dtype == np.uint8:
        result = np.round(result * 255.0).astype(np.uint8)
    elif array.dtype.kind == "f":
        result = result.astype(array.dtype)
    return (result, source) if return_source else result
