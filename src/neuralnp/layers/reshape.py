"""Flatten and Reshape: change how each sample's values are arranged, never the values.

Image layout, one for the whole library: channels-last, as Keras, so an image batch is
``(batch, height, width, channels)``. ``Reshape((28, 28, 1))`` turns flat MNIST rows
``(batch, 784)`` into such images (NumPy's row-major order: pixel ``(i, j)`` of a row-major flat
image lands at ``[i, j, 0]``), and ``Flatten()`` turns feature maps back into rows for ``Dense``.
Both act on the sample axes only; the batch axis is never touched.
"""

import math

import numpy as np  # noqa: F401  (the docstring examples use it)

from .base import Layer
from .conv import batch_shape
from .._checks import is_int


class Flatten(Layer):
    """``(batch, d1, ..., dk) → (batch, d1·...·dk)``, row-major (C order), as Keras.

    Backward reshapes the gradient back to ``(batch, d1, ..., dk)``. Both directions are views
    whenever the array is contiguous, so the layer costs nothing.

    >>> Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        return grad_out.reshape(self._x_shape)


class Reshape(Layer):
    """``(batch, *input_shape) → (batch, *target_shape)``, row-major, as Keras.

    ``target_shape`` excludes the batch axis and may hold one ``-1``, which takes whatever size
    makes the number of values match. Backward reshapes the gradient back.

    >>> Reshape((2, -1))(np.zeros((3, 12))).shape
    (3, 2, 6)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        dims = target_shape if isinstance(target_shape, (tuple, list)) else None
        if (dims is None or not dims
                or any(not is_int(d)
                       or not (d >= 1 or d == -1) for d in dims)
                or sum(d == -1 for d in dims) > 1):
            raise ValueError(
                f"Reshape target_shape must be a tuple of positive integers without the batch "
                f"axis, with at most one -1, e.g. (28, 28, 1); got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            fits = size % known == 0
            shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        else:
            fits, shape = size == known, self.target_shape
        if not fits:
            wanted = ", ".join("-1" if d == -1 else str(d) for d in self.target_shape)
            raise ValueError(
                f"Reshape {self.name!r} cannot reshape inputs {batch_shape(input_shape)} "
                f"({size} values per sample) to (batch, {wanted}) "
                f"({'a multiple of ' if -1 in self.target_shape else ''}{known} values)")
        return shape

    def forward(self, x, training=False):
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"Reshape {self.name!r} was built for inputs "
                             f"{batch_shape(self.input_shape)}, got {batch_shape(x.shape[1:])}")
        return x.reshape((x.shape[0], *self.output_shape))

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        return grad_out.reshape((grad_out.shape[0], *self.input_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
