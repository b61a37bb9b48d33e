"""Fused element-wise kernels for the hot path: Numba when it is installed, NumPy otherwise.

NumPy runs each element-wise operation as its own pass over memory, on one core, with a call
overhead of about a microsecond. On the training step's element-wise chains (bias + activation,
the activation's derivative, Adam over the whole flat buffer, softmax + cross-entropy) that is
most of the time left once the matrix products are done. With ``pip install "neuralnp[fast]"``
each chain on float32 arrays becomes one compiled pass over memory; without
it, and always for float64 (the dtype of gradient checks, which keeps the reference formulas),
the same functions run as a few in-place NumPy passes. Both paths compute the same formulas, and
the tests compare them (``NEURALNP_KERNELS=numpy`` forces the NumPy one).

Every function works in place on arrays the caller owns and allocates nothing.
"""

import math
import os

import numpy as np

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")
_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}


def _load_numba():
    if os.environ.get("NEURALNP_KERNELS", "auto").lower() == "numpy":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


numba = _load_numba()
BACKEND = "numba" if numba is not None else "numpy"


# -- NumPy path -----------------------------------------------------------------------------------

def _bias_act_numpy(z, b, code):
    if b is not None:
        z += b
    if code == 1:
        np.maximum(z, 0, out=z)
    elif code == 2:
        # σ(z) = 1 / (1 + e^-z) in place. e^-z may overflow to inf, and then 1/inf = 0 is the
        # right answer. NumPy's exp is SIMD (its tanh is not: the ½(1 + tanh(z/2)) form was
        # 40 % slower) and this form keeps full relative precision where σ is tiny.
        np.negative(z, out=z)
        with np.errstate(over="ignore"):
            np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)
    elif code == 3:
        np.tanh(z, out=z)


def _act_grad_numpy(g, y, code, out):
    if code == 1:
        np.greater(y, 0, out=out)  # 1.0 where y > 0, else 0.0
        out *= g
    elif code == 2:
        np.subtract(1.0, y, out=out)
        out *= y
        out *= g
    elif code == 3:
        np.multiply(y, y, out=out)
        np.subtract(1.0, out, out=out)
        out *= g


def _adam_numpy(p, g, m, v, vmax, b1, b2, step_size, bc2_sqrt, eps, tmp):
    m *= b1
    np.multiply(g, 1.0 - b1, out=tmp)
    m += tmp
    v *= b2
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - b2
    v += tmp
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    np.sqrt(v, out=tmp)
    tmp /= bc2_sqrt
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    p -= tmp


# -- Numba path -----------------------------------------------------------------------------------

