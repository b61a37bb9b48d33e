"""The layer contract (layers/base.py): building with the model's ops, workspaces, weights."""

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.backends import Ops, get_ops


def test_build_for_takes_the_given_ops_or_the_default():
    layer = nn.Dense(3)
    layer.build_for((4,), "float64")
    assert layer.ops is get_ops() and layer.xp is np
    reference = Ops()
    layer = nn.Dense(3, activation="relu")
    layer.build_for((4,), "float32", ops=reference)
    # the activation inside runs on the same ops
    assert layer.ops is reference and layer.activation.ops is reference
    assert layer.kernel.value.dtype == np.float32


def test_workspaces_are_made_once_per_key_shape_and_dtype():
    layer = nn.Dense(2)
    layer.build_for((3,), "float32")
    a = layer._workspace("z", (4, 2))
    assert layer._workspace("z", (4, 2)) is a and a.dtype == np.float32
    assert layer._workspace("z", (5, 2)) is not a
    assert layer._workspace("z", (4, 2), np.uint8).dtype == np.uint8


def test_calling_an_unbuilt_layer_builds_it_from_the_input():
    layer = nn.Dense(2)
    y = layer(np.ones((3, 4), dtype="float64"))
    assert layer.built and layer.input_shape == (4,) and y.dtype == np.float64


def test_set_weights_checks_every_array_before_copying_any():
    layer = nn.Dense(2)
    layer.build_for((3,), "float64")
    before = layer.get_weights()
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((3, 2)), np.zeros(5)])
    for got, old in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, old)
    with pytest.raises(ValueError, match="get_weights"):
        layer.set_weights([np.zeros((3, 2))])
