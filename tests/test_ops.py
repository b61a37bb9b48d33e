"""Every operation of every Ops class against the reference ``Ops`` (float32 and float64,
contiguous and strided arrays), the subclasses' conformance to the base interface, and the
numerical promises of the compiled kernels (bit-identical updates, NaN kept, no overflow)."""

import inspect
import warnings

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import backends
from neuralnp.backends import NumpyOps, Ops, get_ops

SUBCLASSES = [NumpyOps]
if backends.numba_available():
    from neuralnp.backends.numba_ops import NumbaOps
    SUBCLASSES.append(NumbaOps)
needs_numba = pytest.mark.skipif(not backends.numba_available(),
                                 reason="Numba is not installed (pip install 'neuralnp[fast]')")
OPS = [pytest.param(get_ops(cls.name), id=cls.name) for cls in SUBCLASSES]
DTYPES = ["float32", "float64"]
LAYOUTS = ["contiguous", "strided"]


class Maker:
    """Arrays for one case, the same on every call with the same seed; ``strided`` inputs are
    every other column (entry, for 1-D) of a larger array."""

    def __init__(self, dtype, layout, seed=0):
        self.dtype, self.strided = np.dtype(dtype), layout == "strided"
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape, scale=1.0, strided=True):
        wide = shape[:-1] + (shape[-1] * 2,) if self.strided and strided else shape
        a = (self.rng.normal(size=wide) * scale).astype(self.dtype)
        return a[..., ::2] if wide != shape else a

    def uniform(self, *shape):
        return self.rng.random(shape).astype(self.dtype)

    def out(self, *shape, dtype=None):
        """An output the operation must overwrite: NaN (255 for integers) until it does."""
        dtype = np.dtype(dtype or self.dtype)
        return np.full(shape, np.nan if dtype.kind == "f" else 255, dtype)

    def one(self, value):
        return np.full(1, value, self.dtype)


def _images(m, channels):
    return m.normal(3, 9, 8, channels)


