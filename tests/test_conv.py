"""Conv2D (channels-last): finite differences, PyTorch, TF 'same' padding, shapes, errors, config.

PyTorch is channels-first: the reference converts x with ``transpose(0, 3, 1, 2)`` and the
kernel ``(kh, kw, in, out) → (out, in, kh, kw)``, and does 'same' padding with an explicit
``F.pad`` using TensorFlow's split (the odd pixel at the bottom/right).
"""

import json

import numpy as np
import pytest

import neuralnp as nn
from gradcheck import check_layer_gradients
from neuralnp.layers.conv import Conv2D
from neuralnp.layers.pooling import MaxPooling2D
from neuralnp.layers.reshape import Flatten, Reshape

BATCH, H, W, C, FILTERS = 2, 7, 9, 3, 4

# (kernel_size, strides, padding, dilation_rate): 1x1/3x3/2x5 kernels, strides 1/2/3,
# both paddings, dilations 1/2, on 7x9 images whose odd sizes exercise the asymmetric 'same' split.
CONFIGS = [
    (1, 1, "valid", 1),
    (1, 2, "same", 1),
    (1, 3, "valid", 1),
    (3, 1, "valid", 1),
    (3, 1, "same", 1),
    (3, 2, "valid", 1),
    (3, 2, "same", 1),
    (3, 3, "same", 1),
    (3, 3, "valid", 1),
    (3, 1, "same", 2),
    (3, 2, "valid", 2),
    ((2, 5), 1, "same", 1),
    ((2, 5), (2, 1), "valid", 1),
    ((2, 5), 3, "same", 2),
    ((2, 5), (1, 3), "valid", (2, 1)),
    ((3, 3), (1, 2), "same", (2, 1)),
]
IDS = [f"k{k}-s{s}-{p}-d{d}".replace(" ", "") for k, s, p, d in CONFIGS]
configs = pytest.mark.parametrize("kernel, strides, padding, dilation", CONFIGS, ids=IDS)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv(kernel=3, strides=1, padding="valid", dilation=1, activation=None, use_bias=True,
          dtype="float64", input_shape=(H, W, C), filters=FILTERS):
    """A built Conv2D with random weights (a non-zero bias too)."""
    layer = Conv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                   activation=activation, use_bias=use_bias)
    layer.build_for(input_shape, dtype=dtype, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layer


def _x(shape=(BATCH, H, W, C), dtype=np.float64, seed=2):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def tf_same_pads(size, k, stride, dilation):
    """TensorFlow's 'same' padding along one axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def torch_conv(x, kernel, bias, strides, padding, dilation):
    """PyTorch's conv2d on channels-last arrays; returns (y, leaf tensors x, kernel, bias)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    kt = torch.tensor(kernel, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    h = xt.permute(0, 3, 1, 2)  # (batch, H, W, C) -> (batch, C, H, W)
    if padding == "same":
        (pt, pb), (pl, pr) = [tf_same_pads(n, k, s, d) for n, k, s, d
                              in zip(x.shape[1:3], kernel.shape[:2], strides, dilation)]
        h = F.pad(h, (pl, pr, pt, pb))
    y = F.conv2d(h, kt.permute(3, 2, 0, 1), bt, stride=strides, dilation=dilation)
    return y.permute(0, 2, 3, 1), xt, kt, bt


# -- gradients ------------------------------------------------------------------------------------


@configs
def test_gradients_match_finite_differences(kernel, strides, padding, dilation):
    layer = _conv(kernel, strides, padding, dilation)
    gx, (gk, gb) = check_layer_gradients(layer, _x())
    assert gx.shape == (BATCH, H, W, C)
    assert gk.shape == (*_pair(kernel), C, FILTERS) and gb.shape == (FILTERS,)


@pytest.mark.parametrize("activation", ["tanh", "relu", "prelu"])
def test_gradients_through_the_activation(activation):
    layer = _conv(3, 2, "same", 1, activation=activation)
    check_layer_gradients(layer, _x())


def test_gradients_without_bias():
    layer = _conv((2, 5), 2, "same", 1, use_bias=False)
    assert len(layer.parameters()) == 1
    check_layer_gradients(layer, _x())


@configs
@pytest.mark.parametrize("channels", [C, 9])  # im2col copies per kernel entry below 8 channels
def test_forward_and_gradients_match_torch(kernel, strides, padding, dilation, channels):
    torch = pytest.importorskip("torch")
    layer = _conv(kernel, strides, padding, dilation, input_shape=(H, W, channels))
    x = _x((BATCH, H, W, channels))
    y = np.array(layer.forward(x, training=True), copy=True)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)

    k, b = layer.get_weights()
    yt, xt, kt, bt = torch_conv(x, k, b, _pair(strides), padding, _pair(dilation))
    (yt * torch.tensor(R)).sum().backward()
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **close)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **close)
    np.testing.assert_allclose(layer.kernel.grad, kt.grad.numpy(), **close)
    np.testing.assert_allclose(layer.bias.grad, bt.grad.numpy(), **close)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "elu"])
