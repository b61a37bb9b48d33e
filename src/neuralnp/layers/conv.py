"""2-D convolution, and the window geometry the pooling layers share.

Image layout, one for the whole library: channels-last, as Keras. Images are
``(batch, height, width, channels)``; a Conv2D kernel is ``(kh, kw, in_channels, filters)`` and its
bias ``(filters,)``. Layer shapes (``input_shape``, ``output_shape``) leave out the batch axis:
``(height, width, channels)``. PyTorch's ``(batch, channels, height, width)`` converts with
``x.transpose(0, 2, 3, 1)``, and its ``(out, in, kh, kw)`` weights with ``w.transpose(2, 3, 1, 0)``.

Padding ``"valid"`` uses no padding; ``"same"`` pads as TensorFlow/Keras do, so that the output has
``ceil(size / stride)`` rows (columns): the total padding along an axis is
``max((ceil(size / stride) - 1)·stride + (k - 1)·dilation + 1 - size, 0)``, split with the odd
pixel at the bottom (right). That split differs from PyTorch's symmetric ``padding=``, which is why
weights trained here give the same outputs as Keras, pixel for pixel.
"""

import math
import numbers

import numpy as np  # noqa: F401  (the docstring examples use it)

from .weighted import WeightedLayer
from .._checks import is_int

PADDINGS = ("valid", "same")


# -- arguments and geometry (shared with pooling.py) ---------------------------------------------


def normalize_pair(value, arg, cls_name, allow_none=False):
    """``value`` (an int or a pair of ints, each >= 1) as a pair of Python ints."""
    if allow_none and value is None:
        return None
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if (len(items) != 2
            or any(not is_int(v) or v < 1
                   for v in items)):
        raise ValueError(f"{cls_name} {arg} must be a positive integer or a pair of them "
                         f"(height, width), got {value!r}")
    return int(items[0]), int(items[1])


def normalize_padding(padding, cls_name):
    key = padding.lower() if isinstance(padding, str) else padding
    if key not in PADDINGS:
        raise ValueError(f"{cls_name} padding must be 'valid' or 'same', got {padding!r}")
    return key


def batch_shape(shape):
    """``(batch, 28, 28, 1)``: a shape without its batch axis, written as the user sees it."""
    return "(" + ", ".join(["batch"] + [str(d) for d in shape]) + ")"


