"""Weight penalties added to the loss and to its gradient, with Keras's semantics.

``L1(l1)``: ``l1·Σ|w|``, gradient ``l1·sign(w)``. ``L2(l2)``: ``l2·Σw²`` (no ½, as Keras),
gradient ``2·l2·w``. ``L1L2`` adds both. A layer takes them as ``kernel_regularizer=`` /
``bias_regularizer=``; the model adds every penalty to the reported loss and its gradient to the
parameter's gradient after ``backward``.
"""

import math

import numpy as np

from ._registry import Configurable, resolve


def _factor(name, value):
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class Regularizer(Configurable):
    def __call__(self, w):
        """The penalty for weights ``w`` (a float)."""
        raise NotImplementedError

    def add_gradient(self, w, grad):
        """``grad += ∂penalty/∂w``, in place."""
        raise NotImplementedError

    def penalty_into(self, w, out, ops):
        """``out[0] ←`` the penalty for ``w``, in float64, with ``ops``: written, not read back,
        where the subclass computes it with array operations (this default computes it on the
        host, so a training step with it cannot be captured as a CUDA graph)."""
        out[...] = self(w)
        return out


class L1L2(Regularizer):
    """``l1·Σ|w| + l2·Σw²``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor("l1", l1)
        self.l2 = _factor("l2", l2)

    def __call__(self, w):
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(w)))
        if self.l2:
            penalty += self.l2 * float(np.vdot(w, w))
        return penalty

    def penalty_into(self, w, out, ops):
        # __call__'s sums in the same order, each rounded to float64 as float() does there; Σw²
        # through ops.sum_squares (np.vdot's product on the host; on a GPU, CuPy's vdot would
        # call cuBLAS in a way a captured step cannot)
        out.fill(0.0)
        if self.l1:
            out += self.l1 * np.sum(np.abs(w)).astype(np.float64)
        if self.l2:
            squares = ops.sum_squares(w.reshape(-1), ops.xp.empty(1, w.dtype))
            out += self.l2 * squares.astype(np.float64)
        return out

    def add_gradient(self, w, grad):
        if self.l1:
            grad += self.l1 * np.sign(w)
        if self.l2:
            grad += (2.0 * self.l2) * w

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1·Σ|w|``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2·Σw²``."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


REGISTRY = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2}


def get(identifier):
    """A regularizer from a name (``"l2"``, factor 0.01), a config dict, an instance or None."""
    if identifier is None:
        return None
    return resolve(identifier, REGISTRY, "regularizer")