# name -> list of (case id, builder(maker) -> args)
CASES = {
    "matmul": [("2d", lambda m: (m.normal(7, 5), m.normal(5, 3), m.out(7, 3))),
               ("transposed", lambda m: (m.normal(7, 5), m.normal(3, 5).T, m.out(7, 3))),
               ("inner-1", lambda m: (m.normal(7, 1, strided=False), m.normal(3, 1).T,
                                      m.out(7, 3)))],
    "sigmoid": [("wide-range", lambda m: (m.normal(6, 5, scale=30), m.out(6, 5)))],
    "softmax": [("last", lambda m: (m.normal(6, 5, scale=5), m.out(6, 5))),
                ("axis0", lambda m: (m.normal(6, 5, scale=5), m.out(6, 5), 0))],
    "log_softmax": [("last", lambda m: (m.normal(6, 5, scale=50), m.out(6, 5))),
                    ("axis0", lambda m: (m.normal(6, 5, scale=5), m.out(6, 5), 0))],
    "bias_act": [(f"{act}-{bias}", lambda m, act=act, bias=bias: (
        m.normal(7, 5, scale=3), m.normal(5) if bias else None, act))
        for act in Ops.ACTIVATIONS for bias in (True, False)],
    "act_grad": [(f"{act}-{bias}", lambda m, act=act, bias=bias: (
        m.normal(7, 5), m.uniform(7, 5) - (0.5 if act == "relu" else 0), act, m.out(7, 5),
        m.out(5) if bias else None))
        for act in Ops.ACTIVATIONS for bias in (True, False)],
    "softmax_xent": [("sparse", lambda m: (
        m.normal(9, 4, scale=4), m.rng.integers(0, 4, 9), m.out(9, 4), m.out(9, 4),
        m.out(1, dtype="float64")))],
    "softmax_xent_dense": [("soft", lambda m: (
        m.normal(9, 4, scale=4), m.uniform(9, 4), m.out(9, 4), m.out(9, 4),
        m.out(1, dtype="float64")))],
    "sigmoid_xent": [(f"{k}-columns", lambda m, k=k: (
        m.normal(9, k, scale=8), m.uniform(9, k), m.out(9, k), m.out(9, k),
        m.out(1, dtype="float64"))) for k in (1, 3)],
    "sum_squares": [("flat", lambda m: (m.normal(101), m.out(1)))],
    "sgd": [("plain", lambda m: (m.normal(101), m.normal(101), m.one(0.1), m.out(101))),
            ("guarded", lambda m: (m.normal(101), m.normal(101), m.one(0.1), m.out(101),
                                   m.out(101), m.out(1)))],
    "adam_moments": [(f"amsgrad-{a}", lambda m, a=a: (
        m.normal(101), m.normal(101), m.uniform(101), m.uniform(101) + 0.5 if a else None,
        0.9, 0.999, m.out(101))) for a in (False, True)],
    "adam": [(f"amsgrad-{a}-guarded-{g}", lambda m, a=a, g=g: (
        m.normal(101), m.normal(101), m.normal(101), m.uniform(101),
        m.uniform(101) + 0.5 if a else None, 0.9, 0.999, 1e-8,
        m.one(1e-3 / (1 - 0.9 ** 3)), m.one((1 - 0.999 ** 3) ** 0.5), m.out(101),
        *((m.out(101), m.out(1)) if g else ()))) for a in (False, True) for g in (False, True)],
    "finite_gate": [(f"{state}-{value}", lambda m, state=state, value=value: (
        np.full(1, state), np.full(1, value))) for state in (1.0, 0.0)
        for value in (0.25, np.nan, np.inf)],
    "gated": [(f"{state}-{'closes' if closes else 'keeps'}", lambda m, state=state, closes=closes:
               _gated_case(m, state, closes)) for state in (1.0, 0.0) for closes in (False, True)],
    "keep_finite": [(f"{case}-{'previous' if keep else 'none'}-{state}",
                     lambda m, case=case, keep=keep, state=state: _keep_finite_case(
                         m, case, keep, state))
                    for case in ("finite", "nan", "huge") for keep in (True, False)
                    for state in (1.0, 0.0)],
    "dropout_mask": [(f"rate-{rate}", lambda m, rate=rate: (
        m.out(13, 7), np.array([m.rng.integers(2 ** 62), 3], np.int64), rate))
        for rate in (0.0, 0.3, 0.9)],
    "take_rows": [("2d", lambda m: (m.normal(10, 4), m.rng.permutation(10)[:6], m.out(6, 4))),
                  ("1d", lambda m: (m.normal(10), m.rng.permutation(10)[:6], m.out(6)))],
    "im2col": [(f"c{c}-s{s}-d{d}", lambda m, c=c, s=s, d=d: (
        _images(m, c), m.out(3, *_out_hw((9, 8), (2, 3), s, d), 2, 3, c), s, d))
        for c in (3, 10) for s, d in [((1, 1), (1, 1)), ((2, 1), (1, 2))]],
    "col2im": [(f"c{c}-s{s}-d{d}", lambda m, c=c, s=s, d=d: (
        m.normal(3, *_out_hw((9, 8), (2, 3), s, d), 2, 3, c), m.out(3, 9, 8, c), s, d))
        for c in (3, 10) for s, d in [((1, 1), (1, 1)), ((2, 1), (1, 2))]],
    "max_pool": [(f"p{p}-s{s}", lambda m, p=p, s=s: (
        _images(m, 5), m.out(3, *_out_hw((9, 8), p, s, (1, 1)), 5),
        m.out(3, *_out_hw((9, 8), p, s, (1, 1)), 5, dtype=np.uint8), s, p))
        for p, s in [((2, 2), (2, 2)), ((3, 2), (1, 2))]],
    "max_pool_grad": [(f"p{p}-s{s}", lambda m, p=p, s=s: (
        m.normal(3, *_out_hw((9, 8), p, s, (1, 1)), 5),
        m.rng.integers(0, p[0] * p[1], (3, *_out_hw((9, 8), p, s, (1, 1)), 5)).astype(np.uint8),
        m.out(3, 9, 8, 5), s, p)) for p, s in [((2, 2), (2, 2)), ((3, 2), (1, 2))]],
    "avg_pool": [(f"p{p}-s{s}", lambda m, p=p, s=s: (
        _images(m, 5), m.out(3, *_out_hw((9, 8), p, s, (1, 1)), 5), s, p, 6.0))
        for p, s in [((2, 3), (2, 3)), ((3, 2), (1, 2))]],
    "avg_pool_grad": [(f"p{p}-s{s}", lambda m, p=p, s=s: (
        m.normal(3, *_out_hw((9, 8), p, s, (1, 1)), 5), m.out(3, 9, 8, 5), s, p, 6.0))
        for p, s in [((2, 3), (2, 3)), ((3, 2), (1, 2))]],
}


def _gated_case(m, state, closes):
    """A gate and an update of two arrays (closing the gate itself when ``closes``)."""
    gate, a, b = np.full(1, state), m.normal(11), m.normal(3, 4)

    def update():
        a[...] = 7.0
        b[1] += 1.0
        if closes:
            gate[0] = 0.0
    return gate, update, a, b


