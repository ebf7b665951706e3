"""Code decoders for fashion_cnn: one training step, minivis against PyTorch, and what a layer costs.

    python benchmarks/decoder.py            # full run: results/decoder-cpu.json + README table
    python benchmarks/decoder.py --quick    # smoke test (two layers, batch 8, 2 repeats)

Rows, float32, same threads on both sides, weights from the same state dicts:

* ``train step <layer>``: what ``minivis train decoder`` does per mini-batch of 64 images: the
  classifier forward to the layer without a graph, the decoder forward, the mean squared error,
  backward, one Adam step. PyTorch runs its twins (``tests/torch_twins``) the same way. The
  ``epoch estimate`` column is one epoch (60,000 images; 938 steps of 64) at the minivis step time; the issue's
  target is one layer's decoder training under 15 minutes on 2 cores.
* ``inversion of 16 images <layer>``: the decoder's one forward pass against lesson 11's
  optimisation (``mv.vis.invert``, 200 L-BFGS iterations): both minivis, the ratio is how much
  cheaper the learned inverse is once trained.

Before timing, one step's loss and decoder gradients are compared in float64 (to 1e-9 of the
largest value). ratio = torch_time / minivis_time (> 1: minivis faster); each time is the minimum
over the repeats, the two sides alternating.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, finish, fmt, markdown_table, parse_args, print_table, setup, timeit_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.torch_twins

import torch  # noqa: E402

import minivis as mv  # noqa: E402
from minivis.nn.hooks import forward_to  # noqa: E402
from tests import torch_twins  # noqa: E402

TRAIN_IMAGES = 60000             # one epoch of Fashion-MNIST
TARGET_S = 15 * 60               # the target for one layer's training
HEADERS = ["case", "minivis ms", "reference ms", "ratio", "epoch estimate", "check"]


def torch_to_layer(twin: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The twin's output at a minivis layer name of fashion_cnn ("features.k" or "classifier.k")."""
    part, index = layer.split(".")
    h = x
    if part == "features":
        return twin.features[:int(index) + 1](h)
    h = twin.features(h).flatten(1)
    return twin.classifier[:int(index) + 1](h)


def twins(layer: str, dtype=torch.float32):
    model = mv.models.load("fashion_cnn")
    decoder = mv.models.build_decoder(layer)
    decoder.register_buffer("code_scale", np.asarray(0.5, np.float32))
    t_model = torch_twins.twin_from_state(torch_twins.TorchFashionCNN(), model.state_dict(), dtype)
    t_decoder = torch_twins.twin_from_state(torch_twins.TorchCodeDecoder(mv.models.DECODER_CODE_SHAPES[layer]),
                                            decoder.state_dict(), dtype)
    for p in t_model.parameters():
        p.requires_grad_(False)
    return model, decoder, t_model, t_decoder.train()


def check_step(layer: str, x: np.ndarray) -> str:
    """Loss and decoder gradients of one step, float64 on both sides."""
    model, decoder, t_model, t_decoder = twins(layer, torch.float64)
    model.double().eval()
    decoder.double()
    with mv.no_grad():
        code = forward_to(model, mv.tensor(x.astype(np.float64)), layer)
    loss = mv.F.mse_loss(decoder(code), x.astype(np.float64))
    loss.backward()
    xt = torch.from_numpy(x.astype(np.float64))
    with torch.no_grad():
        t_code = torch_to_layer(t_model, xt, layer)
    t_loss = torch.nn.functional.mse_loss(t_decoder(t_code), xt)
    t_loss.backward()
    ours = dict(decoder.named_parameters())
    worst = max(float(np.abs(ours[name].grad - p.grad.numpy()).max() / max(np.abs(p.grad.numpy()).max(), 1e-30))
                for name, p in t_decoder.named_parameters())
    ok = abs(loss.item() - t_loss.item()) <= 1e-9 * abs(t_loss.item()) and worst <= 1e-9
    return "ok" if ok else f"MISMATCH loss {loss.item() - t_loss.item():.2e} grad {worst:.2e}"


