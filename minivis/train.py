"""Training a classifier with minivis itself: the loop behind ``minivis train fashion_cnn``.

Mini-batch Adam on cross-entropy, with the learning rate cut tenfold for the last epoch. Adam,
because within the budget (15 minutes on 2 cores, about four epochs) it reaches a higher test
accuracy than SGD with Nesterov momentum (measured: benchmarks/README.md, "Design measurements",
train). After every epoch the test accuracy is measured and the weights are saved
(``fashion_cnn_epochNN.npz``, with epoch 00 the random initialisation), so lessons can show how
the filters evolve.

``permute_labels=True`` trains the same network on the training labels shuffled once with a fixed
seed (Zhang et al. 2017; Adebayo et al. 2018's data-randomisation test): it can only memorise them,
so its test accuracy stays at chance. It is saved as ``fashion_cnn_permuted_labels.npz``, with the
accuracy it reached on its (permuted) training labels in the log and no per-epoch checkpoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import minivis.functional as F
from minivis.autograd import lean_graph, no_grad, tensor
from minivis.data import batches, fashion_mnist
from minivis.io import save_npz
from minivis.models import FashionCNN, ImageClassifier
from minivis.nn import init
from minivis.optim import Adam, StepLR
from minivis.validate import check_positive_int, check_seed


def accuracy(model: ImageClassifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on preprocessed NCHW ``images``."""
    if not isinstance(model, ImageClassifier):
        raise TypeError(f"accuracy: model must be a minivis image classifier, got {type(model).__name__}")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.dtype.kind != "f" or len(images) == 0:
        raise ValueError(f"accuracy: images must be a non-empty float batch (N, C, H, W), got {images.dtype} "
                         f"{images.shape}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"accuracy: labels must be {len(images)} integer class indices, one per image, got "
                         f"{labels.dtype} {labels.shape}")
    batch_size = check_positive_int(batch_size, "accuracy", "batch_size")
    was_training = model.training
    model.eval()
    correct = 0
    with no_grad():
        for xb, yb in batches(images, labels, batch_size=batch_size):
            correct += int((model(tensor(xb)).data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return correct / len(labels)


def check_settings(epochs: int, batch_size: int, lr: float) -> None:
    """Refuse settings that cannot train, before any data is read or folder made."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"train: epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < 1:
        raise ValueError(f"train: lr must be a finite number in (0, 1), got {lr!r}")


def diverged(what: str, epoch: int, step: int, lr: float) -> None:
    raise ValueError(f"train: the optimisation diverged: {what} at epoch {epoch}, step {step} (lr={lr}); "
                     f"try a smaller lr; epoch {epoch} was not saved")


PERMUTED_NAME = "fashion_cnn_permuted_labels"


def permuted(labels: np.ndarray, seed: int) -> np.ndarray:
    """``labels`` shuffled by a generator seeded with ``[seed, 17]`` (17: this use's own stream)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"permuted: labels must be a 1-D array, got shape {labels.shape}")
    if check_seed(seed, "permuted") is None:
        raise TypeError("permuted: seed must be an int >= 0 (the permutation must be reproducible), got None")
    return np.random.default_rng([seed, 17]).permutation(labels)


def train_fashion_cnn(out_dir: str | Path, epochs: int = 4, batch_size: int = 128, lr: float = 1e-3,
                      seed: int = 0, limit: int | None = None, progress: bool = True, permute_labels: bool = False,
                      command: str | None = None) -> dict[str, Any]:
    """Train ``fashion_cnn`` from scratch; write weights, per-epoch checkpoints and a JSON log to ``out_dir``.

    ``limit`` trains on the first ``limit`` images only (the lessons' fast mode). ``permute_labels``:
    train on the training labels permuted with ``seed`` (see the module docstring); ``command``: how
    the run was started, recorded in the log. Returns the log.
    """
    check_settings(epochs, batch_size, lr)
    train_x, train_y = fashion_mnist("train")  # first: a missing dataset leaves no empty folder behind
    test_x, test_y = fashion_mnist("test")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    init.seed(seed)
    model = FashionCNN()
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if permute_labels:
        train_y = permuted(train_y, seed)
    train_x, test_x = model.preprocess(train_x[..., None]), model.preprocess(test_x[..., None])
    name = PERMUTED_NAME if permute_labels else "fashion_cnn"

    optimizer = Adam(model.parameters(), lr=lr)
    schedule = StepLR(optimizer, step_size=max(1, epochs - 1), gamma=0.1)
    log: dict[str, Any] = {"model": "fashion_cnn", "command": command, "permute_labels": permute_labels,
                           "optimizer": "Adam", "epochs": epochs, "batch_size": batch_size,
                           "lr": lr, "seed": seed, "train_images": len(train_y), "history": []}
    if not permute_labels:
        save_npz(out_dir / "fashion_cnn_epoch00.npz", model.state_dict())
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        losses, hits = [], 0
        epoch_start = time.perf_counter()
        data = batches(train_x, train_y, batch_size=batch_size, shuffle=True, seed=seed * 1000 + epoch)
        bar = tqdm(data, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for xb, yb in bar:
            # A lean graph: the step needs the plain gradient only, so each ReLU keeps a byte per value
            # and a ReLU + max-pool run as one op (the same gradients bit for bit, ~6% faster a step:
            # benchmarks/README.md, "Training and inference, CPU")
            with lean_graph():
                logits = model(tensor(xb))
            loss = F.cross_entropy(logits, yb)
            if not np.isfinite(loss.item()):  # stop before a NaN reaches a checkpoint
                diverged(f"the loss became {loss.item()}", epoch, len(losses) + 1, lr)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            hits += int((logits.data.argmax(axis=1) == yb).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        epoch_lr = optimizer.lr
        schedule.step()
        epoch_time = time.perf_counter() - epoch_start
        # permuted labels: many short epochs, so the (chance-level) test accuracy only after the last
        test_acc = accuracy(model, test_x, test_y) if not permute_labels or epoch == epochs else None
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                 "train_accuracy_running": hits / len(train_y), "test_accuracy": test_acc,
                 "epoch_seconds": round(epoch_time, 1), "lr": epoch_lr}
        log["history"].append(entry)
        if progress:
            shown = "-" if test_acc is None else f"{test_acc:.4f}"
            print(f"epoch {epoch}: loss {entry['train_loss']:.4f}  train accuracy (running, dropout on) "
                  f"{entry['train_accuracy_running']:.4f}  test accuracy {shown}  ({epoch_time:.0f} s)", flush=True)
        if not all(np.isfinite(p.numpy()).all() for p in model.parameters()):
            diverged("the weights are no longer finite", epoch, len(losses), lr)
        if not permute_labels:
            save_npz(out_dir / f"fashion_cnn_epoch{epoch:02d}.npz", model.state_dict())
    save_npz(out_dir / f"{name}.npz", model.state_dict())
    log["total_seconds"] = round(time.perf_counter() - start, 1)
    log["test_accuracy"] = log["history"][-1]["test_accuracy"]
    if permute_labels:  # how well it memorised: eval mode, on the labels it was trained on
        log["train_accuracy"] = accuracy(model, train_x, train_y)
    (out_dir / f"{name}_train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log
