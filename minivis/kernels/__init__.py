"""The hot loops and nothing else: Numba kernels on plain arrays (they know nothing of tensors).

One module per kernel family and device: ``cpu_conv`` (im2col/col2im; with ``cpu_depthwise``, the
direct depthwise kernels, and ``cpu_direct``, ``cpu_winograd``, ``cpu_winograd_fused``,
``cpu_winograd4`` (the 4x4-tile form incremental occlusion runs) and ``cpu_layout`` beside it;
``cpu_simd`` gives Numba the explicit vectors the register blocks of ``cpu_direct`` and
``cpu_winograd_fused`` and the Winograd transforms are made of),
``cpu_pool`` (max-pool with switches, unpool, average pools), ``cpu_activation`` (the ReLU clip
and the fused ReLU-rule backward), ``cpu_norm`` (the eval batch-norm affine map),
``cpu_occlusion`` (incremental occlusion's splice), ``cpu_topk`` (running top-k lists for mining
and neighbours), ``cpu_tsne`` (t-SNE), ``cpu_threads``, which splits a batch across threads for
the GEMM paths, ``cpu_workspace``, the pool the kernels' large outputs come from while a method
streams batches (``backend.reuse_buffers``) and their per-thread scratch, and ``conv_plan``, the
one module here that is not a loop: how a convolution is run on these kernels (which algorithm,
which tiles), kept out of ``functional/conv.py`` so the op stays on one page. Callers above the
ops (``minivis.vis``) reach them only through ``backend.kernels(family, array, op)``; a kernel
module imports nothing from minivis but ``backend``, other kernel modules and the rule codes of
``minivis.rules``. Each
fast kernel has a plain-NumPy ``naive_*`` twin right beside it that the tests compare it with
(``tests/kernels/``, also run with ``NUMBA_DISABLE_JIT=1``).
"""

import os as _os

import numba as _numba

# Numba's default OpenMP pool keeps its threads spinning after a parallel loop, and so does
# OpenBLAS: conv alternates im2col (Numba) and GEMM (BLAS), so on a small machine the two pools
# fight for the cores (measured: benchmarks/README.md, "Design measurements", kernels). The
# workqueue layer sleeps instead. An explicit NUMBA_THREADING_LAYER from the user still wins.
if "NUMBA_THREADING_LAYER" not in _os.environ:
    _numba.config.THREADING_LAYER = "workqueue"
