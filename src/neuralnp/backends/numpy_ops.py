"""NumpyOps: the reference operations, with the CPU tricks NumPy rewards."""

import math

import numpy as np

from .ops import Ops


class NumpyOps(Ops):
    """:class:`~neuralnp.backends.ops.Ops` on NumPy, faster where NumPy has a quicker way to
    the same numbers."""

    name = "numpy"

    def __init__(self):
        super().__init__(np)

    def matmul(self, a, b, out):
        # An inner dimension of 1 is matmul's slow case (200 × 1 times 1 × 100: 30-57 µs on this
        # project's machine); the broadcast product gives the same numbers (each entry is one
        # product) 3-4 times faster. It is Dense's input gradient before every one-unit output,
        # which ends each binary classifier and single-output regressor.
        if a.shape[-1] != 1:
            return np.matmul(a, b, out=out)
        return np.multiply(a, b[0], out=out)

    def matmul_for(self, inner):
        # The ufunc itself (out is its third positional argument): one Python call less per
        # product, which is a few percent of a small network's step.
        return np.matmul if inner != 1 else self.matmul

    def act_grad(self, g, y, act, out, bias_grad=None):
        # add.reduce is np.sum without its Python-level dispatch (~1 µs per call here)
        dz = super().act_grad(g, y, act, out)
        if bias_grad is not None:
            np.add.reduce(dz, axis=0, out=bias_grad)
        return dz

    # The gate and the loss are host memory here: reading them is the fast way.

    def finite_gate(self, gate, value):
        if not math.isfinite(value[0]):
            gate[0] = 0.0
        return gate

    def keep_finite(self, p, previous, check, gate, bad):
        # The finite hint is also NaN or inf for weights near 1e19 (float32): confirm it.
        if math.isfinite(check[0]) or not gate[0] or np.isfinite(p).all():
            return gate
        bad[0] = p.size - np.count_nonzero(np.isfinite(p))
        if previous is not None:
            np.copyto(p, previous)
        gate[0] = 0.0
        return gate

    def take_rows(self, x, rows, out):
        # mode="clip": the default mode="raise" gathers into a temporary and copies it to `out`
        # (half the time of a 100-row MNIST batch); the rows of a permutation are in range.
        return x.take(rows, axis=0, out=out, mode="clip")

    def im2col(self, padded, cols, strides, dilation):
        # One copy from a strided view of every window when the channels give it contiguous
        # runs to move; with few channels (an image's first layer) the per-entry copies of
        # Ops.im2col are 3x faster.
        if padded.shape[3] < 8:
            return super().im2col(padded, cols, strides, dilation)
        n, hs, ws, cs = padded.strides
        (sh, sw), (dh, dw) = strides, dilation
        windows = np.lib.stride_tricks.as_strided(
            padded, cols.shape, (n, hs * sh, ws * sw, hs * dh, ws * dw, cs), writeable=False)
        np.copyto(cols, windows)
        return cols