def check_image_shape(layer, input_shape):
    """Raise a ValueError unless ``input_shape`` is ``(height, width, channels)``."""
    if len(input_shape) == 3 and all(d >= 1 for d in input_shape):
        return
    hint = "add a Reshape((height, width, channels)) layer before it"
    if len(input_shape) == 1:
        features = input_shape[0]
        for channels in (1, 3):
            side = math.isqrt(features // channels) if features % channels == 0 else 0
            if side and side * side * channels == features:
                hint = f"reshape with Reshape(({side}, {side}, {channels}))"
                break
    elif len(input_shape) == 2:
        hint = f"reshape with Reshape(({input_shape[0]}, {input_shape[1]}, 1))"
    raise ValueError(f"{type(layer).__name__} {layer.name!r} expects inputs (batch, height, "
                     f"width, channels), got {batch_shape(input_shape)}; {hint}")


class Geometry:
    """Where the windows of a strided, dilated, padded sliding window fall on an image.

    ``out = ((size + pad_total) - ((k - 1)·dilation + 1)) // stride + 1`` along each axis; output
    pixel ``(i, j)`` reads padded pixels ``(i·sh + p·dh, j·sw + q·dw)`` for ``p < kh, q < kw``.
    """

    def __init__(self, layer, input_shape, kernel, strides, dilation, padding):
        check_image_shape(layer, input_shape)
        self.in_hw = tuple(input_shape[:2])
        self.channels = input_shape[2]
        self.kernel, self.strides, self.dilation = kernel, strides, dilation
        self.extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        pads, out = [], []
        for size, ext, s in zip(self.in_hw, self.extent, strides):
            if padding == "same":
                n = -(-size // s)  # ceil(size / s)
                total = max((n - 1) * s + ext - size, 0)
                pads.append((total // 2, total - total // 2))  # odd pixel at the bottom/right
            else:
                pads.append((0, 0))
            out.append((size + sum(pads[-1]) - ext) // s + 1)
        self.pads = tuple(pads)
        self.padded_hw = tuple(size + sum(p) for size, p in zip(self.in_hw, self.pads))
        if any(e > p for e, p in zip(self.extent, self.padded_hw)):
            what = "kernel" if isinstance(layer, Conv2D) else "pool"
            dilated = (f" (dilated extent {self.extent[0]}x{self.extent[1]})"
                       if self.extent != tuple(kernel) else "")
            raise ValueError(
                f"{type(layer).__name__} {layer.name!r}: {what} {kernel[0]}x{kernel[1]}{dilated} "
                f"is larger than the padded input {self.padded_hw[0]}x{self.padded_hw[1]} "
                f"(inputs {batch_shape(input_shape)}, padding {padding!r}); use a smaller "
                f"{what}, padding='same' or larger images")
        self.out_hw = tuple(out)
        self.padded = any(p != (0, 0) for p in self.pads)

    def pad(self, layer, x, fill, key="x_padded"):
        """``x`` inside a border of ``fill`` (a workspace), or ``x`` itself when unpadded."""
        if not self.padded:
            return x
        (pt, pb), (pl, pr) = self.pads
        h, w = self.in_hw
        padded = layer._workspace(key, (x.shape[0], *self.padded_hw, x.shape[3]))
        padded[:, pt:pt + h, pl:pl + w] = x
        # Only the border is written: the interior is overwritten just above.
        padded[:, :pt] = fill
        padded[:, pt + h:] = fill
        padded[:, pt:pt + h, :pl] = fill
        padded[:, pt:pt + h, pl + w:] = fill
        return padded

    def grad_padded(self, layer, n):
        """A workspace for the gradient on the padded input (on ``x`` itself when unpadded)."""
        return layer._workspace("grad_padded" if self.padded else "grad_in",
                                (n, *self.padded_hw, self.channels))

    def crop(self, layer, dpadded):
        """The gradient on the unpadded input, from the gradient on the padded one."""
        if not self.padded:
            return dpadded
        (pt, _), (pl, _) = self.pads
        h, w = self.in_hw
        grad_in = layer._workspace("grad_in", (dpadded.shape[0], h, w, dpadded.shape[3]))
        grad_in[...] = dpadded[:, pt:pt + h, pl:pl + w]
        return grad_in


def check_input(layer, x):
    """Forward-time check that a built layer receives the images it was built for."""
    if x.ndim != 4 or tuple(x.shape[1:]) != layer.input_shape:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} was built for inputs "
                         f"{batch_shape(layer.input_shape)}, got {batch_shape(x.shape[1:])}")


# -- the layer ------------------------------------------------------------------------------------


class Conv2D(WeightedLayer):
    """2-D convolution (cross-correlation, as Keras and PyTorch compute it), channels-last.

    ``y[n, i, j, f] = act(b[f] + Σ_{p, q, c} xpad[n, i·sh + p·dh, j·sw + q·dw, c] · K[p, q, c, f])``

    with ``x: (batch, H, W, C)``, ``K: (kh, kw, C, filters)``, ``b: (filters,)`` and
    ``y: (batch, out_h, out_w, filters)``; ``out_h = ceil(H / sh)`` for ``padding="same"`` and
    ``(H - (kh - 1)·dh - 1) // sh + 1`` for ``"valid"`` (likewise for the width).

    Forward is one matrix product: the windows are copied into an im2col matrix
    ``cols: (batch·out_h·out_w, kh·kw·C)`` and ``z = cols · K.reshape(kh·kw·C, filters)``.
    Backward, with ``g = ∂L/∂z`` as a ``(batch·out_h·out_w, filters)`` matrix:
    ``∂L/∂K = colsᵀ g``, ``∂L/∂b = Σ_rows g``, and ``∂L/∂x`` scatters ``g Kᵀ`` back onto the
    pixels each window read (col2im), then drops the padding.

    >>> layer = Conv2D(4, 3, padding="same")
    >>> layer(np.ones((2, 5, 5, 3), dtype="float32")).shape
    (2, 5, 5, 4)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 4), (4,)]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 **kwargs):
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         **kwargs)
        if not is_int(filters) or filters < 1:
            raise ValueError(f"Conv2D filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = normalize_pair(strides, "strides", "Conv2D")
        self.padding = normalize_padding(padding, "Conv2D")
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", "Conv2D")
        self._geo = None

    def _geometry(self, input_shape):
        return Geometry(self, tuple(input_shape), self.kernel_size, self.strides,
                        self.dilation_rate, self.padding)

    def build(self, input_shape):
        geo = self._geo = self._geometry(input_shape)
        self.kernel = self.add_weight("kernel", (*self.kernel_size, geo.channels, self.filters),
                                      self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer)
        self._build_activation((*geo.out_hw, self.filters))
        # A 1x1, stride-1, unpadded convolution is a Dense layer on every pixel: the input,
        # seen as (batch·H·W, C), already is the im2col matrix.
        self._pointwise = self.kernel_size == (1, 1) and self.strides == (1, 1) and not geo.padded

    def compute_output_shape(self, input_shape):
        return (*self._geometry(input_shape).out_hw, self.filters)

    def forward(self, x, training=False):
        check_input(self, x)
        geo = self._geo
        n, (oh, ow), c = x.shape[0], geo.out_hw, geo.channels
        rows, depth = n * oh * ow, self.kernel_size[0] * self.kernel_size[1] * c
        if self._pointwise:
            cols = x.reshape(rows, c)  # a view when x is contiguous
        else:
            # Gather every window; the row order (n, i, j) and column order (p, q, c) match
            # K.reshape(kh·kw·C, filters), so BLAS does all the arithmetic.
            cols = self._workspace("cols", (rows, depth))
            self.ops.im2col(geo.pad(self, x, 0), cols.reshape(n, oh, ow, *self.kernel_size, c),
                            geo.strides, geo.dilation)
        self._cols = cols
        z = self._workspace("z", (rows, self.filters))
        self.ops.matmul(cols, self.kernel.value.reshape(depth, self.filters), z)
        return self._bias_activation(z, training, (n, oh, ow, self.filters))

    def backward(self, grad_out):
        geo = self._geo
        n, (oh, ow), c = grad_out.shape[0], geo.out_hw, geo.channels
        (kh, kw), rows = self.kernel_size, n * oh * ow
        depth = kh * kw * c
        g = self._bias_activation_grad(grad_out, self._workspace("z", (rows, self.filters)),
                                       self._workspace("dz", (rows, self.filters)))
        # Through a small workspace, so that the result lands in grad whatever its strides.
        dk = self._workspace("grad_kernel", (depth, self.filters))
        self.ops.matmul(self._cols.T, g, dk)
        self.kernel.grad[...] = dk.reshape(self.kernel.shape)
        if not self.need_input_grad:
            return None
        kmat_t = self.kernel.value.reshape(depth, self.filters).T
        if self._pointwise:
            gin = self._workspace("grad_in", (n, *geo.in_hw, c))
            self.ops.matmul(g, kmat_t, gin.reshape(rows, c))
            return gin
        dcols = self._workspace("grad_cols", (rows, depth))
        self.ops.matmul(g, kmat_t, dcols)
        # col2im: each window's gradient goes back onto the pixels it read; pixels covered by
        # several windows (overlap, stride < kernel) sum their contributions.
        dpadded = self.ops.col2im(dcols.reshape(n, oh, ow, kh, kw, c), geo.grad_padded(self, n),
                                  geo.strides, geo.dilation)
        return geo.crop(self, dpadded)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
        }
