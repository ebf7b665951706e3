"""Style transfer: one Gatys step against PyTorch, and the feed-forward network against the optimisation.

    python benchmarks/style.py            # full run: results/style-cpu.json + README table
    python benchmarks/style.py --quick    # smoke test (tiny sizes, few steps)

Rows, same threads on both sides, weights from the same state dict:

* ``gram + style loss, float64``: ``mv.F.gram_matrix`` and the style loss with their gradient on
  random features against PyTorch autograd (max relative difference; the target is float64 rounding).
* ``Gatys step``: EfficientNet-Lite0 forward to its deepest style layer, content loss at
  ``_blocks.4``, style loss at the five default layers, TV, backward to the image (float32, one
  224x224 image), minivis's objective against the same step written on the PyTorch twin; checked
  equal in float64 first. Both models are frozen once for the run (as ``style_transfer`` freezes
  its model once for the whole optimisation), not per step, and minivis's step records a lean
  graph (``mv.lean_graph()``), as every optimisation in ``mv.vis.synthesis`` does: the step needs
  the gradient only. Target: ratio = torch / minivis >= 1.0.
* ``feed-forward vs Gatys``: the shipped ``fast_style`` network (``mosaic``) stylises a 256x256 crop
  of ``chelsea`` (never seen in training); its perceptual loss terms are measured with the network
  and layers it was trained with. Then Gatys's optimisation of the *same* objective (same weights
  and layers, L-BFGS from the photo) runs until its style loss is as low; the row reports both
  times and both losses. Target: Gatys time / feed-forward time >= 100. The row also reports when
  the optimisation's *whole* objective (content + style + TV) first fell to the network's, the
  comparison Johnson et al. make (their networks matched 50-100 L-BFGS iterations).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, finish, markdown_table, parse_args, print_table, setup, timeit_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.torch_twins

import torch  # noqa: E402

import minivis as mv  # noqa: E402
from minivis.optim.lbfgs import minimize_lbfgs  # noqa: E402
from minivis.train_style import CONTENT_LAYER, STYLE_LAYERS  # noqa: E402
from minivis.vis.common import frozen  # noqa: E402
from minivis.vis.synthesis import style as st  # noqa: E402
from tests import torch_twins  # noqa: E402

HEADERS = ["case", "minivis", "reference", "ratio", "target", "check"]
LITE0_LAYERS = ("_act_stem", "_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7")
CONTENT, TV, STYLE_W = 1.0, 1.0, 10.0   # style_transfer's defaults


def torch_features(twin, x, layers):
    acts, h = {}, torch.nn.functional.relu6(twin._bn0(twin._conv_stem(x)))
    acts["_act_stem"] = h
    deepest = max(int(name.split(".")[1]) for name in layers if name.startswith("_blocks"))
    for i, block in enumerate(twin._blocks[:deepest + 1]):
        h = block(h)
        acts[f"_blocks.{i}"] = h
    return acts


def torch_gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def torch_objective(twin, x, grams, content_target, layers, content_layer):
    acts = torch_features(twin, x, layers)
    style = sum((1.0 / len(layers)) * ((torch_gram(acts[name]) - torch.as_tensor(grams[name])) ** 2).sum()
                / float((grams[name] ** 2).sum()) for name in layers)
    p = torch.as_tensor(content_target)
    content = ((acts[content_layer] - p) ** 2).sum() / float((content_target ** 2).sum())
    dx, dy = x[:, :, :-1, 1:] - x[:, :, :-1, :-1], x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    tv = (dx ** 2 + dy ** 2).sum() / x[0].numel()
    return CONTENT * content + STYLE_W * style + TV * tv


def minivis_objective(model, grams, content_target, layers, content_layer):
    weights = {name: 1.0 / len(layers) for name in layers}
    objective = (st.content_objective(content_layer, content_target) * CONTENT
                 + st.style_objective(grams, weights) * STYLE_W)

    def value(x):
        return objective(model, x) + st.tv_penalty(x) * TV
    return value


def gram_row(rng) -> dict:
    feats = rng.standard_normal((2, 16, 12, 10))
    target = rng.standard_normal((16, 16))
    xm = mv.tensor(feats, requires_grad=True)
    ours = st.style_loss({"a": xm}, {"a": target}, {"a": 1.0})
    ours.backward(np.ones(2))
    xt = torch.tensor(feats, requires_grad=True)
    theirs = ((torch_gram(xt) - torch.tensor(target)) ** 2).sum(dim=(1, 2)) / float((target ** 2).sum())
    theirs.sum().backward()
    value_err = float(np.max(np.abs(ours.numpy() - theirs.detach().numpy()) / np.abs(theirs.detach().numpy())))
    grad_err = float(np.abs(xm.grad - xt.grad.numpy()).max() / np.abs(xt.grad.numpy()).max())
    ok = value_err < 1e-13 and grad_err < 1e-13
    return {"case": "gram + style loss, float64: max relative difference (value / gradient)",
            "minivis": f"{value_err:.1e} / {grad_err:.1e}", "reference": "PyTorch", "check": "ok" if ok else "MISMATCH",
            "value_rel_diff": value_err, "grad_rel_diff": grad_err}


def gatys_step_row(model, twin, photo, style_img, quick: bool) -> dict:
    layers = LITE0_LAYERS
    rows = {}
    for dtype in (np.float64, np.float32):
        model.astype(dtype)
        twin.to(torch.float64 if dtype == np.float64 else torch.float32)
        x0, s0 = photo.astype(dtype), style_img.astype(dtype)
        grams = st.gram_targets(model, s0, list(layers))
        with mv.no_grad():
            content_target = mv.nn.forward_to(model, mv.tensor(x0[None]), CONTENT_LAYER_LITE0).data.copy()
        ours_fn = minivis_objective(model, grams, content_target, layers, CONTENT_LAYER_LITE0)
        xm = mv.tensor(x0[None], requires_grad=True)
        xt = torch.tensor(x0[None], requires_grad=True)

        def ours(xm=xm, ours_fn=ours_fn, dtype=dtype):  # under frozen(model) and lean_graph(), as style_transfer's
            xm.grad = None                                # steps are (minivis/vis/synthesis/optimize.py)
            with mv.lean_graph():
                loss = ours_fn(xm)
                loss.backward(np.ones(1, dtype))
            return loss.item()

        def theirs(xt=xt, grams=grams, content_target=content_target):
            xt.grad = None
            loss = torch_objective(twin, xt, grams, content_target, layers, CONTENT_LAYER_LITE0)
            loss.backward()
            return loss.item()

        with frozen(model):
            v_ours, v_theirs = ours(), theirs()
        rows[dtype] = (v_ours, v_theirs, xm.grad.copy(), xt.grad.numpy().copy(), ours, theirs)
    v_ours, v_theirs, g_ours, g_theirs, _, _ = rows[np.float64]
    grad_err = float(np.abs(g_ours - g_theirs).max() / np.abs(g_theirs).max())
    value_err = abs(v_ours - v_theirs) / abs(v_theirs)
    ok = grad_err < 1e-9 and value_err < 1e-9
    _, _, _, _, ours, theirs = rows[np.float32]
    with frozen(model):  # entered once per run, like the twin's requires_grad_(False) (optimize.py does the same)
        t_ours, t_theirs = timeit_interleaved([ours, theirs], repeat=2 if quick else 10, pause=0.2)
    ratio = t_theirs / t_ours
    return {"case": f"Gatys step (content + style + TV, fwd + bwd), {photo.shape[-1]} px",
            "minivis": f"{1e3 * t_ours:.1f} ms", "reference": f"{1e3 * t_theirs:.1f} ms (PyTorch)",
            "ratio": ratio, "target": ">= 1.0: " + ("yes" if ratio >= 1.0 else "NO"),
            "check": "ok" if ok else f"MISMATCH grad {grad_err:.1e}", "minivis_ms": 1e3 * t_ours,
            "torch_ms": 1e3 * t_theirs, "float64_value_rel_diff": value_err, "float64_grad_rel_diff": grad_err}


CONTENT_LAYER_LITE0 = "_blocks.4"


def feedforward_row(model, size: int, max_steps: int, weights: Path | None = None) -> dict:
    """Time of the trained network against Gatys's optimisation of the same objective to the same style loss.

    ``weights``: a ``fast_style_mosaic.npz`` of your own (its ``_train_log.json`` beside it); default the shipped one.
    """
    import json  # noqa: PLC0415

    weights = Path(weights) if weights is not None else mv.models.WEIGHTS_DIR / "fast_style_mosaic.npz"
    net = mv.models.load("fast_style", style="mosaic", weights=weights)
    log = json.loads(weights.with_name(weights.stem + "_train_log.json").read_text())
    model.float()
    photo = mv.data.resize_shorter_side(mv.data.to_float(mv.data.photo("chelsea")), size)
    top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    photo = np.ascontiguousarray(photo[top:top + size, left:left + size])
    pixels = photo.transpose(2, 0, 1)[None].astype(np.float32)
    t_ff = timeit_interleaved([lambda: mv.vis.stylize(net, photo)], repeat=5)[0]
    out = mv.vis.stylize(net, photo)

    weights = {name: 1.0 / len(STYLE_LAYERS) for name in STYLE_LAYERS}
    style_pixels = mv.data.style_image("mosaic")
    grams = st.gram_targets(model, st.style_input(model, style_pixels, log["style_size"]), list(STYLE_LAYERS))
    x_content = st.to_input(model, pixels)
    with mv.no_grad():
        content_target = mv.nn.forward_to(model, mv.tensor(x_content), CONTENT_LAYER).data.copy()
    s_obj, c_obj = st.style_objective(grams, weights), st.content_objective(CONTENT_LAYER, content_target)
    a, b, t = log["content_weight"], log["style_weight"], log["tv_weight"]

    def losses(x_pixels):
        with frozen(model), mv.no_grad():
            xin = mv.tensor(st.to_input(model, x_pixels))
            return c_obj(model, xin).item(), s_obj(model, xin).item()

    ff_pixels = out.transpose(2, 0, 1)[None].astype(np.float32)
    ff_content, ff_style = losses(ff_pixels)
    with mv.no_grad():
        ff_total = a * ff_content + b * ff_style + t * st.tv_penalty(mv.tensor(ff_pixels)).item()
    # Gatys on the same objective, in pixel space as the network was trained (TV on pixels), L-BFGS from the photo.
    xp = mv.tensor(pixels.copy(), requires_grad=True)
    mean = np.asarray(model.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(model.std, np.float32).reshape(1, 3, 1, 1)
    last = {}

    def closure():  # a lean graph, as style_transfer's steps record (the optimisation at its fastest)
        with mv.lean_graph():
            xin = (xp - mean) * (1.0 / std)
            s = s_obj(model, xin)
            total = (c_obj(model, xin) * a + s * b + st.tv_penalty(xp) * t).sum()
        last["style"], last["total"] = s.item(), total.item()
        return total

    trace, total_reached = [], []
    start = time.perf_counter()

    class Reached(Exception):
        pass

    def callback(_v):
        trace.append((time.perf_counter() - start, last["style"]))
        if not total_reached and last["total"] <= ff_total:  # the whole objective, as Johnson et al. compare
            total_reached.append((time.perf_counter() - start, len(trace)))
        if last["style"] <= ff_style:
            raise Reached

    with frozen(model):
        try:
            minimize_lbfgs([xp], closure, maxiter=max_steps, callback=callback)
        except Reached:
            pass
    t_gatys, gatys_style = trace[-1]
    gatys_content, _ = losses(xp.data)
    reached = gatys_style <= ff_style
    ratio = t_gatys / t_ff
    t_total, steps_total = total_reached[0] if total_reached else (None, None)
    total_note = (f"; its whole objective ({ff_total:.2f}) after {steps_total} steps, {t_total:.1f} s: "
                  f"{t_total / t_ff:.0f}x" if total_reached else "; whole objective not reached")
    return {"case": f"feed-forward vs Gatys to the same style loss, {size}x{size} (chelsea, mosaic)",
            "minivis": f"{1e3 * t_ff:.0f} ms (L_s {ff_style:.4f}, L_c {ff_content:.3f})",
            "reference": f"{t_gatys:.1f} s, {len(trace)} L-BFGS steps (L_s {gatys_style:.4f}, L_c {gatys_content:.3f})"
                         + ("" if reached else f"; style loss NOT reached in {max_steps} steps") + total_note,
            "ratio": ratio,
            "target": ">= 100: " + ("yes" if ratio >= 100 else "NO") + ("" if reached else " (lower bound)"),
            "check": "ok", "feedforward_s": t_ff, "gatys_s": t_gatys, "gatys_steps": len(trace), "reached": reached,
            "feedforward_style_loss": ff_style, "feedforward_content_loss": ff_content,
            "gatys_style_loss": gatys_style, "gatys_content_loss": gatys_content, "feedforward_objective": ff_total,
            "gatys_s_to_objective": t_total, "gatys_steps_to_objective": steps_total,
            "gatys_trace": [[round(t, 3), s] for t, s in trace]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="style", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        print("style.py measures the CPU engine only; run it with --device cpu")
        return 2
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    size = 64 if args.quick else 224
    model = mv.models.load("efficientnet_lite0")
    twin = torch_twins.twin_from_state(torch_twins.TorchEfficientNetLite(), model.state_dict())
    for p in twin.parameters():
        p.requires_grad_(False)
    photo = st.style_input(model, mv.data.photo("chelsea"), size)[:, :size, :size]
    style_img = st.style_input(model, mv.data.style_image("mosaic"), size)
    rows = [gram_row(rng), gatys_step_row(model, twin, np.ascontiguousarray(photo), style_img, args.quick)]
    rows.append(feedforward_row(model, 64 if args.quick else 256, 3 if args.quick else 300))
    table = [[r["case"], r["minivis"], r["reference"], r.get("ratio"), r.get("target", "-"), r["check"]] for r in rows]
    print_table(HEADERS, table, title=f"style ({args.threads} threads)")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start and {load_end:.1f} at the end (2 cores)."
            if load_end is not None else "")
    md = "\n".join([f"Command: `{command_line()}`, {args.threads} thread(s).{load}", "",
                    "ratio = reference time / minivis time (> 1: minivis faster). The Gatys step is checked equal to "
                    "PyTorch in float64 before timing (min of 10 calls, alternating, 0.2 s rest). The feed-forward row "
                    "runs L-BFGS on the network's own training objective until the style loss is as low as the "
                    "network's, and times both.", "", markdown_table(HEADERS, table)])
    payload = {"rows": rows, "elapsed_s": time.perf_counter() - started}
    finish(args, dev, payload, md, heading="Style transfer")
    return 1 if any(r["check"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
