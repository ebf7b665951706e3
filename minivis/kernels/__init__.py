"""The hot loops and nothing else: Numba kernels on plain arrays (they know nothing of tensors).

One module per kernel family and device: ``cpu_conv`` (im2col/col2im, direct depthwise),
``cpu_pool`` (max-pool with switches, unpool, average pools), ``cpu_activation`` (the fused
ReLU-rule backward). Each fast kernel has a plain-NumPy ``naive_*`` twin right beside it that
the tests compare it with (``tests/kernels/``, also run with ``NUMBA_DISABLE_JIT=1``).
"""
