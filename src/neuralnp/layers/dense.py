"""The fully connected layer."""

from .. import initializers, regularizers
from .._registry import serialize
from . import activations
from .base import Layer

import numpy as np


class Dense(Layer):
    """``y = f(x W + b)`` with ``x: (batch, inputs)``, ``W: (inputs, units)``, ``b: (units,)``.

    Backward, with ``g = ∂L/∂z`` after the activation's own backward:
    ``∂L/∂W = xᵀ g``, ``∂L/∂b = Σ_batch g``, ``∂L/∂x = g Wᵀ`` (skipped for the model's first layer).

    >>> layer = Dense(3, activation="tanh")
    >>> layer(np.ones((2, 4), dtype="float32")).shape
    (2, 3)
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 input_dim=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_dim = None if input_dim is None else int(input_dim)
        self.kernel = self.bias = None

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense layer {self.name!r} expects inputs of shape (batch, features), got "
                f"(batch, {', '.join(map(str, input_shape))}); put a Flatten layer before it"
            )
        if self.input_dim is not None and input_shape[0] != self.input_dim:
            raise ValueError(
                f"Dense layer {self.name!r} was declared with input_dim={self.input_dim} but "
                f"receives {input_shape[0]} features"
            )
        self.kernel = self.add_weight("kernel", (input_shape[0], self.units), self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)
        if self.activation is not None:
            self.activation.build_for((self.units,), self.dtype, self._rng)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def parameters(self):
        extra = self.activation.parameters() if self.activation is not None else []
        return list(self._params) + extra

    def regularized(self):
        pairs = [(self.kernel, self.kernel_regularizer), (self.bias, self.bias_regularizer)]
        return [(p, r) for p, r in pairs if p is not None and r is not None]

    def states(self):
        extra = self.activation.states() if self.activation is not None else []
        return list(self._states) + extra

    def forward(self, x, training=False):
        self._x = x
        z = self._workspace("z", (x.shape[0], self.units))
        np.matmul(x, self.kernel.value, out=z)
        if self.use_bias:
            z += self.bias.value
        if self.activation is None or self.emit_logits:
            return z
        return self.activation.forward(z, training)

    def backward(self, grad_out):
        if self.activation is not None and not self.emit_logits:
            grad_out = self.activation.backward(grad_out)
        np.matmul(self._x.T, grad_out, out=self.kernel.grad)
        if self.use_bias:
            np.sum(grad_out, axis=0, out=self.bias.grad)
        if not self.need_input_grad:
            return None
        grad_in = self._workspace("grad_in", self._x.shape)
        return np.matmul(grad_out, self.kernel.value.T, out=grad_in)

    def get_config(self):
        config = {
            **super().get_config(),
            "units": self.units,
            "activation": activations.activation_spec(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": serialize(self.kernel_initializer),
            "bias_initializer": serialize(self.bias_initializer),
        }
        for key in ("kernel_regularizer", "bias_regularizer"):
            if getattr(self, key) is not None:
                config[key] = serialize(getattr(self, key))
        if self.input_dim is not None:
            config["input_dim"] = self.input_dim
        return config
