"""NumbaOps: the element-wise chains of a training step as compiled loops (float32).

NumPy runs each element-wise operation as its own pass over memory, on one core, with a call
overhead of about a microsecond. On the training step's chains (bias + activation, the
activation's derivative with the bias gradient, Adam over the whole flat buffer, softmax +
cross-entropy) that is most of the time left once the matrix products are done. Each override
here runs its chain as one compiled pass when its conditions hold (float32, the layout its loop
assumes) and otherwise calls NumpyOps, which computes the same formulas: float64, the dtype of
gradient checks, always takes the reference path. Importing this module imports Numba.
"""

import math

import numba
import numpy as np
from numba.extending import intrinsic

from .numpy_ops import NumpyOps

# Serial on purpose: OpenBLAS keeps its threads spinning for a while after each matrix product,
# and a parallel kernel's threads would fight them for the same cores.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

_F32 = np.dtype(np.float32)
_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


class NumbaOps(NumpyOps):
    """NumpyOps with compiled float32 loops for the chains NumPy runs pass by pass."""

    name = "numba"

    def bias_act(self, z, b, act):
        # tanh keeps NumPy's vectorised pass: a compiled loop over math.tanh is scalar and slower
        if z.dtype != _F32 or z.ndim != 2 or act == "tanh":
            return super().bias_act(z, b, act)
        row = b if b is not None else _unused_row(z)
        if act == "sigmoid":
            _bias_sigmoid(z, row, b is not None)
        else:
            _bias_act(z, row, b is not None, _CODES[act])
        return z

    def act_grad(self, g, y, act, out, bias_grad=None):
        if g.dtype != _F32 or g.ndim != 2:
            return super().act_grad(g, y, act, out, bias_grad)
        has_bias = bias_grad is not None
        _act_grad(g, y, _CODES[act], out, bias_grad if has_bias else _unused_row(g), has_bias)
        return g if act == "linear" else out

    def softmax_xent(self, z, labels, probs, grad, loss):
        if z.dtype != _F32:
            return super().softmax_xent(z, labels, probs, grad, loss)
        _softmax_xent(z, labels, probs, grad, loss)
        return probs, grad, loss

    def softmax_xent_dense(self, z, y, probs, grad, loss):
        if z.dtype != _F32 or y.dtype != _F32:
            return super().softmax_xent_dense(z, y, probs, grad, loss)
        _softmax_xent_dense(z, y, probs, grad, loss)
        return probs, grad, loss

    def sigmoid_xent(self, z, y, probs, grad, loss):
        if z.dtype != _F32 or y.dtype != _F32:
            return super().sigmoid_xent(z, y, probs, grad, loss)
        _sigmoid_xent(z, y, probs, grad, loss)
        return probs, grad, loss

    def sgd(self, p, g, lr, tmp, previous=None, check=None):
        if p.dtype != _F32:
            return super().sgd(p, g, lr, tmp, previous, check)
        keep = previous is not None
        _sgd(p, g, lr, previous if keep else p, check if keep else lr, keep)
        return p

    def adam(self, p, g, m, v, vmax, beta_1, beta_2, eps, step_size, bc2_sqrt, tmp,
             previous=None, check=None):
        if p.dtype != _F32:
            return super().adam(p, g, m, v, vmax, beta_1, beta_2, eps, step_size, bc2_sqrt, tmp,
                                previous, check)
        # The constants cast to float32 first, as NumPy casts Python numbers: bit-identical.
        f, keep = np.float32, previous is not None
        _adam(p, g, m, v, vmax if vmax is not None else m, vmax is not None,
              previous if keep else p, check if keep else step_size, keep,
              f(beta_1), f(beta_2), f(1.0 - beta_1), f(1.0 - beta_2), step_size, bc2_sqrt, f(eps))
        return p

    def col2im(self, dcols, dpadded, strides, dilation):
        # One compiled pass: 7x faster than kh·kw strided adds for a 3x3 kernel on 32 channels.
        if not (dpadded.dtype == _F32 and dcols.dtype == _F32 and dpadded.flags.c_contiguous
                and dcols.flags.c_contiguous):
            return super().col2im(dcols, dpadded, strides, dilation)
        dpadded.fill(0)
        _col2im(dcols, dpadded, strides[0], strides[1], dilation[0], dilation[1])
        return dpadded

    def max_pool(self, padded, y, win, strides, pool):
        # NumPy's masked copies are the slow part of a CNN step on a CPU
        if not (padded.dtype == _F32 and y.dtype == _F32 and padded.flags.c_contiguous):
            return super().max_pool(padded, y, win, strides, pool)
        _max_pool(padded, y, win, strides[0], strides[1], pool[0], pool[1])
        return y, win

    def max_pool_grad(self, g, win, dpadded, strides, pool):
        if not (g.dtype == _F32 and dpadded.dtype == _F32 and dpadded.flags.c_contiguous):
            return super().max_pool_grad(g, win, dpadded, strides, pool)
        dpadded.fill(0)
        _max_pool_grad(np.ascontiguousarray(g), win, dpadded, strides[0], strides[1], pool[1])
        return dpadded