if numba is not None:
    # Serial on purpose: OpenBLAS keeps its threads spinning for a while after each matrix
    # product, and a parallel kernel's threads would fight them for the same cores.
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    _jit_serial = _jit

    from numba.extending import intrinsic

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
    def _bias_sigmoid_numba(z, b, has_bias):
        """``z ← σ(z + b)`` for float32, in a loop the compiler vectorises: ``e^x`` is written
        out as ``2^k·e^r`` (``k = round(x/ln 2)``, ``|r| ≤ ln 2 / 2``, ``e^r`` by its Taylor
        polynomial to degree 7, error below 1e-8 relative), ``2^k`` straight from the exponent
        bits. A call to the library's expf would keep it scalar, and NumPy's exp takes twice
        as long on this step."""
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
    def _bias_act_numba(z, b, has_bias, code):
        # linear (0) and relu (1) only: see bias_act
        n, k = z.shape
        zero = z.dtype.type(0.0)
        for i in range(n):
            for j in range(k):
                t = z[i, j] + b[j] if has_bias else z[i, j]
                if code == 1 and t <= zero:  # not `not t > 0`: NaN must stay NaN, as in NumPy
                    t = zero
                z[i, j] = t

    @_jit
    def _act_grad_numba(g, y, code, out, bias_grad, has_bias):
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
    def _adam_numba(p, g, m, v, vmax, use_vmax, previous, keep, b1, b2, c1, c2, step_size,
                    bc2_sqrt, eps):
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
            pi -= mi / (math.sqrt(vi) / bc2_sqrt + eps) * step_size
            p[i] = pi
            bad |= not pi - pi == 0  # NaN exactly when pi is NaN or ±inf; an integer OR vectorises
        return bad == 0

    @_jit
    def _exp_row(z, i, probs):
        """``probs[i] ← exp(z[i] - max z[i])``; returns ``(max, Σ)`` for the row."""
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
        return top, s

    @_jit_serial
    def _softmax_xent_numba(z, labels, probs, grad):
        n, k = z.shape
        inv_n = z.dtype.type(1.0) / n
        total = 0.0
        for i in range(n):
            top, s = _exp_row(z, i, probs)
            # log p = z - max - log Σ: finite even when p itself underflows to 0
            total -= z[i, labels[i]] - top - math.log(s)
            for j in range(k):
                probs[i, j] /= s
                grad[i, j] = probs[i, j] * inv_n
            grad[i, labels[i]] -= inv_n
        return total / n

    @_jit_serial
    def _softmax_xent_dense_numba(z, y, probs, grad):
        n, k = z.shape
        inv_n = z.dtype.type(1.0) / n
        total = 0.0
        for i in range(n):
            top, s = _exp_row(z, i, probs)
            ysum = z.dtype.type(0.0)
            for j in range(k):
                ysum += y[i, j]
            log_s = math.log(s)
            for j in range(k):
                if y[i, j] != 0:
                    total -= y[i, j] * (z[i, j] - top - log_s)
                probs[i, j] /= s
                grad[i, j] = (probs[i, j] * ysum - y[i, j]) * inv_n
        return total / n

    @_jit_serial
    def _sigmoid_xent_numba(z, y, probs, grad):
        n, k = z.shape
        one = z.dtype.type(1.0)
        scale = one / (n * k)
        total = 0.0
        for i in range(n):
            for j in range(k):
                t = z[i, j]
                e = math.exp(-abs(t))  # ≤ 1: neither σ nor the log-term can overflow
                p = one / (one + e) if t >= 0 else e / (one + e)
                total += (t if t > 0 else 0.0) - t * y[i, j] + math.log1p(e)
                probs[i, j] = p
                grad[i, j] = (p - y[i, j]) * scale
        return total / (n * k)

    @_jit
    def _max_pool_numba(xp, y, win, sh, sw, ph, pw):
        n, oh, ow, c = y.shape
        for b in range(n):
            for i in range(oh):
                for j in range(ow):
                    yr, wr = y[b, i, j], win[b, i, j]
                    first = xp[b, i * sh, j * sw]
                    for ch in range(c):
                        yr[ch] = first[ch]
                        wr[ch] = 0
                    for k in range(1, ph * pw):
                        tap = xp[b, i * sh + k // pw, j * sw + k % pw]
                        for ch in range(c):
                            v = tap[ch]
                            if v > yr[ch] or v != v:  # a NaN wins, as in the NumPy path
                                yr[ch] = v
                                wr[ch] = k

    @_jit
    def _max_pool_grad_numba(g, win, dxp, sh, sw, pw):
        n, oh, ow, c = g.shape
        for b in range(n):
            for i in range(oh):
                for j in range(ow):
                    gr, wr = g[b, i, j], win[b, i, j]
                    for ch in range(c):
                        k = wr[ch]
                        dxp[b, i * sh + k // pw, j * sw + k % pw, ch] += gr[ch]

    @_jit
    def _col2im_numba(dcols, dxp, sh, sw, dh, dw):
        n, oh, ow, kh, kw, c = dcols.shape
        for b in range(n):
            for i in range(oh):
                for j in range(ow):
                    for p in range(kh):
                        r = i * sh + p * dh
                        for q in range(kw):
                            s = j * sw + q * dw
                            for ch in range(c):
                                dxp[b, r, s, ch] += dcols[b, i, j, p, q, ch]

    @_jit
    def _sgd_numba(p, g, lr, previous, keep):
        bad = 0
        for i in range(p.size):
            pi = p[i]
            if keep:
                previous[i] = pi
            pi -= g[i] * lr
            p[i] = pi
            bad |= not pi - pi == 0
        return bad == 0


# -- the interface the layers, losses and optimizers call ----------------------------------------

def _compiled(array):
    return numba is not None and array.dtype == np.float32


def activation_code(layer):
    """The fused-kernel code of an activation layer (None when it has no fused kernel)."""
    from .layers import activations
    name = activations.name_of(layer) if layer is not None else "linear"
    if name in _CODES and not (layer is not None and layer.get_config().keys() - {"name"}):
        return _CODES[name]
    return None


def _unused_row(a):
    """A stand-in for an absent bias: the kernel never reads it, but Numba wants an array of a
    row's type, and a batch of 0 rows (a distributed fit's empty shard) has no row 0."""
    return a[0] if len(a) else a.reshape(-1)


def bias_act(z, b, code):
    """``z ← f(z + b)`` in place, ``f`` given by ``code`` (linear, relu, sigmoid, tanh)."""
    # tanh keeps NumPy's vectorised pass: a compiled loop over math.tanh is scalar and slower.
    if _compiled(z) and z.ndim == 2 and code <= 1:
        _bias_act_numba(z, b if b is not None else _unused_row(z), b is not None, code)
    elif _compiled(z) and z.ndim == 2 and code == 2:
        _bias_sigmoid_numba(z, b if b is not None else _unused_row(z), b is not None)
    else:
        _bias_act_numpy(z, b, code)


def act_grad(g, y, code, out, bias_grad=None):
    """``out ← g · f'(z)``, written with the activation's output ``y = f(z)``, and with
    ``bias_grad`` given, ``bias_grad ← Σ_rows out`` in the same pass. Returns the gradient with
    respect to ``z`` (``g`` itself for the linear activation)."""
    dz = g if code == 0 else out
    if _compiled(g) and g.ndim == 2:
        has_bias = bias_grad is not None
        _act_grad_numba(g, y, code, out, bias_grad if has_bias else _unused_row(g), has_bias)
        return dz
    _act_grad_numpy(g, y, code, out)
    if bias_grad is not None:
        np.add.reduce(dz, axis=0, out=bias_grad)
    return dz


def adam(p, g, m, v, vmax, beta_1, beta_2, step_size, bc2_sqrt, eps, tmp, previous=None):
    """One Adam update of the flat arrays, as :class:`neuralnp.optimizers.Adam` documents.

    The scalars are cast to the arrays' dtype first, so that float32 arithmetic matches NumPy's
    (which casts Python scalars the same way) bit for bit. With ``previous``, the old ``p`` is
    saved there and the result says whether every new ``p`` may be finite (see :func:`_guard`).
    """
    if _compiled(p):
        t = p.dtype.type
        return _adam_numba(p, g, m, v, vmax if vmax is not None else m, vmax is not None,
                           previous if previous is not None else p, previous is not None,
                           t(beta_1), t(beta_2), t(1.0 - beta_1), t(1.0 - beta_2),
                           t(step_size), t(bc2_sqrt), t(eps))
    return _guard(p, previous, _adam_numpy, p, g, m, v, vmax, beta_1, beta_2, step_size,
                  bc2_sqrt, eps, tmp)


def softmax_xent(z, labels, probs, grad):
    """Mean sparse cross-entropy of the logits ``z`` ``(N, K)`` against integer ``labels``;
    writes ``softmax(z)`` into ``probs`` and ``(p - onehot)/N`` into ``grad``. The NumPy path
    returns None: the loss then runs its own formulas."""
    if _compiled(z):
        return float(_softmax_xent_numba(z, labels, probs, grad))
    return None


def softmax_xent_dense(z, y, probs, grad):
    """As :func:`softmax_xent` with one-hot (or soft) target rows ``y`` ``(N, K)``:
    ``grad = (p·Σy - y)/N``."""
    if _compiled(z):
        return float(_softmax_xent_dense_numba(z, y, probs, grad))
    return None


def sigmoid_xent(z, y, probs, grad):
    """Mean binary cross-entropy of the logits ``z`` ``(N, K)`` against targets ``y`` in
    [0, 1]; writes ``σ(z)`` into ``probs`` and ``(σ(z) - y)/(N·K)`` into ``grad``. The NumPy
    path returns None: the loss then runs its own formulas."""
    if _compiled(z) and y.dtype == z.dtype:
        return float(_sigmoid_xent_numba(z, y, probs, grad))
    return None


def sgd(p, g, lr, tmp, previous=None):
    """``p ← p - lr·g`` in one pass (two NumPy passes without Numba); ``previous`` as in
    :func:`adam`."""
    if _compiled(p):
        return _sgd_numba(p, g, p.dtype.type(lr), previous if previous is not None else p,
                          previous is not None)
    return _guard(p, previous, _sgd_numpy, p, g, lr, tmp)


def _sgd_numpy(p, g, lr, tmp):
    np.multiply(g, lr, out=tmp)
    p -= tmp


def _guard(p, previous, update, *args):
    """``update(*args)``, which changes ``p`` in place; with ``previous``, the old ``p`` is
    saved there first and the result is False when a new ``p`` may be NaN or infinite.

    The check is one BLAS pass without a temporary: a NaN or inf makes ``p·p`` non-finite. So
    do weights near 1e19 in float32, which the caller confirms element by element.
    """
    if previous is None:
        update(*args)
        return None
    np.copyto(previous, p)
    update(*args)
    return math.isfinite(np.dot(p, p))


def max_pool(xp, y, win, strides, pool):
    """Max pooling of the padded images ``xp`` ``(N, H, W, C)`` into ``y`` ``(N, oh, ow, C)``,
    with the winning window entry (``p·pw + q``) in ``win``. Returns False when there is no
    compiled kernel for these arrays: the layer then runs its NumPy passes, which compute the
    same (NumPy's masked copies are the slow part of a CNN step on a CPU)."""
    if not (_compiled(xp) and y.dtype == xp.dtype and xp.flags.c_contiguous):
        return False
    _max_pool_numba(xp, y, win, strides[0], strides[1], pool[0], pool[1])
    return True


def max_pool_grad(g, win, dxp, strides, pool):
    """Adds each output's gradient ``g`` onto the pixel of ``dxp`` that won its window (the
    sum where overlapping windows share a winner). False without a compiled kernel."""
    if not (_compiled(g) and dxp.dtype == g.dtype and dxp.flags.c_contiguous):
        return False
    _max_pool_grad_numba(np.ascontiguousarray(g), win, dxp, strides[0], strides[1], pool[1])
    return True


def col2im(dcols, dxp, strides, dilation):
    """Adds each window's gradient ``dcols`` ``(N, oh, ow, kh, kw, C)`` onto the pixels of the
    padded image gradient ``dxp`` ``(N, H, W, C)`` it came from (a pixel in several windows
    gets the sum). False without a compiled kernel: Conv2D then adds kh·kw strided slices,
    seven times slower for a 3×3 kernel on 32 channels."""
    if not (_compiled(dxp) and dcols.dtype == dxp.dtype and dxp.flags.c_contiguous
            and dcols.flags.c_contiguous):
        return False
    _col2im_numba(dcols, dxp, strides[0], strides[1], dilation[0], dilation[1])
    return True