def step_row(layer: str, x: np.ndarray, repeat: int) -> dict:
    status = check_step(layer, x)
    model, decoder, t_model, t_decoder = twins(layer)
    opt = mv.optim.Adam(decoder.parameters(), lr=1e-3)
    t_opt = torch.optim.Adam(t_decoder.parameters(), lr=1e-3)
    xt = torch.from_numpy(x)

    def ours():
        with mv.no_grad():
            code = forward_to(model, mv.tensor(x), layer)
        loss = mv.F.mse_loss(decoder(code), x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def theirs():
        with torch.no_grad():
            code = torch_to_layer(t_model, xt, layer)
        loss = torch.nn.functional.mse_loss(t_decoder(code), xt)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()

    t_ours, t_torch = timeit_interleaved([ours, theirs], repeat=repeat, warmup=1, pause=0.2)
    epoch = -(-TRAIN_IMAGES // len(x)) * t_ours  # steps per epoch (ceil) at the minivis step time
    return {"case": f"train step {layer} (batch {len(x)})", "minivis_ms": 1e3 * t_ours, "reference_ms": 1e3 * t_torch,
            "reference": "torch", "ratio": t_torch / t_ours, "epoch_estimate_s": epoch,
            "meets_target": epoch < TARGET_S, "check": status}


def inversion_row(layer: str, x: np.ndarray, steps: int) -> dict:
    model = mv.models.load("fashion_cnn")
    decoder = mv.models.load_decoder(layer)
    start = time.perf_counter()
    dec = mv.vis.invert_with_decoder(model, decoder, x)
    t_dec = time.perf_counter() - start
    start = time.perf_counter()
    opt = mv.vis.invert(model, x, layer, steps=steps, progress=False)
    t_opt = time.perf_counter() - start
    return {"case": f"inversion of {len(x)} images {layer}", "minivis_ms": 1e3 * t_dec, "reference_ms": 1e3 * t_opt,
            "reference": f"mv.vis.invert, {steps} L-BFGS iterations", "ratio": t_opt / t_dec,
            "decoder_image_error": float(np.mean(dec.image_error)),
            "optimisation_image_error": float(np.mean(opt.info["image_error"])), "check": "ok"}


def table_rows(rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        epoch = (f"{r['epoch_estimate_s'] / 60:.1f} min ({'< 15: yes' if r['meets_target'] else '< 15: NO'})"
                 if "epoch_estimate_s" in r else
                 f"image error {r['decoder_image_error']:.3f} vs {r['optimisation_image_error']:.3f}")
        out.append([r["case"], fmt(r["minivis_ms"], 1), fmt(r["reference_ms"], 1), fmt(r["ratio"]), epoch,
                    r["check"]])
    return out


def markdown(command: str, threads: int, load_start: float | None, load_end: float | None, rows: list[dict]) -> str:
    load = (f" 1-minute load average {load_start:.1f} at the start and {load_end:.1f} at the end (2 cores): "
            "other processes only add time." if load_start is not None and load_end is not None else "")
    return "\n".join([
        f"Command: `{command}`, {threads} thread(s) for torch, BLAS and Numba, float32.{load}",
        "",
        "Training rows: one `minivis train decoder` step (fashion_cnn forward to the layer without a graph, decoder "
        "forward, MSE, backward, Adam) against the same step with the PyTorch twins; ratio = torch / minivis; "
        "'epoch estimate' = 938 steps (60,000 images) at the minivis step time, against the 15-minute target. "
        "Both sides were checked equal in float64 first. Inversion rows: the trained decoder's one pass against "
        "`mv.vis.invert` (200 L-BFGS iterations) on the same 16 test images, both minivis; ratio = optimisation "
        "time / decoder time, with both methods' mean image error.",
        "",
        markdown_table(HEADERS, table_rows(rows)),
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="decoder", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        print("decoder.py measures the CPU engine only; run it with --device cpu")
        return 2
    started = time.perf_counter()
    layers = ["features.9", "classifier.1"] if args.quick else list(mv.models.DECODER_LAYERS)
    batch, repeat, steps, count = (8, 2, 5, 4) if args.quick else (64, 8, 200, 16)
    images, _ = mv.data.fashion_mnist("test")
    x = mv.models.FashionCNN().preprocess(images[:max(batch, count), ..., None])
    rows = [step_row(layer, x[:batch], repeat) for layer in layers]
    rows += [inversion_row(layer, x[:count], steps) for layer in layers if layer in mv.models.available_decoders()]
    print("\nratio = reference_time / minivis_time: > 1 means minivis is faster\n")
    print_table(HEADERS, table_rows(rows), title=f"fashion_cnn code decoders ({args.threads} threads, float32)")
    payload = {"batch": batch, "rows": rows, "ratio_definition": "reference_time / minivis_time",
               "elapsed_s": time.perf_counter() - started}
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    finish(args, dev, payload, markdown(command_line(), args.threads, args.loadavg_at_start, load_end, rows))
    return 1 if any(r["check"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
