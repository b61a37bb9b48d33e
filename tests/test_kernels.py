"""The fused kernels: the compiled (Numba) path against the NumPy path and the layers' formulas."""

import math
import warnings

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import kernels
from neuralnp.layers import activations

needs_numba = pytest.mark.skipif(kernels.numba is None,
                                 reason="Numba is not installed (pip install 'neuralnp[fast]')")

RNG = np.random.default_rng(0)
CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


def _numpy_path(monkeypatch):
    monkeypatch.setattr(kernels, "numba", None)


@pytest.mark.parametrize("name", list(CODES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_act_and_its_gradient_match_the_activation_layers(name, dtype, monkeypatch):
    z = RNG.normal(size=(7, 5)).astype(dtype) * 3
    b = RNG.normal(size=5).astype(dtype)
    g = RNG.normal(size=(7, 5)).astype(dtype)
    layer = activations.get(name)
    expected = np.array(layer.forward(z + b), copy=True)
    expected_grad = np.array(layer.backward(g), copy=True)
    for path in ("compiled", "numpy"):
        if path == "numpy":
            _numpy_path(monkeypatch)
        out = z.copy()
        kernels.bias_act(out, b, CODES[name])
        bias_grad = np.empty_like(b)
        grad = kernels.act_grad(g.copy(), out, CODES[name], np.empty_like(g), bias_grad)
        np.testing.assert_allclose(bias_grad, expected_grad.sum(0), rtol=1e-5, atol=1e-5)
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(grad, expected_grad, rtol=tol, atol=tol)


@needs_numba
@pytest.mark.parametrize("amsgrad", [False, True])
def test_compiled_adam_is_bit_identical_to_the_numpy_formulas(amsgrad, monkeypatch):
    n = 1001
    state = [RNG.normal(size=n).astype("float32") for _ in range(2)]
    m, v = RNG.normal(size=n).astype("float32"), RNG.random(n).astype("float32")
    vmax = v + RNG.random(n).astype("float32") if amsgrad else None
    args = (0.9, 0.999, 1e-3 / (1 - 0.9 ** 3), (1 - 0.999 ** 3) ** 0.5, 1e-8)
    results = []
    for path in ("compiled", "numpy"):
        if path == "numpy":
            _numpy_path(monkeypatch)
        p, g = (a.copy() for a in state)
        mm, vv = m.copy(), v.copy()
        vm = None if vmax is None else vmax.copy()
        kernels.adam(p, g, mm, vv, vm, *args, np.empty_like(p))
        results.append((p, mm, vv))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("sparse", [True, False])
def test_compiled_softmax_crossentropy_matches_the_loss_formulas(sparse):
    z = (RNG.normal(size=(33, 10)) * 4).astype("float32")
    labels = RNG.integers(0, 10, size=33)
    target = labels if sparse else np.eye(10, dtype="float32")[labels]
    probs, grad = np.empty_like(z), np.empty_like(z)
    kernel = kernels.softmax_xent if sparse else kernels.softmax_xent_dense
    value = kernel(z, target, probs, grad)
    reference = (nn.losses.SparseCategoricalCrossentropy if sparse
                 else nn.losses.CategoricalCrossentropy)(from_logits=True)
    expected = nn.losses.Loss.forward(reference, z.astype("float64"), target)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, reference.backward(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(probs, reference.probabilities, rtol=1e-5, atol=1e-8)


@needs_numba
def test_training_with_and_without_the_compiled_kernels_agrees(monkeypatch):
    x, y = nn.datasets.iris()
    x = nn.preprocessing.StandardScaler().fit_transform(x)

    def train():
        model = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(8, activation="tanh"),
                               nn.Dense(3, activation="softmax")], seed=0)
        model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-2),
                      metrics=["accuracy"])
        history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
        return model, history.history["loss"]

    compiled, loss_c = train()
    _numpy_path(monkeypatch)
    plain, loss_n = train()
    np.testing.assert_allclose(loss_c, loss_n, rtol=1e-4)
    for a, b in zip(compiled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@needs_numba
@pytest.mark.parametrize("sparse", [True, False])
def test_compiled_crossentropy_stays_finite_when_a_probability_underflows(sparse):
    z = np.array([[0.0, 200.0], [300.0, 0.0]], dtype="float32")  # p(label) ≈ e^-200, e^-300
    labels = np.array([0, 1])
    target = labels if sparse else np.eye(2, dtype="float32")[labels]
    kernel = kernels.softmax_xent if sparse else kernels.softmax_xent_dense
    value = kernel(z, target, np.empty_like(z), np.empty_like(z))
    assert value == pytest.approx(250.0, rel=1e-6)


@needs_numba
def test_compiled_sgd_is_bit_identical_to_numpy(monkeypatch):
    p, g = RNG.normal(size=(2, 999)).astype("float32")
    results = []
    for path in ("compiled", "numpy"):
        if path == "numpy":
            _numpy_path(monkeypatch)
        q = p.copy()
        kernels.sgd(q, g, 0.1, np.empty_like(q))
        results.append(q)
    np.testing.assert_array_equal(*results)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_kernel_saturates_without_warnings_and_keeps_tiny_values_precise(dtype):
    z = np.array([[-1000.0, -80.0, -30.0, 0.0, 30.0, 1000.0]], dtype=dtype)
    out = z.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail here
        kernels.bias_act(out, None, CODES["sigmoid"])
    exact = 1.0 / (1.0 + np.exp(-z.astype(np.longdouble)))
    assert out[0, 0] == 0.0 and out[0, -1] == 1.0
    # σ(-30) ≈ 9.4e-14: the relative error stays at rounding level, where ½(1 + tanh(z/2))
    # would round to 0
    np.testing.assert_allclose(out[0, 1:-1], exact[0, 1:-1].astype(dtype),
                               rtol=4 * np.finfo(dtype).eps, atol=0)


@needs_numba
@pytest.mark.parametrize("columns", [1, 3])
def test_compiled_sigmoid_cross_entropy_matches_the_loss_formulas(columns):
    z = (RNG.normal(size=(33, columns)) * 8).astype("float32")
    z[0, 0], z[1, 0] = 120.0, -120.0  # saturated logits stay finite
    y = RNG.integers(0, 2, size=z.shape).astype("float32")
    y[2, 0] = 0.3  # soft targets are allowed
    probs, grad = np.empty_like(z), np.empty_like(z)
    value = kernels.sigmoid_xent(z, y, probs, grad)
    reference = nn.losses.BinaryCrossentropy(from_logits=True)
    expected = nn.losses.Loss.forward(reference, z.astype("float64"), y.astype("float64"))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, reference.backward(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(probs, reference.probabilities, rtol=1e-5, atol=1e-9)


@needs_numba
def test_binary_training_with_and_without_the_compiled_kernels_agrees(monkeypatch):
    x, y = nn.datasets.breast_cancer()
    x = nn.preprocessing.StandardScaler().fit_transform(x)

    def train():
        model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")],
                              seed=0)
        model.compile(loss="binary_crossentropy", optimizer=nn.Adam(1e-2), metrics=["accuracy"])
        return model.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]

    compiled = train()
    _numpy_path(monkeypatch)
    np.testing.assert_allclose(train(), compiled, rtol=1e-4)


