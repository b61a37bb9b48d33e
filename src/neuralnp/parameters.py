"""Parameters and the flat buffer that holds them all.

A layer creates its parameters with their own small arrays when it is built. When a model is
built, :class:`FlatBuffer` copies every parameter into one contiguous 1-D array and re-points each
parameter's ``value`` and ``grad`` at views of it. Layers always reach their weights through
``param.value`` / ``param.grad``, so they never notice the move, and optimizers, clipping, NaN
checks and saving become single operations over ``buffer.values`` and ``buffer.grads``.
"""

import numpy as np

from .backends import get_ops


class Parameter:
    """A trainable array and its gradient (same shape).

    ``value`` and ``grad`` are plain arrays; after :meth:`FlatBuffer.bind` they are views into the
    model's flat buffers. A layer's ``backward`` overwrites ``grad`` (it never accumulates).
    """

    def __init__(self, name, value, grad=None):
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value) if grad is None else grad

    @property
    def shape(self):
        return self.value.shape

    @property
    def size(self):
        return self.value.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.value.dtype})"


class FlatBuffer:
    """All parameters of a model in one contiguous array, and all gradients in a second one.

    ``values[offset:offset + p.size]`` is ``p.value.ravel()`` for every parameter ``p``, in the
    order given (the model's layer order, each layer's Keras weight order). The arrays belong to
    ``ops.xp`` (``get_ops()`` when None).
    """

    def __init__(self, parameters, dtype, ops=None):
        self.parameters = list(parameters)
        self.dtype = np.dtype(dtype)
        xp = (ops if ops is not None else get_ops()).xp  # the model's device
        total = sum(p.size for p in self.parameters)
        self.values = xp.empty(total, dtype=self.dtype)
        self.grads = xp.zeros(total, dtype=self.dtype)
        self.offsets = []
        offset = 0
        for p in self.parameters:
            view = self.values[offset:offset + p.size].reshape(p.shape)
            view[...] = p.value  # no temporary, whatever p.value's strides
            p.value = view
            p.grad = self.grads[offset:offset + p.size].reshape(p.shape)
            self.offsets.append(offset)
            offset += p.size

    @property
    def size(self):
        return self.values.size

    def __len__(self):
        return len(self.parameters)
