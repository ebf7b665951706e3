"""t-SNE benchmark: minivis (Barnes-Hut) against openTSNE (Barnes-Hut and FFT) and scikit-learn.

    python benchmarks/embedding.py                 # full run: 1k, 10k, 60k points, results/embedding-cpu.json + README
    python benchmarks/embedding.py --quick         # smoke test: 500 points, 250 + 50 iterations
    python benchmarks/embedding.py --sizes 1000 10000

Data: the first N Fashion-MNIST training images as ``fashion_cnn`` codes at ``classifier.1``
(the 128-d ReLU before the last layer) when the trained weights are installed, else as raw
pixels in [0, 1]; then PCA to 50 dimensions with ``mv.vis.pca`` (once; every method gets the
same matrix, and the PCA is not timed). The codes are computed by the network's PyTorch twin
(same weights, checked against ``mv.vis.feature_codes``): the CNN is not what is timed here.

The same schedule for every method (DESIGN.md section 6: same process, same threads):
perplexity 30, theta 0.5, 250 iterations with P x 12 and momentum 0.5, then 750 with momentum
0.8, the same step size (``max(N / 48, 50)`` on the gradient with its factor 4; openTSNE gets 4x
that because its gradient leaves the 4 out), the same start (minivis's PCA initialisation,
std 1e-4), no step clipping (openTSNE's ``max_step_norm=None``) and no early stop
(scikit-learn's ``min_grad_norm=0``, ``n_iter_without_progress`` beyond the run). Each method
computes its own affinities the way it does by default (minivis and scikit-learn: exact kNN;
openTSNE: Annoy, approximate, above 1,000 points) and the time is the whole fit, affinities
included. openTSNE and scikit-learn get ``n_jobs = --threads``.

Reported per method: time (min over the repeats, interleaved), its own final KL, and - the fair
comparison - the KL of its final map under one and the same P (minivis's, exact kNN) with Q
normalised exactly (O(N^2), not timed), plus the fraction of each point's 10 nearest
neighbours in the PCA-50 space kept on the map. ratio = reference time / minivis time.

A reference whose run at some N is predicted (from its time at the previous size, scaled by
N log N) to take longer than ``--max-seconds`` (default 600) is skipped at that N and the
record says so.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, finish, markdown_table, parse_args, print_table, setup, timeit_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_SIZES = (1_000, 10_000, 60_000)
QUICK_SIZES = (500,)
QUICK_SCHEDULE = (250, 50)  # --quick checks the harness only: a short run (scikit-learn fixes 250 exaggerated)
PERPLEXITY, THETA, EXAGGERATION, EXAGGERATION_ITER, N_ITER = 30.0, 0.5, 12.0, 250, 750
METHODS = ("minivis (BH)", "openTSNE (BH)", "openTSNE (FFT)", "scikit-learn (BH)")


def load_data(n_max: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, D) float codes of the first n_max training images, their labels, and where they came from.

    The codes come from the PyTorch twin of fashion_cnn (same weights): streaming 60k images
    through the CNN is not what this benchmark times, and torch does it in seconds. They are
    checked against minivis's own ``feature_codes`` on the first 256 images first.
    """
    import torch  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415
    from tests.torch_twins import TorchFashionCNN, twin_from_state  # noqa: PLC0415

    images, labels = mv.data.fashion_mnist("train")
    images, labels = images[:n_max], labels[:n_max]
    try:
        model = mv.models.load("fashion_cnn")
    except FileNotFoundError:
        return images.reshape(n_max, -1).astype(np.float32) / 255.0, labels, "raw pixels (no fashion_cnn weights)"
    twin = twin_from_state(TorchFashionCNN(), model.state_dict())
    hidden = twin.classifier[:2]  # Linear + ReLU: classifier.1
    codes = np.empty((n_max, hidden[0].out_features), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n_max, 1024):
            x = torch.from_numpy(model.preprocess(images[start:start + 1024]))
            codes[start:start + len(x)] = hidden(twin.features(x).flatten(1)).numpy()
    first = min(256, n_max)
    ours = np.asarray(mv.vis.feature_codes(model, images[:first], "classifier.1"))
    if not np.allclose(ours, codes[:first], rtol=1e-4, atol=1e-5 * float(np.abs(codes[:first]).max())):
        sys.exit("embedding.py: the torch twin's codes differ from mv.vis.feature_codes")
    return codes, labels, "fashion_cnn classifier.1 codes"


def learning_rate(n: int) -> float:
    return max(n / (4.0 * EXAGGERATION), 50.0)


