"""BatchNormalization and LayerNormalization: gradients against finite differences, forward,
backward and running statistics against PyTorch, weights in Keras order, argument checks."""

import json

import numpy as np
import pytest

import neuralnp as nn
from gradcheck import check_layer_gradients
from neuralnp.layers.normalization import BatchNormalization, LayerNormalization

CLOSE = dict(rtol=1e-10, atol=1e-12)


def _random_affine(layer, seed=1):
    """Give γ (away from 1), β (away from 0) and the moving statistics distinct values."""
    rng = np.random.default_rng(seed)
    weights = []
    for p in layer.variables():
        if p.name.endswith("moving_variance"):
            weights.append(rng.uniform(0.5, 2.0, size=p.shape))
        elif p.name.endswith("gamma"):
            weights.append(rng.uniform(0.5, 1.5, size=p.shape))
        else:
            weights.append(rng.normal(size=p.shape))
    layer.set_weights(weights)
    return layer


def _built(cls, input_shape, dtype="float64", **kwargs):
    layer = cls(**kwargs)
    layer.build_for(input_shape, dtype=dtype, rng=np.random.default_rng(0))
    return _random_affine(layer)


def _x(shape, seed=2, dtype=np.float64):
    # an offset and a per-feature scale, so that normalizing actually changes something
    rng = np.random.default_rng(seed)
    return (3.0 + rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape[-1])).astype(dtype)


class _InferenceMode:
    """The layer as check_layer_gradients sees it, but always run with ``training=False``."""

    def __init__(self, layer):
        self.layer = layer
        self.need_input_grad = layer.need_input_grad

    def forward(self, x, training=False):
        return self.layer.forward(x, training=False)

    def backward(self, grad_out):
        return self.layer.backward(grad_out)

    def parameters(self):
        return self.layer.parameters()


AFFINE = pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False),
                                                   (False, False)],
                                 ids=["affine", "no_center", "no_scale", "neither"])

# (input shape without batch, axis) with odd sizes; the batch sizes below are odd too
BN_SHAPES = [((5,), -1), ((4, 5, 3), -1), ((3, 5, 7), 1), ((4, 5, 3), [1, 3])]
BN_IDS = ["2d", "4d_channels_last", "4d_axis1", "4d_axes_1_3"]


# -- finite differences ---------------------------------------------------------------------------

