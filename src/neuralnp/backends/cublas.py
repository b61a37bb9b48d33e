"""cuBLAS through a handle of our own, called with ctypes.

Why not CuPy's ``matmul``: a training step on the GPU is captured as a CUDA graph
(``neuralnp.graphs``), and CuPy's cuBLAS wrappers call ``cublasSetStream`` on every call made on a
non-default stream, which recent CuPy refuses while a stream is capturing (cupy#6290). A handle
we own is bound to its stream and given a fixed workspace once, before capture
(:meth:`CuBLAS.bind`); a gemm issued on it afterwards allocates nothing and can be captured.

:func:`matmul_args` maps a row-major NumPy-style product ``out = a @ b`` (strided 2-D views
welcome) to the arguments of one column-major ``gemm``; :class:`~.cupy_ops.CupyOps` uses both.
"""

import ctypes
import ctypes.util
import importlib.util
import os
from collections import namedtuple

CUBLAS_OP_N = 0
CUBLAS_OP_T = 1
_STATUS = {0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED",
           3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
           8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
           13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
           15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}
_INT_MAX = 2**31 - 1  # cuBLAS's sizes and leading dimensions are C ints


def _wheel_candidates():
    """Where the pip wheels put libcublas: ``nvidia-cublas-cu12`` in ``nvidia/cublas/lib``,
    ``nvidia-cublas`` (CUDA 13) in ``nvidia/cu13/lib``."""
    for package in ("nvidia.cublas", "nvidia.cu13"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for name in ("libcublas.so.12", "libcublas.so.13"):
                yield os.path.join(folder, "lib", name)


def load_library():
    """libcublas as a :class:`ctypes.CDLL`: from the pip wheel if installed, else the system's."""
    for path in _wheel_candidates():
        if os.path.exists(path):
            return ctypes.CDLL(path)
    found = ctypes.util.find_library("cublas")
    if found is None:
        raise RuntimeError('cuBLAS (libcublas) was not found: pip install "neuralnp[gpu]" for '
                           'CUDA 12 (or "neuralnp[gpu13]" for CUDA 13) installs it')
    return ctypes.CDLL(found)


def _check(status, call):
    if status != 0:
        raise RuntimeError(f"{call} failed: {_STATUS.get(status, f'cuBLAS status {status}')}")


class CuBLAS:
    """One cuBLAS handle: :meth:`bind` it to a stream and a workspace, then :meth:`gemm`."""

    def __init__(self, lib):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate_v2")
        # Host pointer mode (the default) stays: alpha and beta are read from host memory
        # when the gemm is issued, so a captured graph holds their values.
        self._alpha_beta = {}

    def bind(self, stream_ptr, workspace_ptr, workspace_bytes):
        """Issue this handle's work on ``stream_ptr`` with the given workspace (device memory
        that outlives the handle's use, 256-byte aligned). Host-side: call it before capture.
        setStream resets the workspace to cuBLAS's own pool, so the workspace comes second."""
        lib, handle = self.lib, self.handle
        _check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream_v2")
        _check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace_ptr),
                                         ctypes.c_size_t(workspace_bytes)),
               "cublasSetWorkspace_v2")

    def gemm(self, dtype, transa, transb, m, n, k, a_ptr, lda, b_ptr, ldb, c_ptr, ldc):
        """Column-major ``C (m×n) ← op(A)·op(B)`` (alpha 1, beta 0) for float32 or float64."""
        size = dtype.itemsize if hasattr(dtype, "itemsize") else dtype
        scalars = self._alpha_beta.get(size)
        if scalars is None:
            ctype = {4: ctypes.c_float, 8: ctypes.c_double}[size]
            scalars = self._alpha_beta[size] = (ctype(1.0), ctype(0.0))
        name = "cublasSgemm_v2" if size == 4 else "cublasDgemm_v2"
        i = ctypes.c_int
        status = getattr(self.lib, name)(
            self.handle, i(transa), i(transb), i(m), i(n), i(k),
            ctypes.byref(scalars[0]), ctypes.c_void_p(a_ptr), i(lda),
            ctypes.c_void_p(b_ptr), i(ldb), ctypes.byref(scalars[1]),
            ctypes.c_void_p(c_ptr), i(ldc))
        _check(status, name)


