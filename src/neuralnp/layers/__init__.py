"""Layers, one file per family."""

from .activations import (
    ELU, GELU, SELU, Activation, ArcTan, BinaryStep, LeakyReLU, Linear, PReLU, ReLU, Sigmoid,
    SiLU, Softmax, Softplus, Tanh,
)
from . import base as _base
from .base import Layer, register_layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .input import Input
from .normalization import BatchNormalization, LayerNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .reshape import Flatten, Reshape

Swish = SiLU

# Every layer class, filled by Layer.__init_subclass__ as each is defined: the built-in ones once
# the imports above have run, a user's own as soon as its module is imported.
REGISTRY = _base.REGISTRY


def deserialize(spec):
    """A layer from ``{"class_name": ..., "config": ...}``; only known layer classes are allowed."""
    name = spec.get("class_name") if isinstance(spec, dict) else None
    if name not in REGISTRY:
        raise ValueError(f"unknown layer class {name!r}; known layers: "
                         f"{', '.join(sorted(REGISTRY))}. A layer class of your own is known "
                         "once the module defining it has been imported: import it first")
    return REGISTRY[name].from_config(dict(spec.get("config", {})))
