"""Dropout: the mask's statistics and reproducibility, PyTorch equivalence with a fixed mask,
noise_shape broadcasting, argument checks, and its behaviour inside a model."""

import json

import numpy as np
import pytest

import neuralnp as nn
from gradcheck import check_layer_gradients
from neuralnp.layers.dropout import Dropout


def _built(rate, input_shape, dtype="float64", seed=None, rng_seed=0, **kwargs):
    layer = Dropout(rate, seed=seed, **kwargs)
    layer.build_for(input_shape, dtype=dtype, rng=np.random.default_rng(rng_seed))
    return layer


def _x(shape, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _fixed_mask(layer, mask):
    """Make ``layer`` use ``mask`` (0/1) instead of drawing one."""
    def draw(shape):
        assert tuple(shape) == mask.shape
        return mask
    layer._draw_mask = draw


# -- inference and rate 0 -------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_identity_at_inference(rate):
    layer = _built(rate, (6,))
    x = _x((4, 6))
    assert layer.forward(x, training=False) is x
    g = _x((4, 6), seed=2)
    assert layer.backward(g) is g


def test_rate_zero_is_the_identity_in_training_too():
    layer = _built(0.0, (6,))
    x = _x((4, 6))
    assert layer.forward(x, training=True) is x
    assert layer(x, training=True) is x


# -- the mask -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_rate_and_expectation_on_a_large_input(rate, dtype):
    layer = _built(rate, (1000,), dtype=dtype)
    x = np.ones((1000, 1000), dtype=dtype)
    y = layer.forward(x, training=True)
    assert y.dtype == np.dtype(dtype)
    kept = y != 0
    # 10⁶ Bernoulli(1 - rate) draws: the standard error is at most 5e-4; allow 6 of them
    assert abs(kept.mean() - (1.0 - rate)) < 3e-3
    # kept entries are scaled by 1/(1 - rate), so E[y] = x
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - rate), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 6 * np.sqrt(rate / (1 - rate) / y.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_is_u_at_least_rate_from_the_seeded_generator(dtype):
    layer = _built(0.3, (7, 5), dtype=np.dtype(dtype).name, seed=42)
    first = layer._draw_mask((6, 7, 5)).copy()
    second = layer._draw_mask((6, 7, 5)).copy()
    rng = np.random.default_rng(42)
    np.testing.assert_array_equal(first, rng.random((6, 7, 5), dtype=dtype) >= 0.3)
    np.testing.assert_array_equal(second, rng.random((6, 7, 5), dtype=dtype) >= 0.3)
    assert first.dtype == dtype


def test_without_a_seed_the_mask_comes_from_the_models_generator():
    layer = _built(0.3, (5,), rng_seed=7)
    mask = layer._draw_mask((4, 5)).copy()
    np.testing.assert_array_equal(mask, np.random.default_rng(7).random((4, 5)) >= 0.3)
    assert layer._mask_rng is layer._rng


def test_same_seed_same_masks_different_seed_different_masks():
    x = _x((50, 20))
    a, b, c = (_built(0.5, (20,), seed=s) for s in (3, 3, 4))
    ya = [a.forward(x, training=True).copy() for _ in range(2)]
    yb = [b.forward(x, training=True).copy() for _ in range(2)]
    yc = c.forward(x, training=True).copy()
    np.testing.assert_array_equal(ya[0], yb[0])
    np.testing.assert_array_equal(ya[1], yb[1])
    assert not np.array_equal(ya[0], ya[1])  # a fresh mask every batch
    assert not np.array_equal(ya[0], yc)
    # a seeded layer ignores the model's generator; rebuilding restarts its sequence
    d = _built(0.5, (20,), seed=3, rng_seed=99)
    np.testing.assert_array_equal(d.forward(x, training=True), ya[0])
    a.build_for((20,), dtype="float64", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.forward(x, training=True), ya[0])


def test_backward_uses_the_forward_mask():
    layer = _built(0.4, (30,))
    x = _x((20, 30))
    y = layer.forward(x, training=True).copy()
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g != 0, y != 0)
    np.testing.assert_allclose(g[g != 0], 1 / 0.6)


# -- PyTorch and finite differences with a fixed mask ----------------------------------------------

@pytest.mark.parametrize("shape, noise_shape, mask_shape", [
    ((5, 7), None, (5, 7)),
    ((3, 4, 5, 6), None, (3, 4, 5, 6)),
    ((3, 4, 5, 6), (None, 1, 1, 6), (3, 1, 1, 6)),
    ((3, 4, 5, 6), (1, None, 5, 1), (1, 4, 5, 1)),
], ids=["2d", "4d", "4d_channels", "4d_shared_batch"])
@pytest.mark.parametrize("rate", [0.25, 0.7])
def test_matches_torch_with_the_same_mask(shape, noise_shape, mask_shape, rate):
    torch = pytest.importorskip("torch")
    layer = _built(rate, shape[1:], noise_shape=noise_shape)
    mask = (np.random.default_rng(5).random(mask_shape) >= rate).astype(np.float64)
    assert 0 < mask.mean() < 1
    _fixed_mask(layer, mask)
    x = _x(shape)
    y = np.array(layer.forward(x, training=True), copy=True)
    R = _x(shape, seed=3)
    gx = layer.backward(R)

    xt = torch.tensor(x, requires_grad=True)
    yt = xt * torch.tensor(mask) / (1 - rate)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=0)


