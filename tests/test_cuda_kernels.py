"""The CUDA kernels without a GPU: they compile (NVRTC, sm_90), every kernel has a NumPy twin
with its parameters, and CupyOps, launching the twins in place of the kernels, computes every
operation as the reference Ops does (the test_ops cases, float32 and float64, contiguous and
strided), reads nothing back from the device, and passes each kernel arguments of exactly its
declared C types."""

import ctypes
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

import cuda_twins
import devicelike
from neuralnp.backends import Ops
from neuralnp.backends.cupy_ops import OPTIONS, CupyOps, kernel_names, kernel_source
from test_ops import CASES, DTYPES, LAYOUTS, Maker

SOURCE = kernel_source()
DECLARED = cuda_twins.declarations(SOURCE)


# -- a CuPy module whose compiled kernels are the twins -------------------------------------------

class FakeCupy:
    """An array module (NumPy, or devicelike's stand-in for a device) with CuPy's RawModule,
    whose functions check each launch against the kernel's declaration and run its twin. It
    records the kernels launched, and how many modules were built."""

    def __init__(self, xp=np):
        self._xp = xp
        self.launched = []
        self.modules = 0

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def RawModule(self, code, options, name_expressions):  # noqa: N802 (CuPy's name)
        self.modules += 1
        assert tuple(options) == OPTIONS
        return _FakeModule(self, cuda_twins.declarations(code), set(name_expressions))


class _FakeModule:
    def __init__(self, fake, kernels, expressions):
        self._fake, self._kernels, self._expressions = fake, kernels, expressions

    def get_function(self, expression):
        assert expression in self._expressions, f"{expression} was not instantiated"
        name, ctype = expression[:-1].split("<")
        dtype = {"float": np.float32, "double": np.float64}[ctype]
        params = self._kernels[name]

        def launch(grid, block, args):
            assert len(grid) == len(block) == 1 and grid[0] >= 1 and 1 <= block[0] <= 1024
            assert all(type(v) is int for v in grid + block)
            cuda_twins.check_arguments(name, params, args, dtype)
            self._fake.launched.append(name)
            getattr(cuda_twins, name)(*args)
        return launch


# The operations CupyOps runs as kernels, with the kernel of each.
KERNELS = {name: name for name in ("bias_act", "act_grad", "softmax_xent", "softmax_xent_dense",
                                   "sigmoid_xent", "sgd", "adam", "im2col", "col2im", "max_pool",
                                   "max_pool_grad", "avg_pool", "avg_pool_grad",
                                   "dropout_mask")}
OVERRIDDEN = [*KERNELS, "keep_finite"]
PARAMS = [pytest.param(name, build, id=f"{name}-{case}")
          for name in OVERRIDDEN for case, build in CASES[name]]
TOLERANCE = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


# -- (a) NVRTC compiles every kernel --------------------------------------------------------------

def _nvrtc_library():
    """libnvrtc.so.12 from the pip wheel nvidia-cuda-nvrtc-cu12, or None."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / "libnvrtc.so.12"
    return ctypes.CDLL(str(path)) if path.is_file() else None


class Compiled:
    """One NVRTC compilation of kernels.cu for ``arch``, every template instantiated for float
    and double: the result code, the log, the lowered (mangled) names and the CUBIN's size."""

    def __init__(self, lib, source, arch):
        c_char_pp = ctypes.POINTER(ctypes.c_char_p)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                           ctypes.c_char_p, ctypes.c_int, c_char_pp, c_char_pp]
        lib.nvrtcAddNameExpression.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, c_char_pp]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcGetLoweredName.argtypes = [ctypes.c_void_p, ctypes.c_char_p, c_char_pp]
        lib.nvrtcGetCUBINSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]

        def call(function, *args):
            code = getattr(lib, function)(*args)
            assert code == 0, f"{function}: {lib.nvrtcGetErrorString(code).decode()}"

        self.expressions = [f"{k}<{t}>" for k in kernel_names(source)
                            for t in ("float", "double")]
        options = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in OPTIONS)]
        program = ctypes.c_void_p()
        call("nvrtcCreateProgram", ctypes.byref(program), source.encode(), b"kernels.cu", 0,
             None, None)
        try:
            for expression in self.expressions:  # before compiling: they instantiate templates
                call("nvrtcAddNameExpression", program, expression.encode())
            self.result = lib.nvrtcCompileProgram(program, len(options),
                                                  (ctypes.c_char_p * len(options))(*options))
            size = ctypes.c_size_t()
            call("nvrtcGetProgramLogSize", program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            call("nvrtcGetProgramLog", program, log)
            self.log = log.value.decode()
            self.lowered, self.cubin_size = {}, 0
            if self.result == 0:
                for expression in self.expressions:
                    name = ctypes.c_char_p()
                    call("nvrtcGetLoweredName", program, expression.encode(), ctypes.byref(name))
                    self.lowered[expression] = name.value.decode()
                call("nvrtcGetCUBINSize", program, ctypes.byref(size))
                self.cubin_size = size.value
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.fixture(scope="module")
def compiled():
    lib = _nvrtc_library()
    if lib is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12)")
    return Compiled(lib, SOURCE, "sm_90")