def _keep_finite_case(m, case, keep, state):
    """Weights after an update: all finite, one NaN, or all finite but so large (1e19) that the
    sum of squares overflows float32 (the hint says inf, the weights are fine)."""
    p = m.normal(101)
    if case == "nan":
        p[3] = np.nan
    if case == "huge":
        p[:] = 1e19
    check = np.array([np.sum(p.astype(np.float64) ** 2)], p.dtype)
    return p, m.normal(101) if keep else None, check, np.full(1, state), np.zeros(1)


def _out_hw(size, kernel, strides, dilation):
    return tuple((n - (k - 1) * d - 1) // s + 1
                 for n, k, s, d in zip(size, kernel, strides, dilation))


PARAMS = [pytest.param(name, build, id=f"{name}-{case}")
          for name, cases in CASES.items() for case, build in cases]


# Methods that return an operation or an array rather than run one, tested on their own below.
FACTORIES = {"matmul_for", "to_device", "to_host"}


def test_every_operation_of_the_base_class_has_cases():
    public = {name for name, member in vars(Ops).items()
              if callable(member) and not name.startswith("_")}
    assert public == set(CASES) | FACTORIES


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner", [1, 5])
def test_matmul_for_a_known_inner_dimension_equals_matmul(inner, dtype, ops):
    m = Maker(dtype, "contiguous")
    a, b = m.normal(7, inner), m.normal(inner, 3)
    expected = Ops().matmul(a, b, m.out(7, 3))
    out = m.out(7, 3)
    assert ops.matmul_for(inner)(a, b, out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == "float32" else 1e-13)
    a_t, b2 = m.normal(3, 7).T, m.normal(3, 2)  # a transposed view, as Dense's backward has
    np.testing.assert_allclose(ops.matmul_for(3)(a_t, b2, m.out(7, 2)),
                               Ops().matmul(a_t, b2, m.out(7, 2)),
                               rtol=1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, build", PARAMS)
def test_every_operation_equals_the_reference(name, build, dtype, layout, ops):
    expected_args = build(Maker(dtype, layout))
    args = build(Maker(dtype, layout))
    expected = getattr(Ops(), name)(*expected_args)
    got = getattr(ops, name)(*args)
    # Compiled loops add in another order, and their exp is a polynomial: a few roundings.
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    names = list(inspect.signature(getattr(Ops, name)).parameters)[1:]
    for arg, a, b in zip(names, args, expected_args):
        if arg == "check":  # finite exactly when the reference's is: the value is free
            assert np.isfinite(a).all() == np.isfinite(b).all()
        elif isinstance(a, np.ndarray) and arg != "tmp":  # a workspace: its contents are free
            np.testing.assert_allclose(a, b, **tol)
    _same_result(got, expected, args, expected_args)


def _same_result(got, expected, args, expected_args):
    """Both return the same caller-owned outputs (or ``g`` itself for linear act_grad)."""
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        where = [i for i, a in enumerate(expected_args) if a is e]
        assert where and any(args[i] is g for i in where), "an operation returns its outputs"


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_subclasses_override_only_base_methods_with_the_same_signature(cls):
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        assert hasattr(Ops, name), f"{cls.__name__}.{name} is not an Ops operation"
        if callable(member) and name != "__init__":
            assert inspect.signature(member) == inspect.signature(getattr(Ops, name)), name


@pytest.mark.parametrize("ops", [Ops(), *(p.values[0] for p in OPS)])
def test_host_ops_move_nothing_and_read_freely(ops):
    a = np.arange(6.0).reshape(2, 3)
    assert ops.to_device(a) is a and ops.to_host(a) is a and ops.reads_are_free


def test_get_ops_follows_neuralnp_kernels(monkeypatch):
    monkeypatch.setenv("NEURALNP_KERNELS", "numpy")
    assert type(get_ops()) is NumpyOps and get_ops() is get_ops("numpy")
    monkeypatch.setenv("NEURALNP_KERNELS", "auto")
    assert get_ops().name == ("numba" if backends.numba_available() else "numpy")
    with pytest.raises(ValueError, match="unknown ops 'tpu'"):
        get_ops("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"needs CuPy.*neuralnp\[gpu\]"):
            get_ops("cuda")


def test_layers_losses_and_optimizers_never_import_the_kernels():
    import pathlib
    root = pathlib.Path(nn.__file__).parent
    for path in [*root.glob("layers/*.py"), root / "losses.py", root / "optimizers.py"]:
        text = path.read_text()
        assert "numba" not in text and "numba_ops" not in text and "numpy_ops" not in text, path


# -- numerical promises ---------------------------------------------------------------------------

@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_and_sgd_are_bit_identical_to_the_reference_in_float32(ops, amsgrad):
    build = dict(CASES["adam"])[f"amsgrad-{amsgrad}-guarded-True"]
    args, expected = build(Maker("float32", "contiguous")), build(Maker("float32", "contiguous"))
    ops.adam(*args)
    Ops().adam(*expected)
    for a, b in zip(args[:5], expected[:5]):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    build = dict(CASES["sgd"])["guarded"]
    args, expected = build(Maker("float32", "contiguous")), build(Maker("float32", "contiguous"))
    ops.sgd(*args)
    Ops().sgd(*expected)
    np.testing.assert_array_equal(args[0], expected[0])


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("sparse", [True, False])
def test_crossentropy_stays_finite_when_a_probability_underflows(ops, sparse):
    z = np.array([[0.0, 200.0], [300.0, 0.0]], dtype="float32")  # p(label) ≈ e^-200, e^-300
    labels = np.array([0, 1])
    loss = np.empty(1)
    if sparse:
        ops.softmax_xent(z, labels, np.empty_like(z), np.empty_like(z), loss)
    else:
        ops.softmax_xent_dense(z, np.eye(2, dtype="float32")[labels], np.empty_like(z),
                               np.empty_like(z), loss)
    assert loss[0] == pytest.approx(250.0, rel=1e-6)


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_without_warnings_and_keeps_tiny_values_precise(ops, dtype):
    z = np.array([[-1000.0, -80.0, -30.0, 0.0, 30.0, 1000.0]], dtype=dtype)
    exact = 1.0 / (1.0 + np.exp(-z.astype(np.longdouble)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail here
        for out in (ops.bias_act(z.copy(), None, "sigmoid"), ops.sigmoid(z, np.empty_like(z))):
            assert out[0, 0] == 0.0 and out[0, -1] == 1.0
            # σ(-30) ≈ 9.4e-14 stays at rounding level, where ½(1 + tanh(z/2)) would give 0
            np.testing.assert_allclose(out[0, 1:-1], exact[0, 1:-1].astype(dtype),
                                       rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("ops", OPS)
def test_fused_sigmoid_agrees_with_the_reference_over_the_whole_range_and_keeps_nan(ops):
    z = np.concatenate([np.linspace(-100, 100, 20001), [np.nan, np.inf, -np.inf]])
    z = z.astype("float32").reshape(1, -1)
    b = np.zeros(z.shape[1], dtype="float32")
    got = ops.bias_act(z.copy(), b, "sigmoid")
    reference = Ops().bias_act(z.copy(), b, "sigmoid")
    assert np.isnan(got[0, -3]) and got[0, -2] == 1.0 and got[0, -1] == 0.0
    # a few float32 roundings apart wherever σ is a normal number (σ(-87.3) ≈ 1.2e-38)
    normal = reference[0, :-3] > np.finfo("float32").tiny
    np.testing.assert_allclose(got[0, :-3][normal], reference[0, :-3][normal], rtol=5e-7)
    np.testing.assert_array_less(got[0, :-3][~normal], np.finfo("float32").tiny)


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("act", Ops.ACTIVATIONS)
def test_nan_propagates_through_bias_activation_and_its_gradient(ops, act):
    # A NaN weight must give NaN outputs on every path, or fit would train on from it.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 3)).astype("float32")
    z[1, 2] = np.nan
    ops.bias_act(z, np.array([0.5, -0.5, 0.0], dtype="float32"), act)
    assert np.isnan(z[1, 2]) and np.isfinite(np.delete(z.ravel(), 5)).all()
    # The gradient arriving from above may be NaN where the unit is off (relu's y = 0).
    y = np.zeros((4, 3), dtype="float32") if act == "relu" else np.full((4, 3), 0.5, "float32")
    g = np.ones((4, 3), dtype="float32")
    g[2, 0] = np.nan
    bias_grad = np.empty(3, dtype="float32")
    dz = ops.act_grad(g, y, act, np.empty_like(g), bias_grad)
    assert np.isnan(dz[2, 0]) and np.isnan(bias_grad[0]) and np.isfinite(bias_grad[1:]).all()


@pytest.mark.parametrize("ops", OPS)
def test_nan_propagates_through_the_updates_and_losses_and_the_check_sees_it(ops):
    f = np.float32
    p, g = np.ones(7, f), np.ones(7, f)
    g[3] = np.nan
    check = np.empty(1, f)
    ops.sgd(p, g, np.full(1, 0.1, f), np.empty_like(p), np.empty_like(p), check)
    assert np.isnan(p[3]) and np.isfinite(np.delete(p, 3)).all() and not np.isfinite(check[0])
    p, m, v = np.ones(7, f), np.zeros(7, f), np.zeros(7, f)
    ops.adam(p, g, m, v, None, 0.9, 0.999, 1e-8, np.full(1, 1e-2, f), np.full(1, 0.03, f),
             np.empty_like(p), np.empty_like(p), check)
    assert np.isnan(p[3]) and np.isfinite(np.delete(p, 3)).all() and not np.isfinite(check[0])
    ops.adam(np.ones(7, f), np.ones(7, f), np.zeros(7, f), np.zeros(7, f), None, 0.9, 0.999, 1e-8,
             np.full(1, 1e-2, f), np.full(1, 0.03, f), np.empty_like(p), np.empty_like(p), check)
    assert np.isfinite(check[0])
    z = np.random.default_rng(0).normal(size=(3, 4)).astype(f)
    z[1, 2] = np.nan
    onehot = np.eye(4, dtype=f)[[0, 1, 2]]
    for op, target in [(ops.softmax_xent, np.array([0, 1, 2])), (ops.softmax_xent_dense, onehot),
                       (ops.sigmoid_xent, onehot)]:
        loss = np.zeros(1)
        op(z, target, np.empty_like(z), np.empty_like(z), loss)
        assert np.isnan(loss[0])


@pytest.mark.parametrize("ops", OPS)
def test_max_pool_keeps_the_first_maximum_and_lets_nan_win(ops):
    x = np.zeros((1, 2, 2, 2), dtype="float32")
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 1.0  # a tie: entry 1 comes first
    x[0, 1, 1, 1] = np.nan
    y, win = np.empty((1, 1, 1, 2), "float32"), np.empty((1, 1, 1, 2), np.uint8)
    ops.max_pool(x, y, win, (2, 2), (2, 2))
    assert y[0, 0, 0, 0] == 1.0 and win[0, 0, 0, 0] == 1
    assert np.isnan(y[0, 0, 0, 1]) and win[0, 0, 0, 1] == 3
    g = np.array([np.inf, 2.0], dtype="float32").reshape(1, 1, 1, 2)
    dx = ops.max_pool_grad(g, win, np.empty_like(x), (2, 2), (2, 2))
    # an infinite gradient lands on its winner alone: no inf·0 = NaN elsewhere
    assert dx[0, 0, 1, 0] == np.inf and np.count_nonzero(dx) == 2 and not np.isnan(dx).any()


@pytest.mark.parametrize("path", [pytest.param("numba", marks=needs_numba), "numpy"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "linear"])
def test_a_nan_weight_gives_nan_predictions_and_fit_stops(activation, path, monkeypatch):
    monkeypatch.setenv("NEURALNP_KERNELS", path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = nn.Sequential([nn.Dense(4, activation=activation),
                           nn.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    model.build((3,))
    assert model.layers[0].ops is get_ops(path)
    model.layers[0].kernel.value[0, 0] = np.nan  # set_weights refuses NaN: write it in place
    assert np.isnan(model.predict(x)).all()
    with pytest.raises(nn.TrainingDivergedError):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)


@needs_numba
@pytest.mark.parametrize("data, layers, loss", [
    ("iris", [("relu", 16), ("tanh", 8), ("softmax", 3)], "sparse_categorical_crossentropy"),
    ("iris", [("sigmoid", 16), ("softmax", 3)], "categorical_crossentropy"),
    ("breast_cancer", [("relu", 8), ("sigmoid", 1)], "binary_crossentropy"),
], ids=["sparse", "categorical", "binary"])
def test_training_on_both_kernel_paths_agrees(data, layers, loss, monkeypatch):
    x, y = getattr(nn.datasets, data)()
    x = nn.preprocessing.StandardScaler().fit_transform(x)

    def train(path):
        monkeypatch.setenv("NEURALNP_KERNELS", path)
        model = nn.Sequential([nn.Dense(units, activation=act) for act, units in layers], seed=0)
        model.compile(loss=loss, optimizer=nn.Adam(1e-2), metrics=["accuracy"])
        history = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
        return model.get_weights(), history.history["loss"]

    (compiled, loss_c), (plain, loss_n) = train("numba"), train("numpy")
    np.testing.assert_allclose(loss_c, loss_n, rtol=1e-4)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
