"""Activations, each a layer of its own (``Dense(3), Tanh(), Dense(1), Tanh()``).

``Dense(units, activation="relu")`` holds one of these layers and runs it after its matrix
product. Each class states its formula and derivative; ``backward`` multiplies the incoming
gradient by that derivative (softmax by its Jacobian).
"""

import math

import numpy as np

from .. import initializers
from .._registry import resolve, serialize
from .base import Layer


class _Elementwise(Layer):
    """An activation applied entry by entry; subclasses write ``_forward`` and ``_derivative``."""

    def forward(self, x, training=False):
        self._x = x
        self._y = self._forward(x)
        return self._y

    def backward(self, grad_out):
        return grad_out * self._derivative(self._x, self._y)


class Linear(_Elementwise):
    """``f(x) = x``."""

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out):
        return grad_out


class BinaryStep(_Elementwise):
    """``f(x) = 1 if x >= 0 else 0``; its derivative is 0 wherever it exists, so nothing learns
    through it (kept for teaching the perceptron)."""

    def _forward(self, x):
        return (x >= 0).astype(x.dtype)

    def _derivative(self, x, y):
        return np.zeros_like(x)


def sigmoid(x):
    """``1 / (1 + e^-x)`` without overflow: ``e^-|x|`` never exceeds 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


class Sigmoid(_Elementwise):
    """``σ(x) = 1 / (1 + e^-x)``; ``σ' = σ (1 - σ)``."""

    def _forward(self, x):
        return sigmoid(x)

    def _derivative(self, x, y):
        return y * (1.0 - y)


class Tanh(_Elementwise):
    """``tanh(x)``; derivative ``1 - tanh²``."""

    def _forward(self, x):
        return np.tanh(x)

    def _derivative(self, x, y):
        return 1.0 - y * y


class ArcTan(_Elementwise):
    """``arctan(x)``; derivative ``1 / (1 + x²)``."""

    def _forward(self, x):
        return np.arctan(x)

    def _derivative(self, x, y):
        return 1.0 / (1.0 + x * x)


class ReLU(_Elementwise):
    """``max(x, 0)``; derivative ``1 if x > 0 else 0``."""

    def _forward(self, x):
        return np.maximum(x, 0)

    def _derivative(self, x, y):
        return (x > 0).astype(x.dtype)


class LeakyReLU(_Elementwise):
    """``x if x > 0 else a·x`` with ``a = negative_slope`` (0.01, PyTorch's default)."""

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def _forward(self, x):
        return np.where(x > 0, x, self.negative_slope * x)

    def _derivative(self, x, y):
        return np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class PReLU(Layer):
    """Leaky ReLU with a learned slope per feature: ``x if x > 0 else α·x``.

    ``α`` has the input's shape (without batch) except along ``shared_axes`` (1-based, as in
    Keras), starting at ``alpha_initializer`` (0.25, PyTorch's default).
    ``∂L/∂α = Σ g·x`` over the batch (and shared axes) where ``x <= 0``.
    """

    def __init__(self, alpha_initializer=0.25, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha_initializer, (int, float)):
            alpha_initializer = initializers.Constant(alpha_initializer)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.shared_axes = None if shared_axes is None else tuple(int(a) for a in shared_axes)

    def build(self, input_shape):
        shape = list(input_shape)
        for axis in self.shared_axes or ():
            shape[axis - 1] = 1
        self.alpha = self.add_weight("alpha", shape, self.alpha_initializer)

    def forward(self, x, training=False):
        self._x = x
        return np.where(x > 0, x, self.alpha.value * x)

    def backward(self, grad_out):
        x = self._x
        negative = x <= 0
        reduce_axes = (0,) + tuple(self.shared_axes or ())
        np.sum(np.where(negative, grad_out * x, 0.0), axis=reduce_axes, keepdims=True,
               out=self.alpha.grad.reshape((1,) + self.alpha.shape))
        return np.where(negative, self.alpha.value * grad_out, grad_out)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": serialize(self.alpha_initializer),
                "shared_axes": None if self.shared_axes is None else list(self.shared_axes)}