@needs_numba
def test_compiled_sigmoid_agrees_with_numpy_over_the_whole_range_and_keeps_nan(monkeypatch):
    z = np.concatenate([np.linspace(-100, 100, 20001), [np.nan, np.inf, -np.inf]])
    z = z.astype("float32").reshape(1, -1)
    b = np.zeros(z.shape[1], dtype="float32")
    compiled = z.copy()
    kernels.bias_act(compiled, b, CODES["sigmoid"])
    _numpy_path(monkeypatch)
    reference = z.copy()
    kernels.bias_act(reference, b, CODES["sigmoid"])
    assert np.isnan(compiled[0, -3]) and compiled[0, -2] == 1.0 and compiled[0, -1] == 0.0
    # a few float32 roundings apart wherever σ is a normal number (σ(-87.3) ≈ 1.2e-38)
    normal = reference[0, :-3] > np.finfo("float32").tiny
    np.testing.assert_allclose(compiled[0, :-3][normal], reference[0, :-3][normal], rtol=5e-7)
    np.testing.assert_array_less(compiled[0, :-3][~normal], np.finfo("float32").tiny)


@needs_numba
@pytest.mark.parametrize("pool, strides, padding", [
    (2, None, "valid"), (3, 2, "same"), (3, 1, "valid"), ((2, 3), (1, 2), "same")])
