"""Op cases shared by the simulator tests and the real-GPU tests (small shapes, every kernel path)."""

# (kernel, stride, padding, dilation, ceil_mode), as in tests/kernels/test_cpu_pool.py
MAX_GEOMETRIES = [
    ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((3, 3), (2, 2), (1, 1), (1, 1), False),  # overlapping windows
    ((3, 2), (1, 2), (1, 0), (1, 1), True),
    ((3, 3), (2, 2), (1, 1), (2, 2), True),   # dilation, ceil_mode
    ((2, 3), (3, 1), (1, 1), (2, 1), True),
]

CONV_OPS = {  # name: (x shape, weight shape, kwargs); covers the GEMM, 1x1, grouped and depthwise paths
    "3x3 pad 1": ((2, 3, 6, 5), (4, 3, 3, 3), {"padding": 1}),
    "same, stride 2, dilation 2": ((1, 2, 7, 8), (3, 2, 3, 3), {"padding": "same", "stride": 2, "dilation": 2}),
    "asymmetric padding": ((2, 2, 5, 6), (3, 2, 3, 2), {"padding": (0, 2, 1, 3), "stride": (1, 2)}),
    "groups 2": ((1, 4, 5, 5), (4, 2, 3, 3), {"groups": 2, "padding": 1}),
    "depthwise x2, stride 2": ((2, 2, 6, 6), (4, 1, 3, 3), {"groups": 2, "stride": 2, "padding": (1, 0)}),
    "1x1": ((2, 4, 3, 3), (3, 4, 1, 1), {}),
    "1x1 stride 2": ((1, 4, 5, 5), (3, 4, 1, 1), {"stride": 2}),
}

TRANSPOSE_OPS = {  # name: (x shape, weight shape (C_in, C_out/groups, kh, kw), kwargs)
    "stride 2 output_padding 1": ((2, 3, 4, 3), (3, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    "groups 2 dilation 2": ((1, 4, 4, 4), (4, 1, 3, 3), {"groups": 2, "dilation": 2, "padding": 1}),
    "depthwise stride 2": ((1, 3, 4, 4), (3, 1, 3, 3), {"groups": 3, "stride": 2, "output_padding": 1}),
}
