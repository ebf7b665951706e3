"""Explicit SIMD vectors for Numba kernels: a register-sized run of floats as one value.

LLVM's loop vectorizer turns ``acc[q] += w * x[q]`` into vector code, but it keeps ``acc`` in
memory: every multiply-add loads and stores its accumulator, and a kernel runs at a fraction of
the machine's peak (lesson 01 measures it). A matrix-product micro-kernel keeps a *block* of
accumulators in registers for the whole reduction instead. Numba has no vector type, so this module
adds one: ``Vec`` is an LLVM ``<lanes x float>`` (or double) value, and a handful of intrinsics load,
broadcast, multiply-add and store it. A loop that carries ``Vec`` values carries them in registers.

    acc = vzero(x)                 # a vector of zeros of x's dtype
    acc = vfma(vbcast(w, k), vload(x, i), acc)    # acc += w[k] * x[i : i + lanes]
    vstore(out, j, acc)            # out[j : j + lanes] = acc
    total = vsum(acc)              # acc's lanes added up, halves first: a fixed order
    d = vsub(vadd(a, b), c)        # lane-wise a + b - c (Winograd's transforms are adds only)
    e = vclip(vmul(d, s), lo, hi)  # lane-wise d * s, then clipped to [lo, hi] (a rectifier)
    vtranspose(x, i, si, rows, cols, out, j, dj)  # out[j + k*dj + r] = x[i + r*si + k]: a block turned around

Indices are flat (into ``arr.reshape(-1)`` of a C-contiguous array; for any other array, element
offsets from its first element, its strides counted in elements) and *not* bounds-checked: the
caller sizes its buffers so that every vector it touches lies inside them. A vector is
``VECTOR_BYTES`` wide: 64 (an AVX-512 register, 16 float32 or 8 float64) where the CPU has
AVX-512, else 32. ``lanes(x)`` is the number of elements of x's dtype in one vector.

With ``NUMBA_DISABLE_JIT=1`` the same names are plain NumPy functions on small arrays (``vfma`` then
rounds twice), so the kernels that use them still run, slowly, for the tests.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np

VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f", False) else 32
WIDE = VECTOR_BYTES == 64  # 32 vector registers of 64 bytes: room for ``cpu_direct``'s block of 24 accumulators


def lanes_of(dtype: np.dtype) -> int:
    """Elements of ``dtype`` in one vector."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def aligned_empty(size: int, dtype: np.dtype) -> np.ndarray:
    """A flat ``np.empty(size, dtype)`` whose first element starts a vector (``VECTOR_BYTES``-aligned).

    NumPy aligns to 16 bytes: a 64-byte vector at a multiple of 64 elements' bytes from there
    straddles two cache lines, and a kernel that stores whole vectors (``cpu_winograd_fused``'s
    transforms) pays for both lines (measured: its input transform ran 1.8x slower).
    """
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + VECTOR_BYTES, np.uint8)
    skip = -raw.ctypes.data % VECTOR_BYTES
    return raw[skip:skip + size * dtype.itemsize].view(dtype)


