"""Training and inference benchmark: minivis against the same networks written in PyTorch.

    python benchmarks/training.py            # full run: results/training-cpu.json + README table
    python benchmarks/training.py --quick    # smoke test (a few steps)

Rows, float32, same threads on both sides, identical starting weights:

* ``fashion_cnn`` training: one epoch over Fashion-MNIST (60k images, batch 128; ``--quick``: 8
  batches) of Adam, exactly the step ``minivis train`` runs, against the same step on the
  PyTorch twin (``tests/torch_twins.py``). Before timing, one step is run on both from the same
  weights and its gradients are compared.
* ``efficientnet_lite0`` inference: the forward pass on one preprocessed 224x224 photo (and a
  batch of 8), against the PyTorch twin loaded from the same weights; logits are compared first.

ratio = torch_time / minivis_time (> 1: minivis faster).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from common import finish, fmt, markdown_table, parse_args, print_table, setup, timeit, timeit_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.torch_twins

import torch  # noqa: E402

import minivis as mv  # noqa: E402
import minivis.functional as F  # noqa: E402
from tests import torch_twins  # noqa: E402

HEADERS = ["case", "minivis s", "torch s", "ratio", "check"]
LR, BATCH = 1e-3, 128


def fashion_epoch(quick: bool, threads: int) -> dict:
    images, labels = mv.data.fashion_mnist("train")
    n_batches = 8 if quick else len(labels) // BATCH
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN()
    x_all = model.preprocess(images[: n_batches * BATCH, :, :, None])
    y_all = np.array(labels[: n_batches * BATCH], dtype=np.int64)  # a writable copy (the cache is read-only)
    twin = torch_twins.twin_from_state(torch_twins.TorchFashionCNN(), model.state_dict())
    # Dropout draws different masks on the two sides; compare one step with dropout off, time with it on.
    model.eval()
    twin.eval()
    ours_opt = mv.optim.Adam(model.parameters(), lr=LR)
    torch_opt = torch.optim.Adam(twin.parameters(), lr=LR)

    def ours_step(xb, yb):
        with mv.lean_graph():  # as minivis/train.py records it
            logits = model(mv.tensor(xb))
        loss = F.cross_entropy(logits, yb)
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step()

    def torch_step(xb, yb):
        loss = torch.nn.functional.cross_entropy(twin(xb), yb)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()

    ours_step(x_all[:BATCH], y_all[:BATCH])
    torch_step(torch.from_numpy(x_all[:BATCH]), torch.from_numpy(y_all[:BATCH]))
    # Compare the gradients of that step, not the updated weights: Adam's first step is about
    # lr * sign(g), so a float32 rounding difference in a near-zero gradient flips a whole step.
    ours_grads = {k: p.grad for k, p in model.named_parameters()}
    diff = max(float(np.abs(ours_grads[k] - p.grad.numpy()).max()) for k, p in twin.named_parameters())
    scale = max(float(np.abs(g).max()) for g in ours_grads.values())
    check = "ok" if diff <= 1e-4 * scale else f"MISMATCH {diff:.2e}"
    model.train()
    twin.train()
    x_torch, y_torch = torch.from_numpy(x_all), torch.from_numpy(y_all)

    def ours_epoch():
        for i in range(n_batches):
            ours_step(x_all[i * BATCH:(i + 1) * BATCH], y_all[i * BATCH:(i + 1) * BATCH])

    def torch_epoch():
        for i in range(n_batches):
            torch_step(x_torch[i * BATCH:(i + 1) * BATCH], y_torch[i * BATCH:(i + 1) * BATCH])

    repeat = 2 if quick else 1
    t_ours = timeit(ours_epoch, repeat=repeat, warmup=0)
    t_torch = timeit(torch_epoch, repeat=repeat, warmup=0)
    return {"case": f"fashion_cnn train epoch ({n_batches} x {BATCH})", "minivis_s": t_ours, "torch_s": t_torch,
            "ratio": t_torch / t_ours, "check": check, "max_grad_diff_first_step": diff}


def lite0_forward(batch: int, quick: bool) -> dict:
    model = mv.models.load("efficientnet_lite0")
    twin = torch_twins.twin_from_state(torch_twins.TorchEfficientNetLite(), model.state_dict())
    size = 96 if quick else 224
    photo = model.preprocess(mv.data.photo("chelsea"))
    if quick:
        photo = np.ascontiguousarray(photo[:, :, :size, :size])
    x = np.repeat(photo, batch, axis=0)
    xt = torch.from_numpy(x)

    def ours():
        with mv.no_grad():
            return model(mv.tensor(x)).numpy()

    def theirs():
        with torch.no_grad():
            return twin(xt).numpy()

    a, b = ours(), theirs()
    err = float(np.abs(a - b).max())
    check = "ok" if err <= 1e-3 * float(np.abs(b).max()) else f"MISMATCH {err:.2e}"
    # interleaved rounds (a noisy spell hits both sides), each call after 0.3 s of rest (so neither
    # side runs while the other's BLAS/OpenMP threads still spin)
    repeat = 3 if quick else 20
    t_ours, t_torch = timeit_interleaved([ours, theirs], repeat=repeat, warmup=1, pause=0.0 if quick else 0.3)
    return {"case": f"efficientnet_lite0 forward, batch {batch} at {size}px", "minivis_s": t_ours,
            "torch_s": t_torch, "ratio": t_torch / t_ours, "check": check, "max_logit_diff": err}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="training", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        print("training.py measures the CPU engine only; run it with --device cpu")
        return 2
    started = time.perf_counter()
    rows = [lite0_forward(1, args.quick), lite0_forward(8, args.quick), fashion_epoch(args.quick, args.threads)]
    table = [[r["case"], fmt(r["minivis_s"], 3), fmt(r["torch_s"], 3), fmt(r["ratio"]), r["check"]] for r in rows]
    print("ratio = torch_time / minivis_time: > 1 means minivis is faster\n")
    print_table(HEADERS, table, title=f"training and inference ({args.threads} threads, float32)")
    bad = [r for r in rows if r["check"] != "ok"]
    payload = {"rows": rows, "ratio_definition": "torch_time / minivis_time (> 1: minivis faster)",
               "elapsed_s": time.perf_counter() - started}
    finish(args, dev, payload, markdown_table(HEADERS, table))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
