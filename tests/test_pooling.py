"""Max, average and global average pooling (channels-last): finite differences, PyTorch, ties,
overlapping windows, TF 'same' padding, shapes, errors, config.

PyTorch references work channels-first (``x.transpose(0, 3, 1, 2)``); 'same' padding is an
explicit ``F.pad`` with TensorFlow's split, with ``-inf`` for max pooling. Average pooling over a
padded window divides by the real pixels only (Keras/TF, PyTorch's ``count_include_pad=False``);
with TF's asymmetric split the reference divides a window sum by a window count of ones.
"""

import json

import numpy as np
import pytest

from gradcheck import check_layer_gradients
from neuralnp.layers.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D

BATCH, H, W, C = 2, 7, 9, 3

# (pool_size, strides, padding): odd image sizes; strides equal to, below (overlapping windows)
# and above (skipped pixels) the pool size; both paddings.
CONFIGS = [
    (2, None, "valid"),
    (2, None, "same"),
    (3, None, "valid"),
    (3, None, "same"),
    (3, 2, "valid"),
    (3, 2, "same"),
    (3, 1, "same"),
    (2, 3, "valid"),
    (2, 3, "same"),
    ((2, 3), (1, 2), "valid"),
    ((3, 2), (2, 1), "same"),
    (1, 2, "same"),
    ((1, 4), 1, "valid"),
]
IDS = [f"p{p}-s{s}-{pad}".replace(" ", "") for p, s, pad in CONFIGS]
configs = pytest.mark.parametrize("pool, strides, padding", CONFIGS, ids=IDS)
kinds = pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D],
                                ids=["max", "avg"])


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _layer(cls, pool=2, strides=None, padding="valid", dtype="float64", input_shape=(H, W, C)):
    layer = cls(pool, strides=strides, padding=padding)
    layer.build_for(input_shape, dtype=dtype, rng=np.random.default_rng(0))
    return layer


