"""WeightedLayer (layers/weighted.py): bias + activation fused through the ops, or run by the
activation itself, and the gradients on every path."""

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.backends import NumpyOps, Ops
from neuralnp.layers.activations import fused_form
from gradcheck import check_layer_gradients


@pytest.mark.parametrize("name, fused", [(None, "linear"), ("linear", "linear"),
                                         ("relu", "relu"), ("sigmoid", "sigmoid"),
                                         ("tanh", "tanh"), ("elu", None), ("softmax", None)])
def test_activations_name_their_fused_form(name, fused):
    assert fused_form(nn.layers.activations.get(name)) == fused
    assert fused is None or fused in Ops.ACTIVATIONS


class _Recording(NumpyOps):
    """NumpyOps that notes which fused forms a layer asks for."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def bias_act(self, z, b, act):
        self.calls.append(("bias_act", act, b is not None))
        return super().bias_act(z, b, act)

    def act_grad(self, g, y, act, out, bias_grad=None):
        self.calls.append(("act_grad", act, bias_grad is not None))
        return super().act_grad(g, y, act, out, bias_grad)


@pytest.mark.parametrize("activation, expected", [("relu", "relu"), ("elu", "linear"),
                                                  (None, "linear")])
def test_weighted_layers_run_bias_and_activation_through_the_ops(activation, expected):
    ops = _Recording()
    layer = nn.Dense(3, activation=activation)
    layer.build_for((4,), "float64", ops=ops)
    layer.forward(np.ones((2, 4)), training=True)
    layer.backward(np.ones((2, 3)))
    forward = [("bias_act", expected, True)] if expected != "linear" or activation is None else []
    # a non-fused activation runs itself; only its gradient's bias sum goes through act_grad
    assert ops.calls == forward + [("act_grad", expected, True)]


def test_emit_logits_leaves_out_the_activation():
    layer = nn.Dense(3, activation="sigmoid")
    layer.build_for((4,), "float64", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(5, 4))
    logits = x @ layer.kernel.value + layer.bias.value
    np.testing.assert_allclose(layer.forward(x), 1 / (1 + np.exp(-logits)), rtol=1e-12)
    layer.emit_logits = True
    np.testing.assert_allclose(layer.forward(x), logits, rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "elu", None])
@pytest.mark.parametrize("ops", [Ops(), NumpyOps()], ids=["reference", "numpy"])
def test_weighted_layer_gradients_on_every_path(activation, ops):
    layer = nn.Dense(3, activation=activation)
    layer.build_for((4,), "float64", rng=np.random.default_rng(0), ops=ops)
    layer.need_input_grad = True
    check_layer_gradients(layer, np.random.default_rng(2).normal(size=(5, 4)))
