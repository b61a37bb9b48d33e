"""Flatten and Reshape: values and order unchanged (row-major, as Keras), gradients, -1,
errors that name the layer and the shapes, config."""

import json

import numpy as np
import pytest

from gradcheck import check_layer_gradients
from neuralnp.layers.reshape import Flatten, Reshape


def _x(shape, dtype=np.float64):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


@pytest.mark.parametrize("input_shape", [(7,), (3, 5), (7, 9, 3), (2, 1, 3, 2)])
def test_flatten_forward_backward_and_gradients(input_shape):
    layer = Flatten()
    layer.build_for(input_shape, dtype="float64")
    x = _x((2, *input_shape))
    y = layer.forward(x)
    assert y.shape == (2, int(np.prod(input_shape))) == (2, *layer.output_shape)
    np.testing.assert_array_equal(y, x.reshape(2, -1))  # C order, as Keras' channels-last
    gx, params = check_layer_gradients(layer, x)
    assert gx.shape == x.shape and params == []


def test_flatten_keeps_the_channels_last_order():
    x = np.arange(2 * 2 * 3).reshape(1, 2, 2, 3).astype(float)  # pixel (i, j) channel c
    y = Flatten()(x)
    np.testing.assert_array_equal(y[0, :3], x[0, 0, 0, :])  # the first pixel's channels first


@pytest.mark.parametrize("target, input_shape, expected", [
    ((8, 8, 1), (64,), (8, 8, 1)),
    ([4, -1], (2, 3, 4), (4, 6)),
    ((-1,), (7, 9, 3), (189,)),
    ((3, -1, 2), (12,), (3, 2, 2)),
])
def test_reshape_forward_backward_and_gradients(target, input_shape, expected):
    layer = Reshape(target)
    assert layer.compute_output_shape(input_shape) == expected
    layer.build_for(input_shape, dtype="float64")
    assert layer.output_shape == expected
    x = _x((3, *input_shape))
    y = layer.forward(x)
    assert y.shape == (3, *expected)
    np.testing.assert_array_equal(y, x.reshape(3, *expected))
    gx, _ = check_layer_gradients(layer, x)
    np.testing.assert_array_equal(gx.shape, x.shape)


def test_reshape_backward_is_the_inverse():
    layer = Reshape((4, 4, 1))
    layer.build_for((16,), dtype="float64")
    g = _x((5, 4, 4, 1))
    np.testing.assert_array_equal(layer.backward(g), g.reshape(5, 16))


@pytest.mark.parametrize("cls, args", [(Flatten, ()), (Reshape, ((4, 4),))])
def test_no_input_gradient_when_not_needed(cls, args):
    layer = cls(*args)
    layer.build_for((2, 8), dtype="float64")
    y = layer.forward(_x((3, 2, 8)), training=True)
    assert layer.backward(np.ones_like(y)).shape == (3, 2, 8)
    layer.need_input_grad = False
    assert layer.backward(np.ones_like(y)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_kept(dtype):
    for layer in (Flatten(), Reshape((2, -1))):
        y = layer(_x((3, 4, 2), dtype))
        assert y.dtype == dtype and layer.backward(y).dtype == dtype


@pytest.mark.parametrize("target, input_shape, match", [
    ((7, 7), (64,), r"Reshape 'r' cannot reshape inputs \(batch, 64\) \(64 values per sample\) "
                    r"to \(batch, 7, 7\) \(49 values\)"),
    ((5, -1), (8, 8, 1), r"Reshape 'r' cannot reshape inputs \(batch, 8, 8, 1\) \(64 values "
                         r"per sample\) to \(batch, 5, -1\) \(a multiple of 5 values\)"),
])
def test_reshape_size_mismatch_names_the_layer_and_the_shapes(target, input_shape, match):
    with pytest.raises(ValueError, match=match):
        Reshape(target, name="r").build_for(input_shape)
    with pytest.raises(ValueError, match=match):
        Reshape(target, name="r").compute_output_shape(input_shape)


@pytest.mark.parametrize("target", [(-1, -1), (0, 4), (3, -2), (), 64, "8,8", (2.0, 4), (True, 4)])
def test_reshape_rejects_bad_target_shapes(target):
    with pytest.raises(ValueError, match="target_shape"):
        Reshape(target)


def test_reshape_forward_rejects_inputs_of_another_shape():
    layer = Reshape((8, 8, 1), name="r2")
    layer.build_for((64,))
    with pytest.raises(ValueError, match=r"Reshape 'r2' was built for inputs \(batch, 64\), "
                                         r"got \(batch, 63\)"):
        layer.forward(np.zeros((2, 63), dtype=np.float32))


def test_get_config_round_trip():
    layer = Reshape((2, -1, 3), name="r3")
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"name": "r3", "target_shape": [2, -1, 3]}
    clone = Reshape.from_config(config)
    assert clone.target_shape == (2, -1, 3) and clone.compute_output_shape((12,)) == (2, 2, 3)
    config = json.loads(json.dumps(Flatten(name="f").get_config()))
    assert config == {"name": "f"} and Flatten.from_config(config).name == "f"
