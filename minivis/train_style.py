"""Training a feed-forward style network with minivis itself: the loop behind ``minivis train style``.

Johnson, Alahi & Fei-Fei (ECCV 2016): instead of optimising every image (Gatys et al.), train a
``TransformNet`` ``f_W`` once, so that for photos ``x`` from a training set it minimises the
*perceptual loss* measured by a fixed, pretrained loss network ``phi``:

    L(W) = E_x [ a L_c(f_W(x), x) + b L_s(f_W(x), style) + t TV(f_W(x)) / (3 H W) ]

with ``L_c`` and ``L_s`` the content and style losses of ``mv.vis.synthesis.style`` (content at
one layer of ``phi``, Gram matrices at several). With several styles (Dumoulin et al., ICLR 2017)
every image in a batch draws a style index at random, and only that style's (gamma, beta) rows
of the conditional instance norms receive its gradient: the convolutions are shared.

The loss network is EfficientNet-Lite0 (the only pretrained network minivis ships offline; VGG,
Johnson's choice, needs weights from the user). Training images are random crops (with flips) of
the offline photos in ``TRAIN_PHOTOS``; ``EVAL_PHOTOS`` are never seen and serve the evaluation.
Adam, a fixed seed, a tqdm bar; checkpoints every ``checkpoint_every`` steps and a JSON log, which
ends with the content and style losses on the held-out photos.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from minivis.autograd import no_grad, tensor
from minivis.data import photo, resize_shorter_side, style_image, to_float
from minivis.data.styles import STYLES
from minivis.io import save_npz
from minivis.models import load
from minivis.models.style_nets import UPSAMPLING, TransformNet
from minivis.nn import init
from minivis.nn.hooks import forward_to
from minivis.optim import Adam, CosineLR
from minivis.validate import check_str
from minivis.vis.common import frozen
from minivis.vis.synthesis.objectives import Objective
from minivis.vis.synthesis.style import content_loss, gram_targets, style_input, style_loss, to_input, tv_penalty

TRAIN_PHOTOS = ("coffee", "astronaut", "rocket", "motorcycle", "china", "camera")
EVAL_PHOTOS = ("chelsea", "flower")
LOSS_NET = "efficientnet_lite0"
STYLE_LAYERS = ("_act_stem", "_blocks.0", "_blocks.2", "_blocks.4")
CONTENT_LAYER = "_blocks.2"
PHOTO_SIDE = 256   # photos are resized to this shorter side before cropping
LR_SCHEDULES = ("constant", "cosine")


def weights_name(styles: Sequence[str]) -> str:
    """``fast_style_<style>`` for one style, ``fast_style_multi`` for several."""
    return f"fast_style_{styles[0]}" if len(styles) == 1 else "fast_style_multi"


def check_styles(styles: Any) -> list[str]:
    """The style names, each one of ``mv.data.STYLES`` and no repeats; refused before any work."""
    if isinstance(styles, str):
        styles = [styles]
    styles = list(styles)
    unknown = [s for s in styles if s not in STYLES]
    if not styles or unknown:
        raise ValueError(f"train style: unknown style(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(STYLES)}")
    if len(set(styles)) != len(styles):
        raise ValueError(f"train style: a style is named twice: {styles}")
    return styles


def check_style_settings(steps: int, batch_size: int, crop: int, lr: float, weights: Sequence[float]) -> None:
    """Refuse settings that cannot train, before any data is read or folder made."""
    for name, value in (("steps", steps), ("batch_size", batch_size), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train style: {name} must be a positive int, got {value!r}")
    if crop % 4 or crop < 32:
        raise ValueError(f"train style: crop must be a multiple of 4 and >= 32, got {crop}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < 1:
        raise ValueError(f"train style: lr must be a finite number in (0, 1), got {lr!r}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float) or not np.isfinite(w) or w < 0:
            raise ValueError(f"train style: the loss weights must be finite and >= 0, got {w!r}")


def training_photos() -> list[np.ndarray]:
    """The training photos as float (H, W, 3) in [0, 1], shorter side ``PHOTO_SIDE``."""
    return [resize_shorter_side(to_float(photo(name)), PHOTO_SIDE) for name in TRAIN_PHOTOS]


def random_batch(photos: Sequence[np.ndarray], batch_size: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """(batch_size, 3, crop, crop) float32 pixels: random crops of random photos, flipped half the time."""
    out = np.empty((batch_size, 3, crop, crop), np.float32)
    for b in range(batch_size):
        img = photos[int(rng.integers(len(photos)))]
        y = int(rng.integers(img.shape[0] - crop + 1))
        x = int(rng.integers(img.shape[1] - crop + 1))
        patch = img[y:y + crop, x:x + crop]
        out[b] = (patch[:, ::-1] if rng.random() < 0.5 else patch).transpose(2, 0, 1)
    return out


def perceptual_loss(loss_net: Any, y: Any, content_target: Any, style_targets: dict[str, Any],
                    weights: tuple[float, float, float], style_index: np.ndarray) -> Any:
    """Per-image ``a L_c + b L_s + t TV`` of the network output ``y`` (N, 3, H, W) pixels -> (N,)."""
    a, b, t = weights
    layer_weights = {name: 1.0 / len(STYLE_LAYERS) for name in STYLE_LAYERS}
    per_image = {name: targets[style_index] for name, targets in style_targets.items()}

    def read(acts):
        return (content_loss(acts[CONTENT_LAYER], content_target) * a
                + style_loss(acts, per_image, layer_weights) * b)

    objective = Objective(frozenset(STYLE_LAYERS) | {CONTENT_LAYER}, read, "perceptual_loss")
    mean = np.asarray(loss_net.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(loss_net.std, np.float32).reshape(1, 3, 1, 1)
    return objective(loss_net, (y - mean) * (1.0 / std)) + tv_penalty(y) * t


def style_grams(loss_net: Any, styles: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """``{layer: (S, C, C)}``: the Gram matrices of each style image, shorter side ``size``."""
    per_style = [gram_targets(loss_net, style_input(loss_net, style_image(s), size), STYLE_LAYERS, "train style")
                 for s in styles]
    return {layer: np.stack([g[layer] for g in per_style]) for layer in STYLE_LAYERS}


def evaluate(net: TransformNet, loss_net: Any, grams: dict[str, np.ndarray], side: int = 128) -> list[dict[str, Any]]:
    """Content and style loss of the network's output on the held-out ``EVAL_PHOTOS`` (centre crops), per style."""
    rows = []
    weights = {name: 1.0 / len(STYLE_LAYERS) for name in STYLE_LAYERS}
    with frozen(loss_net), no_grad():
        for name in EVAL_PHOTOS:
            img = resize_shorter_side(to_float(photo(name)), side)
            top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
            x = np.ascontiguousarray(img[top:top + side, left:left + side].transpose(2, 0, 1)[None], np.float32)
            content = forward_to(loss_net, tensor(to_input(loss_net, x)), CONTENT_LAYER).data
            for s, style in enumerate(net.styles):
                y = net(tensor(x), style=s).data
                acts = {layer: forward_to(loss_net, tensor(to_input(loss_net, y)), layer) for layer in STYLE_LAYERS}
                targets = {k: g[s] for k, g in grams.items()}
                rows.append({"photo": name, "style": style,
                             "content_loss": float(content_loss(acts[CONTENT_LAYER], content).item()),
                             "style_loss": float(style_loss(acts, targets, weights).item())})
    return rows