# first: which operand's pointer is cuBLAS's A ("a" or "b"); the other is its B.
GemmArgs = namedtuple("GemmArgs", "first transa transb m n k lda ldb ldc")


def _operand(shape, strides, itemsize, transposed):
    """``(op, ld)`` for a row-major operand X (p×q) of which cuBLAS must see op(stored) = Xᵀ
    (``transposed``) or X, or None when its layout is not a column-major matrix with a leading
    dimension cuBLAS accepts (ld ≥ max(1, rows stored))."""
    (p, q), (s0, s1) = shape, strides
    rows_unit = p == 1 or s0 == itemsize  # consecutive rows are adjacent: column-major X
    cols_unit = q == 1 or s1 == itemsize  # consecutive columns are adjacent: row-major X
    choices = []
    if cols_unit:  # memory read column-major with ld = row stride is Xᵀ (q×p)
        choices.append((p, s0, q, CUBLAS_OP_N if transposed else CUBLAS_OP_T))
    if rows_unit:  # memory read column-major with ld = column stride is X (p×q)
        choices.append((q, s1, p, CUBLAS_OP_T if transposed else CUBLAS_OP_N))
    for count, stride, stored_rows, op in choices:
        ld = _leading(count, stride, stored_rows, itemsize)
        if ld is not None:
            return op, ld
    return None


def _leading(count, stride, stored_rows, itemsize):
    """The leading dimension of a column-major matrix of ``stored_rows`` rows whose columns
    (``count`` of them) are ``stride`` bytes apart, or None when cuBLAS would refuse it."""
    if count > 1:
        if stride <= 0 or stride % itemsize:
            return None
        ld = stride // itemsize
    else:
        ld = max(1, stored_rows)  # one column: its stride is never used
    return ld if max(1, stored_rows) <= ld <= _INT_MAX else None


def _out_layout(shape, strides, itemsize):
    """``(row_major, ld)`` for a product's output, or None when it has no unit stride."""
    (r, c), (s0, s1) = shape, strides
    if c == 1 or s1 == itemsize:  # row-major: stored column-major it is outᵀ (c×r)
        ld = _leading(r, s0, c, itemsize)
        if ld is not None:
            return True, ld
    if r == 1 or s0 == itemsize:  # column-major: stored as out itself (r×c)
        ld = _leading(c, s1, r, itemsize)
        if ld is not None:
            return False, ld
    return None


def operand_maps(shape, strides, itemsize):
    """Whether a 2-D operand of this layout can be given to gemm as it is (else: copy it)."""
    return _operand(shape, strides, itemsize, True) is not None


def output_maps(shape, strides, itemsize):
    """Whether gemm can write a 2-D product of this layout directly (else: a workspace)."""
    return _out_layout(shape, strides, itemsize) is not None


def matmul_args(a_shape, a_strides, b_shape, b_strides, out_shape, out_strides, itemsize):
    """The :class:`GemmArgs` of one cuBLAS gemm computing ``out = a @ b`` for 2-D arrays with
    these shapes and strides (in bytes), or None when a layout cannot be expressed (a caller
    then copies that operand into a contiguous workspace: a contiguous array always maps).

    cuBLAS is column-major. A row-major ``out`` (r×c, unit column stride) is the column-major
    ``outᵀ = bᵀ·aᵀ``: cuBLAS's A is ``b``, its B is ``a``, m = c, n = r, ldc = out's row stride.
    A column-major ``out`` (unit row stride, e.g. a transposed view) is ``out = a·b`` directly:
    m = r, n = c, ldc = out's column stride. Each operand then maps by :func:`_operand`.
    """
    (r, k), (k2, c) = a_shape, b_shape
    if k2 != k or tuple(out_shape) != (r, c) or max(r, c, k) > _INT_MAX:
        return None
    layout = _out_layout(out_shape, out_strides, itemsize)
    if layout is None:
        return None
    row_major, ldc = layout
    if row_major:
        name, first, second, m, n = "b", (b_shape, b_strides), (a_shape, a_strides), c, r
    else:
        name, first, second, m, n = "a", (a_shape, a_strides), (b_shape, b_strides), r, c
    op_a = _operand(*first, itemsize, row_major)
    op_b = _operand(*second, itemsize, row_major)
    if op_a is None or op_b is None:
        return None
    return GemmArgs(name, op_a[0], op_b[0], m, n, k, op_a[1], op_b[1], ldc)