@AFFINE
@pytest.mark.parametrize("input_shape, axis", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_training_gradients_match_finite_differences(input_shape, axis, center, scale):
    layer = _built(BatchNormalization, input_shape, axis=axis, center=center, scale=scale)
    gx, grads = check_layer_gradients(layer, _x((3, *input_shape)))
    assert len(grads) == center + scale
    assert np.max(np.abs(gx)) > 1e-3  # not a vacuous pass


@AFFINE
@pytest.mark.parametrize("input_shape, axis", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_inference_gradients_match_finite_differences(input_shape, axis, center, scale):
    layer = _built(BatchNormalization, input_shape, axis=axis, center=center, scale=scale)
    before = [w.copy() for w in layer.get_weights()]
    check_layer_gradients(_InferenceMode(layer), _x((3, *input_shape)))
    for got, want in zip(layer.get_weights(), before):  # inference never moves the statistics
        np.testing.assert_array_equal(got, want)


@AFFINE
@pytest.mark.parametrize("input_shape, axis", [((7,), -1), ((3, 5, 3), -1), ((3, 5, 3), [1, 2, 3]),
                                               ((3, 5, 3), [1, 3]), ((3, 5, 3), 1)],
                         ids=["2d", "4d_last", "4d_all", "4d_axes_1_3", "4d_axis1"])
def test_layernorm_gradients_match_finite_differences(input_shape, axis, center, scale):
    layer = _built(LayerNormalization, input_shape, axis=axis, center=center, scale=scale)
    gx, grads = check_layer_gradients(layer, _x((3, *input_shape)))
    assert len(grads) == center + scale
    assert np.max(np.abs(gx)) > 1e-3


# -- PyTorch --------------------------------------------------------------------------------------

def _run(layer, x, training, seed=3):
    y = np.array(layer.forward(x, training=training), copy=True)
    R = np.random.default_rng(seed).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)
    return y, R, gx, [np.array(p.grad, copy=True) for p in layer.parameters()]


def _torch_bn(layer, num_features, dims):
    torch = pytest.importorskip("torch")
    cls = torch.nn.BatchNorm1d if dims == 2 else torch.nn.BatchNorm2d
    bn = cls(num_features, eps=layer.epsilon, momentum=1.0 - layer.momentum,
             dtype=torch.float64)
    gamma, beta, mean, var = layer.get_weights()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.copy_(torch.tensor(mean))
        bn.running_var.copy_(torch.tensor(var))
    return bn


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5, 3)], ids=["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_forward_backward_and_statistics_match_torch(shape, training):
    torch = pytest.importorskip("torch")
    layer = _built(BatchNormalization, shape[1:], momentum=0.9)
    bn = _torch_bn(layer, shape[-1], len(shape))
    bn.train(training)
    x = _x(shape)
    y, R, gx, (g_gamma, g_beta) = _run(layer, x, training)

    # PyTorch is channels-first: (N, H, W, C) -> (N, C, H, W) and back
    to_torch = (0, 3, 1, 2) if len(shape) == 4 else (0, 1)
    back = (0, 2, 3, 1) if len(shape) == 4 else (0, 1)
    xt = torch.tensor(x.transpose(to_torch).copy(), requires_grad=True)
    yt = bn(xt)
    (yt * torch.tensor(R.transpose(to_torch).copy())).sum().backward()

    np.testing.assert_allclose(y, yt.detach().numpy().transpose(back), **CLOSE)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(back), **CLOSE)
    np.testing.assert_allclose(g_gamma, bn.weight.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(g_beta, bn.bias.grad.numpy(), **CLOSE)
    _, _, mean, var = layer.get_weights()
    np.testing.assert_allclose(mean, bn.running_mean.numpy(), **CLOSE)
    np.testing.assert_allclose(var, bn.running_var.numpy(), **CLOSE)


def test_batchnorm_axis1_matches_torch_batchnorm2d_on_channels_first_input():
    torch = pytest.importorskip("torch")
    layer = _built(BatchNormalization, (3, 5, 7), axis=1)
    bn = _torch_bn(layer, 3, 4)
    x = _x((4, 3, 5, 7))
    y, R, gx, (g_gamma, _) = _run(layer, x, True)
    xt = torch.tensor(x, requires_grad=True)
    yt = bn(xt)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(g_gamma, bn.weight.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(layer.get_weights()[3], bn.running_var.numpy(), **CLOSE)


@pytest.mark.parametrize("momentum, epsilon", [(0.99, 1e-3), (0.9, 1e-5), (0.0, 1e-3)])
@pytest.mark.parametrize("shape", [(9, 5), (5, 3, 4, 3)], ids=["BatchNorm1d", "BatchNorm2d"])
def test_running_statistics_after_20_steps_and_inference_match_torch(shape, momentum, epsilon):
    torch = pytest.importorskip("torch")
    layer = BatchNormalization(momentum=momentum, epsilon=epsilon)
    layer.build_for(shape[1:], dtype="float64", rng=np.random.default_rng(0))
    bn = _torch_bn(layer, shape[-1], len(shape))  # default γ=1, β=0, mean 0, var 1 on both sides
    to_torch = (0, 3, 1, 2) if len(shape) == 4 else (0, 1)
    back = (0, 2, 3, 1) if len(shape) == 4 else (0, 1)
    for step in range(20):
        x = _x(shape, seed=100 + step) * (1 + step % 3)  # different batches, drifting statistics
        y = layer.forward(x, training=True)
        with torch.no_grad():
            yt = bn(torch.tensor(x.transpose(to_torch).copy()))
        np.testing.assert_allclose(y, yt.numpy().transpose(back), **CLOSE)
    _, _, mean, var = layer.get_weights()
    assert not np.allclose(var, 1.0)  # the statistics did move
    np.testing.assert_allclose(mean, bn.running_mean.numpy(), **CLOSE)
    np.testing.assert_allclose(var, bn.running_var.numpy(), **CLOSE)

    bn.eval()
    x = _x((2, *shape[1:]), seed=7)
    with torch.no_grad():
        yt = bn(torch.tensor(x.transpose(to_torch).copy()))
    np.testing.assert_allclose(layer.forward(x, training=False), yt.numpy().transpose(back),
                               **CLOSE)


def test_running_variance_uses_the_unbiased_batch_variance():
    # by hand: one step from (mean 0, var 1) with momentum 0.5 on the batch [1, 2, 3, 6]
    layer = BatchNormalization(momentum=0.5)
    layer.build_for((1,), dtype="float64")
    layer.forward(np.array([[1.0], [2.0], [3.0], [6.0]]), training=True)
    _, _, mean, var = layer.get_weights()
    np.testing.assert_allclose(mean, [0.5 * 0 + 0.5 * 3.0])
    np.testing.assert_allclose(var, [0.5 * 1 + 0.5 * 14.0 / 3.0])  # Σ(x-3)² = 14, n - 1 = 3


def test_inference_uses_the_moving_statistics_by_hand():
    layer = BatchNormalization(epsilon=0.25)
    layer.build_for((2,), dtype="float64")
    layer.set_weights([np.array([2.0, 1.0]), np.array([0.5, -1.0]), np.array([1.0, -2.0]),
                       np.array([0.75, 3.75])])
    x = np.array([[3.0, 0.0], [1.0, -2.0]])
    # (x - mean) / sqrt(var + 0.25) * γ + β, with sqrt(1) = 1 and sqrt(4) = 2
    np.testing.assert_allclose(layer.forward(x, training=False), [[4.5, 0.0], [0.5, -1.0]])


@pytest.mark.parametrize("shape, axis", [((7, 5), -1), ((3, 4, 5, 3), -1),
                                         ((3, 4, 5, 3), [1, 2, 3]), ((3, 4, 5, 3), [2, 3])],
                         ids=["2d", "4d_last", "4d_all", "4d_last_two"])
def test_layernorm_forward_and_backward_match_torch(shape, axis):
    torch = pytest.importorskip("torch")
    layer = _built(LayerNormalization, shape[1:], axis=axis)
    x = _x(shape)
    y, R, gx, (g_gamma, g_beta) = _run(layer, x, True)
    gamma, beta = layer.get_weights()
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.layer_norm(xt, gamma.shape, wt, bt, eps=layer.epsilon)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(g_gamma, wt.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(g_beta, bt.grad.numpy(), **CLOSE)
    # and inference is the same computation
    np.testing.assert_array_equal(layer.forward(x, training=False), y)


# -- weights, config, dtype -----------------------------------------------------------------------

@pytest.mark.parametrize("center, scale, names", [
    (True, True, ["gamma", "beta", "moving_mean", "moving_variance"]),
    (False, True, ["gamma", "moving_mean", "moving_variance"]),
    (True, False, ["beta", "moving_mean", "moving_variance"]),
    (False, False, ["moving_mean", "moving_variance"]),
])
def test_batchnorm_keras_weight_order_shapes_and_defaults(center, scale, names):
    layer = BatchNormalization(center=center, scale=scale, name="bn")
    layer.build_for((4, 4, 3), dtype="float64")
    assert [p.name for p in layer.variables()] == [f"bn.{n}" for n in names]
    assert [p.name for p in layer.parameters()] == [f"bn.{n}" for n in names[:-2]]
    assert [w.shape for w in layer.get_weights()] == [(3,)] * len(names)
    defaults = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0}
    for n, w in zip(names, layer.get_weights()):
        np.testing.assert_array_equal(w, np.full(3, defaults[n]))
    assert layer.count_params() == 3 * len(names)


@pytest.mark.parametrize("axis, shape", [(-1, (5,)), ([1, 2, 3], (3, 4, 5)), ([2, 3], (4, 5))])
def test_layernorm_weight_order_and_shapes(axis, shape):
    layer = LayerNormalization(axis=axis, name="ln")
    layer.build_for((3, 4, 5) if len(shape) > 1 else (5,), dtype="float64")
    assert [p.name for p in layer.variables()] == ["ln.gamma", "ln.beta"]
    assert [w.shape for w in layer.get_weights()] == [shape, shape]
    np.testing.assert_array_equal(layer.get_weights()[0], np.ones(shape))
    np.testing.assert_array_equal(layer.get_weights()[1], np.zeros(shape))


@pytest.mark.parametrize("make", [
    lambda: BatchNormalization(),
    lambda: BatchNormalization(axis=[1, 3], momentum=0.9, epsilon=1e-5, center=False,
                               gamma_initializer="he_normal", moving_variance_initializer="zeros",
                               name="bn_custom", dtype="float64"),
    lambda: LayerNormalization(),
    lambda: LayerNormalization(axis=[2, 3], epsilon=1e-6, scale=False, beta_initializer="ones"),
], ids=["bn_default", "bn_custom", "ln_default", "ln_custom"])
def test_config_round_trip(make):
    layer = make()
    config = json.loads(json.dumps(layer.get_config()))  # JSON-serialisable
    clone = type(layer).from_config(config)
    assert clone.get_config() == layer.get_config()
    for a in (layer, clone):
        a.build_for((4, 5, 3), dtype="float64", rng=np.random.default_rng(0))
    assert [(p.name, p.shape) for p in clone.variables()] == \
           [(p.name, p.shape) for p in layer.variables()]
    for got, want in zip(clone.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(got, want)  # same initializers, same generator
    assert type(clone.gamma_initializer) is type(layer.gamma_initializer)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
@pytest.mark.parametrize("training", [True, False])
def test_float32_in_float32_out(cls, training):
    layer = _built(cls, (4, 3), dtype="float32")
    x = _x((5, 4, 3), dtype=np.float32)
    y = layer.forward(x, training=training)
    gx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and gx.dtype == np.float32
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32
               for p in layer.parameters())
    assert all(w.dtype == np.float32 for w in layer.get_weights())
    ref = _built(cls, (4, 3)).forward(x.astype(np.float64), training=training)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
def test_call_builds_from_the_input_dtype(cls):
    y = cls()(_x((4, 3), dtype=np.float32), training=True)
    assert y.dtype == np.float32 and y.shape == (4, 3)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
@pytest.mark.parametrize("training", [True, False])
def test_backward_overwrites_grads_and_skips_the_input_gradient_when_not_needed(cls, training):
    layer = _built(cls, (3, 5))
    x = _x((4, 3, 5))
    R = np.random.default_rng(3).normal(size=x.shape)
    layer.forward(x, training=training)
    layer.backward(R)
    expected = [np.array(p.grad, copy=True) for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[...] = np.nan  # stale values must be overwritten, not added to
    layer.need_input_grad = False
    layer.forward(x, training=training)
    assert layer.backward(R) is None
    for p, g in zip(layer.parameters(), expected):
        np.testing.assert_allclose(p.grad, g, rtol=1e-12)


# -- argument checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("momentum", [1.0, -0.1, 1.5, float("nan"), True, "0.9", None])
def test_momentum_must_be_in_0_1(momentum):
    with pytest.raises(ValueError, match=r"momentum.*\[0, 1\)"):
        BatchNormalization(momentum=momentum)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
@pytest.mark.parametrize("epsilon", [0, 0.0, -1e-3, float("nan"), float("inf"), True, "1e-3"])
def test_epsilon_must_be_positive(cls, epsilon):
    with pytest.raises(ValueError, match="epsilon.*> 0"):
        cls(epsilon=epsilon)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
@pytest.mark.parametrize("axis", ["channels", 1.0, [], [1, "2"], None, True])
def test_axis_must_be_ints(cls, axis):
    with pytest.raises(ValueError, match="axis"):
        cls(axis=axis)


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
@pytest.mark.parametrize("axis, match", [(0, "batch"), (-4, "batch"), (3, "out of range"),
                                         ([1, -2], "twice")])
def test_axis_must_name_a_non_batch_axis_of_the_input(cls, axis, match):
    with pytest.raises(ValueError, match=match):
        cls(axis=axis).build_for((4, 5), dtype="float64")


def test_batchnorm_on_a_batch_of_one_normalizes_but_keeps_the_moving_statistics():
    layer = _built(BatchNormalization, (3,))
    before = [w.copy() for w in layer.get_weights()]
    out = layer.forward(np.array([[1.0, -2.0, 5.0]]), training=True)
    np.testing.assert_array_equal(out, layer.beta.value.reshape(1, 3))  # x̂ = 0, so y = β
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    layer.forward(np.ones((1, 3)), training=False)  # inference on one sample is fine
    _built(BatchNormalization, (2, 2, 3)).forward(_x((1, 2, 2, 3)), training=True)  # n = 4


# -- in a model -----------------------------------------------------------------------------------

def _model(seed=0):
    return nn.Sequential([nn.Dense(8, activation="relu"), BatchNormalization(momentum=0.9),
                          nn.Dense(3, activation="softmax")], seed=seed)


def test_in_a_model_the_moving_statistics_are_outside_the_optimizer_buffer():
    x, y = nn.datasets.iris()
    model = _model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.build((4,))
    bn = model.layers[1]
    trainable = 4 * 8 + 8 + 2 * 8 + 8 * 3 + 3
    assert model.buffer.size == trainable
    assert model.count_params() == trainable + 2 * 8
    assert [w.shape for w in model.get_weights()] == [(4, 8), (8,), (8,), (8,), (8,), (8,),
                                                      (8, 3), (3,)]
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    _, _, mean, var = bn.get_weights()
    assert not np.allclose(mean, 0.0) and not np.allclose(var, 1.0)
    assert bn.moving_mean.value is not None and not np.shares_memory(bn.moving_mean.value,
                                                                     model.buffer.values)
    # predict runs in inference mode: the same answer twice, and the statistics stay put
    before = bn.get_weights()
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    for got, want in zip(bn.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_save_and_load_keep_the_moving_statistics(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    from neuralnp import layers
    # until layers/__init__.py registers the class, register it for this test only
    monkeypatch.setitem(layers.REGISTRY, "BatchNormalization", BatchNormalization)
    x, y = nn.datasets.iris()
    model = _model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.save(tmp_path / "m")
    loaded = nn.load_model(tmp_path / "m")
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