def train_style(out_dir: str | Path, styles: Sequence[str], steps: int = 300, batch_size: int = 4, crop: int = 64,
                lr: float = 2e-3, content_weight: float = 1.0, style_weight: float = 20.0, tv_weight: float = 10.0,
                channels: int = 16, blocks: int = 3, upsample: str = "transpose", residual: bool = True,
                bounded: bool = True,
                style_size: int = 256, lr_schedule: str = "constant",
                seed: int = 0, checkpoint_every: int = 200, checkpoint_dir: str | Path | None = None,
                progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Train a ``TransformNet`` for ``styles`` (one: Johnson et al.; several: conditional instance norm).

    Writes ``<out_dir>/<name>.npz`` and ``<name>_train_log.json`` (``name = weights_name(styles)``),
    and checkpoints ``<checkpoint_dir or out_dir/checkpoints>/<name>_stepNNNNN.npz``. ``lr_schedule``:
    ``"constant"`` or ``"cosine"`` (``lr`` annealed to 0 over ``steps``: ``mv.optim.CosineLR``). ``command``: how the
    run was started, kept in the log so the weights can be reproduced. Returns the log.
    """
    styles = check_styles(styles)
    weights = (content_weight, style_weight, tv_weight)
    check_style_settings(steps, batch_size, crop, lr, weights)
    if check_str(lr_schedule, "train style", "lr_schedule", LR_SCHEDULES) not in LR_SCHEDULES:
        raise ValueError(f"train style: lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if check_str(upsample, "train style", "upsample", UPSAMPLING) not in UPSAMPLING:
        raise ValueError(f"train style: upsample must be one of {UPSAMPLING}, got {upsample!r}")
    photos = training_photos()  # first: a missing package leaves no empty folder behind
    loss_net = load(LOSS_NET)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    name = weights_name(styles)
    init.seed(seed)
    net = TransformNet(channels, blocks, num_styles=len(styles), upsample=upsample, residual=residual,
                       bounded=bounded)
    net.styles = list(styles)
    grams = style_grams(loss_net, styles, style_size)
    optimizer = Adam(net.parameters(), lr=lr)
    schedule = CosineLR(optimizer, steps) if lr_schedule == "cosine" else None
    rng = np.random.default_rng(seed)
    log: dict[str, Any] = {
        "model": "fast_style", "name": name, "command": command, "styles": list(styles), "loss_net": LOSS_NET,
        "style_layers": list(STYLE_LAYERS), "content_layer": CONTENT_LAYER, "train_photos": list(TRAIN_PHOTOS),
        "steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "content_weight": content_weight,
        "style_weight": style_weight, "tv_weight": tv_weight, "channels": channels, "blocks": blocks,
        "upsample": upsample, "residual": residual, "bounded": bounded, "style_size": style_size,
        "lr_schedule": lr_schedule, "seed": seed, "history": [],
    }
    start = time.perf_counter()
    losses: list[float] = []
    with frozen(loss_net):
        bar = tqdm(range(1, steps + 1), desc=f"train {name}", disable=not progress, leave=False)
        for step in bar:
            batch = random_batch(photos, batch_size, crop, rng)
            index = rng.integers(len(styles), size=batch_size)
            with no_grad():
                content_target = forward_to(loss_net, tensor(to_input(loss_net, batch)), CONTENT_LAYER).data
            y = net(tensor(batch), style=index)
            loss = perceptual_loss(loss_net, y, content_target, grams, weights, index).mean()
            value = loss.item()
            if not np.isfinite(value):
                raise ValueError(f"train style: the loss became {value} at step {step} (lr={lr}); try a smaller lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            losses.append(value)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if step % 20 == 0 or step == steps:
                log["history"].append({"step": step, "loss": float(np.mean(losses[-20:])),
                                       "seconds": round(time.perf_counter() - start, 1)})
            if checkpoint_every and step % checkpoint_every == 0 and step != steps:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                save_npz(checkpoint_dir / f"{name}_step{step:05d}.npz", net.state_dict())
    if not all(np.isfinite(p.numpy()).all() for p in net.parameters()):
        raise ValueError("train style: the weights are no longer finite; try a smaller lr (nothing saved)")
    save_npz(out_dir / f"{name}.npz", net.state_dict())
    log["total_seconds"] = round(time.perf_counter() - start, 1)
    log["final_loss"] = log["history"][-1]["loss"]
    net.eval()
    log["held_out"] = evaluate(net, loss_net, grams)  # photos never seen in training
    (out_dir / f"{name}_train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log
