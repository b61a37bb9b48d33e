"""The fully connected layer."""

import numpy as np

from .weighted import WeightedLayer
from .._checks import is_int


class Dense(WeightedLayer):
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
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         **kwargs)
        if not is_int(units) or units < 1:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.input_dim = None if input_dim is None else int(input_dim)

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
        self._ws_rows = None
        self.kernel = self.add_weight("kernel", (input_shape[0], self.units), self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)
        self._build_activation((self.units,))
        # Bound once, three products a step: the forward and input-gradient products have
        # inner dimensions fixed here; the kernel gradient's is the batch size (see _buffers).
        self._matmul_forward = self.ops.matmul_for(input_shape[0])
        self._matmul_input_grad = self.ops.matmul_for(self.units)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def _buffers(self, n):
        """The output, pre-activation-gradient and input-gradient workspaces for batch size n,
        and the kernel gradient's product, looked up once per change of batch size rather than
        once per call."""
        if self._ws_rows != n:
            self._ws_rows = n
            self._matmul_kernel_grad = self.ops.matmul_for(n)
            self._z = self._workspace("z", (n, self.units))
            self._dz = self._workspace("dz", (n, self.units))
            self._gin = self._workspace("grad_in", (n,) + tuple(self.input_shape))
        return self._z

    _ws_rows = None

    def forward(self, x, training=False):
        self._x = x
        z = self._buffers(x.shape[0])
        self._matmul_forward(x, self.kernel.value, z)
        return self._bias_activation(z, training)

    def backward(self, grad_out):
        grad_out = self._bias_activation_grad(grad_out, self._z, self._dz)
        self._matmul_kernel_grad(self._x.T, grad_out, self.kernel.grad)
        if not self.need_input_grad:
            return None
        return self._matmul_input_grad(grad_out, self.kernel.value.T, self._gin)

    def get_config(self):
        config = {**super().get_config(), "units": self.units}
        if self.input_dim is not None:
            config["input_dim"] = self.input_dim
        return config