def runners(Z: np.ndarray, Y0: np.ndarray, threads: int, results: dict, exaggeration_iter: int = EXAGGERATION_ITER,
            n_iter: int = N_ITER) -> dict:
    """One zero-argument callable per method; each stores (embedding, own KL, details) in results."""
    import openTSNE  # noqa: PLC0415
    from sklearn.manifold import TSNE  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    n = len(Z)
    lr = learning_rate(n)

    def minivis_bh():
        res = mv.vis.tsne_fit(Z, perplexity=PERPLEXITY, n_iter=n_iter, early_exaggeration=EXAGGERATION,
                              exaggeration_iter=exaggeration_iter, learning_rate=lr, method="barnes_hut",
                              theta=THETA, init=Y0, progress=False)
        results["minivis (BH)"] = (res.embedding, res.kl, {"affinities_s": res.seconds["affinities"],
                                                           "optimize_s": res.seconds["optimize"],
                                                           "final_kl_s": res.seconds["final_kl"]})
        results["P"] = res.P

    def opentsne(method):
        def run():
            emb = openTSNE.TSNE(perplexity=PERPLEXITY, n_iter=n_iter, early_exaggeration=EXAGGERATION,
                                early_exaggeration_iter=exaggeration_iter, learning_rate=4 * lr,
                                initial_momentum=0.5, final_momentum=0.8, theta=THETA, max_step_norm=None,
                                negative_gradient_method=method, n_jobs=threads, random_state=0,
                                verbose=False).fit(Z, initialization=Y0.copy())
            results[f"openTSNE ({method.upper()})"] = (np.asarray(emb), float(emb.kl_divergence), {})
        return run

    def sklearn_bh():
        model = TSNE(perplexity=PERPLEXITY, early_exaggeration=EXAGGERATION, learning_rate=lr,
                     max_iter=exaggeration_iter + n_iter, n_iter_without_progress=10 * (exaggeration_iter + n_iter),
                     min_grad_norm=0.0, init=Y0.copy(), method="barnes_hut", angle=THETA, n_jobs=threads,
                     random_state=0)
        emb = model.fit_transform(Z)
        results["scikit-learn (BH)"] = (np.asarray(emb, dtype=np.float64), float(model.kl_divergence_),
                                        {"n_iter": int(model.n_iter_) + 1})

    return {"minivis (BH)": minivis_bh, "openTSNE (BH)": opentsne("bh"), "openTSNE (FFT)": opentsne("fft"),
            "scikit-learn (BH)": sklearn_bh}