def _x(shape=(BATCH, H, W, C), dtype=np.float64, seed=2):
    # Continuous random values: no ties, so max pooling is differentiable at x.
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def tf_same_pads(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def torch_pool(cls, x, pool, strides, padding):
    """PyTorch pooling on channels-last arrays; returns (y channels-last, leaf x tensor)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    pool, strides = _pair(pool), _pair(strides or pool)
    xt = torch.tensor(x, requires_grad=True)
    h = xt.permute(0, 3, 1, 2)
    pads = (0, 0, 0, 0)
    if padding == "same":
        (pt, pb), (pl, pr) = [tf_same_pads(n, k, s) for n, k, s in zip(x.shape[1:3], pool, strides)]
        pads = (pl, pr, pt, pb)
    if cls is MaxPooling2D:
        y = F.max_pool2d(F.pad(h, pads, value=-np.inf), pool, strides)
    elif padding == "valid":
        y = F.avg_pool2d(h, pool, strides, count_include_pad=False)
    else:
        # Window sums over zero padding, divided by the number of real pixels in each window.
        total = F.avg_pool2d(F.pad(h, pads), pool, strides, divisor_override=1)
        count = F.avg_pool2d(F.pad(torch.ones_like(h[:1, :1]), pads), pool, strides,
                             divisor_override=1)
        y = total / count
    return y.permute(0, 2, 3, 1), xt


# -- gradients and PyTorch ------------------------------------------------------------------------


@kinds
@configs
def test_gradients_match_finite_differences(cls, pool, strides, padding):
    layer = _layer(cls, pool, strides, padding)
    gx, params = check_layer_gradients(layer, _x())
    assert gx.shape == (BATCH, H, W, C) and params == []


@kinds
@configs
def test_forward_and_gradients_match_torch(cls, pool, strides, padding):
    torch = pytest.importorskip("torch")
    layer = _layer(cls, pool, strides, padding)
    x = _x()
    y = np.array(layer.forward(x, training=True), copy=True)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)
    yt, xt = torch_pool(cls, x, pool, strides, padding)
    (yt * torch.tensor(R)).sum().backward()
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_average_same_padding_keeps_the_count_include_pad_false_convention():
    # A symmetric-padding case that PyTorch's own padding= can express: 3x3 pool, stride 1,
    # 'same' on 5x5 pads one pixel all round.
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _x((1, 5, 5, 2))
    y = _layer(AveragePooling2D, 3, 1, "same", input_shape=(5, 5, 2)).forward(x)
    ref = F.avg_pool2d(torch.tensor(x).permute(0, 3, 1, 2), 3, 1, padding=1,
                       count_include_pad=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-14)


# -- by hand --------------------------------------------------------------------------------------


def test_average_same_padding_by_hand_divides_by_real_pixels():
    # 3x3 image, 2x2 pool, stride 2, 'same': one pixel of padding at the bottom and the right.
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y = _layer(AveragePooling2D, 2, None, "same", input_shape=(3, 3, 1)).forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])


def test_max_same_padding_by_hand_never_picks_the_padding():
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # all negative: a zero pad would win
    y = _layer(MaxPooling2D, 2, None, "same", input_shape=(3, 3, 1)).forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1, -3], [-7, -9]])


def test_max_ties_send_the_gradient_to_the_first_maximum_as_torch_does():
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 4, 4, 1))
    x[0, 2:, 2:, 0] = 5.0  # a 2x2 window of four equal maxima
    layer = _layer(MaxPooling2D, 2, None, "valid", input_shape=(4, 4, 1))
    layer.forward(x, training=True)
    gx = layer.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1.0  # top-left of each
    np.testing.assert_array_equal(gx, expected)
    yt, xt = torch_pool(MaxPooling2D, x, 2, None, "valid")
    yt.sum().backward()
    np.testing.assert_array_equal(gx, xt.grad.numpy()[0, :, :, 0])


def test_overlapping_max_windows_accumulate_on_a_shared_winner():
    # 3x3 pool, stride 1 on 5x5: the centre pixel is the maximum of all nine windows.
    x = np.random.default_rng(0).uniform(-1, 0, size=(1, 5, 5, 1))
    x[0, 2, 2, 0] = 10.0
    layer = _layer(MaxPooling2D, 3, 1, "valid", input_shape=(5, 5, 1))
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, 10.0)
    g = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    gx = layer.backward(g)
    assert gx[0, 2, 2, 0] == g.sum()
    assert np.count_nonzero(gx) == 1


def test_overlapping_average_windows_accumulate():
    layer = _layer(AveragePooling2D, 2, 1, "valid", input_shape=(3, 3, 1))
    layer.forward(np.zeros((1, 3, 3, 1)), training=True)
    gx = layer.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    np.testing.assert_array_equal(gx, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)


def test_max_pooling_propagates_nan():
    x = np.ones((1, 2, 2, 1))
    x[0, 1, 0, 0] = np.nan
    assert np.isnan(_layer(MaxPooling2D, input_shape=(2, 2, 1)).forward(x)).all()


# -- global average pooling -----------------------------------------------------------------------


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling(keepdims):
    torch = pytest.importorskip("torch")
    layer = GlobalAveragePooling2D(keepdims=keepdims)
    layer.build_for((H, W, C), dtype="float64")
    assert layer.output_shape == ((1, 1, C) if keepdims else (C,))
    x = _x()
    check_layer_gradients(layer, x)
    y = np.array(layer.forward(x, training=True), copy=True)
    assert y.shape == (BATCH, *layer.output_shape)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = layer.backward(R)
    xt = torch.tensor(x, requires_grad=True)
    yt = xt.mean(dim=(1, 2), keepdim=keepdims)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    clone = GlobalAveragePooling2D.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.keepdims == keepdims


def test_global_average_pooling_rejects_flat_inputs():
    with pytest.raises(ValueError, match=r"GlobalAveragePooling2D 'gap'.*\(batch, 64\)"):
        GlobalAveragePooling2D(name="gap").build_for((64,))


# -- contract details -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D])
def test_no_input_gradient_when_not_needed(cls):
    layer = cls() if cls is GlobalAveragePooling2D else cls(3, strides=2, padding="same")
    layer.build_for((H, W, C), dtype="float64")
    y = layer.forward(_x(), training=True)
    assert layer.backward(np.ones_like(y)).shape == (BATCH, H, W, C)
    layer.need_input_grad = False
    layer.forward(_x(), training=True)
    assert layer.backward(np.ones_like(y)) is None


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D])
def test_float32_gives_float32_close_to_float64(cls):
    args = {} if cls is GlobalAveragePooling2D else dict(pool_size=3, strides=2, padding="same")
    l32, l64 = cls(**args), cls(**args)
    l32.build_for((H, W, C), dtype="float32")
    l64.build_for((H, W, C), dtype="float64")
    x = _x()
    y32 = l32.forward(x.astype(np.float32), training=True)
    g32 = l32.backward(np.ones_like(y32))
    assert y32.dtype == np.float32 and g32.dtype == np.float32
    y64 = l64.forward(x, training=True)
    np.testing.assert_allclose(y32, y64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g32, l64.backward(np.ones_like(y64)), rtol=1e-6, atol=1e-6)


@kinds
def test_batch_sizes_can_change_and_inputs_may_be_views(cls):
    layer = _layer(cls, 3, 2, "same")
    x2, x3 = _x(), _x((3, H, W, C), seed=5)
    y2 = np.array(layer.forward(x2, training=True), copy=True)
    g2 = np.array(layer.backward(np.ones_like(y2)), copy=True)
    layer.forward(x3, training=True)
    layer.backward(np.ones((3, *layer.output_shape)))
    np.testing.assert_array_equal(layer.forward(x2, training=True), y2)
    np.testing.assert_array_equal(layer.backward(np.ones_like(y2)), g2)
    view = np.concatenate([x2, x2], axis=2)[:, :, ::2]
    np.testing.assert_array_equal(layer.forward(view),
                                  layer.forward(np.ascontiguousarray(view)))


@kinds
@configs
def test_compute_output_shape_matches_forward(cls, pool, strides, padding):
    layer = _layer(cls, pool, strides, padding)
    y = layer.forward(_x())
    assert y.shape[1:] == layer.output_shape == layer.compute_output_shape((H, W, C))
    expect = []
    for n, k, s in zip((H, W), _pair(pool), _pair(strides or pool)):
        expect.append(-(-n // s) if padding == "same" else (n - k) // s + 1)
    assert y.shape[1:] == (*expect, C)


@kinds
def test_get_config_round_trip_and_keras_defaults(cls):
    layer = cls((2, 3), strides=(1, 2), padding="same", name="p")
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"name": "p", "pool_size": [2, 3], "strides": [1, 2], "padding": "same"}
    clone = cls.from_config(config)
    assert (clone.pool_size, clone.strides, clone.padding) == ((2, 3), (1, 2), "same")
    default = cls()
    assert (default.pool_size, default.strides, default.padding) == ((2, 2), (2, 2), "valid")
    assert cls(3).strides == (3, 3)  # strides=None means strides = pool_size


@kinds
def test_errors_name_the_layer_and_the_shapes(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name} 'pl'.*\(batch, 784\).*Reshape\(\(28, 28, 1\)\)"):
        cls(name="pl").build_for((784,))
    with pytest.raises(ValueError, match=rf"{name} 'pl2': pool 5x5 is larger than the padded "
                                         rf"input 3x4 \(inputs \(batch, 3, 4, 1\)"):
        cls(5, name="pl2").build_for((3, 4, 1))
    cls(5, padding="same").build_for((3, 4, 1))  # 'same' pads enough
    for bad in (dict(pool_size=0), dict(pool_size=(2, 2, 2)), dict(strides=-1),
                dict(padding="causal")):
        with pytest.raises(ValueError, match=f"{name} ({'|'.join(bad)})"):
            cls(**bad)
