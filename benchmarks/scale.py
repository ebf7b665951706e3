"""Scale-out benchmark: top-k mining on a Dask ``LocalCluster`` of 1 and of 2 single-thread worker
processes, and a paper estimate of VGG16 top-9 mining over ImageNet-1k train on N workers.

    python benchmarks/scale.py           # full run: 6,144 Fashion-MNIST images; VGG16 at 224 px
    python benchmarks/scale.py --quick   # smoke test (small sizes, one round)

Needs the ``scale`` extra (``pip install minivis[scale]``: dask[distributed]).

1. **Throughput, 1 vs 2 workers.** ``mv.vis.top_activations(fashion_cnn, images, 4 ReLU layers,
   k=9, crop=False, client=...)`` on two clusters started side by side, ``LocalCluster(n_workers=1 or
   2, threads_per_worker=1, processes=True)``; the calls alternate between the clusters (1, 2, 1, 2,
   ...), min of the rounds, so both see the same machine load. The whole call is timed: scattering
   the images and the model, the partitions on the workers, the merge on the client. Speed-up =
   1-worker time / 2-worker time; parallel efficiency = speed-up / 2 (target: speed-up >= 1.6,
   efficiency >= 80%). The top-k of both clusters is checked identical to the single-process run.
2. **Per-image cost of VGG16 mining** (random weights: the cost does not depend on them): one
   ``top_activations`` call over a few 224 x 224 images, top-9 of every channel of the 13 conv
   ReLU outputs, in this process on 1 thread (a single-thread worker) and on ``--threads`` threads.
3. **The estimate**: ImageNet-1k train (1,281,167 images) mined on N workers of c threads takes
   ``1,281,167 x t_1 / (N c e)``, with t_1 the 1-thread per-image cost and e the efficiency measured
   in 1 (an assumption for large N: the merge is O(C k) per partition, the data are read where the
   workers are). A paper estimate, not a measurement on a cluster.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, finish, markdown_table, parse_args, print_table, setup, timeit_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS = ["features.1", "features.3", "features.6", "features.8"]
VGG_LAYERS = [f"features.{i}" for i in (1, 3, 6, 8, 11, 13, 15, 18, 20, 22, 25, 27, 29)]  # the conv ReLUs
K = 9
IMAGENET_TRAIN = 1_281_167
WORKERS = (1, 2, 4, 8, 32, 128)
THREADS_PER_WORKER = (1, 16)


def fashion_model():
    import minivis as mv  # noqa: PLC0415

    try:
        return mv.models.load("fashion_cnn"), "shipped fashion_cnn weights"
    except FileNotFoundError:
        mv.nn.init.seed(0)
        return mv.models.FashionCNN().eval(), "random init (mv.nn.init.seed(0))"


def same_tops(a: dict, b: dict) -> bool:
    fields = ("image_index", "image_score", "image_location", "patch_index", "patch_value", "patch_location")
    return all(np.array_equal(getattr(a[n], f), getattr(b[n], f)) for n in a for f in fields)


def cluster_throughput(args, model, images, batch: int, rounds: int) -> dict:
    """1-worker and 2-worker LocalClusters, the same mining call alternating between them."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    want = mv.vis.top_activations(model, images, LAYERS, k=K, batch_size=batch, crop=False)
    clusters, clients = [], []
    try:
        for n in (1, 2):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   worker_dashboard_address=None, silence_logs=40)
            clusters.append(cluster)
            clients.append(Client(cluster, set_as_default=False))
        calls, identical = [], []
        for client in clients:
            def call(client=client):
                return mv.vis.top_activations(model, images, LAYERS, k=K, batch_size=batch, crop=False,
                                              client=client)
            identical.append(same_tops(call(), want))  # also the warm-up: Numba's cache loads in the workers
            calls.append(call)
        one_s, two_s = timeit_interleaved(calls, repeat=rounds, warmup=0)
    finally:
        for client in clients:
            client.close()
        for cluster in clusters:
            cluster.close()
    speedup = one_s / two_s
    return {"images": len(images), "batch_size": batch, "rounds": rounds, "one_worker_s": one_s,
            "two_workers_s": two_s, "one_worker_img_per_s": len(images) / one_s,
            "two_workers_img_per_s": len(images) / two_s, "speedup": speedup, "efficiency": speedup / 2,
            "identical_to_single_process": all(identical)}


