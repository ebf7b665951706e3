"""Training a code decoder: the loop behind ``minivis train decoder --layer L``.

Dosovitskiy & Brox (CVPR 2016) learn the inverse of a layer: with the classifier's weights
fixed, a decoder D is fitted to (code, image) pairs of the training set by minimising the mean
squared pixel error ``||D(Phi(x)) - x||^2`` (model-input units) with Adam. Each mini-batch runs
the classifier up to the layer without a graph (``forward_to`` under ``no_grad``: its weights
never change), then the decoder forward and backward.

After every epoch the decoder's error on test images is measured, as the relative image error
``||D(Phi(x)) - x|| / ||x||`` that ``mv.vis.invert`` reports, and the weights are saved
(``fashion_cnn_decoder_<layer>.npz``) with a JSON log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import minivis.functional as F
from minivis.autograd import tensor
from minivis.data import batches, fashion_mnist
from minivis.io import save_npz
from minivis.models import DECODER_LAYERS, build_decoder, decoder_weights_path, load
from minivis.models.base import ImageClassifier
from minivis.nn import init
from minivis.nn.hooks import forward_to
from minivis.nn.module import Module
from minivis.optim import Adam
from minivis.train import check_settings, diverged
from minivis.vis.common import inference


def check_layer_name(layer: Any) -> str:
    """``layer`` if ``fashion_cnn`` has a decoder for it, else a ValueError listing the choices."""
    if not isinstance(layer, str) or layer not in DECODER_LAYERS:
        raise ValueError(f"train decoder: --layer must be one of {', '.join(DECODER_LAYERS)} (fashion_cnn's "
                         f"first ReLU, pools, hidden ReLU and logits), got {layer!r}")
    return layer


def codes(model: ImageClassifier, layer: str, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The codes (N, *code_shape) of preprocessed ``images`` at ``layer``, batch by batch, no graph."""
    with inference(model):
        return np.concatenate([forward_to(model, tensor(xb), layer).data
                               for xb in batches(images, batch_size=batch_size)])


def image_errors(decoder: Module, model: ImageClassifier, layer: str, images: np.ndarray,
                 batch_size: int = 500) -> np.ndarray:
    """Per image ``||D(Phi(x)) - x|| / ||x||`` (model-input units), (N,) float64."""
    out = []
    with inference(decoder):
        for xb in batches(images, batch_size=batch_size):
            recon = decoder(tensor(codes(model, layer, xb, batch_size))).data
            diff = (recon - xb).reshape(len(xb), -1).astype(np.float64)
            out.append(np.linalg.norm(diff, axis=1) / np.linalg.norm(xb.reshape(len(xb), -1), axis=1))
    return np.concatenate(out)


def train_decoder(out_dir: str | Path, layer: str, epochs: int = 2, batch_size: int = 64, lr: float = 1e-3,
                  seed: int = 0, limit: int | None = None, test_limit: int | None = 2000,
                  progress: bool = True) -> dict[str, Any]:
    """Train the decoder of ``fashion_cnn``'s ``layer``; write its weights and a JSON log to ``out_dir``.

    limit: train on the first ``limit`` training images only (None: all 60,000).
    test_limit: measure the test error on the first ``test_limit`` test images (None: all 10,000).
    Returns the log (per epoch: train loss, test image error, seconds).
    """
    layer = check_layer_name(layer)
    check_settings(epochs, batch_size, lr)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < batch_size):
        raise ValueError(f"train decoder: limit must be an int >= batch_size ({batch_size}) or None, got {limit!r}")
    train_x, _ = fashion_mnist("train")  # first: a missing dataset leaves no empty folder behind
    test_x, _ = fashion_mnist("test")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load("fashion_cnn")
    train_x = model.preprocess(train_x[:limit, ..., None])
    test_x = model.preprocess(test_x[:test_limit, ..., None])

    init.seed(seed)
    sample = codes(model, layer, train_x[:1000])
    decoder = build_decoder(layer)
    # 1 / the code's standard deviation: every layer's decoder then sees inputs of unit size
    decoder.register_buffer("code_scale", np.asarray(1.0 / max(float(sample.std()), 1e-12), np.float32))
    optimizer = Adam(decoder.parameters(), lr=lr)
    weights = out_dir / decoder_weights_path(layer).name
    log: dict[str, Any] = {"model": "fashion_cnn", "layer": layer, "code_shape": list(sample.shape[1:]),
                           "optimizer": "Adam", "loss": "mse (model-input units)", "epochs": epochs,
                           "batch_size": batch_size, "lr": lr, "seed": seed, "train_images": len(train_x),
                           "test_images": len(test_x), "history": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        decoder.train()
        losses: list[float] = []
        epoch_start = time.perf_counter()
        data = batches(train_x, batch_size=batch_size, shuffle=True, seed=seed * 1000 + epoch)
        bar = tqdm(data, desc=f"decoder {layer} epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for xb in bar:
            code = codes(model, layer, xb, batch_size)
            loss = F.mse_loss(decoder(tensor(code)), xb)
            if not np.isfinite(loss.item()):  # stop before a NaN reaches the weights file
                diverged(f"the loss became {loss.item()}", epoch, len(losses) + 1, lr)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        epoch_time = time.perf_counter() - epoch_start
        errors = image_errors(decoder, model, layer, test_x)
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)), "test_image_error": float(errors.mean()),
                 "epoch_seconds": round(epoch_time, 1)}
        log["history"].append(entry)
        if progress:
            print(f"decoder {layer} epoch {epoch}: loss {entry['train_loss']:.4f}  test image error "
                  f"{entry['test_image_error']:.4f}  ({epoch_time:.0f} s)", flush=True)
        if not all(np.isfinite(p.numpy()).all() for p in decoder.parameters()):
            diverged("the weights are no longer finite", epoch, len(losses), lr)
        save_npz(weights, decoder.state_dict())
    log["total_seconds"] = round(time.perf_counter() - start, 1)
    # CPU time of all threads: on a shared machine the wall time above also counts other jobs
    log["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    log["test_image_error"] = log["history"][-1]["test_image_error"]
    (out_dir / f"{weights.stem}_train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log
