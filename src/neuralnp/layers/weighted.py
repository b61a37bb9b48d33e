"""The base of layers with a kernel, a bias and an activation inside (Dense, Conv2D)."""

from .. import initializers, regularizers
from .._registry import serialize
from . import activations
from .base import Layer


class WeightedLayer(Layer, register=False):  # a base: Dense, Conv2D
    """A layer with ``kernel``, optional ``bias`` and an optional activation layer inside it
    (Dense, Conv2D): the activation's parameters and states come after its own, and the kernel
    and bias regularizers apply to them."""

    kernel = bias = None

    def __init__(self, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def parameters(self):
        extra = self.activation.parameters() if self.activation is not None else []
        return list(self._params) + extra

    def states(self):
        extra = self.activation.states() if self.activation is not None else []
        return list(self._states) + extra

    def _build_activation(self, output_shape):
        """Build the activation for outputs of ``output_shape`` (no batch axis). One with a
        fused form (ReLU, sigmoid, tanh: its ``fused`` attribute) then runs with the bias in one
        pass of ``ops.bias_act``."""
        if self.activation is not None:
            self.activation.build_for(output_shape, self.dtype, self._rng, ops=self.ops)
        self._fused = activations.fused_form(self.activation)
        # Bound once here: these run for every layer on every step.
        self._bias_act, self._act_grad = self.ops.bias_act, self.ops.act_grad

    def _bias_activation(self, z, training, shape=None):
        """``f(z + b)`` for the product ``z`` ``(rows, units)``, in place where fused, returned
        reshaped to ``shape`` when given. With ``emit_logits`` (the model fuses a final softmax
        or sigmoid into the loss) only the bias is added."""
        bias = self.bias.value if self.use_bias else None
        fused = "linear" if self.emit_logits else self._fused
        if fused is not None:
            self._bias_act(z, bias, fused)
            return z if shape is None else z.reshape(shape)
        if bias is not None:
            z += bias
        return self.activation.forward(z if shape is None else z.reshape(shape), training)

    def _bias_activation_grad(self, grad_out, z, dz):
        """``∂L/∂z`` as ``(rows, units)`` from ``∂L/∂y``, the bias gradient written on the way;
        ``z`` holds what :meth:`_bias_activation` returned, as ``(rows, units)``, and ``dz`` is
        a workspace of that shape."""
        bias_grad = self.bias.grad if self.use_bias else None
        fused = "linear" if self.emit_logits else self._fused
        if fused is None:
            grad_out, fused = self.activation.backward(grad_out), "linear"
        # A test, not a reshape: this runs every step.
        if grad_out.ndim != 2:
            grad_out = grad_out.reshape(z.shape)
        # Fused, z holds f(z + b) since forward: the derivative is written from the output,
        # and the bias gradient is summed in the same pass.
        return self._act_grad(grad_out, z, fused, dz, bias_grad)

    def regularized(self):
        pairs = [(self.kernel, self.kernel_regularizer), (self.bias, self.bias_regularizer)]
        return [(p, r) for p, r in pairs if p is not None and r is not None]

    def get_config(self):
        config = {**super().get_config(),
                  "activation": activations.activation_spec(self.activation), "use_bias": self.use_bias,
                  "kernel_initializer": serialize(self.kernel_initializer),
                  "bias_initializer": serialize(self.bias_initializer)}
        for key in ("kernel_regularizer", "bias_regularizer"):
            if getattr(self, key) is not None:
                config[key] = serialize(getattr(self, key))
        return config
