"""tests/fakecupy.py keeps each promise, and each of its checks fails when it should."""

import copy
import re
import sys
import types

import numpy as np
import pytest

import fakecupy as cp
from fakecupy import CaptureError


@pytest.fixture(autouse=True)
def clean_state():
    cp.reset_counters()
    previous = cp.set_twins(None)
    yield
    if cp._capture is not None:  # a failed test must not leave a capture behind
        try:
            cp._capture.end_capture()
        except CaptureError:
            pass
    cp.set_twins(previous)


@pytest.fixture
def stream():
    with cp.cuda.Stream(non_blocking=True) as s:
        yield s


def capture(stream, work):
    stream.begin_capture()
    try:
        work()
    finally:
        graph = stream.end_capture()
    return graph


def host(a):
    return a.get()


# -- arrays --------------------------------------------------------------------------------------

def test_implicit_conversion_is_refused_as_cupy_does():
    a = cp.zeros(3, dtype=cp.float32)
    for convert in (np.asarray, np.array, lambda x: np.float32(1) + np.asarray(x)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert(a)
    assert isinstance(a.get(), np.ndarray) and not isinstance(a, np.ndarray)


@pytest.mark.parametrize("call", [
    lambda a, h: cp.add(a, h), lambda a, h: cp.exp(h), lambda a, h: cp.matmul(h, a.reshape(3, 1)),
    lambda a, h: cp.dot(a, h), lambda a, h: cp.take(a, h), lambda a, h: cp.copyto(a, h),
    lambda a, h: cp.where(a > 0, h, a), lambda a, h: cp.concatenate([a, h]),
    lambda a, h: cp.sum(h), lambda a, h: a + h, lambda a, h: h + a, lambda a, h: a.__iadd__(h),
    lambda a, h: cp.multiply(a, 2, out=h), lambda a, h: cp.sum(a, out=h[0:1].reshape(())),
])
def test_a_numpy_array_argument_is_refused(call):
    a, h = cp.asarray(np.arange(3.0)), np.arange(3)
    with pytest.raises(TypeError, match="numpy|cupy array"):
        call(a, h)


def test_numpy_functions_dispatch_to_the_stand_in():
    a = cp.asarray(np.array([0.0, 1.0, 2.0]))
    e, s, m = np.exp(a), np.sum(a), np.maximum(a, 1.0)
    assert all(isinstance(r, cp.ndarray) for r in (e, s, m)) and s.shape == ()
    np.testing.assert_allclose(host(e), np.exp([0.0, 1.0, 2.0]))
    out = cp.empty(3)
    assert np.add(a, 1.0, out=out) is out and host(out).tolist() == [1.0, 2.0, 3.0]
    assert cp.get_array_module(a) is cp and cp.get_array_module(np.zeros(1)) is np


def test_views_share_memory_and_elements_are_0d_views():
    flat = cp.zeros(6, dtype=cp.float32)
    w = flat[2:6].reshape(2, 2)
    w += 1
    w.T[0] *= 3  # column 0 of w
    e = flat[0]
    assert isinstance(e, cp.ndarray) and e.shape == ()
    e += 7
    assert host(flat).tolist() == [7, 0, 3, 1, 3, 1]
    assert flat.view(np.int32)[0].dtype == np.int32 and flat[2:].data.ptr == flat.data.ptr + 8
    assert [type(x) for x in flat[:2]] == [cp.ndarray, cp.ndarray] and len(flat) == 6


def test_in_place_operators_keep_the_object_and_buffer():
    a = cp.asarray(np.array([4, 8, 12], dtype=np.int64))
    ident, ptr = a, a.data.ptr
    for op in ("__iadd__", "__isub__", "__imul__", "__ifloordiv__", "__imod__", "__ipow__",
               "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__"):
        assert getattr(a, op)(1) is ident
    f = cp.ones(3)
    assert f.__itruediv__(2) is f
    assert a is ident and a.data.ptr == ptr


def test_out_is_honoured_and_returned():
    x, y = cp.asarray(np.arange(6.0).reshape(2, 3)), cp.empty((2, 3))
    assert cp.multiply(x, 2.0, out=y) is y and host(y).tolist() == [[0, 2, 4], [6, 8, 10]]
    s = cp.empty(3)
    assert cp.sum(x, axis=0, out=s) is s and host(s).tolist() == [3, 5, 7]
    rows, o = cp.asarray(np.array([1, 0])), cp.empty((2, 3))
    assert cp.take(x, rows, axis=0, out=o) is o and host(o)[0].tolist() == [3, 4, 5]
    c = cp.empty((2, 2))
    assert cp.matmul(x, x.T, out=c) is c
    assert host(c).tolist() == (host(x) @ host(x).T).tolist()


def test_host_reads_are_counted_each_time():
    a = cp.asarray(np.array(3))
    before = cp.counters()["reads"]
    float(a), int(a), bool(a), a.item(), a.tolist(), a.get(), range(10)[a], 3 in a, repr(a)
    assert cp.counters()["reads"] - before == 9
    cp.ones(1)[cp.asarray(np.array([True]))]
    assert cp.counters()["reads"] - before == 10  # a mask's result size is a read


def test_host_writes_are_counted_device_copies_are_not():
    a = cp.zeros(3)
    before = cp.counters()["writes"]
    a[0] = 1.5
    a[1:] = np.ones(2)
    cp.asarray(np.ones(3))
    a[...] = cp.ones(3)  # device to device
    a.fill(2.0)          # a kernel with the number as an argument
    assert cp.counters()["writes"] - before == 3


def test_copies_and_pickles_stay_strict():
    a = cp.ones(2)
    b = copy.deepcopy(a)
    b += 1
    assert isinstance(b, cp.ndarray) and host(a).tolist() == [1, 1]
    with pytest.raises(TypeError):
        hash(a)


# -- capture -------------------------------------------------------------------------------------

@pytest.mark.parametrize("read", [
    ("get()", lambda a: a.get()),
    ("float()", lambda a: float(a[0])),
    ("int()", lambda a: int(a[0])),
    ("bool()", bool),
    ("item()", lambda a: a.item()),
    ("tolist()", lambda a: a.tolist()),
    ("__index__", lambda a: [0][a[0]]),
    ("cupy.asarray", lambda a: cp.asarray(np.ones(1))),
    ("a[...] = float", lambda a: a.__setitem__(0, 1.0)),
    ("synchronize", lambda a: cp.cuda.get_current_stream().synchronize()),
], ids=lambda r: r[0])
def test_host_reads_and_writes_are_refused_during_capture(stream, read):
    name, do = read
    a = cp.zeros(1, dtype=cp.int64)
    stream.begin_capture()
    with pytest.raises(CaptureError, match=re.escape(name)):
        do(a)
    with pytest.raises(CaptureError, match="capture invalidated"):
        stream.end_capture()
    assert not stream.is_capturing()
    do(a) if name != "synchronize" else None  # and each is allowed outside a capture


@pytest.mark.parametrize("alloc", [
    lambda x, i: x + 1, lambda x, i: cp.zeros(3), lambda x, i: x.copy(), lambda x, i: x[i],
    lambda x, i: cp.sum(x), lambda x, i: x.astype(cp.float64), lambda x, i: cp.exp(x),
    lambda x, i: x.reshape(3, 2).T.reshape(6),
])
def test_allocation_is_refused_during_capture(stream, alloc):
    x, i = cp.ones(6, dtype=cp.float32), cp.asarray(np.array([0, 1]))
    stream.begin_capture()
    with pytest.raises(CaptureError, match="allocation during capture; allocate workspaces before"):
        alloc(x, i)
    with pytest.raises(CaptureError):
        stream.end_capture()


def test_views_are_allowed_during_capture(stream):
    x = cp.ones(6, dtype=cp.float32)
    graph = capture(stream, lambda: (x[1:], x.reshape(2, 3).T, x[0], x.view(cp.int32), list(x[:2])))
    assert len(graph) == 0


def test_a_captured_sequence_runs_only_when_launched_and_sees_new_inputs(stream):
    x, y = cp.asarray(np.array([1.0, 2.0, 3.0])), cp.zeros(3)

    def step():
        cp.multiply(x, 2, out=y)
        y.__iadd__(1)  # y += 1 (a name bound outside the closure)

    graph = capture(stream, step)
    assert host(y).tolist() == [0, 0, 0]  # recorded, not run
    assert len(graph) == 2 and cp.counters()["recorded"] == 2
    graph.launch()
    assert host(y).tolist() == [3, 5, 7]
    cp.copyto(x, cp.asarray(np.array([10.0, 20.0, 30.0])))
    graph.launch()
    assert host(y).tolist() == [21, 41, 61]
    assert cp.counters()["replays"] == 2


def test_capture_checks_shapes_and_dtypes_when_work_is_issued(stream):
    a, b = cp.zeros(3), cp.zeros(4)
    stream.begin_capture()
    with pytest.raises(ValueError):
        cp.add(a, b, out=a)  # shapes do not broadcast: caught now, not at replay
    with pytest.raises(CaptureError, match="invalidated"):
        stream.end_capture()
    assert host(a).tolist() == [0, 0, 0]


def test_work_on_another_stream_during_capture_is_refused():
    s, y = cp.cuda.Stream(non_blocking=True), cp.zeros(2)
    s.begin_capture()
    with pytest.raises(CaptureError, match="inside `with stream:`"):
        y += 1  # the current stream is still the null stream
    with pytest.raises(CaptureError):
        s.end_capture()
    with pytest.raises(RuntimeError, match="null stream cannot capture"):
        cp.cuda.Stream.null.begin_capture()


# -- kernels -------------------------------------------------------------------------------------

SOURCE = """
template <typename T> __global__ void axpy(T* y, const T* x, T a, int n)
{ int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] += a * x[i]; }
extern "C" __global__ void scale_rows(double* out, const long long* rows, long long n, float s)
{ }
"""


def twins():
    def axpy(y, x, a, n):
        y[:n] += a * x[:n]

    def scale_rows(out, rows, n, s):
        out[:n] = rows[:n] * s
    return types.SimpleNamespace(__name__="tiny_twins", axpy=axpy, scale_rows=scale_rows)


@pytest.fixture
def module():
    return cp.RawModule(code=SOURCE, options=("-std=c++17",), name_expressions=["axpy<float>"],
                        twins=twins())


def test_a_launch_checks_its_arguments_and_runs_the_twin(module):
    k = module.get_function("axpy<float>")
    y, x = cp.ones(4, dtype=cp.float32), cp.asarray(np.arange(4, dtype=np.float32))
    k((1,), (128,), (y, x, np.float32(2), np.int32(3)))
    assert host(y).tolist() == [1, 3, 5, 1] and cp.counters()["launches"] == 1
    out, rows = cp.zeros(2), cp.asarray(np.array([3, 4], dtype=np.int64))
    module.get_function("scale_rows")(2, 32, (out, rows, np.int64(2), np.float32(0.5)))
    assert host(out).tolist() == [1.5, 2.0]


def f32(*shape):
    return cp.ones(shape, dtype=cp.float32)


def axpy_args():
    return [f32(4), f32(4), np.float32(1), np.int32(4)]


def scale_rows_args():
    return [cp.zeros(2), cp.zeros(2, dtype=cp.int64), np.int64(2), np.float32(1)]


@pytest.mark.parametrize("name, args, i, bad, message", [
    ("scale_rows", scale_rows_args, 3, lambda: 0.5, "`float s`.*Python float.*as a double"),
    ("scale_rows", scale_rows_args, 3, lambda: np.float64(0.5), "`float s`.*numpy.float32"),
    ("scale_rows", scale_rows_args, 2, lambda: 2, "`long long n`.*numpy.int64"),
    ("axpy<float>", axpy_args, 0, lambda: cp.zeros(4, dtype=cp.int32), "`T\\* y`.*float32"),
    ("axpy<float>", axpy_args, 1, lambda: f32(8)[::2], "`const T\\* x`.*non-contiguous"),
    ("axpy<float>", axpy_args, 1, lambda: np.ones(4, np.float32), "`const T\\* x`.*numpy.ndarray"),
    ("axpy<float>", axpy_args, 2, lambda: np.float64(1), "`T a`.*numpy.float32"),
    ("axpy<float>", axpy_args, 3, lambda: np.int64(3), "`int n`.*numpy.int32"),
], ids=["python float for float", "float64 for float", "python int for long long",
        "int32 array for T*", "non-contiguous", "host array", "float64 for T", "int64 for int"])
def test_each_wrong_argument_is_named(module, name, args, i, bad, message):
    values = args()
    module.get_function(name)((1,), (32,), tuple(values))  # the right ones pass
    values[i] = bad()
    with pytest.raises(TypeError, match=message):
        module.get_function(name)((1,), (32,), tuple(values))
    assert cp.counters()["launches"] == 1


def test_wrong_count_grid_and_names_are_refused(module):
    k = module.get_function("axpy<float>")
    with pytest.raises(TypeError, match="axpy<float> takes 4 arguments .*T\\* y.*got 3"):
        k((1,), (32,), (f32(1), f32(1), np.float32(1)))
    with pytest.raises(ValueError, match="block .*1024"):
        k((1,), (2048,), ())
    for name, message in (("axpy", "a template"), ("axpy<double>", "name_expressions"),
                          ("nope", "no such kernel"), ("scale_rows<float>", "not a template")):
        with pytest.raises(RuntimeError, match=message):
            module.get_function(name)
    with pytest.raises(ValueError, match="one line"):
        cp.RawModule(code="template <typename T>\n__global__ void f(T* x)")
    with pytest.raises(ValueError, match="cannot check parameter `short k`"):
        cp.RawModule(code='extern "C" __global__ void f(short k)')
    with pytest.raises(TypeError, match="tuple of str"):
        cp.RawModule(code=SOURCE, options=["-O3"])


def test_a_twin_cannot_write_a_const_input():
    def axpy(y, x, a, n):
        x[:] = 0
    m = cp.RawModule(code=SOURCE, name_expressions=["axpy<float>"],
                     twins=types.SimpleNamespace(__name__="bad", axpy=axpy))
    with pytest.raises(ValueError, match="read-only"):
        m.get_function("axpy<float>")(1, 32, tuple(axpy_args()))


def test_a_recorded_launch_replays(module, stream):
    k = module.get_function("axpy<float>")
    y, x = cp.zeros(3, dtype=cp.float32), cp.ones(3, dtype=cp.float32)
    graph = capture(stream, lambda: k((1,), (32,), (y, x, np.float32(2), np.int32(3))))
    assert host(y).tolist() == [0, 0, 0] and cp.counters()["launches"] == 1
    graph.launch()
    graph.launch()
    assert host(y).tolist() == [4, 4, 4] and cp.counters()["launches"] == 1


def test_twins_come_from_cuda_twins_or_set_twins(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda_twins", twins())
    m = cp.RawModule(code=SOURCE, name_expressions=["axpy<float>"])
    assert m.get_function("axpy<float>")._twin.__name__ == "axpy"
    cp.set_twins(types.SimpleNamespace(__name__="empty"))
    with pytest.raises(RuntimeError, match="no NumPy twin in empty"):
        m.get_function("axpy<float>")
    monkeypatch.setitem(sys.modules, "cuda_twins", None)  # import fails
    cp.set_twins(None)
    with pytest.raises(RuntimeError, match="set_twins"):
        m.get_function("axpy<float>")


# -- the rest of the surface ---------------------------------------------------------------------

def test_counters_reset():
    cp.zeros(2)
    assert cp.counters()["allocations"] == 1
    cp.reset_counters()
    assert set(cp.counters().values()) == {0}


def test_device_pool_dtypes_and_what_is_not_provided():
    assert cp.cuda.runtime.getDeviceCount() == 1
    with cp.cuda.Device(0):
        pool = cp.get_default_memory_pool()
        used = pool.used_bytes()
        a = cp.empty(1000, dtype=cp.float64)
        assert pool.used_bytes() == used + 8000
        del a
        assert pool.used_bytes() == used
    assert cp.float32 is np.float32 and cp.newaxis is None and cp.finfo(cp.float32).eps > 0
    assert cp.inf == np.inf and cp.intp is np.intp and cp.dtype("float32") == np.float32
    for name in ("ElementwiseKernel", "random", "errstate", "linalg"):
        assert not hasattr(cp, name)
    assert cp.cuda.get_current_stream() is cp.cuda.Stream.null