def test_every_kernel_compiles_for_sm_90_without_a_warning(compiled):
    assert compiled.result == 0, compiled.log
    assert "warning" not in compiled.log.lower(), compiled.log
    assert compiled.cubin_size > 0


def test_every_instantiation_has_a_lowered_name(compiled):
    assert sorted(compiled.lowered) == sorted(compiled.expressions)
    for expression, lowered in compiled.lowered.items():
        name, ctype = expression[:-1].split("<")
        # Itanium mangling: the name with its length, the template argument f or d
        assert f"{len(name)}{name}I{ctype[0]}E" in lowered, (expression, lowered)


# -- (b) the declarations and their twins ---------------------------------------------------------

def test_every_kernel_is_declared_on_one_parsable_line():
    assert list(DECLARED) == kernel_names(SOURCE)
    assert set(DECLARED) == set(KERNELS.values())
    for params in DECLARED.values():
        assert all(ctype in cuda_twins.PARAM_TYPES for ctype, _ in params)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_every_kernel_has_a_twin_with_its_parameters(name):
    twin = getattr(cuda_twins, name, None)
    assert callable(twin), f"tests/cuda_twins.py has no twin for {name}"
    declared = [param for _, param in DECLARED[name]]
    assert list(inspect.signature(twin).parameters) == declared


def test_declarations_refuse_a_split_line_and_an_unknown_type():
    assert cuda_twins.declarations(
        "template <typename T> __global__ void k(const T* x, long long  n) {\n}") == {
        "k": [("const T*", "x"), ("long long", "n")]}
    with pytest.raises(ValueError, match="one line"):
        cuda_twins.declarations("template <typename T>\n__global__ void k(T* x)")
    with pytest.raises(ValueError, match="size_t n"):
        cuda_twins.declarations("template <typename T> __global__ void k(T* x, size_t n)")


def test_a_launch_argument_of_another_c_type_is_refused():
    params = [("T*", "x"), ("T", "a"), ("int", "flag"), ("long long", "n")]
    x = np.zeros(3, np.float32)
    cuda_twins.check_arguments("k", params, (x, np.float32(1), np.int32(0), np.int64(3)),
                               np.float32)
    for bad, message in [((x, 1.0, np.int32(0), np.int64(3)), "float32, not float"),
                         ((x, np.float64(1), np.int32(0), np.int64(3)), "not float64"),
                         ((x, np.float32(1), 0, np.int64(3)), "int32, not int"),
                         ((x, np.float32(1), np.int32(0), np.int32(3)), "int64, not int32"),
                         ((x[::2], np.float32(1), np.int32(0), np.int64(3)), "contiguous"),
                         ((x.astype(np.float64), np.float32(1), np.int32(0), np.int64(3)),
                          "float32 array")]:
        with pytest.raises(TypeError, match=message):
            cuda_twins.check_arguments("k", params, bad, np.float32)


# -- (c) CupyOps on the twins computes what Ops computes ------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, build", PARAMS)
def test_every_kernel_operation_equals_the_reference_and_reads_nothing_back(name, build, dtype,
                                                                           layout):
    # on devicelike's arrays, which refuse every host read and host write inside no_reads()
    fake = FakeCupy(devicelike.xp)
    ops = CupyOps(fake)
    expected_args, args = build(Maker(dtype, layout)), build(Maker(dtype, layout))
    args = [a.view(devicelike.DeviceArray) if isinstance(a, np.ndarray) else a for a in args]
    expected = getattr(Ops(), name)(*expected_args)
    with devicelike.no_reads():
        got = getattr(ops, name)(*args)
    names = list(inspect.signature(getattr(Ops, name)).parameters)[1:]
    for arg, a, b in zip(names, args, expected_args):
        if arg == "check":  # finite exactly when the reference's is: the value is free
            assert np.isfinite(a).all() == np.isfinite(b).all()
        elif isinstance(a, np.ndarray) and arg != "tmp":  # a workspace: its contents are free
            np.testing.assert_allclose(a, b, **TOLERANCE[dtype], err_msg=arg)
    got, expected = (r if isinstance(r, tuple) else (r,) for r in (got, expected))
    for g, e in zip(got, expected):  # the same caller-owned outputs come back
        assert any(args[i] is g for i, a in enumerate(expected_args) if a is e)
    linear = name == "act_grad" and args[2] == "linear"  # f' = 1: no kernel to run
    if layout == "contiguous" and name in KERNELS and not linear:
        assert fake.launched == [KERNELS[name]]


