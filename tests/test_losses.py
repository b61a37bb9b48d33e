"""Every loss (value and dL/dy_pred) against PyTorch autograd and finite differences."""

import warnings

import numpy as np
import pytest

from neuralnp import losses
from gradcheck import assert_gradient_close, numerical_gradient

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = F = None

N = 6


# --- data: each maker returns (y_pred, y_true) from a generator ------------------------------


def _regression(shape):
    def make(rng):
        y_true = rng.normal(size=shape)
        # |y_pred - y_true| in [0.1, 2.5]: off MAE's kink at 0, on both sides of Huber's δ
        diff = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.5, size=shape)
        return y_true + diff, y_true
    return make


def _binary(logits):
    def make(rng):
        pred = rng.normal(0, 2, size=(N, 3)) if logits else rng.uniform(0.05, 0.95, size=(N, 3))
        y_true = rng.uniform(0, 1, size=(N, 3))  # soft targets ...
        y_true[:, 0] = rng.integers(0, 2, size=N)  # ... and hard ones
        return pred, y_true
    return make


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _categorical(logits, soft):
    def make(rng):
        z = rng.normal(0, 2, size=(N, 4))
        y_true = (rng.dirichlet(np.ones(4), size=N) if soft
                  else np.eye(4)[rng.integers(0, 4, size=N)])
        return (z if logits else _softmax(z)), y_true
    return make


def _sparse(logits):
    def make(rng):
        z = rng.normal(0, 2, size=(N, 4))
        return (z if logits else _softmax(z)), rng.integers(0, 4, size=N)
    return make


# --- PyTorch per-sample losses, shape (N,) -----------------------------------------------------


def _per_sample(elementwise):
    """Mean over everything but the batch axis of an elementwise torch loss."""
    return lambda p, y: elementwise(p, y).flatten(1).mean(dim=1)


CASES = [  # (loss factory, data maker, torch per-sample loss)
    pytest.param(losses.MeanSquaredError, _regression((N, 3)),
                 _per_sample(lambda p, y: F.mse_loss(p, y, reduction="none")), id="mse"),
    pytest.param(losses.MeanSquaredError, _regression((4, 2, 3)),
                 _per_sample(lambda p, y: F.mse_loss(p, y, reduction="none")), id="mse-3d"),
    pytest.param(losses.MeanAbsoluteError, _regression((N, 3)),
                 _per_sample(lambda p, y: F.l1_loss(p, y, reduction="none")), id="mae"),
    pytest.param(losses.MeanAbsoluteError, _regression((4, 2, 3)),
                 _per_sample(lambda p, y: F.l1_loss(p, y, reduction="none")), id="mae-3d"),
    pytest.param(losses.Huber, _regression((N, 3)),
                 _per_sample(lambda p, y: F.huber_loss(p, y, reduction="none", delta=1.0)),
                 id="huber"),
    pytest.param(lambda: losses.Huber(delta=0.5), _regression((N, 3)),
                 _per_sample(lambda p, y: F.huber_loss(p, y, reduction="none", delta=0.5)),
                 id="huber(0.5)"),
    pytest.param(lambda: losses.Huber(delta=1.7), _regression((4, 2, 3)),
                 _per_sample(lambda p, y: F.huber_loss(p, y, reduction="none", delta=1.7)),
                 id="huber(1.7)-3d"),
    pytest.param(losses.BinaryCrossentropy, _binary(logits=False),
                 _per_sample(lambda p, y: F.binary_cross_entropy(p, y, reduction="none")),
                 id="bce"),
    pytest.param(lambda: losses.BinaryCrossentropy(from_logits=True), _binary(logits=True),
                 _per_sample(lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none")),
                 id="bce-logits"),
    pytest.param(losses.CategoricalCrossentropy, _categorical(logits=False, soft=False),
                 lambda p, y: -(y * torch.log(p)).sum(-1), id="cce-onehot"),
    pytest.param(losses.CategoricalCrossentropy, _categorical(logits=False, soft=True),
                 lambda p, y: -(y * torch.log(p)).sum(-1), id="cce-soft"),
    pytest.param(lambda: losses.CategoricalCrossentropy(from_logits=True),
                 _categorical(logits=True, soft=False),
                 lambda z, y: -(y * F.log_softmax(z, dim=-1)).sum(-1), id="cce-logits-onehot"),
    pytest.param(lambda: losses.CategoricalCrossentropy(from_logits=True),
                 _categorical(logits=True, soft=True),
                 lambda z, y: -(y * F.log_softmax(z, dim=-1)).sum(-1), id="cce-logits-soft"),
    pytest.param(losses.SparseCategoricalCrossentropy, _sparse(logits=False),
                 lambda p, y: F.nll_loss(torch.log(p), y, reduction="none"), id="sparse"),
    pytest.param(lambda: losses.SparseCategoricalCrossentropy(from_logits=True), _sparse(logits=True),
                 lambda z, y: F.cross_entropy(z, y, reduction="none"), id="sparse-logits"),
]

weighting = pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])