if numba.config.DISABLE_JIT:
    def lanes(arr: np.ndarray) -> int:
        return lanes_of(arr.dtype)

    def vzero(arr: np.ndarray) -> np.ndarray:
        return np.zeros(lanes(arr), arr.dtype)

    def _flat(arr: np.ndarray) -> np.ndarray:
        """The memory from arr's first element on, element by element, as the compiled intrinsics address
        it (an N-d array, or a strided view: offsets from its first element, its strides in elements)."""
        if arr.ndim == 1 or arr.flags.c_contiguous:
            return arr.reshape(-1)
        span = 1 + sum((n - 1) * st for n, st in zip(arr.shape, arr.strides, strict=True)) // arr.itemsize
        return np.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(arr.itemsize,))

    def vload(arr: np.ndarray, i: int) -> np.ndarray:
        return _flat(arr)[i:i + lanes(arr)].copy()

    def vbcast(arr: np.ndarray, i: int) -> np.ndarray:
        return np.full(lanes(arr), arr[i], arr.dtype)

    def vfma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return a * b + c

    def vadd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def vsub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def vmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def vclip(v: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return np.where(v < low, low, np.where(v > high, high, v))

    def vstore(arr: np.ndarray, i: int, v: np.ndarray) -> None:
        _flat(arr)[i:i + v.shape[0]] = v

    def vtranspose(src: np.ndarray, i: int, si: int, rows: int, cols: int, dst: np.ndarray, j: int, dj: int) -> None:
        n = lanes(src)
        rows, cols = min(rows, n), min(cols, n)
        block = np.zeros((n, n), src.dtype)
        for r in range(rows):
            block[r, :cols] = src[i + r * si:i + r * si + cols]
        for k in range(cols):
            dst[j + k * dj:j + k * dj + rows] = block[:rows, k]

    def vsum(v: np.ndarray) -> np.floating:
        while v.shape[0] > 1:
            half = v.shape[0] // 2
            v = v[:half] + v[half:]
        return v[0]

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, models, register_model

    class Vec(types.Type):
        """A vector of ``VECTOR_BYTES`` of ``dtype`` (float32 or float64), held in one register."""

        def __init__(self, dtype: types.Float) -> None:
            self.dtype = dtype
            super().__init__(name=f"Vec({dtype})")

    @register_model(Vec)
    class _VecModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):  # noqa: ANN001
            scalar = ir.FloatType() if fe_type.dtype == types.float32 else ir.DoubleType()
            super().__init__(dmm, fe_type, ir.VectorType(scalar, VECTOR_BYTES // fe_type.dtype.bitwidth * 8))

    def _vec_of(arr: types.Array) -> Vec:
        if not (isinstance(arr, types.Array) and arr.dtype in (types.float32, types.float64)):
            raise numba.core.errors.TypingError(f"cpu_simd: a float32 or float64 array expected, got {arr}")
        return Vec(arr.dtype)

    def _address(context, builder, arrty, arr, i, vec):  # noqa: ANN001, ANN202
        data = context.make_array(arrty)(context, builder, arr).data
        ptr = builder.gep(data, [i])
        return builder.bitcast(ptr, vec.as_pointer()) if vec is not None else ptr

    def _splat(builder, scalar, vec):  # noqa: ANN001, ANN202
        one = builder.insert_element(ir.Constant(vec, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count)
        return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), mask)

    @intrinsic
    def lanes(typingctx, arr):  # noqa: ANN001, ANN201
        vt = _vec_of(arr)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return ir.Constant(ir.IntType(64), VECTOR_BYTES * 8 // vt.dtype.bitwidth)

        return types.int64(arr), codegen

    @intrinsic
    def vzero(typingctx, arr):  # noqa: ANN001, ANN201
        vt = _vec_of(arr)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            return ir.Constant(context.get_value_type(vt), None)

        return vt(arr), codegen

    @intrinsic
    def vload(typingctx, arr, i):  # noqa: ANN001, ANN201
        vt = _vec_of(arr)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            vec = context.get_value_type(vt)
            return builder.load(_address(context, builder, sig.args[0], args[0], args[1], vec),
                                align=vt.dtype.bitwidth // 8)

        return vt(arr, types.intp), codegen

    @intrinsic
    def vbcast(typingctx, arr, i):  # noqa: ANN001, ANN201
        vt = _vec_of(arr)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            scalar = builder.load(_address(context, builder, sig.args[0], args[0], args[1], None))
            return _splat(builder, scalar, context.get_value_type(vt))

        return vt(arr, types.intp), codegen

    @intrinsic
    def vfma(typingctx, a, b, c):  # noqa: ANN001, ANN201
        if not (isinstance(a, Vec) and a == b == c):
            raise numba.core.errors.TypingError("cpu_simd.vfma: three vectors of one dtype expected")

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            vec = context.get_value_type(a)
            name = f"llvm.fma.v{vec.count}{'f32' if a.dtype == types.float32 else 'f64'}"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]), name)
            return builder.call(fn, args)

        return a(a, b, c), codegen

    def _lanewise(name: str):  # noqa: ANN202
        def typer(typingctx, a, b):  # noqa: ANN001, ANN202
            if not (isinstance(a, Vec) and a == b):
                raise numba.core.errors.TypingError(f"cpu_simd.{name}: two vectors of one dtype expected")

            def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
                return getattr(builder, name.replace("v", "f", 1))(*args)

            return a(a, b), codegen

        typer.__name__ = name
        return intrinsic(typer)

    vadd = _lanewise("vadd")  # lane-wise a + b (LLVM fadd)
    vsub = _lanewise("vsub")  # lane-wise a - b (LLVM fsub)
    vmul = _lanewise("vmul")  # lane-wise a * b (LLVM fmul)

    @intrinsic
    def vclip(typingctx, v, low, high):  # noqa: ANN001, ANN201
        """Lane-wise ``low if v < low else (high if v > high else v)``, ``cpu_activation._clip_one`` as two
        compare-and-selects: a NaN fails both compares and stays, -0.0 stays -0.0."""
        if not (isinstance(v, Vec) and v == low == high):
            raise numba.core.errors.TypingError("cpu_simd.vclip: three vectors of one dtype expected")

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            x, lo, hi = args
            above = builder.select(builder.fcmp_ordered(">", x, hi), hi, x)
            return builder.select(builder.fcmp_ordered("<", x, lo), lo, above)

        return v(v, low, high), codegen

    @intrinsic
    def vstore(typingctx, arr, i, v):  # noqa: ANN001, ANN201
        if _vec_of(arr) != v:
            raise numba.core.errors.TypingError("cpu_simd.vstore: a vector of the array's dtype expected")

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            vec = context.get_value_type(v)
            builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1], vec),
                          align=v.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return types.none(arr, types.intp, v), codegen

    @intrinsic
    def vsum(typingctx, v):  # noqa: ANN001, ANN201
        if not isinstance(v, Vec):
            raise numba.core.errors.TypingError("cpu_simd.vsum: a vector expected")

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            x, count = args[0], context.get_value_type(v).count
            while count > 1:  # the low half plus the high half, down to one lane
                count //= 2
                mask = ir.VectorType(ir.IntType(32), count)
                low = builder.shuffle_vector(x, x, ir.Constant(mask, list(range(count))))
                high = builder.shuffle_vector(x, x, ir.Constant(mask, list(range(count, 2 * count))))
                x = builder.fadd(low, high)
            return builder.extract_element(x, ir.Constant(ir.IntType(32), 0))

        return v.dtype(v), codegen

    @intrinsic
    def vtranspose(typingctx, src, i, si, rows, cols, dst, j, dj):  # noqa: ANN001, ANN201
        """dst[j + k*dj + r] = src[i + r*si + k] for r < rows, k < cols (each at most lanes): a block of
        ``rows`` runs of ``cols`` elements transposed in registers, by masked loads and stores (nothing
        outside the block is read or written). The butterfly: at each scale h = lanes/2 .. 1, rows r and
        r + h (bit h of r clear) swap their off-diagonal h x h blocks, a two-source shuffle per row:
        log2(lanes) shuffles a vector where a strided copy moves one element at a time."""
        vt = _vec_of(src)
        if _vec_of(dst) != vt:
            raise numba.core.errors.TypingError("cpu_simd.vtranspose: src and dst of one dtype expected")

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            a_src, a_i, a_si, a_rows, a_cols, a_dst, a_j, a_dj = args
            vec = context.get_value_type(vt)
            n, i64, i32 = vec.count, ir.IntType(64), ir.IntType(32)
            mvec = ir.VectorType(ir.IntType(1), n)
            lane_ids = ir.Constant(ir.VectorType(i64, n), list(range(n)))
            cols_v = _splat(builder, a_cols, ir.VectorType(i64, n))
            in_row = builder.icmp_signed("<", lane_ids, cols_v)  # elements k < cols of a row
            in_col = builder.icmp_signed("<", lane_ids, _splat(builder, a_rows, ir.VectorType(i64, n)))
            suffix = f"v{n}{'f32' if vt.dtype == types.float32 else 'f64'}"
            ptr_t = vec.as_pointer()
            load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [ptr_t, i32, mvec, vec]), f"llvm.masked.load.{suffix}.p0{suffix}")
            align = ir.Constant(i32, vt.dtype.bitwidth // 8)
            zero = ir.Constant(vec, None)
            none = ir.Constant(mvec, [0] * n)
            rows = []
            for r in range(n):
                live = builder.icmp_signed("<", ir.Constant(i64, r), a_rows)
                mask = builder.select(live, in_row, none)
                at = builder.add(a_i, builder.mul(ir.Constant(i64, r), a_si))
                rows.append(builder.call(load, [_address(context, builder, sig.args[0], a_src, at, vec), align, mask,
                                                zero]))
            store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vec, ptr_t, i32, mvec]),
                f"llvm.masked.store.{suffix}.p0{suffix}")
            mask_t = ir.VectorType(i32, n)
            h = n // 2
            while h >= 1:  # new row r: the first halves of each 2h-block of rows r and r + h; row r + h: the second
                lo = [c * 2 * h + t + side for c in range(n // (2 * h)) for side in (0, n) for t in range(h)]
                hi = [k + h for k in lo]
                for r in range(n):
                    if r & h == 0:
                        a, b = rows[r], rows[r + h]
                        rows[r] = builder.shuffle_vector(a, b, ir.Constant(mask_t, lo))
                        rows[r + h] = builder.shuffle_vector(a, b, ir.Constant(mask_t, hi))
                h //= 2
            for k in range(n):
                live = builder.icmp_signed("<", ir.Constant(i64, k), a_cols)
                at = builder.add(a_j, builder.mul(ir.Constant(i64, k), a_dj))
                builder.call(store, [rows[k], _address(context, builder, sig.args[5], a_dst, at, vec), align,
                                     builder.select(live, in_col, none)])
            return context.get_dummy_value()

        return types.none(src, types.intp, types.intp, types.intp, types.intp, dst, types.intp, types.intp), codegen
