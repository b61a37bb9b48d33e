"""Dropout: zero random entries while training, so that no unit can rely on any other."""


import numpy as np

from .base import Layer
from .._checks import is_int, is_real


class Dropout(Layer):
    """Inverted dropout: ``y = x ⊙ m / (1 - rate)`` in training, ``y = x`` at inference.

    ``m = (u >= rate)`` with ``u ~ U[0, 1)``, so each entry is kept with probability
    ``1 - rate`` and ``E[y] = x``; dividing while training (not multiplying at inference) keeps
    inference a plain identity. Backward: ``dL/dx = g ⊙ m / (1 - rate)``.

    ``u`` comes from the model's generator (so a model seed fixes every mask), or from
    ``np.random.default_rng(seed)``, created at build, when ``seed`` is given.
    ``noise_shape`` is the mask's shape *with* the batch axis, as in Keras: ``None`` takes the
    input's size and 1 shares one draw along that axis, e.g. ``(None, 1, 1, C)`` drops whole
    channels of a ``(N, H, W, C)`` input. Any input shape; the output has the input's shape.

    In a distributed fit (:mod:`neuralnp.distributed`) every rank draws the mask of the whole
    global batch from the same stream and keeps its own shard's rows, so the masks, and the
    generator's state afterwards, are those of one process training on the global batch.

    >>> layer = Dropout(0.5, seed=0)
    >>> x = np.ones((2, 4), dtype="float32")
    >>> layer(x) is x  # inference (training=False): identity
    True
    >>> sorted(set(layer(x, training=True).ravel().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if (not is_real(rate)
                or not 0.0 <= float(rate) < 1.0):
            raise ValueError(f"Dropout rate must be a number in [0, 1) (the fraction of inputs "
                             f"to drop), got {rate!r}")
        self.rate = float(rate)
        if noise_shape is not None:
            if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
                raise ValueError(f"Dropout noise_shape must be a tuple such as (None, 1, 1, 8), "
                                 f"got {noise_shape!r}")
            noise_shape = tuple(None if d is None else _positive_int(d, noise_shape)
                                for d in noise_shape)
        self.noise_shape = noise_shape
        if seed is not None and (not is_int(seed)
                                 or seed < 0):
            raise ValueError(f"Dropout seed must be a non-negative integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._mask_rng = None
        self._mask = None
        self._key = None

    def build(self, input_shape):
        # A fresh generator per build, so that a seeded layer rebuilt draws the same masks again.
        self._mask_rng = np.random.default_rng(self.seed) if self.seed is not None else self._rng
        self._key = None  # a device's mask stream, started at its first draw
        if self.noise_shape is not None:
            rank = len(input_shape) + 1
            if len(self.noise_shape) != rank:
                raise ValueError(
                    f"Dropout {self.name!r}: noise_shape {self.noise_shape} has "
                    f"{len(self.noise_shape)} axes but the input (batch, {', '.join(map(str, input_shape))}) has {rank}; "
                    "give one entry per axis, the batch axis included (None for 'same as input')")
            for d, size in zip(self.noise_shape[1:], input_shape):
                if d is not None and d not in (1, size):
                    raise ValueError(
                        f"Dropout {self.name!r}: noise_shape {self.noise_shape} cannot broadcast "
                        f"to the input (batch, {', '.join(map(str, input_shape))}); each entry "
                        "must be None, 1 or the input's size")

    def own_generator(self):
        return self._mask_rng if self.seed is not None else None

    def _mask_shape(self, x_shape):
        if self.noise_shape is None:
            return x_shape
        shape = tuple(s if d is None else d for d, s in zip(self.noise_shape, x_shape))
        if shape[0] not in (1, x_shape[0]):  # build could only check the non-batch axes
            raise ValueError(f"Dropout {self.name!r}: noise_shape batch entry {shape[0]} does not "
                             f"match the batch of {x_shape[0]}; use None or 1")
        return shape

    def _draw_mask(self, shape):
        """The keep mask ``(u >= rate)`` as 0.0/1.0 in the layer's dtype, ``u ~ U[0, 1)``.

        Drawn into a workspace (``Generator.random(out=...)`` and an in-place comparison), so a
        training step allocates nothing; the array is overwritten by the next draw. On a GPU
        ``u`` comes from a counter-based hash on the device instead (``Ops.dropout_mask``),
        seeded once from this layer's generator, so a captured step draws new masks on every
        replay: the same seed gives the same masks on a GPU every time, not the CPU's masks.
        """
        mask = self._workspace("mask", shape)
        if not self.ops.reads_are_free:
            if self._key is None:
                seed = self._mask_rng.integers(2 ** 62)
                self._key = self.ops.to_device(np.array([seed, 0], np.int64))
            return self.ops.dropout_mask(mask, self._key, self.rate)
        self._mask_rng.random(dtype=mask.dtype, out=mask)
        np.greater_equal(mask, self.rate, out=mask)  # elementwise, so in place is safe
        return mask

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        if not self.context.distributed:
            self._mask = self._draw_mask(self._mask_shape(x.shape))
        else:
            count, lo, hi = self.context.batch
            mask = self._draw_mask(self._mask_shape((count,) + x.shape[1:]))
            self._mask = mask[lo:hi] if mask.shape[0] == count else mask  # else shared: (1, ...)
        y = self._workspace("y", x.shape)
        # x·m is exact (m is 0 or 1), so y is x/(1 - rate) up to one rounding wherever kept.
        np.multiply(x, self._mask, out=y)
        y *= 1.0 / (1.0 - self.rate)
        return y

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        if self._mask is None:  # the forward pass was the identity
            return grad_out
        grad_in = self._workspace("grad_in", grad_out.shape)
        np.multiply(grad_out, self._mask, out=grad_in)
        grad_in *= 1.0 / (1.0 - self.rate)
        return grad_in

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed}


def _positive_int(d, noise_shape):
    if not is_int(d) or d < 1:
        raise ValueError(f"Dropout noise_shape entries must be positive integers or None, got "
                         f"{noise_shape!r}")
    return int(d)