def _data(make, weighted, seed=0):
    rng = np.random.default_rng(seed)
    y_pred, y_true = make(rng)
    w = rng.uniform(0.1, 2.0, size=len(y_pred)) if weighted else None
    return y_pred, y_true, w


@pytest.mark.parametrize("factory, make, torch_loss", CASES)
@weighting
def test_value_and_gradient_match_torch(factory, make, torch_loss, weighted):
    pytest.importorskip("torch")
    y_pred, y_true, w = _data(make, weighted)
    loss = factory()
    value = loss.forward(y_pred, y_true, sample_weight=w)
    grad = np.array(loss.backward(), copy=True)

    pt = torch.tensor(y_pred, requires_grad=True)
    per_sample = torch_loss(pt, torch.tensor(y_true))
    assert per_sample.shape == (len(y_pred),)
    total = per_sample.mean() if w is None else (torch.tensor(w) * per_sample).sum() / len(y_pred)
    total.backward()

    assert isinstance(value, float)
    np.testing.assert_allclose(value, total.item(), rtol=1e-10, atol=1e-12)
    assert grad.shape == y_pred.shape
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factory, make, torch_loss", CASES)
@weighting
def test_gradient_matches_finite_differences(factory, make, torch_loss, weighted):
    y_pred, y_true, w = _data(make, weighted)
    loss = factory()
    loss.forward(y_pred, y_true, sample_weight=w)
    grad = np.array(loss.backward(), copy=True)
    numeric = numerical_gradient(lambda: loss.forward(y_pred, y_true, sample_weight=w), y_pred)
    assert_gradient_close(grad, numeric)


@pytest.mark.parametrize("factory, make, torch_loss", CASES)
def test_unit_weights_equal_no_weights_and_weights_scale_samples(factory, make, torch_loss):
    y_pred, y_true, _ = _data(make, False)
    n = len(y_pred)
    loss = factory()
    plain = loss.forward(y_pred, y_true)
    plain_grad = np.array(loss.backward(), copy=True)
    assert loss.forward(y_pred, y_true, sample_weight=np.ones(n)) == pytest.approx(plain, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), plain_grad, rtol=1e-14)
    # Only the first sample counts: L = ℓ_0 / N, computed from the one-sample batch.
    only_first = np.zeros(n)
    only_first[0] = 1.0
    l0 = loss.forward(y_pred[:1], y_true[:1])
    assert loss.forward(y_pred, y_true, sample_weight=only_first) == pytest.approx(l0 / n, rel=1e-12)
    grad = loss.backward()
    assert np.all(grad[1:] == 0) and np.any(grad[0] != 0)


def test_call_is_forward():
    y_pred, y_true, _ = _data(_regression((N, 3)), False)
    loss = losses.MeanSquaredError()
    assert loss(y_pred, y_true) == loss.forward(y_pred, y_true)


