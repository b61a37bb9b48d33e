"""The hot-path operations of layers, losses and optimizers, each written once.

:class:`Ops` writes every operation with its array module ``self.xp`` (NumPy; CuPy later). It is
the readable reference and the oracle the tests hold every faster implementation to. A subclass
overrides an operation only to compute the same formula faster on its device (NumpyOps: CPU
tricks; NumbaOps: compiled loops), with the same signature, and calls this class when its
conditions do not hold (tests/test_ops.py checks both).

One convention: an operation writes into arrays the caller owns (``out``, ``grad``, ``loss``,
...) and returns them. Numbers that change every step (the learning rate, Adam's bias corrections,
the loss, the finite check) travel as 1-element arrays, so that a GPU step can be captured once
and replayed without reading anything back to the host; on the CPU that costs nothing.
"""

import contextlib

import numpy


class Ops:
    """Reference implementations over ``xp`` (NumPy by default)."""

    name = "reference"
    # The activations bias_act and act_grad compute; an activation layer names its own in
    # its ``fused`` class attribute.
    ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")
    # Whether a training step on these arrays can be captured and replayed as a CUDA graph
    # (neuralnp.graphs): only on a GPU.
    can_capture = False

    def __init__(self, xp=None):
        self.xp = numpy if xp is None else xp
        # Whether this object's arrays are host memory, where reading a number back costs
        # nothing: the training loop then checks each step as it ends. On a device the loop
        # reads the step's numbers once per epoch, and the operations below never read them.
        self.reads_are_free = self.xp is numpy
        self._scratch_arrays = {}

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _scratch(self, key, shape, dtype):
        """A temporary used inside one operation, allocated once per shape: never returned,
        so operations sharing this object cannot see each other's."""
        shape, dtype = tuple(shape), numpy.dtype(dtype)
        buf = self._scratch_arrays.get((key, shape, dtype))
        if buf is None:
            buf = self._scratch_arrays[(key, shape, dtype)] = self.xp.empty(shape, dtype)
        return buf

    # -- matrix products ------------------------------------------------------------------------

    def matmul(self, a, b, out):
        """``out ← a·b`` for ``a (n, k)`` and ``b (k, m)`` (transposed views welcome)."""
        return self.xp.matmul(a, b, out=out)

    def matmul_for(self, inner):
        """A callable ``f(a, b, out)`` doing :meth:`matmul` for products whose inner dimension
        ``k`` is always ``inner`` (a layer knows it when built), free to skip the choices
        ``matmul`` makes on every call."""
        return self.matmul

    # -- activations ----------------------------------------------------------------------------

    def sigmoid(self, x, out):
        """``out ← σ(x) = 1 / (1 + e^-x)``; ``out`` may be ``x``.

        ``e^-x`` overflows to inf below x ≈ -88 (float32), and ``1/inf = 0`` is the right
        answer. Unlike ``½(1 + tanh(x/2))``, this form keeps full relative precision where σ is
        tiny (σ(-30) ≈ 9.4e-14 does not round to 0).
        """
        xp = self.xp
        xp.negative(x, out=out)
        with _quiet_overflow(xp):
            xp.exp(out, out=out)
        out += 1.0
        return xp.reciprocal(out, out=out)

    def softmax(self, x, out, axis=-1):
        """``out ← e^(x - max x) / Σ e^(x - max x)`` along ``axis``; ``out`` may be ``x``."""
        xp = self.xp
        xp.subtract(x, xp.max(x, axis=axis, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= xp.sum(out, axis=axis, keepdims=True)
        return out

    def log_softmax(self, x, out, axis=-1):
        """``out ← x - max x - log Σ e^(x - max x)`` along ``axis``: finite even where the
        softmax itself underflows to 0. ``out`` may be ``x``."""
        xp = self.xp
        xp.subtract(x, xp.max(x, axis=axis, keepdims=True), out=out)
        out -= xp.log(xp.sum(xp.exp(out), axis=axis, keepdims=True))
        return out

    def bias_act(self, z, b, act):
        """``z ← f(z + b)`` in place, ``f`` named by ``act`` (one of :attr:`ACTIVATIONS`:
        ``x``, ``max(x, 0)``, :meth:`sigmoid`, ``tanh x``); ``b`` (a row) may be None."""
        if b is not None:
            z += b
        if act == "relu":
            self.xp.maximum(z, 0, out=z)
        elif act == "sigmoid":
            self.sigmoid(z, z)
        elif act == "tanh":
            self.xp.tanh(z, out=z)
        elif act != "linear":
            raise ValueError(f"no fused form {act!r}; known: {', '.join(self.ACTIVATIONS)}")
        return z

    def act_grad(self, g, y, act, out, bias_grad=None):
        """``out ← g · f'(z)``, written from the output ``y = f(z)``: ``[y > 0]`` (relu),
        ``y(1 - y)`` (sigmoid), ``1 - y²`` (tanh); with ``bias_grad``, ``bias_grad ← Σ_rows``
        of it. Returns the gradient with respect to ``z``: ``out``, or ``g`` itself for linear.

        A NaN in ``g`` stays NaN where a ReLU is off (``g·0``), as in a plain product."""
        xp = self.xp
        if act == "linear":
            out = g
        elif act == "relu":
            xp.greater(y, 0, out=out)
            out *= g
        elif act == "sigmoid":
            xp.subtract(1.0, y, out=out)
            out *= y
            out *= g
        elif act == "tanh":
            xp.multiply(y, y, out=out)
            xp.subtract(1.0, out, out=out)
            out *= g
        else:
            raise ValueError(f"no fused form {act!r}; known: {', '.join(self.ACTIVATIONS)}")
        if bias_grad is not None:
            xp.sum(out, axis=0, out=bias_grad)
        return out

    # -- losses from logits ---------------------------------------------------------------------

    def softmax_xent(self, z, labels, probs, grad, loss):
        """Mean cross-entropy of logits ``z (N, K)`` against integer ``labels (N,)``:
        ``probs ← p = softmax(z)``, ``grad ← (p - onehot(labels)) / N`` and
        ``loss[0] ← -(1/N) Σ_i log p[i, labels_i]`` (from :meth:`log_softmax`)."""
        xp = self.xp
        n = z.shape[0]
        rows = xp.arange(n)
        self.log_softmax(z, probs)
        loss[...] = -xp.sum(probs[rows, labels]) / n
        xp.exp(probs, out=probs)
        xp.multiply(probs, 1.0 / n, out=grad)
        grad[rows, labels] -= 1.0 / n
        return probs, grad, loss

    def softmax_xent_dense(self, z, y, probs, grad, loss):
        """As :meth:`softmax_xent` with target rows ``y (N, K)`` (one-hot or soft):
        ``loss[0] ← -(1/N) Σ y log p`` and ``grad ← (p·Σ_k y_k - y) / N`` (``(p - y)/N`` for
        one-hot rows)."""
        xp = self.xp
        n = z.shape[0]
        self.log_softmax(z, probs)
        xp.multiply(y, probs, out=grad)
        loss[...] = -xp.sum(grad) / n
        xp.exp(probs, out=probs)
        xp.multiply(probs, xp.sum(y, axis=-1, keepdims=True), out=grad)
        grad -= y
        grad *= 1.0 / n
        return probs, grad, loss

    def sigmoid_xent(self, z, y, probs, grad, loss):
        """Mean binary cross-entropy of logits ``z (N, K)`` against targets ``y`` in [0, 1]:
        ``loss[0] ← mean(max(z, 0) - z·y + log(1 + e^-|z|))`` (no term can overflow),
        ``probs ← σ(z)`` and ``grad ← (σ(z) - y) / (N·K)``."""
        xp = self.xp
        self.sigmoid(z, probs)
        xp.abs(z, out=grad)
        xp.negative(grad, out=grad)
        xp.exp(grad, out=grad)
        xp.log1p(grad, out=grad)
        grad += xp.maximum(z, 0)
        grad -= z * y
        loss[...] = xp.sum(grad) / z.size
        xp.subtract(probs, y, out=grad)
        grad *= 1.0 / z.size
        return probs, grad, loss

    # -- optimizers over the flat buffer --------------------------------------------------------

    def sum_squares(self, x, out):
        """``out[0] ← Σ x²`` for a 1-D ``x``, one BLAS dot without a temporary. It is the
        squared norm for clipping, and a finite check: NaN or inf whenever an entry of ``x``
        is (and also for |x| near 1e19 in float32, so a caller confirms a non-finite check)."""
        out[...] = self.xp.dot(x, x)
        return out

    def sgd(self, p, g, lr, tmp, previous=None, check=None):
        """``p ← p - lr·g`` with ``lr`` a 1-element array, ``tmp`` a workspace like ``p``.

        With ``previous`` and ``check`` (a 1-element array), the old ``p`` is saved in
        ``previous`` first and ``check[0]`` is left finite unless a new weight may not be
        (see :meth:`sum_squares`)."""
        xp = self.xp
        if previous is not None:
            xp.copyto(previous, p)
        xp.multiply(g, lr, out=tmp)
        p -= tmp
        if check is not None:
            self.sum_squares(p, check)
        return p

    def adam_moments(self, g, m, v, vmax, beta_1, beta_2, tmp):
        """Adam's moments in place: ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²`` and, with
        ``vmax`` (AMSGrad), ``vmax ← max(vmax, v)``. Returns the second moment a step divides
        by: ``vmax``, else ``v``."""
        xp = self.xp
        m *= beta_1
        xp.multiply(g, 1.0 - beta_1, out=tmp)
        m += tmp
        v *= beta_2
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta_2
        v += tmp
        if vmax is None:
            return v
        return xp.maximum(vmax, v, out=vmax)

    def adam(self, p, g, m, v, vmax, beta_1, beta_2, eps, step_size, bc2_sqrt, tmp,
             previous=None, check=None):
        """One Adam step: :meth:`adam_moments`, then ``p ← p - s · m / (√v̂ / c + ε)`` with
        ``s = step_size[0] = η / (1 - β₁ᵗ)`` and ``c = bc2_sqrt[0] = √(1 - β₂ᵗ)``;
        ``previous`` and ``check`` as in :meth:`sgd`."""
        xp = self.xp
        if previous is not None:
            xp.copyto(previous, p)
        v_hat = self.adam_moments(g, m, v, vmax, beta_1, beta_2, tmp)
        xp.sqrt(v_hat, out=tmp)
        tmp /= bc2_sqrt
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp
        if check is not None:
            self.sum_squares(p, check)
        return p

    # -- the step's own bookkeeping, written on the device ---------------------------------------
    #
    # A gate is a 1-element float array: nonzero while every step so far was finite. These three
    # operations are all a training step does with it, so that the step runs from start to end
    # without the host reading anything (on a GPU, the condition for replaying it as a graph).

    def finite_gate(self, gate, value):
        """``gate[0] ← 0`` when ``value[0]`` (a loss) is NaN or infinite; otherwise unchanged."""
        xp = self.xp
        finite = self._scratch("finite_gate", value.shape, bool)  # nothing allocated per step
        return xp.logical_and(gate, xp.isfinite(value, out=finite), out=gate)

    def gated(self, gate, update, *arrays):
        """Call ``update()``, which changes ``arrays`` in place, with the effect it has only
        if ``gate[0]`` is nonzero now, without reading the gate on the host: the arrays are
        copied first and put back if the gate was closed (on the host, where reading the gate
        is free, the optimizer reads it and skips the call instead). An update that closes the
        gate itself undoes what it must (:meth:`keep_finite`)."""
        xp = self.xp
        closed = self._scratch("closed", (1,), bool)
        xp.equal(gate, 0, out=closed)
        saved = [self._scratch(("gated", i), a.shape, a.dtype) for i, a in enumerate(arrays)]
        for keep, a in zip(saved, arrays):
            xp.copyto(keep, a)
        update()
        for a, keep in zip(arrays, saved):
            xp.copyto(a, keep, where=closed.reshape((1,) * a.ndim))
        return gate

    def keep_finite(self, p, previous, check, gate, bad):
        """After an update of ``p`` made with the gate open (a closed one means it was not
        made): when any new weight is NaN or infinite, ``gate[0] ← 0``, ``bad[0] ←`` how many
        are, and ``p ← previous`` (when given). ``check`` is the update's
        cheap hint (:meth:`sum_squares` of the new ``p``), which a host may trust when finite;
        this reference counts the weights themselves."""
        xp = self.xp
        not_finite = self._scratch("not_finite", p.shape, bool)
        xp.isfinite(p, out=not_finite)
        xp.logical_not(not_finite, out=not_finite)
        count = xp.sum(not_finite, dtype=bad.dtype)
        refused = xp.logical_and(count > 0, gate != 0)  # a closed gate's update is undone anyway
        xp.copyto(bad, count, where=refused)
        xp.logical_and(gate, xp.logical_not(refused), out=gate)
        if previous is not None:
            xp.copyto(p, previous, where=refused)
        return gate

    def to_device(self, a):
        """``a`` (a host array) as an array of this object's module: the upload, once per fit."""
        return self.xp.asarray(a)

    def to_host(self, a):
        """``a`` as a NumPy array: itself on the host, a copy read back from a device (the
        training loop's one read per epoch)."""
        return a if self.xp is numpy else a.get()

    # -- random numbers drawn on the device ------------------------------------------------------

    def dropout_mask(self, mask, key, rate):
        """``mask ← [u ≥ rate]`` (1 or 0 in ``mask``'s dtype) with ``u`` uniform in [0, 1),
        then ``key[1] += 1``. ``u`` is a counter-based hash of ``key = (seed, counter)`` (a
        2-element int64 array on the device) and each entry's index ``i``: the splitmix64
        finalizer of ``seed + counter·0xD1B54A32D192ED03 + i·0x9E3779B97F4A7C15``, its top 24
        bits (float32) or 53 bits (float64) scaled to [0, 1). Nothing comes from the host, so
        a captured step draws new masks on every replay."""
        xp, n = self.xp, mask.size
        index = self._scratch("dropout_index", (n,), numpy.uint64)
        xp.copyto(index, xp.arange(n, dtype=numpy.uint64))
        words = key.view(numpy.uint64)
        seed, counter = words[0:1], words[1:2]  # arrays, not scalars: they wrap without warning
        z = seed + counter * 0xD1B54A32D192ED03 + index * 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        z ^= z >> 31
        bits = 24 if mask.dtype == numpy.float32 else 53
        u = (z >> (64 - bits)).astype(mask.dtype) * mask.dtype.type(2.0 ** -bits)
        xp.greater_equal(u.reshape(mask.shape), rate, out=mask)
        key[1:2] += 1
        return mask

    # -- batches --------------------------------------------------------------------------------

    def take_rows(self, x, rows, out):
        """``out ← x[rows]`` along the first axis; every row index must be in range."""
        return self.xp.take(x, rows, axis=0, out=out)

    # -- images: channels-last (N, H, W, C), windows as in layers/conv.py ----------------------

    def im2col(self, padded, cols, strides, dilation):
        """``cols[n, i, j, p, q, c] ← padded[n, i·sh + p·dh, j·sw + q·dw, c]``: the window of
        every output pixel, copied out of the padded images into ``cols (N, oh, ow, kh, kw, C)``
        (one strided copy per kernel entry)."""
        for p, q, index in _taps(cols.shape[1:5], strides, dilation):
            cols[:, :, :, p, q] = padded[index]
        return cols

    def col2im(self, dcols, dpadded, strides, dilation):
        """The adjoint of :meth:`im2col`: ``dpadded[n, r, s, c] ← Σ dcols[n, i, j, p, q, c]``
        over every ``(i, j, p, q)`` with ``r = i·sh + p·dh``, ``s = j·sw + q·dw``; a pixel read
        by several windows gets the sum."""
        dpadded.fill(0)
        for p, q, index in _taps(dcols.shape[1:5], strides, dilation):
            dpadded[index] += dcols[:, :, :, p, q]
        return dpadded

    def max_pool(self, padded, y, win, strides, pool):
        """``y[n, i, j, c] ← max_{p, q} padded[n, i·sh + p, j·sw + q, c]`` over the
        ``pool = (ph, pw)`` window, and ``win ← p·pw + q`` of the first maximum in row-major
        order; a NaN wins its window."""
        xp = self.xp
        taps = _taps(y.shape[1:3] + tuple(pool), strides, (1, 1))
        better = self._scratch("better", y.shape, bool)
        nan = self._scratch("nan", y.shape, bool)
        y[...] = padded[taps[0][2]]
        win.fill(0)
        for k, (_, _, index) in enumerate(taps[1:], start=1):
            tap = padded[index]
            xp.greater(tap, y, out=better)  # strict: the first maximum wins ties
            xp.isnan(tap, out=nan)
            better |= nan
            xp.copyto(y, tap, where=better)
            xp.copyto(win, k, where=better, casting="unsafe")
        return y, win

    def max_pool_grad(self, g, win, dpadded, strides, pool):
        """``dpadded ←`` each output's gradient ``g`` on the pixel that won its window (the sum
        where overlapping windows share a winner), zero elsewhere."""
        xp = self.xp
        chosen = self._scratch("chosen", g.shape, bool)
        picked = self._scratch("picked", g.shape, g.dtype)
        dpadded.fill(0)
        for k, (_, _, index) in enumerate(_taps(g.shape[1:3] + tuple(pool), strides, (1, 1))):
            xp.equal(win, k, out=chosen)
            picked.fill(0)  # copyto with where=, not g·mask: an inf gradient must not give NaN
            xp.copyto(picked, g, where=chosen)
            dpadded[index] += picked  # one add per entry: overlapping windows accumulate
        return dpadded

    def avg_pool(self, padded, y, strides, pool, count):
        """``y[n, i, j, c] ← Σ_{p, q} padded[n, i·sh + p, j·sw + q, c] / count`` (``count``: a
        number, or the real pixels of each window as an ``(oh, ow, 1)`` array)."""
        taps = _taps(y.shape[1:3] + tuple(pool), strides, (1, 1))
        y[...] = padded[taps[0][2]]
        for _, _, index in taps[1:]:
            y += padded[index]
        y /= count
        return y

    def avg_pool_grad(self, g, dpadded, strides, pool, count):
        """``dpadded ←`` each output's ``g / count`` spread over its window (sums where windows
        overlap)."""
        share = self._scratch("share", g.shape, g.dtype)
        self.xp.divide(g, count, out=share)
        dpadded.fill(0)
        for _, _, index in _taps(g.shape[1:3] + tuple(pool), strides, (1, 1)):
            dpadded[index] += share
        return dpadded


def _taps(out_and_kernel, strides, dilation):
    """``[(p, q, index)]`` for every kernel entry, row-major: ``index`` selects the padded pixels
    ``(i·sh + p·dh, j·sw + q·dw)`` that entry meets, for every output ``(i, j)``, as a strided
    slice of shape ``(N, oh, ow, C)``."""
    oh, ow, kh, kw = out_and_kernel
    (sh, sw), (dh, dw) = strides, dilation
    return [(p, q, (slice(None), slice(p * dh, p * dh + sh * (oh - 1) + 1, sh),
                    slice(q * dw, q * dw + sw * (ow - 1) + 1, sw)))
            for p in range(kh) for q in range(kw)]


def _quiet_overflow(xp):
    """NumPy warns when ``exp`` overflows to inf, which sigmoid relies on; CuPy never warns."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore") if errstate is not None else contextlib.nullcontext()
