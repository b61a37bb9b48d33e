"""Activations, each a layer of its own (``Dense(3), Tanh(), Dense(1), Tanh()``).

``Dense(units, activation="relu")`` holds one of these layers and runs it after its matrix
product. Each class states its formula and derivative; ``backward`` multiplies the incoming
gradient by that derivative (softmax by its Jacobian).
"""

import math

import numpy as np

from .. import initializers
from .._registry import resolve, serialize
from ..backends import get_ops
from .base import Layer


class _Elementwise(Layer):
    """An activation applied entry by entry; subclasses write ``_forward`` and ``_derivative``."""

    def forward(self, x, training=False):
        self._x = x
        self._y = self._forward(x)
        return self._y

    def backward(self, grad_out):
        return grad_out * self._derivative(self._x, self._y)


class _Fused(_Elementwise):
    """An activation with a fused form in :class:`~neuralnp.backends.Ops`, named by ``fused``:
    it runs ``ops.bias_act`` and ``ops.act_grad`` without a bias, the very code a Dense or
    Conv2D runs with its bias, so each formula is written once."""

    fused = None

    def forward(self, x, training=False):
        y = self._workspace("y", x.shape)
        y[...] = x
        self._y = self.ops.bias_act(y, None, self.fused)
        return y

    def backward(self, grad_out):
        out = self._workspace("grad_in", grad_out.shape)
        return self.ops.act_grad(grad_out, self._y, self.fused, out)


class Linear(_Elementwise):
    """``f(x) = x``."""

    fused = "linear"

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
        return self.xp.zeros_like(x)


def sigmoid(x):
    """``σ(x) = 1 / (1 + e^-x)`` in a new array, by ``Ops.sigmoid`` (for code without a layer)."""
    ops = get_ops()
    return ops.sigmoid(x, ops.xp.empty_like(x))


class Sigmoid(_Fused):
    """``σ(x) = 1 / (1 + e^-x)``; ``σ' = σ (1 - σ)`` (``Ops.sigmoid``, ``Ops.act_grad``)."""

    fused = "sigmoid"


class Tanh(_Fused):
    """``tanh(x)``; derivative ``1 - tanh²``."""

    fused = "tanh"


class ArcTan(_Elementwise):
    """``arctan(x)``; derivative ``1 / (1 + x²)``."""

    def _forward(self, x):
        return self.xp.arctan(x)

    def _derivative(self, x, y):
        return 1.0 / (1.0 + x * x)


class ReLU(_Fused):
    """``max(x, 0)``; derivative ``1 if x > 0 else 0``."""

    fused = "relu"


class LeakyReLU(_Elementwise):
    """``x if x > 0 else a·x`` with ``a = negative_slope`` (0.01, PyTorch's default)."""

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def _forward(self, x):
        return self.xp.where(x > 0, x, self.negative_slope * x)

    def _derivative(self, x, y):
        return self.xp.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)

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
        return self.xp.where(x > 0, x, self.alpha.value * x)

    def backward(self, grad_out):
        x, xp = self._x, self.xp
        negative = x <= 0
        reduce_axes = (0,) + tuple(self.shared_axes or ())
        xp.sum(xp.where(negative, grad_out * x, 0.0), axis=reduce_axes, keepdims=True,
               out=self.alpha.grad.reshape((1,) + self.alpha.shape))
        return xp.where(negative, self.alpha.value * grad_out, grad_out)

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
        return self.xp.where(x > 0, x, self.alpha * self.xp.expm1(self.xp.minimum(x, 0)))

    def _derivative(self, x, y):
        return self.xp.where(x > 0, 1.0, y + self.alpha).astype(x.dtype)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class SELU(_Elementwise):
    """``λ·(x if x > 0 else α(eˣ - 1))`` with the self-normalising constants of Klambauer et al."""

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def _forward(self, x):
        xp = self.xp
        return self.SCALE * xp.where(x > 0, x, self.ALPHA * xp.expm1(xp.minimum(x, 0)))

    def _derivative(self, x, y):
        return self.xp.where(x > 0, self.SCALE, y + self.SCALE * self.ALPHA).astype(x.dtype)


class Softplus(_Elementwise):
    """``log(1 + eˣ)`` (as ``logaddexp(0, x)``, which never overflows); derivative ``σ(x)``."""

    def _forward(self, x):
        return self.xp.logaddexp(0, x)

    def _derivative(self, x, y):
        return self.ops.sigmoid(x, self.xp.empty_like(x))


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
            self._t = self.xp.tanh(self._K * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1.0 + self._t)
        self._cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        return x * self._cdf

    def _derivative(self, x, y):
        if self.approximate == "tanh":
            t = self._t
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * self._K * (1.0 + 3 * 0.044715 * x * x)
        pdf = self.xp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return self._cdf + x * pdf

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


class SiLU(_Elementwise):
    """``x·σ(x)`` (also called swish); derivative ``σ(x)(1 + x(1 - σ(x)))``."""

    def _forward(self, x):
        self._s = self.ops.sigmoid(x, self.xp.empty_like(x))
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
        self._y = self.ops.softmax(x, self._workspace("y", x.shape), self.axis)
        return self._y

    def backward(self, grad_out):
        y = self._y
        return y * (grad_out - self.xp.sum(grad_out * y, axis=self.axis, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def softmax(x, axis=-1):
    """``softmax(x)`` along ``axis`` in a new array, by ``Ops.softmax`` (for code without a
    layer)."""
    ops = get_ops()
    return ops.softmax(x, ops.xp.empty_like(x), axis)


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
        self.activation.build_for(input_shape, self.dtype, self._rng, self.ops)  # same device

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


def fused_form(layer):
    """The name of the ``Ops.bias_act`` form that computes ``layer`` (``"linear"`` for no
    layer), or None when it has none."""
    return "linear" if layer is None else getattr(layer, "fused", None)


def output_activation(layer):
    """The activation a layer ends with (a Dense's, an Activation's, or the layer itself)."""
    if isinstance(layer, Activation):
        return layer.activation
    if type(layer) in REGISTRY.values():
        return layer
    return getattr(layer, "activation", None)