# --- hand-computed values ---------------------------------------------------------------------


def test_regression_losses_by_hand():
    y_pred = np.array([[1.0, 2.0], [0.0, -4.0]])
    y_true = np.array([[0.0, 0.0], [0.5, 0.0]])
    # differences: [1, 2], [-0.5, -4]
    assert losses.MeanSquaredError().forward(y_pred, y_true) == pytest.approx(
        ((1 + 4) / 2 + (0.25 + 16) / 2) / 2)
    assert losses.MeanAbsoluteError().forward(y_pred, y_true) == pytest.approx(
        ((1 + 2) / 2 + (0.5 + 4) / 2) / 2)
    # Huber δ=1: ½a² for a ≤ 1, a - ½ otherwise
    assert losses.Huber().forward(y_pred, y_true) == pytest.approx(
        ((0.5 + 1.5) / 2 + (0.125 + 3.5) / 2) / 2)


# --- numerical stability ----------------------------------------------------------------------


def _strict():
    """Overflow, invalid operations and divisions by zero raise (underflow to 0 is harmless)."""
    return np.errstate(over="raise", invalid="raise", divide="raise")


def test_binary_crossentropy_from_huge_logits():
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    y = np.array([[1.0], [0.0], [0.0], [1.0]])
    loss = losses.BinaryCrossentropy(from_logits=True)
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        value = loss.forward(z, y)
        grad = loss.backward()
    # right answers cost nothing, wrong ones cost |z| = 1000: mean (0 + 0 + 1000 + 1000) / 4
    assert value == pytest.approx(500.0, rel=1e-15)
    # (σ(z) - y) / N
    np.testing.assert_allclose(grad, [[0.0], [0.0], [0.25], [-0.25]], rtol=0, atol=1e-300)


@pytest.mark.parametrize("sparse", [False, True], ids=["categorical", "sparse"])
def test_categorical_crossentropy_from_huge_logits(sparse):
    z = np.tile([1000.0, 0.0, -1000.0], (3, 1))
    labels = np.array([0, 1, 2])
    y = labels if sparse else np.eye(3)[labels]
    loss = (losses.SparseCategoricalCrossentropy if sparse
            else losses.CategoricalCrossentropy)(from_logits=True)
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        value = loss.forward(z, y)
        grad = loss.backward()
    # -log p_k = logsumexp(z) - z_k = 1000 - z_k  ->  0, 1000, 2000
    assert value == pytest.approx(1000.0, rel=1e-15)
    # (softmax(z) - onehot) / N with softmax(z) = [1, 0, 0]
    expected = (np.array([1.0, 0.0, 0.0]) - np.eye(3)) / 3
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-300)


def test_crossentropies_from_saturated_probabilities_are_clipped_and_finite():
    eps = 1e-7  # Keras's clipping
    with warnings.catch_warnings(), _strict():
        warnings.simplefilter("error")
        bce = losses.BinaryCrossentropy().forward(np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]))
        cce = losses.CategoricalCrossentropy().forward(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
        sparse = losses.SparseCategoricalCrossentropy().forward(np.array([[1.0, 0.0]]), np.array([1]))
    assert bce == pytest.approx(-np.log(eps), rel=1e-6)
    assert cce == pytest.approx(-np.log(eps), rel=1e-12)
    assert sparse == pytest.approx(-np.log(eps), rel=1e-12)


# --- registry and validation ------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("MAE", losses.MeanAbsoluteError), ("huber", losses.Huber),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
])
def test_get_by_name(name, cls):
    assert type(losses.get(name)) is cls


def test_unknown_loss_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        losses.get("nope")
    message = str(info.value)
    assert "nope" in message
    for name in ("mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
                 "sparse_categorical_crossentropy"):
        assert name in message


@pytest.mark.parametrize("delta", [0.0, -1.0])
def test_huber_delta_must_be_positive(delta):
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=delta)
