"""2-D pooling: max, average, and global average, channels-last.

Image layout, one for the whole library: channels-last, as Keras. Inputs are
``(batch, height, width, channels)``; pooling acts on each channel separately, so the output keeps
the channel count: ``(batch, out_h, out_w, channels)`` (global pooling: ``(batch, channels)``).

Window geometry and ``"same"`` padding are Conv2D's (see :mod:`neuralnp.layers.conv`): the output
has ``ceil(size / stride)`` rows for ``"same"`` and ``(size - pool) // stride + 1`` for ``"valid"``,
with TensorFlow's split of the padding (the odd pixel at the bottom/right). Padded pixels never
count: max pooling pads with ``-inf``, average pooling divides by the number of real pixels in the
window (Keras/TF; PyTorch's ``count_include_pad=False``).
"""

import numpy as np

from .base import Layer
from .conv import Geometry, check_image_shape, check_input, normalize_pair, normalize_padding


class _Pooling2D(Layer):
    """Shared arguments and geometry; ``strides=None`` means ``strides = pool_size`` (Keras)."""

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = normalize_pair(pool_size, "pool_size", cls)
        self.strides = normalize_pair(strides, "strides", cls, allow_none=True) or self.pool_size
        self.padding = normalize_padding(padding, cls)
        self._geo = None

    def _geometry(self, input_shape):
        return Geometry(self, tuple(input_shape), self.pool_size, self.strides, (1, 1),
                        self.padding)

    def build(self, input_shape):
        self._geo = self._geometry(input_shape)

    def compute_output_shape(self, input_shape):
        return (*self._geometry(input_shape).out_hw, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """``y[n, i, j, c] = max_{p, q} xpad[n, i·sh + p, j·sw + q, c]`` (``xpad`` padded with -inf).

    Backward routes each output's gradient to the pixel that won its window, the first maximum
    in row-major window order on ties (as PyTorch does); a pixel that wins several overlapping
    windows (``strides < pool_size``) receives the sum of their gradients. A NaN wins its
    window, so a diverging network shows a NaN loss rather than a silently dropped value.

    >>> MaxPooling2D()(np.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """

    def forward(self, x, training=False):
        check_input(self, x)
        geo = self._geo
        shape = (x.shape[0], *geo.out_hw, geo.channels)
        y = self._workspace("y", shape)
        # Window entry that won, as 0..ph·pw-1; a small dtype keeps the cache small.
        win = self._workspace("argmax", shape, np.uint8 if np.prod(self.pool_size) <= 256
                              else np.int32)
        self._win = win
        self.ops.max_pool(geo.pad(self, x, -np.inf), y, win, geo.strides, self.pool_size)
        return y

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        geo = self._geo
        dpadded = self.ops.max_pool_grad(grad_out, self._win,
                                         geo.grad_padded(self, grad_out.shape[0]), geo.strides,
                                         self.pool_size)
        return geo.crop(self, dpadded)


class AveragePooling2D(_Pooling2D):
    """``y[n, i, j, c] = Σ_{p, q} xpad[n, i·sh + p, j·sw + q, c] / count[i, j]``.

    ``count[i, j]`` is the number of real (unpadded) pixels in window ``(i, j)``: ``ph·pw`` for
    ``"valid"``, fewer at the borders for ``"same"`` (Keras/TF). Backward spreads
    ``g[n, i, j, c] / count[i, j]`` evenly over the window, summing where windows overlap.

    >>> AveragePooling2D()(np.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """

    def build(self, input_shape):
        super().build(input_shape)
        geo = self._geo
        # Real pixels per window: separable, rows covered times columns covered.
        counts = []
        for size, k, s, (before, _), out in zip(geo.in_hw, self.pool_size, self.strides,
                                                geo.pads, geo.out_hw):
            start = np.arange(out) * s - before
            counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
        count = np.multiply.outer(*counts)[:, :, None].astype(self.dtype)
        # A scalar when every window is full: cheaper than broadcasting an array. Otherwise the
        # counts live on the model's device, where the pooling operation reads them.
        full = np.all(count == count.flat[0])
        self._count = count.flat[0] if full else self.ops.to_device(count)

    def forward(self, x, training=False):
        check_input(self, x)
        geo = self._geo
        y = self._workspace("y", (x.shape[0], *geo.out_hw, geo.channels))
        return self.ops.avg_pool(geo.pad(self, x, 0), y, geo.strides, self.pool_size,
                                 self._count)

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        geo = self._geo
        dpadded = self.ops.avg_pool_grad(grad_out, geo.grad_padded(self, grad_out.shape[0]),
                                         geo.strides, self.pool_size, self._count)
        return geo.crop(self, dpadded)


class GlobalAveragePooling2D(Layer):
    """``y[n, c] = Σ_{i, j} x[n, i, j, c] / (H·W)``: ``(batch, H, W, C) → (batch, C)``
    (``(batch, 1, 1, C)`` with ``keepdims=True``).

    Backward: ``∂L/∂x[n, i, j, c] = g[n, c] / (H·W)``.

    >>> GlobalAveragePooling2D()(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[3., 4.]])
    """

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        check_image_shape(self, input_shape)

    def compute_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def forward(self, x, training=False):
        check_input(self, x)
        h, w, c = self.input_shape
        y = self._workspace("y", (x.shape[0], c))
        self.xp.sum(x, axis=(1, 2), out=y)
        y /= h * w
        return y.reshape(x.shape[0], 1, 1, c) if self.keepdims else y

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        h, w, c = self.input_shape
        n = grad_out.shape[0]
        grad_in = self._workspace("grad_in", (n, h, w, c))
        grad_in[...] = grad_out.reshape(n, 1, 1, c)
        grad_in /= h * w
        return grad_in

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}