def test_compiled_max_pooling_equals_the_numpy_passes(pool, strides, padding, monkeypatch):
    x = RNG.normal(size=(3, 7, 8, 5)).astype("float32")
    x[0, 0, :2, 0] = 1.5  # a tie: the first maximum wins
    x[1, 2, 2, 1] = np.nan  # a NaN wins its windows
    g = RNG.normal(size=(1,)).astype("float32")  # replaced below once the shape is known
    results = []
    for path in ("compiled", "numpy"):
        if path == "numpy":
            _numpy_path(monkeypatch)
        layer = nn.MaxPooling2D(pool, strides, padding)
        layer.build_for(x.shape[1:], np.float32, RNG)
        y = np.array(layer.forward(x, training=True), copy=True)
        if g.shape != y.shape:
            g = RNG.normal(size=y.shape).astype("float32")
            g[0, 0, 0, 0] = np.inf  # an infinite gradient stays where it belongs: no NaN
        results.append((y, np.array(layer._win, copy=True),
                        np.array(layer.backward(g), copy=True)))
    (y, win, dx), (y_ref, win_ref, dx_ref) = results
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(win, win_ref)
    # Where windows overlap, a pixel sums several gradients, in another order on each path.
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("kernel, strides, padding, dilation", [
    (3, 1, "valid", 1), (3, 2, "same", 1), ((2, 3), 1, "same", 2), (1, 1, "valid", 1)])
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "elu"])
def test_compiled_conv_paths_equal_the_numpy_passes(kernel, strides, padding, dilation,
                                                   activation, monkeypatch):
    x = RNG.normal(size=(4, 9, 8, 10)).astype("float32")
    results = []
    for path in ("compiled", "numpy"):
        if path == "numpy":
            _numpy_path(monkeypatch)
        layer = nn.Conv2D(6, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                          activation=activation)
        layer.build_for(x.shape[1:], np.float32, np.random.default_rng(0))
        layer.need_input_grad = True
        y = np.array(layer.forward(x, training=True), copy=True)
        g = np.random.default_rng(1).normal(size=y.shape).astype("float32")
        dx = np.array(layer.backward(g), copy=True)
        results.append((y, dx, layer.kernel.grad.copy(), layer.bias.grad.copy()))
    for compiled, numpy_path in zip(*results):
        # col2im and the fused bias gradient add in another order than the NumPy passes
        np.testing.assert_allclose(compiled, numpy_path, rtol=1e-5, atol=1e-5)


PATHS = [pytest.param("compiled", marks=needs_numba), "numpy"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(CODES))
def test_nan_propagates_through_bias_activation_and_its_gradient(name, path, monkeypatch):
    # A NaN weight must give NaN outputs on every path, or fit would train on from it.
    if path == "numpy":
        _numpy_path(monkeypatch)
    z = RNG.normal(size=(4, 3)).astype("float32")
    z[1, 2] = np.nan
    kernels.bias_act(z, np.array([0.5, -0.5, 0.0], dtype="float32"), CODES[name])
    assert np.isnan(z[1, 2]) and np.isfinite(np.delete(z.ravel(), 5)).all()
    # The gradient arriving from above may be NaN where the unit is off (relu's y = 0).
    y = np.zeros((4, 3), dtype="float32") if name == "relu" else np.full((4, 3), 0.5, "float32")
    g = np.ones((4, 3), dtype="float32")
    g[2, 0] = np.nan
    bias_grad = np.empty(3, dtype="float32")
    dz = kernels.act_grad(g, y, CODES[name], np.empty_like(g), bias_grad)
    assert np.isnan(dz[2, 0]) and np.isnan(bias_grad[0]) and np.isfinite(bias_grad[1:]).all()


@pytest.mark.parametrize("path", PATHS)
def test_nan_propagates_through_the_optimizer_and_loss_kernels(path, monkeypatch):
    if path == "numpy":
        _numpy_path(monkeypatch)
    p, g = np.ones(7, dtype="float32"), np.ones(7, dtype="float32")
    g[3] = np.nan
    kernels.sgd(p, g, 0.1, np.empty_like(p))
    assert np.isnan(p[3]) and np.isfinite(np.delete(p, 3)).all()
    p, m, v = np.ones(7, dtype="float32"), np.zeros(7, dtype="float32"), np.zeros(7, "float32")
    kernels.adam(p, g, m, v, None, 0.9, 0.999, 1e-2, 0.03, 1e-8, np.empty_like(p))
    assert np.isnan(p[3]) and np.isfinite(np.delete(p, 3)).all()
    z = RNG.normal(size=(3, 4)).astype("float32")
    z[1, 2] = np.nan
    onehot = np.eye(4, dtype="float32")[[0, 1, 2]]
    for kernel, target in [(kernels.softmax_xent, np.array([0, 1, 2])),
                           (kernels.softmax_xent_dense, onehot),
                           (kernels.sigmoid_xent, onehot)]:
        value = kernel(z, target, np.empty_like(z), np.empty_like(z))
        assert value is None if path == "numpy" else math.isnan(value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "linear"])
def test_a_nan_weight_gives_nan_predictions_and_fit_stops(activation, path, monkeypatch):
    if path == "numpy":
        _numpy_path(monkeypatch)
    x = RNG.normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = nn.Sequential([nn.Dense(4, activation=activation),
                           nn.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    model.build((3,))
    model.layers[0].kernel.value[0, 0] = np.nan  # set_weights refuses NaN: write it in place
    assert np.isnan(model.predict(x)).all()
    with pytest.raises(nn.TrainingDivergedError):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
