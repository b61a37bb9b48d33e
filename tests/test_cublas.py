"""Matrix products through the own cuBLAS handle (neuralnp.backends.cublas) on the CuPy stand-in.

What a GPU alone can check (real cuBLAS's numbers, the library's loading, capture on a device)
is not here; what is: the gemm arguments for every layout against hand-derived expectations,
the fake libcublas's column-major semantics and cuBLAS's own refusals, and that products are
captured and replayed through the handle while CuPy's own cuBLAS calls are refused.
"""

import ctypes

import numpy as np
import pytest

import fakecupy as cp
import neuralnp as nn
from neuralnp import backends
from neuralnp.backends import cublas
from neuralnp.backends.cublas import CUBLAS_OP_N as N, CUBLAS_OP_T as T, GemmArgs, matmul_args
from neuralnp.backends.cupy_ops import CupyOps


def args(a, b, out):
    """matmul_args for NumPy arrays (their shapes and strides)."""
    return matmul_args(a.shape, a.strides, b.shape, b.strides, out.shape, out.strides,
                       out.itemsize)


# -- matmul_args: hand-checked ------------------------------------------------------------------

def test_the_dense_layer_products_map_without_copies():
    x, w, z = np.empty((5, 3)), np.empty((3, 4)), np.empty((5, 4))
    # z = x @ W: cuBLAS computes zᵀ (4×5) = Wᵀ·xᵀ: A = W (op N, ld 4), B = x (op N, ld 3)
    assert args(x, w, z) == GemmArgs("b", N, N, 4, 5, 3, 4, 3, 4)
    # dW = x.T @ dz (3×4): A = dz (5×4 row-major, op N, ld 4); B = x.T, a transposed view of
    # 5×3 row-major x: stored column-major it is x.T itself, op T with ld 3
    dz, dw = np.empty((5, 4)), np.empty((3, 4))
    assert args(x.T, dz, dw) == GemmArgs("b", N, T, 4, 3, 5, 4, 3, 4)
    # dx = dz @ W.T (5×3): A = W.T (3×4 row-major W seen column-major as W.T… op T, ld 4)
    dx = np.empty((5, 3))
    assert args(dz, w.T, dx) == GemmArgs("b", T, N, 3, 5, 4, 4, 4, 3)


def test_row_padded_views_use_their_row_stride_as_leading_dimension():
    big_a, big_b, big_out = np.empty((5, 8)), np.empty((3, 9)), np.empty((5, 6))
    a, b, out = big_a[:, :3], big_b[:, :4], big_out[:, :4]
    assert args(a, b, out) == GemmArgs("b", N, N, 4, 5, 3, 9, 8, 6)


def test_a_transposed_output_is_computed_column_major():
    a, b, out_t = np.empty((5, 3)), np.empty((3, 4)), np.empty((4, 5))
    # out = out_t.T has unit row stride: out (5×4) = a·b directly, ldc 5
    # A = a (5×3 row-major: stored it is aᵀ, op T, ld 3), B = b (op T, ld 4)
    assert args(a, b, out_t.T) == GemmArgs("a", T, T, 5, 4, 3, 3, 4, 5)


def test_single_rows_and_columns_take_the_smallest_leading_dimension():
    # (1×k)·(k×1): every stride of a size-1 axis is unused
    row, col, one = np.empty((1, 6)), np.empty((6, 1)), np.empty((1, 1))
    assert args(row, col, one) == GemmArgs("b", N, N, 1, 1, 6, 1, 6, 1)
    # a column taken from a wider matrix: (k×1) with row stride 7 elements
    col = np.empty((6, 7))[:, 2:3]
    assert args(row, col, one) == GemmArgs("b", N, N, 1, 1, 6, 7, 6, 1)


@pytest.mark.parametrize("make", [
    lambda: (np.empty((5, 6))[:, ::2], np.empty((3, 4)), np.empty((5, 4))),  # a: no unit stride
    lambda: (np.empty((5, 3)), np.empty((3, 8))[:, ::2], np.empty((5, 4))),  # b: no unit stride
    lambda: (np.empty((5, 3)), np.empty((3, 4)), np.empty((5, 8))[:, ::2]),  # out: none
    lambda: (np.empty((5, 3))[::-1], np.empty((3, 4)), np.empty((5, 4))),    # negative stride
    lambda: (np.broadcast_to(np.empty(3), (5, 3)), np.empty((3, 4)), np.empty((5, 4))),  # 0
    # overlapping rows: ld (2) < columns (3), which cuBLAS refuses
    lambda: (np.lib.stride_tricks.as_strided(np.empty(20), (5, 3), (16, 8)),
             np.empty((3, 4)), np.empty((5, 4))),
    lambda: (np.empty((5, 3)), np.empty((4, 4)), np.empty((5, 4))),  # inner sizes differ
])
def test_layouts_cublas_cannot_express_are_refused(make):
    assert args(*make()) is None