def test_gradient_matches_finite_differences_with_a_fixed_mask():
    layer = _built(0.4, (3, 5, 3))
    _fixed_mask(layer, (np.random.default_rng(5).random((3, 3, 5, 3)) >= 0.4).astype(np.float64))
    gx, grads = check_layer_gradients(layer, _x((3, 3, 5, 3)))
    assert grads == [] and np.any(gx == 0) and np.any(gx != 0)


# -- noise_shape ----------------------------------------------------------------------------------

def test_noise_shape_drops_whole_channels():
    layer = _built(0.5, (4, 5, 8), noise_shape=(None, 1, 1, 8), seed=0)
    x = np.ones((6, 4, 5, 8))
    y = layer.forward(x, training=True)
    # one decision per (sample, channel), shared by every position
    assert np.all(y == y[:, :1, :1, :])
    kept = y[:, 0, 0, :] != 0
    assert kept.any() and not kept.all()
    assert not np.all(kept == kept[:1])  # samples differ
    np.testing.assert_array_equal(layer._mask.shape, (6, 1, 1, 8))


def test_noise_shape_with_batch_entry_1_shares_the_mask_across_the_batch():
    layer = _built(0.5, (40,), noise_shape=(1, None), seed=0)
    y = layer.forward(np.ones((5, 40)), training=True)
    assert np.all(y == y[:1])
    assert np.any(y[0] == 0) and np.any(y[0] != 0)


@pytest.mark.parametrize("noise_shape, match", [
    ((None, 1), "axes"),            # too short for (batch, 4, 5)
    ((None, 1, 5, 1), "axes"),      # too long
    ((None, 3, 5), "broadcast"),    # 3 is neither 1 nor 4
])
def test_noise_shape_must_fit_the_input(noise_shape, match):
    with pytest.raises(ValueError, match=match):
        _built(0.5, (4, 5), noise_shape=noise_shape)


def test_noise_shape_batch_entry_must_match_the_batch():
    layer = _built(0.5, (4,), noise_shape=(3, None))
    layer.forward(np.ones((3, 4)), training=True)  # matches
    with pytest.raises(ValueError, match="batch"):
        layer.forward(np.ones((5, 4)), training=True)


@pytest.mark.parametrize("noise_shape", [5, "None,1", (None, 0), (None, -1), (None, 1.5)])
def test_noise_shape_entries_must_be_positive_ints_or_none(noise_shape):
    with pytest.raises(ValueError, match="noise_shape"):
        Dropout(0.5, noise_shape=noise_shape)


# -- arguments, config, dtype ---------------------------------------------------------------------

@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), True, "0.5", None])
def test_rate_must_be_in_0_1(rate):
    with pytest.raises(ValueError, match=r"rate.*\[0, 1\)"):
        Dropout(rate)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_seed_must_be_a_non_negative_int(seed):
    with pytest.raises(ValueError, match="seed"):
        Dropout(0.5, seed=seed)


@pytest.mark.parametrize("kwargs", [dict(rate=0.3), dict(rate=0.5, noise_shape=(None, 1, 1, 3),
                                                         seed=11, name="drop", dtype="float64")])
def test_config_round_trip(kwargs):
    layer = Dropout(**kwargs)
    config = json.loads(json.dumps(layer.get_config()))
    clone = Dropout.from_config(config)
    assert clone.get_config() == layer.get_config()
    assert clone.rate == layer.rate and clone.noise_shape == layer.noise_shape
    assert clone.seed == layer.seed
    assert layer.get_weights() == [] and layer.count_params() == 0


def test_float32_in_float32_out():
    layer = Dropout(0.5)
    x = _x((8, 6), dtype=np.float32)
    y = layer(x, training=True)
    g = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and g.dtype == np.float32


def test_no_input_gradient_when_not_needed():
    layer = _built(0.5, (6,))
    layer.need_input_grad = False
    layer.forward(_x((4, 6)), training=True)
    assert layer.backward(np.ones((4, 6))) is None


# -- in a model -----------------------------------------------------------------------------------

def _trained(seed):
    x, y = nn.datasets.iris()
    model = nn.Sequential([nn.Dense(16, activation="relu"), Dropout(0.5),
                           nn.Dense(3, activation="softmax")], seed=seed)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return model, x


def test_in_a_model_training_is_reproducible_and_predict_is_deterministic():
    a, x = _trained(0)
    b, _ = _trained(0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)  # same model seed, same masks
    np.testing.assert_array_equal(a.predict(x), a.predict(x))  # dropout is off in predict
    # and predict is the network without dropout
    w = a.get_weights()
    hidden = np.maximum(x @ w[0] + w[1], 0)
    logits = hidden @ w[2] + w[3]
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(a.predict(x), p / p.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