def _unused_row(a):
    """A stand-in for an absent bias: the kernel never reads it, but Numba wants an array of a
    row's type, and a batch of 0 rows (a distributed fit's empty shard) has no row 0."""
    return a[0] if len(a) else a.reshape(-1)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the low 32 bits of an integer."""
    if not isinstance(bits, numba.types.Integer):
        return None

    def codegen(context, builder, signature, args):
        import llvmlite.ir as ir
        value = args[0]
        if bits.bitwidth != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())
    return numba.types.float32(bits), codegen


@_jit
def _bias_sigmoid(z, b, has_bias):
    """``z ← σ(z + b) = 1 / (1 + e^-(z + b))``, Ops.sigmoid's formula, in a loop the compiler
    vectorises: ``e^x`` is written out as ``2^k·e^r`` (``k = round(x/ln 2)``, ``|r| ≤ ln 2 / 2``,
    ``e^r`` by its Taylor polynomial to degree 7, error below 1e-8 relative), ``2^k`` straight
    from the exponent bits. A call to the library's expf would keep it scalar, and NumPy's exp
    takes twice as long on this step."""
    f = np.float32
    n, k = z.shape
    for i in range(n):
        row = z[i]
        for j in range(k):
            x = -(row[j] + b[j]) if has_bias else -row[j]
            # x > 88.7 gives 2^128, the bits of inf, so σ = 0; below -87, σ = 1 anyway
            x = f(89.0) if x > f(89.0) else x  # comparisons written so that NaN stays NaN
            x = f(-87.0) if x < f(-87.0) else x
            kf = (x * f(1.44269504) + f(12582912.0)) - f(12582912.0)  # round(x / ln 2)
            r = x - kf * f(0.693359375)  # ln 2 in two parts: r stays exact
            r = r - kf * f(-2.12194440e-4)
            p = f(1.0 / 5040.0)
            p = p * r + f(1.0 / 720.0)
            p = p * r + f(1.0 / 120.0)
            p = p * r + f(1.0 / 24.0)
            p = p * r + f(1.0 / 6.0)
            p = p * r + f(0.5)
            p = p * r + f(1.0)
            p = p * r + f(1.0)
            e = p * _float32_from_bits((np.int32(kf) + np.int32(127)) << np.int32(23))
            row[j] = f(1.0) / (f(1.0) + e)


@_jit
def _bias_act(z, b, has_bias, code):
    # linear (0) and relu (1) only: sigmoid has its own loop, tanh stays with NumPy
    n, k = z.shape
    zero = z.dtype.type(0.0)
    for i in range(n):
        for j in range(k):
            t = z[i, j] + b[j] if has_bias else z[i, j]
            if code == 1 and t <= zero:  # not `not t > 0`: NaN must stay NaN, as in NumPy
                t = zero
            z[i, j] = t


@_jit
def _act_grad(g, y, code, out, bias_grad, has_bias):
    n, k = g.shape
    one, zero = g.dtype.type(1.0), g.dtype.type(0.0)
    if has_bias:
        bias_grad[:] = zero
    for i in range(n):
        for j in range(k):
            if code == 0:
                d = g[i, j]
            elif code == 1:
                # g · [y > 0], NumPy's product: a NaN gradient stays NaN where the unit is off
                d = g[i, j] * (one if y[i, j] > 0 else zero)
            elif code == 2:
                d = (one - y[i, j]) * y[i, j] * g[i, j]
            else:
                d = (one - y[i, j] * y[i, j]) * g[i, j]
            if code != 0:
                out[i, j] = d
            if has_bias:
                bias_grad[j] += d  # row by row, in the order NumPy's reduction adds


@_jit
def _adam(p, g, m, v, vmax, use_vmax, previous, check, keep, b1, b2, c1, c2, step_size,
          bc2_sqrt, eps):
    # Ops.adam_moments and Ops.adam in one pass, operation for operation
    s, c = step_size[0], bc2_sqrt[0]
    bad = 0
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + gi * c1
        vi = v[i] * b2 + gi * gi * c2
        m[i] = mi
        v[i] = vi
        if use_vmax:
            if vi > vmax[i]:
                vmax[i] = vi
            vi = vmax[i]
        pi = p[i]
        if keep:
            previous[i] = pi
        pi -= mi / (math.sqrt(vi) / c + eps) * s
        p[i] = pi
        bad |= not pi - pi == 0  # NaN exactly when pi is NaN or ±inf; an integer OR vectorises
    if keep:
        check[0] = 0.0 if bad == 0 else np.nan


@_jit
def _sgd(p, g, lr, previous, check, keep):
    rate = lr[0]
    bad = 0
    for i in range(p.size):
        pi = p[i]
        if keep:
            previous[i] = pi
        pi -= g[i] * rate
        p[i] = pi
        bad |= not pi - pi == 0
    if keep:
        check[0] = 0.0 if bad == 0 else np.nan


@_jit
def _log_sum_exp_row(z, i, probs):
    """``probs[i] ← e^(z[i] - max z[i])``; returns ``(max, log Σ)`` for the row, so that
    ``log p = z - max - log Σ`` (Ops.log_softmax) and ``p = probs / Σ`` (Ops.softmax)."""
    k = z.shape[1]
    top = z[i, 0]
    for j in range(1, k):
        if z[i, j] > top:
            top = z[i, j]
    s = z.dtype.type(0.0)
    for j in range(k):
        e = math.exp(z[i, j] - top)
        probs[i, j] = e
        s += e
    for j in range(k):
        probs[i, j] /= s
    return top, math.log(s)


@_jit
def _softmax_xent(z, labels, probs, grad, loss):
    n, k = z.shape
    inv_n = z.dtype.type(1.0) / n
    total = 0.0
    for i in range(n):
        top, log_s = _log_sum_exp_row(z, i, probs)
        total -= z[i, labels[i]] - top - log_s
        for j in range(k):
            grad[i, j] = probs[i, j] * inv_n
        grad[i, labels[i]] -= inv_n
    loss[0] = total / n


@_jit
def _softmax_xent_dense(z, y, probs, grad, loss):
    n, k = z.shape
    inv_n = z.dtype.type(1.0) / n
    total = 0.0
    for i in range(n):
        top, log_s = _log_sum_exp_row(z, i, probs)
        ysum = z.dtype.type(0.0)
        for j in range(k):
            ysum += y[i, j]
        for j in range(k):
            if y[i, j] != 0:
                total -= y[i, j] * (z[i, j] - top - log_s)
            grad[i, j] = (probs[i, j] * ysum - y[i, j]) * inv_n
    loss[0] = total / n


@_jit
def _sigmoid_xent(z, y, probs, grad, loss):
    n, k = z.shape
    one = z.dtype.type(1.0)
    scale = one / (n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            t = z[i, j]
            p = one / (one + math.exp(-t))  # Ops.sigmoid; exp overflowing to inf gives σ = 0
            total += (t if t > 0 else 0.0) - t * y[i, j] + math.log1p(math.exp(-abs(t)))
            probs[i, j] = p
            grad[i, j] = (p - y[i, j]) * scale
    loss[0] = total / (n * k)


@_jit
def _max_pool(padded, y, win, sh, sw, ph, pw):
    n, oh, ow, c = y.shape
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                yr, wr = y[b, i, j], win[b, i, j]
                first = padded[b, i * sh, j * sw]
                for ch in range(c):
                    yr[ch] = first[ch]
                    wr[ch] = 0
                for k in range(1, ph * pw):
                    tap = padded[b, i * sh + k // pw, j * sw + k % pw]
                    for ch in range(c):
                        v = tap[ch]
                        if v > yr[ch] or v != v:  # a NaN wins, as in Ops.max_pool
                            yr[ch] = v
                            wr[ch] = k


@_jit
def _max_pool_grad(g, win, dpadded, sh, sw, pw):
    n, oh, ow, c = g.shape
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                gr, wr = g[b, i, j], win[b, i, j]
                for ch in range(c):
                    k = wr[ch]
                    dpadded[b, i * sh + k // pw, j * sw + k % pw, ch] += gr[ch]


@_jit
def _col2im(dcols, dpadded, sh, sw, dh, dw):
    n, oh, ow, kh, kw, c = dcols.shape
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    r = i * sh + p * dh
                    for q in range(kw):
                        s = j * sw + q * dw
                        for ch in range(c):
                            dpadded[b, r, s, ch] += dcols[b, i, j, p, q, ch]
