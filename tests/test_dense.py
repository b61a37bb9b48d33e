"""Dense: gradients against finite differences and PyTorch, weights in Keras order, input checks."""

import numpy as np
import pytest

import neuralnp as nn
from gradcheck import check_layer_gradients

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = F = None

IN, UNITS, BATCH = 4, 3, 5

# activation name -> PyTorch reference f(z, extra weights); "prelu" adds α as a third weight
TORCH_ACT = {
    None: lambda z, w: z,
    "linear": lambda z, w: z,
    "tanh": lambda z, w: torch.tanh(z),
    "sigmoid": lambda z, w: torch.sigmoid(z),
    "relu": lambda z, w: F.relu(z),
    "elu": lambda z, w: F.elu(z),
    "gelu": lambda z, w: F.gelu(z),
    "softmax": lambda z, w: torch.softmax(z, dim=-1),
    "prelu": lambda z, w: F.prelu(z, w[0]),
}


def _layer(activation, use_bias, dtype="float64"):
    """A built Dense layer with random weights (non-zero bias, distinct PReLU slopes)."""
    layer = nn.Dense(UNITS, activation=activation, use_bias=use_bias)
    layer.build_for((IN,), dtype=dtype, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(IN, UNITS))]
    if use_bias:
        weights.append(rng.normal(size=UNITS))
    if activation == "prelu":
        weights.append(rng.uniform(0.05, 0.6, size=UNITS))
    layer.set_weights(weights)
    return layer


def _x(dtype=np.float64):
    return np.random.default_rng(2).normal(size=(BATCH, IN)).astype(dtype)


def _pre_activation(layer, x):
    z = x @ layer.get_weights()[0]
    return z + layer.get_weights()[1] if layer.use_bias else z


params = pytest.mark.parametrize("activation", list(TORCH_ACT))
bias = pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])


@params
@bias
def test_gradients_match_finite_differences(activation, use_bias):
    layer = _layer(activation, use_bias)
    x = _x()
    # Precondition for the ReLU-family cases: no pre-activation sits on the kink at 0.
    assert np.min(np.abs(_pre_activation(layer, x))) > 1e-4
    check_layer_gradients(layer, x)


@params
@bias
def test_forward_and_gradients_match_torch(activation, use_bias):
    pytest.importorskip("torch")
    layer = _layer(activation, use_bias)
    x = _x()
    y = np.array(layer.forward(x, training=True), copy=True)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)

    weights = layer.get_weights()
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(weights[0].T.copy(), requires_grad=True)  # torch weight is (units, inputs)
    bt = torch.tensor(weights[1], requires_grad=True) if use_bias else None
    extra = [torch.tensor(w, requires_grad=True) for w in weights[1 + use_bias:]]
    yt = TORCH_ACT[activation](F.linear(xt, wt, bt), extra)
    (yt * torch.tensor(R)).sum().backward()

    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **close)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **close)
    grads = [p.grad for p in layer.parameters()]
    np.testing.assert_allclose(grads[0], wt.grad.numpy().T, **close)
    if use_bias:
        np.testing.assert_allclose(grads[1], bt.grad.numpy(), **close)
    for g, t in zip(grads[1 + use_bias:], extra):
        np.testing.assert_allclose(g, t.grad.numpy(), **close)


def test_forward_is_x_w_plus_b_by_hand():
    layer = nn.Dense(2)
    layer.build_for((3,), dtype="float64")
    layer.set_weights([np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([0.5, -1.0])])
    x = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(layer.forward(x), [[-3.5, -5.0], [5.5, 7.0]])