def knn_kept(Z: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours in Z that are among its k nearest in Y."""
    from minivis.kernels.cpu_tsne import knn  # noqa: PLC0415

    a, _ = knn(np.asarray(Z, dtype=np.float64), k)
    b, _ = knn(np.ascontiguousarray(Y, dtype=np.float64), k)
    return float(np.mean((a[:, :, None] == b[:, None, :]).any(-1)))


def predicted_seconds(previous: dict[int, float], n: int) -> float | None:
    """Scale the time at the largest measured size by N log N."""
    if not previous:
        return None
    m = max(previous)
    return previous[m] * (n * math.log(n)) / (m * math.log(m))


def warm_up(threads: int) -> None:
    """Compile minivis's Numba kernels and load every library before anything is timed."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((200, 50)).astype(np.float32)
    Y0 = 1e-4 * rng.standard_normal((200, 2))
    sink: dict = {}
    for name, fn in runners(Z, Y0, threads, sink, exaggeration_iter=10, n_iter=10).items():
        if name != "scikit-learn (BH)":  # nothing to compile, and it insists on 250 exaggerated iterations
            fn()
            print(f"  warmed up {name}")


def main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of points (default 1k 10k 60k)")
    own.add_argument("--max-seconds", type=float, default=600.0,
                     help="skip a reference at a size where it is predicted to take longer (default 600)")
    known, rest = own.parse_known_args(argv)
    sizes_arg, max_seconds = known.sizes, known.max_seconds
    args = parse_args(__doc__.splitlines()[0], topic="embedding", argv=rest)
    dev = setup(args)
    if dev.name != "cpu":
        sys.exit("embedding.py: t-SNE runs on the CPU in every library compared here")
    import minivis as mv  # noqa: PLC0415
    from minivis.vis.features.tsne import _initial_map  # noqa: PLC0415

    sizes = tuple(sizes_arg) if sizes_arg else (QUICK_SIZES if args.quick else FULL_SIZES)
    schedule = QUICK_SCHEDULE if args.quick else (EXAGGERATION_ITER, N_ITER)
    started = time.perf_counter()
    print(f"{dev.name}: {dev.description}, {args.threads} threads (BLAS/OpenMP, Numba; n_jobs for the references)")
    X_all, _, source = load_data(max(sizes))
    print(f"data: {source}, {X_all.shape[1]} features; PCA to 50")
    warm_up(args.threads)

    rows, records, skipped = [], [], []
    history: dict[str, dict[int, float]] = {m: {} for m in METHODS}
    for n in sizes:
        Z = np.ascontiguousarray(mv.vis.pca(X_all[:n], 50, seed=0), dtype=np.float32)
        Y0 = _initial_map(Z, "pca", 0)
        results: dict = {}
        fns = runners(Z, Y0, args.threads, results, *schedule)
        chosen = []
        for name in METHODS:
            guess = predicted_seconds(history[name], n)
            if name != "minivis (BH)" and guess is not None and guess > max_seconds:
                skipped.append({"n": n, "method": name, "predicted_s": guess,
                                "reason": f"predicted {guess:.0f} s > --max-seconds {max_seconds:.0f}"})
                print(f"  N={n}: skipping {name} (predicted {guess:.0f} s > {max_seconds:.0f} s)")
            else:
                chosen.append(name)
        repeat = 1 if args.quick or n >= 10_000 else 3
        seconds = timeit_interleaved([fns[name] for name in chosen], repeat=repeat, warmup=0)
        P = results["P"]
        ours = seconds[chosen.index("minivis (BH)")]
        for name, secs in zip(chosen, seconds, strict=True):
            history[name][n] = secs
            emb, own_kl, details = results[name]
            kl_same_p = mv.vis.kl_divergence(P, emb)
            kept = knn_kept(Z, emb)
            record = {"n": n, "method": name, "seconds": secs, "repeat": repeat, "ratio": secs / ours,
                      "kl_reported": own_kl, "kl_same_p": kl_same_p, "knn10_kept": kept, **details}
            records.append(record)
            rows.append([n, name, secs, secs / ours, own_kl, kl_same_p, kept])
        mine = next(r for r in records if r["n"] == n and r["method"] == "minivis (BH)")
        for r in records:
            if r["n"] == n:
                r["kl_vs_minivis"] = mine["kl_same_p"] / r["kl_same_p"] - 1.0
        print_table(["N", "method", "seconds", "ratio", "KL (own)", "KL (same P)", "10-NN kept"],
                    [row for row in rows if row[0] == n], title=f"\nN = {n} ({repeat} interleaved repeat(s))")

    targets = {}
    for n in sizes:
        at_n = {r["method"]: r for r in records if r["n"] == n}
        mine = at_n["minivis (BH)"]
        targets[n] = {
            "faster_than": {m: at_n[m]["seconds"] >= mine["seconds"] for m in at_n if m != "minivis (BH)"},
            # the target: minivis's map no more than 3% worse (higher KL, same P) than openTSNE's
            "kl_at_most_3pct_above_openTSNE": {m: mine["kl_same_p"] <= 1.03 * at_n[m]["kl_same_p"]
                                                for m in at_n if m.startswith("openTSNE")},
        }
    headers = ["N", "method", "time s", "ref / minivis", "KL (own)", "KL (same P, exact Z)", "10-NN kept"]
    table = [[r["n"], r["method"], r["seconds"], r["seconds"] / next(
        m["seconds"] for m in records if m["n"] == r["n"] and m["method"] == "minivis (BH)"),
              r["kl_reported"], r["kl_same_p"], r["knn10_kept"]] for r in records]
    notes = [f"Data: first N Fashion-MNIST training images, {source}, PCA to 50 with `mv.vis.pca`. "
             f"{args.threads} threads, same schedule for all (see the script's docstring). "
             f"Command: `{command_line()}`."]
    notes += [f"Skipped: {s['method']} at N = {s['n']} ({s['reason']})." for s in skipped]
    for n, t in targets.items():
        faster = ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in t["faster_than"].items())
        kl_ok = ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in t["kl_at_most_3pct_above_openTSNE"].items())
        if not faster:
            notes.append(f"N = {n}: minivis only (every reference skipped, see above).")
            continue
        notes.append(f"N = {n}: minivis at least as fast as {faster}; KL (same P) at most 3% above {kl_ok}.")
    markdown = markdown_table(headers, table) + "\n\n" + "\n\n".join(notes)
    payload = {"data": source, "sizes": list(sizes), "schedule": {
        "perplexity": PERPLEXITY, "theta": THETA, "early_exaggeration": EXAGGERATION,
        "exaggeration_iter": schedule[0], "n_iter": schedule[1], "momentum": [0.5, 0.8],
        "learning_rate": "max(N/48, 50) (x4 for openTSNE)"},
        "rows": records, "skipped": skipped, "targets": targets, "wall_s": time.perf_counter() - started}
    finish(args, dev, payload, markdown, heading="t-SNE, CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
