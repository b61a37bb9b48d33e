"""Layers, one file per family."""

from .activations import (
    ELU, GELU, SELU, Activation, ArcTan, BinaryStep, LeakyReLU, Linear, PReLU, ReLU, Sigmoid,
    SiLU, Softmax, Softplus, Tanh,
)
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNormalization, LayerNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .reshape import Flatten, Reshape

Swish = SiLU

REGISTRY = {
    cls.__name__: cls
    for cls in (Dense, Activation, Linear, BinaryStep, Sigmoid, Tanh, ArcTan, ReLU, LeakyReLU,
                PReLU, ELU, SELU, Softplus, GELU, SiLU, Softmax, Dropout, BatchNormalization,
                LayerNormalization, Conv2D, MaxPooling2D, AveragePooling2D,
                GlobalAveragePooling2D, Flatten, Reshape)
}


def deserialize(spec):
    """A layer from ``{"class_name": ..., "config": ...}``; only known layer classes are allowed."""
    name = spec.get("class_name") if isinstance(spec, dict) else None
    if name not in REGISTRY:
        raise ValueError(f"unknown layer class {name!r}; known layers: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].from_config(dict(spec.get("config", {})))