def test_cupy_ops_overrides_only_base_methods_with_the_same_signature():
    for name, member in vars(CupyOps).items():
        if name.startswith("_"):
            continue
        assert hasattr(Ops, name), f"CupyOps.{name} is not an Ops operation"
        if callable(member):
            assert inspect.signature(member) == inspect.signature(getattr(Ops, name)), name
    assert set(OVERRIDDEN) <= set(vars(CupyOps))


def test_the_kernels_compile_once_on_first_use_and_not_at_all_without_it():
    fake = FakeCupy()
    ops = CupyOps(fake)
    assert fake.modules == 0 and not ops.reads_are_free and ops.name == "cuda"
    for _ in range(2):
        ops.bias_act(np.ones((2, 3), np.float32), None, "relu")
        ops.bias_act(np.ones((2, 3)), None, "tanh")
    assert fake.modules == 1 and fake.launched == ["bias_act"] * 4


def test_a_missing_cupy_says_how_to_install_it(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(ImportError, match=r'neuralnp\[gpu\]".*CUDA 12.*neuralnp\[gpu13\]'):
        CupyOps()


def _adam_args(m, amsgrad=True):
    return (m.normal(101), m.normal(101), m.normal(101), m.uniform(101),
            m.uniform(101) + 0.5 if amsgrad else None, 0.9, 0.999, 1e-8,
            m.one(1e-3 / (1 - 0.9 ** 3)), m.one((1 - 0.999 ** 3) ** 0.5), m.out(101))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_and_sgd_are_bit_identical_to_the_reference(amsgrad, dtype):
    # --fmad=false on the GPU; the twin rounds each product and sum as NumPy does
    ops = CupyOps(FakeCupy())
    args, expected = _adam_args(Maker(dtype, "contiguous"), amsgrad), _adam_args(
        Maker(dtype, "contiguous"), amsgrad)
    ops.adam(*args, np.empty(101, dtype), np.empty(1, dtype))
    Ops().adam(*expected)
    for a, b in zip(args[:5], expected[:5]):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    m = Maker(dtype, "contiguous")
    p, g = m.normal(101), m.normal(101)
    expected = p.copy()
    ops.sgd(p, g, m.one(0.1), m.out(101), m.out(101), m.out(1))
    Ops().sgd(expected, g, m.one(0.1), m.out(101))
    np.testing.assert_array_equal(p, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["nan", "huge", "finite"])
@pytest.mark.parametrize("gate_open", [True, False])
def test_keep_finite_takes_the_kernels_exact_count(kind, gate_open, dtype):
    # Weights near 1e19 square to inf in float32: the reference's hint would say "not finite",
    # the kernels' count says 0, and keep_finite needs no second pass to know it.
    fake = FakeCupy()
    ops = CupyOps(fake)
    p = np.full(7, 1e19 if kind == "huge" else 1.0, dtype)
    g = np.ones(7, dtype)
    if kind == "nan":
        g[[2, 5]] = np.nan
    old, previous, check = p.copy(), np.empty_like(p), np.empty(1, dtype)
    gate, bad = np.full(1, 1.0 if gate_open else 0.0), np.zeros(1)
    ops.sgd(p, g, np.full(1, 0.5, dtype), np.empty_like(p), previous, check)
    assert check[0] == (np.inf if kind == "nan" else 0.0)
    expected = [a.copy() for a in (p, previous, check, gate, bad)]
    Ops().keep_finite(*expected)
    ops.keep_finite(p, previous, check, gate, bad)
    for a, b in zip((p, previous, check, gate, bad), expected):
        np.testing.assert_array_equal(a, b)
    assert fake.launched == ["sgd"]  # no isfinite pass over p: the reference path was not taken
    refused = kind == "nan" and gate_open
    assert gate[0] == (0.0 if refused or not gate_open else 1.0)
    assert bad[0] == (2 if refused else 0)
    np.testing.assert_array_equal(p[[0, 1, 3]], old[[0, 1, 3]] if refused else old[[0, 1, 3]] - 0.5)


def test_keep_finite_counts_itself_when_the_weights_are_not_those_the_kernel_counted():
    ops = CupyOps(FakeCupy())
    p, other, check = np.ones(5, np.float32), np.ones(5, np.float32), np.empty(1, np.float32)
    ops.sgd(p, np.ones(5, np.float32), np.full(1, 0.5, np.float32), np.empty_like(p),
            np.empty_like(p), check)
    other[1] = np.inf
    gate, bad = np.ones(1), np.zeros(1)
    ops.keep_finite(other, None, check, gate, bad)  # another array: the reference counts it
    assert gate[0] == 0.0 and bad[0] == 1


@pytest.mark.parametrize("act", Ops.ACTIVATIONS)
def test_nan_propagates_through_bias_activation_and_its_gradient(act):
    ops = CupyOps(FakeCupy())
    z = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    z[1, 2] = np.nan
    ops.bias_act(z, np.array([0.5, -0.5, 0.0], dtype="float32"), act)
    assert np.isnan(z[1, 2]) and np.isfinite(np.delete(z.ravel(), 5)).all()
    y = np.zeros((4, 3), "float32") if act == "relu" else np.full((4, 3), 0.5, "float32")
    g = np.ones((4, 3), dtype="float32")
    g[2, 0] = np.nan
    bias_grad = np.empty(3, dtype="float32")
    dz = ops.act_grad(g, y, act, np.empty_like(g), bias_grad)
    assert np.isnan(dz[2, 0]) and np.isnan(bias_grad[0]) and np.isfinite(bias_grad[1:]).all()


def test_nan_in_the_logits_gives_a_nan_loss_and_a_bad_label_too():
    ops = CupyOps(FakeCupy())
    z = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    onehot = np.eye(4, dtype="float32")[[0, 1, 2]]
    for op, target in [(ops.softmax_xent, np.array([0, 1, 2])),
                       (ops.softmax_xent_dense, onehot), (ops.sigmoid_xent, onehot)]:
        loss = np.zeros(1)
        op(z, target, np.empty_like(z), np.empty_like(z), loss)
        assert np.isfinite(loss[0])
        bad_z = z.copy()
        bad_z[1, 2] = np.nan
        op(bad_z, target, np.empty_like(z), np.empty_like(z), loss)
        assert np.isnan(loss[0])
    loss = np.zeros(1)
    ops.softmax_xent(z, np.array([0, 4, 2]), np.empty_like(z), np.empty_like(z), loss)
    assert np.isnan(loss[0])  # a label outside the classes: the gate closes on it


def test_an_empty_batch_runs_and_gives_a_nan_mean_loss():
    # a distributed fit's empty shard: no rows, nothing to write, the mean of nothing
    # (the reference's dense losses raise ZeroDivisionError at 1.0 / n here)
    fake = FakeCupy()
    ops = CupyOps(fake)
    z, y = np.empty((0, 3), np.float32), np.empty((0, 3), np.float32)
    for name, target in [("softmax_xent", np.empty(0, np.int64)), ("softmax_xent_dense", y),
                         ("sigmoid_xent", y)]:
        loss = np.zeros(1)
        with np.errstate(invalid="ignore"):  # 0 / 0, as a GPU divides it, without a warning
            getattr(ops, name)(z, target, np.empty_like(z), np.empty_like(z), loss)
        assert np.isnan(loss[0])
    ops.bias_act(z, np.zeros(3, np.float32), "relu")
    bias_grad = np.ones(3, np.float32)
    ops.act_grad(z, z, "tanh", np.empty_like(z), bias_grad)
    assert not bias_grad.any()
    assert fake.launched == ["softmax_xent", "softmax_xent_dense", "sigmoid_xent", "act_grad"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_and_keeps_tiny_values_precise(dtype):
    ops = CupyOps(FakeCupy())
    z = np.array([[-1000.0, -80.0, -30.0, 0.0, 30.0, 1000.0, np.nan]], dtype=dtype)
    out = ops.bias_act(z.copy(), None, "sigmoid")
    exact = 1.0 / (1.0 + np.exp(-z[0, 1:-2].astype(np.longdouble)))
    assert out[0, 0] == 0.0 and out[0, -2] == 1.0 and np.isnan(out[0, -1])
    np.testing.assert_allclose(out[0, 1:-2], exact.astype(dtype), rtol=4 * np.finfo(dtype).eps)


def test_crossentropy_stays_finite_when_a_probability_underflows():
    ops = CupyOps(FakeCupy())
    z = np.array([[0.0, 200.0], [300.0, 0.0]], dtype="float32")  # p(label) ≈ e^-200, e^-300
    for op, target in [(ops.softmax_xent, np.array([0, 1])),
                       (ops.softmax_xent_dense, np.eye(2, dtype="float32"))]:
        loss = np.empty(1)
        op(z, target, np.empty_like(z), np.empty_like(z), loss)
        assert loss[0] == pytest.approx(250.0, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_keeps_the_first_maximum_lets_nan_win_and_fills_a_small_winner_type(dtype):
    fake = FakeCupy()
    ops = CupyOps(fake)
    x = np.zeros((1, 2, 2, 2), dtype=dtype)
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 1.0  # a tie: entry 1 comes first
    x[0, 1, 1, 1] = np.nan
    y, win = np.empty((1, 1, 1, 2), dtype), np.empty((1, 1, 1, 2), np.uint8)
    ops.max_pool(x, y, win, (2, 2), (2, 2))
    assert y[0, 0, 0, 0] == 1.0 and win[0, 0, 0, 0] == 1
    assert np.isnan(y[0, 0, 0, 1]) and win[0, 0, 0, 1] == 3
    g = np.array([np.inf, 2.0], dtype=dtype).reshape(1, 1, 1, 2)
    dx = ops.max_pool_grad(g, win, np.empty_like(x), (2, 2), (2, 2))
    assert dx[0, 0, 1, 0] == np.inf and np.count_nonzero(dx) == 2 and not np.isnan(dx).any()
    assert fake.launched == ["max_pool", "max_pool_grad"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_average_pooling_divides_each_window_by_its_own_count(dtype):
    # "same" padding: border windows hold fewer real pixels (the layer's (oh, ow, 1) counts)
    fake = FakeCupy()
    ops = CupyOps(fake)
    m = Maker(dtype, "contiguous")
    padded, g = m.normal(2, 6, 6, 3), m.normal(2, 3, 3, 3)
    count = (m.rng.integers(1, 5, (3, 3, 1))).astype(dtype)
    for op, args in [("avg_pool", (padded, m.out(2, 3, 3, 3), (2, 2), (2, 2), count)),
                     ("avg_pool_grad", (g, m.out(2, 6, 6, 3), (2, 2), (2, 2), count))]:
        expected = getattr(Ops(), op)(*[a.copy() if isinstance(a, np.ndarray) else a
                                        for a in args])
        np.testing.assert_allclose(getattr(ops, op)(*args), expected, **TOLERANCE[dtype])
    assert fake.launched == ["avg_pool", "avg_pool_grad"]


def test_a_training_step_of_kernels_reads_nothing_back_from_the_device():
    # devicelike refuses every host read and every per-step host write inside no_reads()
    xp = devicelike.xp
    ops = CupyOps(FakeCupy(xp))
    m = Maker("float32", "contiguous")
    up = ops.to_device
    z, b, labels = up(m.normal(8, 4)), up(m.normal(4)), up(m.rng.integers(0, 4, 8))
    probs, grad, loss = up(m.out(8, 4)), up(m.out(8, 4)), up(np.zeros(1))
    p, g, mom, v = up(m.normal(30)), up(m.normal(30)), up(m.normal(30)), up(m.uniform(30))
    numbers = [up(m.one(1e-3)), up(m.one(0.5))]
    previous, check, gate, bad = up(m.out(30)), up(m.out(1)), up(np.ones(1)), up(np.zeros(1))
    images = up(m.normal(2, 5, 5, 3))
    with devicelike.no_reads():
        ops.bias_act(z, b, "relu")
        ops.softmax_xent(z, labels, probs, grad, loss)
        ops.act_grad(grad, z, "relu", up(m.out(8, 4)), up(m.out(4)))
        ops.finite_gate(gate, loss)
        ops.adam(p, g, mom, v, None, 0.9, 0.999, 1e-7, *numbers, up(m.out(30)), previous, check)
        ops.keep_finite(p, previous, check, gate, bad)
        y, win = ops.max_pool(images, up(m.out(2, 2, 2, 3)), up(m.out(2, 2, 2, 3, dtype=np.uint8)),
                              (2, 2), (2, 2))
        ops.max_pool_grad(y, win, up(m.out(2, 5, 5, 3)), (2, 2), (2, 2))
    assert np.isfinite(devicelike.to_host(loss)).all() and devicelike.to_host(gate)[0] == 1.0
