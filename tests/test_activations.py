"""Every activation's forward and backward against finite differences and PyTorch autograd."""

import warnings

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.layers import activations
from gradcheck import check_layer_gradients

try:  # only the PyTorch comparisons need torch; they skip through importorskip when it is missing
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = F = None


def _prelu_shared(x, w):
    return torch.where(x > 0, x, w[0] * x)


# PyTorch references by registry name, each ``f(x, weights) -> y`` (weights: the layer's, as tensors).
TORCH = {
    "linear": lambda x, w: x * 1.0,
    "sigmoid": lambda x, w: torch.sigmoid(x),
    "tanh": lambda x, w: torch.tanh(x),
    "arctan": lambda x, w: torch.atan(x),
    "relu": lambda x, w: F.relu(x),
    "leaky_relu": lambda x, w: F.leaky_relu(x, 0.01),
    "prelu": lambda x, w: F.prelu(x, w[0]),
    "elu": lambda x, w: F.elu(x, alpha=1.0),
    "selu": lambda x, w: F.selu(x),
    "softplus": lambda x, w: F.softplus(x),
    "gelu": lambda x, w: F.gelu(x, approximate="none"),
    "silu": lambda x, w: F.silu(x),
    "swish": lambda x, w: F.silu(x),
    "softmax": lambda x, w: torch.softmax(x, dim=-1),
}

SHAPE = (4, 5)  # (batch, features)

# (layer factory, PyTorch reference, input shape with batch)
CASES = [
    pytest.param(nn.Linear, TORCH["linear"], SHAPE, id="Linear"),
    pytest.param(nn.Sigmoid, TORCH["sigmoid"], SHAPE, id="Sigmoid"),
    pytest.param(nn.Tanh, TORCH["tanh"], SHAPE, id="Tanh"),
    pytest.param(nn.ArcTan, TORCH["arctan"], SHAPE, id="ArcTan"),
    pytest.param(nn.ReLU, TORCH["relu"], SHAPE, id="ReLU"),
    pytest.param(nn.LeakyReLU, TORCH["leaky_relu"], SHAPE, id="LeakyReLU"),
    pytest.param(lambda: nn.LeakyReLU(negative_slope=0.2), lambda x, w: F.leaky_relu(x, 0.2),
                 SHAPE, id="LeakyReLU(0.2)"),
    pytest.param(nn.PReLU, TORCH["prelu"], SHAPE, id="PReLU"),
    pytest.param(lambda: nn.PReLU(shared_axes=[1]), _prelu_shared, (3, 2, 4),
                 id="PReLU(shared_axes=[1])-3d"),
    pytest.param(nn.ELU, TORCH["elu"], SHAPE, id="ELU"),
    pytest.param(lambda: nn.ELU(alpha=0.7), lambda x, w: F.elu(x, alpha=0.7), SHAPE, id="ELU(0.7)"),
    pytest.param(nn.SELU, TORCH["selu"], SHAPE, id="SELU"),
    pytest.param(nn.Softplus, TORCH["softplus"], SHAPE, id="Softplus"),
    pytest.param(nn.GELU, TORCH["gelu"], SHAPE, id="GELU"),
    pytest.param(lambda: nn.GELU(approximate="tanh"), lambda x, w: F.gelu(x, approximate="tanh"),
                 SHAPE, id="GELU(tanh)"),
    pytest.param(nn.SiLU, TORCH["silu"], SHAPE, id="SiLU"),
    pytest.param(nn.Swish, TORCH["swish"], SHAPE, id="Swish"),
    pytest.param(nn.Softmax, TORCH["softmax"], SHAPE, id="Softmax"),
    pytest.param(lambda: nn.Softmax(axis=0), lambda x, w: torch.softmax(x, dim=0), SHAPE,
                 id="Softmax(axis=0)"),
    pytest.param(lambda: nn.Softmax(axis=1), lambda x, w: torch.softmax(x, dim=1), (2, 3, 4),
                 id="Softmax(axis=1)-3d"),
    pytest.param(lambda: nn.Activation({"class_name": "LeakyReLU", "config": {"negative_slope": 0.3}}),
                 lambda x, w: F.leaky_relu(x, 0.3), SHAPE, id="Activation(LeakyReLU config)"),
    pytest.param(lambda: nn.Activation(nn.ELU(alpha=0.7)), lambda x, w: F.elu(x, alpha=0.7), SHAPE,
                 id="Activation(ELU(0.7) instance)"),
] + [
    pytest.param(lambda name=name: nn.Activation(name), ref, SHAPE, id=f"Activation({name!r})")
    for name, ref in TORCH.items()
]