def test_no_input_gradient_when_not_needed_but_weights_still_get_theirs():
    layer = _layer("tanh", True)
    x = _x()
    layer.forward(x, training=True)
    R = np.random.default_rng(3).normal(size=(BATCH, UNITS))
    layer.backward(R)
    expected = [np.array(p.grad, copy=True) for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[...] = np.nan
    layer.need_input_grad = False
    assert layer.backward(R) is None
    for p, g in zip(layer.parameters(), expected):
        np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("activation", [None, "relu", "softmax", "prelu"])
def test_float32_build_gives_float32_outputs_and_gradients(activation):
    layer = _layer(activation, True, dtype="float32")
    x = _x(np.float32)
    y = layer.forward(x, training=True)
    gx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and gx.dtype == np.float32
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32
               for p in layer.parameters())
    # and the float32 result is the float64 one, rounded
    ref = _layer(activation, True).forward(x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_call_builds_from_the_input_dtype(dtype):
    layer = nn.Dense(UNITS)
    y = layer(_x(dtype))
    assert y.shape == (BATCH, UNITS) and y.dtype == dtype
    assert layer.input_shape == (IN,) and layer.output_shape == (UNITS,)


@pytest.mark.parametrize("activation, use_bias, shapes", [
    (None, True, [(IN, UNITS), (UNITS,)]),
    (None, False, [(IN, UNITS)]),
    ("relu", True, [(IN, UNITS), (UNITS,)]),
    ("prelu", True, [(IN, UNITS), (UNITS,), (UNITS,)]),
    ("prelu", False, [(IN, UNITS), (UNITS,)]),
])
def test_keras_weight_order_and_shapes(activation, use_bias, shapes):
    layer = nn.Dense(UNITS, activation=activation, use_bias=use_bias)
    layer.build_for((IN,), dtype="float64", rng=np.random.default_rng(0))
    assert [w.shape for w in layer.get_weights()] == shapes
    assert [p.shape for p in layer.parameters()] == shapes
    assert layer.count_params() == sum(int(np.prod(s)) for s in shapes)
    # set_weights puts each array where get_weights reads it back, in the same order
    new = [np.full(s, float(i + 1)) for i, s in enumerate(shapes)]
    layer.set_weights(new)
    for got, want in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    # default initializers: bias zeros, PReLU α 0.25 (checked on a fresh layer)
    fresh = nn.Dense(UNITS, activation=activation, use_bias=use_bias)
    fresh.build_for((IN,), dtype="float64", rng=np.random.default_rng(0))
    if use_bias:
        np.testing.assert_array_equal(fresh.get_weights()[1], np.zeros(UNITS))
    if activation == "prelu":
        np.testing.assert_array_equal(fresh.get_weights()[-1], np.full(UNITS, 0.25))


def test_get_weights_returns_copies():
    layer = _layer(None, True)
    w = layer.get_weights()
    w[0][...] = 123.0
    assert not np.any(layer.get_weights()[0] == 123.0)


@pytest.mark.parametrize("input_shape", [(2, 3), (4, 4, 1)])
def test_wrong_rank_input_asks_for_flatten(input_shape):
    with pytest.raises(ValueError, match="Flatten"):
        nn.Dense(UNITS).build_for(input_shape, dtype="float64")
    with pytest.raises(ValueError, match="Flatten"):
        nn.Dense(UNITS)(np.zeros((BATCH, *input_shape)))


def test_input_dim_mismatch_is_rejected():
    with pytest.raises(ValueError, match="input_dim"):
        nn.Dense(UNITS, input_dim=IN + 1).build_for((IN,), dtype="float64")


@pytest.mark.parametrize("weights, match", [
    ([np.zeros((UNITS, IN)), np.zeros(UNITS)], "shape"),  # kernel transposed (torch layout)
    ([np.zeros((IN, UNITS)), np.zeros(UNITS + 1)], "shape"),
    ([np.zeros((IN, UNITS))], "2 weight arrays"),
    ([np.zeros((IN, UNITS)), np.zeros(UNITS), np.zeros(UNITS)], "2 weight arrays"),
], ids=["kernel_transposed", "bias_too_long", "too_few", "too_many"])
def test_set_weights_rejects_wrong_shape_and_count(weights, match):
    layer = _layer(None, True)
    with pytest.raises(ValueError, match=match):
        layer.set_weights(weights)


def test_failed_set_weights_leaves_every_weight_unchanged():
    # A good kernel followed by a bad bias: the error must not leave the kernel overwritten
    # (Keras checks every shape before assigning any).
    layer = _layer(None, True)
    before = layer.get_weights()
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((IN, UNITS)), np.zeros(UNITS + 1)])
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("units", [0, -3, 2.5, True, "4"])
def test_units_must_be_a_positive_integer(units):
    with pytest.raises(ValueError, match="units"):
        nn.Dense(units)