def test_activation_matches_torch(activation):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "elu": F.elu}[activation]
    layer = _conv(3, 1, "same", 1, activation=activation)
    x = _x()
    y = np.array(layer.forward(x, training=True), copy=True)
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)
    k, b = layer.get_weights()
    yt, xt, kt, bt = torch_conv(x, k, b, (1, 1), "same", (1, 1))
    yt = act(yt)
    (yt * torch.tensor(R)).sum().backward()
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **close)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **close)
    np.testing.assert_allclose(layer.kernel.grad, kt.grad.numpy(), **close)
    np.testing.assert_allclose(layer.bias.grad, bt.grad.numpy(), **close)


@pytest.mark.parametrize("image, kernel, strides", [
    ((2, 2), 5, 1),   # 'same' allows a kernel wider than the image: the padding covers it
    ((1, 6), (1, 3), 4),
    ((6, 4), 2, 2),   # even size, even kernel: no padding needed
])
def test_same_padding_edge_cases_match_torch(image, kernel, strides):
    torch = pytest.importorskip("torch")
    layer = _conv(kernel, strides, "same", 1, input_shape=(*image, C))
    x = _x((BATCH, *image, C))
    y = np.array(layer.forward(x, training=True), copy=True)
    assert y.shape[1:3] == tuple(-(-n // s) for n, s in zip(image, _pair(strides)))
    R = np.random.default_rng(3).normal(size=y.shape)
    gx = np.array(layer.backward(R), copy=True)
    k, b = layer.get_weights()
    yt, xt, kt, bt = torch_conv(x, k, b, _pair(strides), "same", (1, 1))
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.kernel.grad, kt.grad.numpy(), rtol=1e-10, atol=1e-12)


# -- by hand: the layout and TensorFlow's padding split ----------------------------------------


def test_forward_by_hand_channels_last_and_tf_same_split():
    # A 2x2 all-ones kernel with 'same' padding on a 3x3 image needs one pixel of padding per
    # axis; TensorFlow puts it at the bottom/right, so output (i, j) sums x[i:i+2, j:j+2].
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    layer = Conv2D(1, 2, padding="same", use_bias=False)
    layer.build_for((3, 3, 1), dtype="float64")
    layer.set_weights([np.ones((2, 2, 1, 1))])
    expected = [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5, 2 + 5],
                [3 + 4 + 6 + 7, 4 + 5 + 7 + 8, 5 + 8],
                [6 + 7, 7 + 8, 8]]
    np.testing.assert_array_equal(layer.forward(x)[0, :, :, 0], expected)


def test_kernel_layout_is_kh_kw_in_out():
    # Input channel c, filter f: a kernel that is 1 only at [0, 0, 1, 0] copies channel 1 of
    # the top-left pixel of each window into filter 0, and filter 1 stays zero.
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 2))
    layer = Conv2D(2, (2, 3), use_bias=False)
    layer.build_for((3, 4, 2), dtype="float64")
    kernel = np.zeros((2, 3, 2, 2))
    kernel[0, 0, 1, 0] = 1.0
    layer.set_weights([kernel])
    y = layer.forward(x)
    assert y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, :2, :2, 1])
    np.testing.assert_array_equal(y[0, :, :, 1], 0.0)


# -- contract details -----------------------------------------------------------------------------


