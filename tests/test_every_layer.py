"""Every registered built-in layer passes neuralnp.testing.check_layer: float64 finite differences
of every input and weight gradient (training off and on), the config round trip, float32
against float64, save and load, and its ONNX export.

A new layer class needs a case in CASES; test_every_built_in_layer_has_a_case says so. Shapes
are small on purpose: the check costs two forward calls per input and weight entry.
"""

import pytest

import neuralnp as nn
from neuralnp.layers import REGISTRY
from neuralnp.layers.activations import REGISTRY as ACTIVATIONS
from neuralnp.testing import check_layer

IMAGE = (5, 5, 2)  # odd sides, so "same" padding and strides leave uneven edges

# (test id, a function making the layer, input shape without the batch axis)
CASES = [
    ("Dense", lambda: nn.Dense(3), (4,)),
    ("Dense-no-bias", lambda: nn.Dense(3, use_bias=False), (4,)),
    ("Dense-regularized", lambda: nn.Dense(2, kernel_regularizer="l2", bias_regularizer="l1"),
     (3,)),
    *[(f"Dense-{name}", lambda name=name: nn.Dense(3, activation=name), (4,))
      for name in ACTIVATIONS],
    ("Dense-leaky-0.2", lambda: nn.Dense(3, activation=nn.LeakyReLU(0.2)), (4,)),
    ("Conv2D", lambda: nn.Conv2D(3, 3), IMAGE),
    ("Conv2D-same-stride", lambda: nn.Conv2D(2, (3, 2), strides=2, padding="same",
                                             activation="relu"), IMAGE),
    ("Conv2D-dilated-no-bias", lambda: nn.Conv2D(2, 2, dilation_rate=2, use_bias=False,
                                                 activation="tanh"), IMAGE),
    ("MaxPooling2D", lambda: nn.MaxPooling2D(), IMAGE),
    ("MaxPooling2D-same-3x3-stride-1", lambda: nn.MaxPooling2D(3, strides=1, padding="same"),
     IMAGE),
    ("AveragePooling2D", lambda: nn.AveragePooling2D(), IMAGE),
    ("AveragePooling2D-same", lambda: nn.AveragePooling2D((2, 3), padding="same"), IMAGE),
    ("GlobalAveragePooling2D", lambda: nn.GlobalAveragePooling2D(), IMAGE),
    ("GlobalAveragePooling2D-keepdims", lambda: nn.GlobalAveragePooling2D(keepdims=True), IMAGE),
    ("BatchNormalization", lambda: nn.BatchNormalization(), (4,)),
    ("BatchNormalization-image", lambda: nn.BatchNormalization(momentum=0.9), (3, 3, 2)),
    ("BatchNormalization-axis-1", lambda: nn.BatchNormalization(axis=1), (3, 2)),
    ("BatchNormalization-no-affine", lambda: nn.BatchNormalization(center=False, scale=False),
     (3,)),
    ("LayerNormalization", lambda: nn.LayerNormalization(), (5,)),
    ("LayerNormalization-image", lambda: nn.LayerNormalization(axis=[1, 2, 3]), (3, 3, 2)),
    ("LayerNormalization-no-center", lambda: nn.LayerNormalization(center=False), (3, 4)),
    ("Dropout", lambda: nn.Dropout(0.5), (5,)),
    ("Dropout-seeded", lambda: nn.Dropout(0.3, seed=7), (5,)),
    ("Dropout-channels", lambda: nn.Dropout(0.5, noise_shape=(None, 1, 1, 2)), (3, 3, 2)),
    ("Flatten", lambda: nn.Flatten(), (3, 2, 2)),
    ("Reshape", lambda: nn.Reshape((2, -1)), (6,)),
    ("Reshape-image", lambda: nn.Reshape((2, 3, 1)), (3, 2)),
    ("Linear", lambda: nn.Linear(), (4,)),
    ("BinaryStep", lambda: nn.BinaryStep(), (4,)),
    ("Sigmoid", lambda: nn.Sigmoid(), (4,)),
    ("Tanh", lambda: nn.Tanh(), (4,)),
    ("ArcTan", lambda: nn.ArcTan(), (4,)),
    ("ReLU", lambda: nn.ReLU(), (4,)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2), (4,)),
    ("PReLU", lambda: nn.PReLU(), (4,)),
    ("PReLU-shared", lambda: nn.PReLU(alpha_initializer=0.1, shared_axes=[1, 2]), (3, 3, 2)),
    ("ELU", lambda: nn.ELU(0.7), (4,)),
    ("SELU", lambda: nn.SELU(), (4,)),
    ("Softplus", lambda: nn.Softplus(), (4,)),
    ("GELU", lambda: nn.GELU(), (4,)),
    ("GELU-tanh", lambda: nn.GELU(approximate="tanh"), (4,)),
    ("SiLU", lambda: nn.SiLU(), (4,)),
    ("Softmax", lambda: nn.Softmax(), (4,)),
    ("Softmax-axis-1", lambda: nn.Softmax(axis=1), (3, 2)),
    *[(f"Activation-{name}", lambda name=name: nn.Activation(name), (4,)) for name in ACTIVATIONS],
]


@pytest.mark.parametrize("make, input_shape", [pytest.param(m, s, id=i) for i, m, s in CASES])
def test_the_layer_passes_check_layer(make, input_shape):
    report = check_layer(make(), input_shape)
    assert report.passed == ["config", "build", "gradients", "float32", "save/load", "onnx"]


def test_every_built_in_layer_has_a_case():
    built_in = {name for name, cls in REGISTRY.items()
                if cls.__module__.startswith("neuralnp.layers.")}
    covered = {type(make()).__name__ for _, make, _ in CASES}
    missing = sorted(built_in - covered)
    assert not missing, (f"registered built-in layers without a case: {', '.join(missing)}; "
                         "add one to CASES in tests/test_every_layer.py")
    assert not covered - built_in, "a case names a layer that is not registered"