def test_a_stride_that_is_not_a_whole_number_of_elements_is_refused():
    raw = np.empty(64, np.uint8)
    a = np.lib.stride_tricks.as_strided(raw.view(np.float32)[:1], (2, 3), (13, 4))
    assert matmul_args((2, 3), a.strides, (3, 2), (8, 4), (2, 2), (8, 4), 4) is None


# -- CupyOps(fakecupy).matmul equals numpy.matmul -------------------------------------------------

@pytest.fixture
def ops():
    return CupyOps(cp)


@pytest.fixture
def fake_gpu(monkeypatch):
    """``device="cuda"`` on the stand-in, a fresh CupyOps for the test (as test_gpu_path.py)."""
    monkeypatch.setattr(backends, "_gpu_cupy", lambda: cp)
    backends._instances.pop("cuda", None)
    yield
    backends._instances.pop("cuda", None)


def _device(a):
    """``a`` on the stand-in with the same layout: the same view of an uploaded copy of its
    base array."""
    base = a
    while base.base is not None:
        base = base.base
    offset = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    flat = cp.asarray(base)._a.reshape(-1).view(np.uint8)[offset:].view(a.dtype)
    return cp._wrap(np.lib.stride_tricks.as_strided(flat, a.shape, a.strides))


LAYOUTS = {
    "contiguous": lambda r, k, c, rng, d: (rng.standard_normal((r, k)).astype(d),
                                           rng.standard_normal((k, c)).astype(d)),
    "transposed views": lambda r, k, c, rng, d: (rng.standard_normal((k, r)).astype(d).T,
                                                 rng.standard_normal((c, k)).astype(d).T),
    "row-padded": lambda r, k, c, rng, d: (rng.standard_normal((r, k + 3)).astype(d)[:, :k],
                                           rng.standard_normal((k, c + 2)).astype(d)[:, 1:c + 1]),
    "not mappable": lambda r, k, c, rng, d: (rng.standard_normal((r, 2 * k)).astype(d)[:, ::2],
                                             rng.standard_normal((2 * k, c)).astype(d)[::2]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_layout", ["contiguous", "transposed", "strided"])
def test_matmul_equals_numpy(ops, layout, dtype, out_layout):
    rng = np.random.default_rng(0)
    a, b = LAYOUTS[layout](7, 5, 6, rng, dtype)
    da, db = _device(a), _device(b)
    out = {"contiguous": lambda: cp.zeros((7, 6), dtype),
           "transposed": lambda: cp.zeros((6, 7), dtype).T,
           "strided": lambda: cp.zeros((7, 12), dtype)[:, ::2]}[out_layout]()
    library = cp.cuda.cublas_library()
    before = library.calls["gemm"]
    assert ops.matmul(da, db, out) is out
    assert library.calls["gemm"] == before + 1
    expected = np.matmul(a, b)
    if dtype == np.float64:
        np.testing.assert_array_equal(out.get(), expected)
    else:
        np.testing.assert_allclose(out.get(), expected, rtol=1e-6, atol=1e-6)
    assert da.get().tolist() == a.tolist() and db.get().tolist() == b.tolist()  # unchanged


def test_products_of_other_dtypes_or_ranks_are_left_to_cupy(ops):
    host = np.arange(6, dtype=np.int64).reshape(2, 3)
    a, out = cp.asarray(host), cp.zeros((2, 2), np.int64)
    before = cp.cuda.cublas_library().calls["gemm"]
    ops.matmul(a, a.T, out)
    assert out.get().tolist() == (host @ host.T).tolist()
    assert cp.cuda.cublas_library().calls["gemm"] == before


def test_sum_squares_is_a_gemm_on_the_handle(ops):
    x = cp.asarray(np.arange(10, dtype=np.float64))
    out = cp.zeros(1)
    before = cp.cuda.cublas_library().calls["gemm"]
    ops.sum_squares(x, out)
    assert out.get().tolist() == [285.0]
    assert cp.cuda.cublas_library().calls["gemm"] == before + 1


def test_matmul_for_calls_the_handle(ops):
    assert ops.matmul_for(3) == ops.matmul


# -- capture ----------------------------------------------------------------------------------------

def test_a_captured_product_recomputes_on_replay(ops):
    rng = np.random.default_rng(1)
    a, b = cp.asarray(rng.standard_normal((4, 3))), cp.asarray(rng.standard_normal((5, 3)))
    out = cp.zeros((4, 5))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        ops.matmul(a, b.T, out)  # the warm-up binds the handle to this stream
        stream.begin_capture()
        ops.matmul(a, b.T, out)
        graph = stream.end_capture()
    assert len(graph) == 1
    host_a, host_b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    cp.copyto(a, cp.asarray(host_a))
    cp.copyto(b, cp.asarray(host_b))
    graph.launch(stream)
    np.testing.assert_array_equal(out.get(), host_a @ host_b.T)


def test_capture_without_binding_first_is_refused(ops):
    a, out = cp.ones((2, 2)), cp.zeros((2, 2))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(RuntimeError, match="eagerly on that stream first"):
            ops.matmul(a, a, out)
        stream.end_capture()


def test_cupys_own_products_are_refused_during_capture():
    a, out = cp.ones((2, 2)), cp.zeros((2, 2))
    stream = cp.cuda.Stream(non_blocking=True)
    for product in (lambda: cp.matmul(a, a, out=out), lambda: cp.dot(a, a, out=out),
                    lambda: a @ a):
        with stream:
            stream.begin_capture()
            with pytest.raises(cp.CaptureError, match="CuPy's cuBLAS calls cannot be captured"):
                product()
            with pytest.raises(cp.CaptureError):
                stream.end_capture()
    cp.matmul(a, a, out=out)  # outside capture it runs
    assert out.get().tolist() == [[2, 2], [2, 2]]


def _fit(model_kwargs=None, **fit_kwargs):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = nn.Sequential([nn.Dense(8, activation="relu", **(model_kwargs or {})),
                           nn.Dense(3)], device="cuda")
    model.compile(optimizer=nn.optimizers.Adam(clipnorm=1.0),
                  loss=nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, **fit_kwargs)
    return model


def test_a_graph_fit_goes_through_the_handle_and_replays(fake_gpu):
    cp.reset_counters()
    before = cp.cuda.cublas_library().calls["gemm"]
    _fit()
    assert cp.counters()["replays"] > 0
    assert cp.cuda.cublas_library().calls["gemm"] > before


def test_an_l1_l2_penalty_is_captured_through_the_handle(fake_gpu):
    """The penalty's Σw² goes through ops.sum_squares, not CuPy's vdot (refused in capture)."""
    assert "vdot" in cp.CUBLAS_REFUSED
    _fit({"kernel_regularizer": nn.regularizers.L1L2(1e-3, 1e-3)})


# -- the fake library checks what cuBLAS checks ----------------------------------------------------

def test_the_fake_library_returns_cublas_statuses():
    lib = cp.cuda.cublas_library()
    blas = cublas.CuBLAS(lib)
    c = cp.zeros((2, 2))
    unbound = cublas.CuBLAS(lib)
    with pytest.raises(RuntimeError, match="bound to stream None"):
        unbound.gemm(np.dtype(np.float64), N, N, 2, 2, 2, c.data.ptr, 2, c.data.ptr, 2,
                     c.data.ptr, 2)
    blas.bind(0, 0, 0)
    with pytest.raises(RuntimeError, match="CUBLAS_STATUS_INVALID_VALUE"):  # lda < m
        blas.gemm(np.dtype(np.float64), N, N, 2, 2, 2, c.data.ptr, 1, c.data.ptr, 2,
                  c.data.ptr, 2)
    with pytest.raises(RuntimeError, match="not inside one device allocation"):
        blas.gemm(np.dtype(np.float64), N, N, 2, 2, 2, c.data.ptr + 8, 2, c.data.ptr, 2,
                  c.data.ptr, 2)
    with pytest.raises(TypeError, match="c_int"):  # a Python int where C takes an int
        lib.cublasSgemm_v2(blas.handle, 0, ctypes.c_int(0), *[ctypes.c_int(1)] * 3,
                           ctypes.byref(ctypes.c_float(1)), ctypes.c_void_p(c.data.ptr),
                           ctypes.c_int(1), ctypes.c_void_p(c.data.ptr), ctypes.c_int(1),
                           ctypes.byref(ctypes.c_float(0)), ctypes.c_void_p(c.data.ptr),
                           ctypes.c_int(1))
    assert lib.cublasSetStream_v2(ctypes.c_void_p(12345), ctypes.c_void_p(0)) == 1


def test_set_stream_resets_the_workspace_so_capture_needs_it_again():
    lib = cp.cuda.cublas_library()
    blas = cublas.CuBLAS(lib)
    ws, a, c = cp.zeros(1024, np.uint8), cp.ones((2, 2)), cp.zeros((2, 2))
    stream = cp.cuda.Stream(non_blocking=True)
    blas.bind(stream.ptr, ws.data.ptr, ws.nbytes)
    lib.cublasSetStream_v2(blas.handle, ctypes.c_void_p(stream.ptr))  # workspace forgotten
    with stream:
        stream.begin_capture()
        with pytest.raises(cp.CaptureError, match="without cublasSetWorkspace_v2"):
            blas.gemm(np.dtype(np.float64), N, N, 2, 2, 2, a.data.ptr, 2, a.data.ptr, 2,
                      c.data.ptr, 2)
        with pytest.raises(cp.CaptureError):
            stream.end_capture()