def test_no_input_gradient_when_not_needed_but_weights_still_get_theirs():
    layer = _conv(3, 2, "same", 1)
    x = _x()
    R = np.random.default_rng(3).normal(size=(BATCH, 4, 5, FILTERS))
    layer.forward(x, training=True)
    assert layer.backward(R).shape == x.shape
    expected = [np.array(p.grad, copy=True) for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[...] = np.nan
    layer.need_input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(R) is None
    for p, g in zip(layer.parameters(), expected):
        np.testing.assert_array_equal(p.grad, g)


def test_backward_overwrites_gradients_and_batch_sizes_can_change():
    layer = _conv(3, 1, "same", 1)
    x2, x3 = _x(), _x((3, H, W, C), seed=5)
    R2 = np.random.default_rng(3).normal(size=(2, H, W, FILTERS))
    R3 = np.random.default_rng(4).normal(size=(3, H, W, FILTERS))
    y2 = np.array(layer.forward(x2, training=True), copy=True)
    g2 = np.array(layer.backward(R2), copy=True)
    k2 = layer.kernel.grad.copy()
    layer.forward(x3, training=True)
    layer.backward(R3)
    assert not np.allclose(layer.kernel.grad, k2)
    np.testing.assert_array_equal(layer.forward(x2, training=True), y2)
    np.testing.assert_array_equal(layer.backward(R2), g2)
    np.testing.assert_array_equal(layer.kernel.grad, k2)  # overwritten, not accumulated


@pytest.mark.parametrize("kernel", [1, 3])
def test_non_contiguous_input_gives_the_same_result(kernel):
    layer = _conv(kernel, 1, "valid", 1)
    x = _x((BATCH, H, 2 * W, C))[:, :, ::2]  # a strided view
    assert not x.flags.c_contiguous
    y = np.array(layer.forward(x, training=True), copy=True)
    np.testing.assert_array_equal(y, layer.forward(np.ascontiguousarray(x)))


@pytest.mark.parametrize("kernel, strides, padding, dilation",
                         [CONFIGS[0], CONFIGS[6], CONFIGS[13]], ids=[IDS[0], IDS[6], IDS[13]])
def test_float32_gives_float32_close_to_float64(kernel, strides, padding, dilation):
    l64 = _conv(kernel, strides, padding, dilation, activation="relu")
    l32 = _conv(kernel, strides, padding, dilation, activation="relu", dtype="float32")
    x = _x()
    y32 = l32.forward(x.astype(np.float32), training=True)
    R = np.random.default_rng(3).normal(size=y32.shape)
    gx32 = l32.backward(R.astype(np.float32))
    assert y32.dtype == np.float32 and gx32.dtype == np.float32
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32
               for p in l32.parameters())
    y64 = l64.forward(x, training=True)
    gx64 = l64.backward(R)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx32, gx64, rtol=1e-4, atol=1e-4)
    for p32, p64 in zip(l32.parameters(), l64.parameters()):
        np.testing.assert_allclose(p32.grad, p64.grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_call_builds_from_the_input(dtype):
    layer = Conv2D(5, 3, strides=2, padding="same")
    y = layer(_x(dtype=dtype))
    assert y.shape == (BATCH, 4, 5, 5) and y.dtype == dtype
    assert layer.input_shape == (H, W, C) and layer.output_shape == (4, 5, 5)
    assert [w.shape for w in layer.get_weights()] == [(3, 3, C, 5), (5,)]


@configs
def test_compute_output_shape_matches_forward(kernel, strides, padding, dilation):
    layer = _conv(kernel, strides, padding, dilation)
    y = layer.forward(_x())
    assert y.shape[1:] == layer.output_shape == layer.compute_output_shape((H, W, C))
    # and the Keras formulas
    expect = []
    for n, k, s, d in zip((H, W), _pair(kernel), _pair(strides), _pair(dilation)):
        expect.append(-(-n // s) if padding == "same" else (n - (k - 1) * d - 1) // s + 1)
    assert y.shape[1:3] == tuple(expect)


def test_default_initialization_is_glorot_uniform_over_the_receptive_field():
    layer = Conv2D(16, 3)
    layer.build_for((8, 8, 4), dtype="float64", rng=np.random.default_rng(0))
    kernel, bias = layer.get_weights()
    limit = np.sqrt(6.0 / (9 * 4 + 9 * 16))  # fans (kh·kw·in, kh·kw·out), as Keras
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    np.testing.assert_array_equal(bias, 0.0)


def test_get_config_round_trip():
    layer = Conv2D(6, (2, 5), strides=(1, 2), padding="same", dilation_rate=(2, 1),
                   activation="relu", use_bias=False, kernel_initializer="he_normal",
                   kernel_regularizer="l2", name="c1", dtype="float64")
    config = json.loads(json.dumps(layer.get_config()))  # JSON-serialisable
    clone = Conv2D.from_config(config)
    assert clone.get_config() == config
    assert (clone.filters, clone.kernel_size, clone.strides, clone.padding, clone.dilation_rate,
            clone.use_bias) == (6, (2, 5), (1, 2), "same", (2, 1), False)
    layer.build_for((H, W, C), rng=np.random.default_rng(0))
    clone.build_for((H, W, C), rng=np.random.default_rng(9))
    clone.set_weights(layer.get_weights())
    x = _x()
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
    assert [r for _, r in clone.regularized()] and clone.regularized()[0][0] is clone.kernel


def test_defaults_are_keras_defaults():
    config = Conv2D(3, 3).get_config()
    assert config["strides"] == [1, 1] and config["padding"] == "valid"
    assert config["dilation_rate"] == [1, 1] and config["activation"] is None
    assert config["use_bias"] is True
    assert config["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert config["bias_initializer"]["class_name"] == "Zeros"


# -- errors ---------------------------------------------------------------------------------------


def test_flat_input_error_names_the_layer_and_shapes_and_suggests_reshape():
    layer = Conv2D(8, 3, name="conv_a")
    with pytest.raises(ValueError) as err:
        layer.build_for((784,))
    msg = str(err.value)
    assert "Conv2D 'conv_a'" in msg and "(batch, height, width, channels)" in msg
    assert "(batch, 784)" in msg and "Reshape((28, 28, 1))" in msg
    with pytest.raises(ValueError, match=r"\(batch, 28, 28\).*Reshape\(\(28, 28, 1\)\)"):
        Conv2D(8, 3)(np.zeros((2, 28, 28)))


@pytest.mark.parametrize("kernel, dilation, image, match", [
    (5, 1, (3, 3, 1), r"kernel 5x5 is larger than the padded input 3x3"),
    ((2, 4), 1, (4, 3, 2), r"kernel 2x4 is larger than the padded input 4x3"),
    (3, 3, (6, 8, 1), r"kernel 3x3 \(dilated extent 7x7\) is larger than the padded input 6x8"),
])
def test_kernel_larger_than_the_padded_input_is_rejected(kernel, dilation, image, match):
    layer = Conv2D(2, kernel, dilation_rate=dilation, name="big")
    with pytest.raises(ValueError, match=match) as err:
        layer.build_for(image)
    assert "Conv2D 'big'" in str(err.value)
    assert "(batch, " + ", ".join(map(str, image)) + ")" in str(err.value)
    # 'same' pads enough for any kernel
    Conv2D(2, kernel, dilation_rate=dilation, padding="same").build_for(image)


def test_forward_rejects_images_of_another_shape():
    layer = _conv()
    with pytest.raises(ValueError,
                       match=r"built for inputs \(batch, 7, 9, 3\), got \(batch, 9, 7, 3\)"):
        layer.forward(np.zeros((1, 9, 7, 3)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(filters=0, kernel_size=3), "filters"),
    (dict(filters=2.5, kernel_size=3), "filters"),
    (dict(filters=4, kernel_size=0), "kernel_size"),
    (dict(filters=4, kernel_size=(3,)), "kernel_size"),
    (dict(filters=4, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(filters=4, kernel_size=3, strides=(1, 0)), "strides"),
    (dict(filters=4, kernel_size=3, dilation_rate=True), "dilation_rate"),
    (dict(filters=4, kernel_size=3, padding="full"), "padding"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2D(**kwargs)


# -- end to end -----------------------------------------------------------------------------------


def test_small_cnn_learns_digits():
    x, y = nn.datasets.digits()
    x = x / 16.0
    model = nn.Sequential([Reshape((8, 8, 1)), Conv2D(8, 3, activation="relu"), MaxPooling2D(),
                           Flatten(), nn.Dense(10, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    # 15 epochs (~0.6 s): with Adam's default 1e-3 this net is at ~0.88 after 5 epochs, here
    # and in the same PyTorch model alike; it passes 0.9 around epoch 9-10 and ends near 0.94.
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert [layer.output_shape for layer in model.layers] == [(8, 8, 1), (6, 6, 8), (3, 3, 8),
                                                              (72,), (10,)]
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    logs = model.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] > 0.9
    assert np.allclose(model.predict(x[:5]).sum(axis=1), 1.0, atol=1e-5)