def _inputs(shape, seed=1):
    """Random inputs with |x| in [0.05, 3]: away from the kink at 0 of the ReLU family."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.05, 3.0, size=shape)


def _built(factory, shape, dtype="float64"):
    """A layer built for ``shape``, with any learnable parameter (PReLU's α) set to distinct random
    values so that a mix-up of per-feature entries shows."""
    layer = factory()
    layer.build_for(shape[1:], dtype=dtype, rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.uniform(0.05, 0.6, size=w.shape) for w in layer.get_weights()])
    return layer


def test_every_registered_activation_is_covered():
    assert set(TORCH) | {"binary_step"} == set(activations.REGISTRY)


@pytest.mark.parametrize("factory, torch_fn, shape", CASES)
def test_backward_matches_finite_differences(factory, torch_fn, shape):
    layer = _built(factory, shape)
    check_layer_gradients(layer, _inputs(shape))


@pytest.mark.parametrize("factory, torch_fn, shape", CASES)
def test_forward_and_backward_match_torch(factory, torch_fn, shape):
    pytest.importorskip("torch")
    layer = _built(factory, shape)
    x = _inputs(shape)
    y = np.array(layer.forward(x, training=True), copy=True)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)

    xt = torch.tensor(x, requires_grad=True)
    wt = [torch.tensor(w, requires_grad=True) for w in layer.get_weights()]
    yt = torch_fn(xt, wt)
    (yt * torch.tensor(R)).sum().backward()

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert len(layer.parameters()) == len(wt)
    for p, w in zip(layer.parameters(), wt):
        np.testing.assert_allclose(p.grad, w.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factory, torch_fn, shape", CASES)
def test_float32_in_float32_out(factory, torch_fn, shape):
    layer = _built(factory, shape, dtype="float32")
    x = _inputs(shape).astype(np.float32)
    y = layer.forward(x, training=True)
    gx = layer.backward(np.ones(y.shape, dtype=np.float32))
    assert y.dtype == np.float32 and gx.dtype == np.float32
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32
               for p in layer.parameters())


# --- individual activations -----------------------------------------------------------------


@pytest.mark.parametrize("factory", [nn.BinaryStep, lambda: nn.Activation("binary_step")])
def test_binary_step_forward_and_zero_gradient(factory):
    x = np.array([[-2.0, -1e-9, 0.0, 1e-9, 3.0]])
    layer = factory()
    y = np.array(layer(x, training=True), copy=True)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 1.0, 1.0, 1.0]])
    gx = layer.backward(np.full_like(x, 7.0))
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gx, np.zeros_like(x))


def test_prelu_alpha_has_feature_shape_and_initial_value():
    default = nn.PReLU()
    default.build_for((5,), dtype="float64")
    np.testing.assert_array_equal(default.get_weights()[0], np.full(5, 0.25))

    custom = nn.PReLU(alpha_initializer=0.1, shared_axes=[1])
    custom.build_for((3, 4), dtype="float64")
    np.testing.assert_array_equal(custom.get_weights()[0], np.full((1, 4), 0.1))


def test_prelu_hand_values():
    layer = nn.PReLU()
    layer.build_for((3,), dtype="float64")
    layer.set_weights([np.array([0.1, 0.2, 0.3])])
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, -0.5]])
    np.testing.assert_allclose(layer.forward(x), [[-0.1, 2.0, -0.9], [4.0, -1.0, -0.15]])
    g = np.array([[1.0, 1.0, 2.0], [1.0, 3.0, 1.0]])
    np.testing.assert_allclose(layer.backward(g), [[0.1, 1.0, 0.6], [1.0, 0.6, 0.3]])
    # dL/dα_j = Σ_batch g·x over the entries where x <= 0
    np.testing.assert_allclose(layer.parameters()[0].grad, [-1.0, -15.0, -6.5])


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="fast")


def test_unknown_activation_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        nn.Activation("rleu")
    for name in ("relu", "sigmoid", "tanh", "softmax", "gelu", "swish"):
        assert name in str(info.value)


# --- numerically extreme inputs -------------------------------------------------------------

EXTREME = np.array([[-1000.0, -50.0, -0.5, 0.5, 50.0, 1000.0]])


def _strict():
    """Overflow, invalid operations and divisions by zero raise (underflow to 0 is harmless)."""
    return np.errstate(over="raise", invalid="raise", divide="raise")


@pytest.mark.parametrize("factory, torch_fn, shape", CASES)
def test_extreme_inputs_stay_finite_without_warnings(factory, torch_fn, shape):
    layer = _built(factory, EXTREME.shape)
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        y = np.array(layer.forward(EXTREME, training=True), copy=True)
        gx = layer.backward(np.ones_like(EXTREME))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(gx))
    assert all(np.all(np.isfinite(p.grad)) for p in layer.parameters())


def test_sigmoid_and_softplus_saturate_to_exact_limits():
    x = np.array([[-1000.0, 1000.0]])
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        sig = nn.Sigmoid()
        np.testing.assert_allclose(sig(x), [[0.0, 1.0]], rtol=0, atol=1e-300)
        np.testing.assert_allclose(sig.backward(np.ones_like(x)), [[0.0, 0.0]], rtol=0, atol=1e-300)

        soft = nn.Softplus()
        np.testing.assert_allclose(soft(x), [[0.0, 1000.0]], rtol=1e-15, atol=1e-300)
        np.testing.assert_allclose(soft.backward(np.ones_like(x)), [[0.0, 1.0]], rtol=0,
                                   atol=1e-300)


def test_softmax_of_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, -1e4]])
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        y = nn.Softmax()(x)
    np.testing.assert_allclose(y, [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], rtol=0, atol=1e-300)