class ELU(_Elementwise):
    """``x if x > 0 else α(eˣ - 1)``; derivative ``1 if x > 0 else f(x) + α``."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def _forward(self, x):
        # expm1 of min(x, 0) so that large positive x never overflows in the unused branch
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def _derivative(self, x, y):
        return np.where(x > 0, 1.0, y + self.alpha).astype(x.dtype)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class SELU(_Elementwise):
    """``λ·(x if x > 0 else α(eˣ - 1))`` with the self-normalising constants of Klambauer et al."""

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def _forward(self, x):
        return self.SCALE * np.where(x > 0, x, self.ALPHA * np.expm1(np.minimum(x, 0)))

    def _derivative(self, x, y):
        return np.where(x > 0, self.SCALE, y + self.SCALE * self.ALPHA).astype(x.dtype)


class Softplus(_Elementwise):
    """``log(1 + eˣ)`` (as ``logaddexp(0, x)``, which never overflows); derivative ``σ(x)``."""

    def _forward(self, x):
        return np.logaddexp(0, x)

    def _derivative(self, x, y):
        return sigmoid(x)


def _erf(x):
    try:
        from scipy.special import erf
    except ImportError:
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x)


class GELU(_Elementwise):
    """``x·Φ(x)``, Φ the standard normal CDF (``approximate="tanh"``: Hendrycks' tanh form).

    The exact form uses SciPy's ``erf`` when SciPy is installed and ``math.erf`` otherwise.
    """

    def __init__(self, approximate="none", **kwargs):
        super().__init__(**kwargs)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    _K = math.sqrt(2.0 / math.pi)

    def _forward(self, x):
        if self.approximate == "tanh":
            self._t = np.tanh(self._K * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1.0 + self._t)
        self._cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        return x * self._cdf

    def _derivative(self, x, y):
        if self.approximate == "tanh":
            t = self._t
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * self._K * (1.0 + 3 * 0.044715 * x * x)
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return self._cdf + x * pdf

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


class SiLU(_Elementwise):
    """``x·σ(x)`` (also called swish); derivative ``σ(x)(1 + x(1 - σ(x)))``."""

    def _forward(self, x):
        self._s = sigmoid(x)
        return x * self._s

    def _derivative(self, x, y):
        s = self._s
        return s * (1.0 + x * (1.0 - s))


class Softmax(Layer):
    """``softmax(x)_i = e^(x_i - max x) / Σ_j e^(x_j - max x)`` along ``axis``.

    Backward: ``dx = y ⊙ (g - Σ_j g_j y_j)``. Before a cross-entropy loss the model fuses it away
    (the loss works from logits and its gradient is ``p - y``).
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def forward(self, x, training=False):
        self._y = softmax(x, self.axis)
        return self._y

    def backward(self, grad_out):
        y = self._y
        return y * (grad_out - np.sum(grad_out * y, axis=self.axis, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def softmax(x, axis=-1):
    """Numerically stable softmax (the max is subtracted before exponentiating)."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


REGISTRY = {
    "linear": Linear,
    "binary_step": BinaryStep,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "arctan": ArcTan,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "elu": ELU,
    "selu": SELU,
    "softplus": Softplus,
    "gelu": GELU,
    "silu": SiLU,
    "swish": SiLU,
    "softmax": Softmax,
}


def get(identifier):
    """An activation layer from a name (``"relu"``), a config dict, a layer, or ``None``."""
    if identifier is None:
        return None
    return resolve(identifier, REGISTRY, "activation")


def name_of(layer):
    """The registry name of an activation layer (``"relu"`` for a ReLU), or None."""
    for name, cls in REGISTRY.items():
        if type(layer) is cls:
            return name
    return None


class Activation(Layer):
    """An activation given by name, as a layer: ``Activation("tanh")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = get(activation)
        if self.activation is None:
            raise ValueError("Activation needs a name, e.g. Activation('relu')")

    def build(self, input_shape):
        self.activation.build_for(input_shape, self.dtype, self._rng)

    def parameters(self):
        return self.activation.parameters()

    def states(self):
        return self.activation.states()

    def forward(self, x, training=False):
        return self.activation.forward(x, training)

    def backward(self, grad_out):
        return self.activation.backward(grad_out)

    def get_config(self):
        return {**super().get_config(), "activation": activation_spec(self.activation)}


def activation_spec(layer):
    """How a config names an activation: its registry name, or the full config if it has options."""
    if layer is None:
        return None
    if layer.get_config().keys() - {"name"}:
        return serialize(layer)
    return name_of(layer)


def output_activation(layer):
    """The activation a layer ends with (a Dense's, an Activation's, or the layer itself)."""
    if isinstance(layer, Activation):
        return layer.activation
    if type(layer) in REGISTRY.values():
        return layer
    return getattr(layer, "activation", None)