def vgg16_per_image(args, quick: bool) -> dict:
    """Seconds per image of VGG16 top-9 mining of its 13 conv ReLU outputs, on 1 and on --threads threads."""
    import numba  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    mv.nn.init.seed(0)
    model = mv.models.build("vgg16").eval()
    size, n = (64, 2) if quick else (224, 4)
    x = np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)

    def mine():
        mv.vis.top_activations(model, x, VGG_LAYERS, k=min(K, n), batch_size=n, crop=False)

    out = {"input_size": size, "images": n}
    for threads in sorted({1, args.threads}):
        numba.set_num_threads(threads)
        try:
            seconds = min(timeit_interleaved([mine], repeat=1 if quick else 2, warmup=1))
        finally:
            numba.set_num_threads(args.threads)
        out[f"s_per_image_{threads}_threads"] = seconds / n
    return out


def estimate(per_image_1: float, efficiency: float) -> list[dict]:
    rows = []
    for c in THREADS_PER_WORKER:
        for n in WORKERS:
            eff = 1.0 if n * c == 1 else efficiency
            hours = IMAGENET_TRAIN * per_image_1 / (n * c * eff) / 3600
            rows.append({"workers": n, "threads_per_worker": c, "efficiency": eff, "hours": hours})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="scale", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        sys.exit("scale.py: Dask workers here are CPU processes")
    try:
        import distributed  # noqa: F401, PLC0415
    except ImportError:
        sys.exit("scale.py needs the scale extra: pip install 'minivis[scale]'")
    import minivis as mv  # noqa: PLC0415

    started = time.perf_counter()
    model, weights = fashion_model()
    n, batch, rounds = (512, 64, 1) if args.quick else (6144, 256, 3)
    images = mv.data.fashion_mnist("train")[0][:n]
    thr = cluster_throughput(args, model, images, batch, rounds)
    print(f"fashion_cnn top-{K} mining of {n} images: 1 worker {thr['one_worker_s']:.2f} s, 2 workers "
          f"{thr['two_workers_s']:.2f} s, speed-up {thr['speedup']:.2f} (efficiency {100 * thr['efficiency']:.0f}%), "
          f"identical top-k: {thr['identical_to_single_process']}", flush=True)
    vgg = vgg16_per_image(args, args.quick)
    per1 = vgg["s_per_image_1_threads"]
    rows = estimate(per1, min(1.0, thr["efficiency"]))
    headers = ["workers", "threads/worker", "efficiency", "hours"]
    table = [[r["workers"], r["threads_per_worker"], r["efficiency"], r["hours"]] for r in rows]
    print_table(headers, table, title=f"VGG16 top-{K} mining over ImageNet-1k train, {per1:.3f} s/image/thread")
    payload = {"weights": weights, "layers": LAYERS, "k": K, "throughput": thr, "vgg16": vgg,
               "estimate": rows, "imagenet_train_images": IMAGENET_TRAIN,
               "elapsed_s": time.perf_counter() - started}
    load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
            if args.loadavg_at_start is not None else "")
    thr_headers = ["images", "1 worker s", "2 workers s", "1 worker img/s", "2 workers img/s", "speed-up",
                   "efficiency", "identical top-k"]
    thr_row = [[thr["images"], thr["one_worker_s"], thr["two_workers_s"], round(thr["one_worker_img_per_s"], 1),
                round(thr["two_workers_img_per_s"], 1), thr["speedup"], f"{100 * thr['efficiency']:.0f}%",
                "yes" if thr["identical_to_single_process"] else "NO"]]
    vgg_line = ", ".join(f"{v:.3f} s on {k.split('_')[3]} thread(s)" for k, v in vgg.items() if k.startswith("s_"))
    markdown = "\n".join([
        f"Measured on {dev.description} ({os.cpu_count()} cores).{load} Command: `{command_line()}`",
        "",
        f"fashion_cnn top-{K} mining of {', '.join(LAYERS)} ({weights}), Fashion-MNIST train images, batches of "
        f"{batch}, on `LocalCluster(n_workers=1 or 2, threads_per_worker=1, processes=True)`, calls alternating "
        f"between the two clusters, min of {rounds} rounds (scatter, partitions and merge all timed):",
        "",
        markdown_table(thr_headers, thr_row),
        "",
        f"VGG16 top-{K} mining of its 13 conv ReLU outputs at {vgg['input_size']} px, per image: {vgg_line}. "
        f"Paper estimate for ImageNet-1k train ({IMAGENET_TRAIN:,} images) = images x (1-thread s/image) / "
        f"(workers x threads x efficiency), efficiency as measured above:",
        "",
        markdown_table(headers, table),
    ])
    finish(args, dev, payload, markdown, heading="Scale-out on Dask, CPU")
    return 0 if thr["identical_to_single_process"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
