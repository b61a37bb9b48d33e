"""Normalization layers: batch normalization and layer normalization.

Both compute ``x̂ = (x - μ) / σ`` with ``σ = sqrt(var + ε)`` (``var`` the biased variance), then
``y = γ ⊙ x̂ + β``. They differ in which entries share ``μ`` and ``var``: batch normalization
pools over the batch (and every other axis except the feature axis), layer normalization over
each sample's normalized axes.

Axes follow Keras: they count the batch axis (``axis=-1`` is the last one, ``axis=0`` the batch).
"""

import math

import numpy as np

from .. import initializers
from .._registry import serialize
from .base import Layer
from .._checks import is_int, is_real


class _Normalization(Layer):
    """Shared argument checks, axis bookkeeping and the affine part ``y = γ ⊙ x̂ + β``."""

    def __init__(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                 **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if isinstance(axis, (list, tuple)):
            if not axis or not all(_is_int(a) for a in axis):
                raise ValueError(f"{kind} axis must be an int or a non-empty list of ints, "
                                 f"got {axis!r}")
            axis = [int(a) for a in axis]
        elif _is_int(axis):
            axis = int(axis)
        else:
            raise ValueError(f"{kind} axis must be an int or a non-empty list of ints, "
                             f"got {axis!r}")
        self.axis = axis
        if (not is_real(epsilon)
                or not float(epsilon) > 0.0 or not math.isfinite(epsilon)):
            raise ValueError(f"{kind} epsilon must be a number > 0 (it keeps the division by "
                             f"sqrt(var + epsilon) finite), got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.gamma = self.beta = None

    def _resolve_axes(self, input_shape):
        """The normalized axes as sorted non-negative indices into ``(batch, *input_shape)``."""
        rank = len(input_shape) + 1
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        resolved = []
        for a in axes:
            r = a + rank if a < 0 else a
            if not 1 <= r < rank:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: axis {a} is out of range for inputs "
                    f"(batch, {', '.join(map(str, input_shape))}); use 1..{rank - 1} or "
                    f"-1..-{rank - 1} (axis 0 is the batch)")
            resolved.append(r)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"{type(self).__name__} {self.name!r}: axis {self.axis} names the "
                             "same axis twice")
        return tuple(sorted(resolved))

    def _build_affine(self, param_shape):
        # Keras's weight order: gamma, then beta.
        if self.scale:
            self.gamma = self.add_weight("gamma", param_shape, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", param_shape, self.beta_initializer)

    def _affine(self, xhat, out):
        """``out = γ ⊙ x̂ + β`` (γ and β broadcast from the parameter shape)."""
        if self.scale:
            np.multiply(xhat, self.gamma.value.reshape(self._bshape), out=out)
        else:
            np.copyto(out, xhat)
        if self.center:
            out += self.beta.value.reshape(self._bshape)
        return out

    def _affine_grads(self, grad_out, xhat, sum_axes):
        """``∂L/∂γ = Σ g ⊙ x̂`` and ``∂L/∂β = Σ g`` over ``sum_axes``; returns ``Σ g ⊙ x̂`` and
        ``Σ g`` (keepdims) for the input gradient, or None for those not computed."""
        sum_g = sum_gx = None
        if self.center:
            sum_g = np.sum(grad_out, axis=sum_axes, keepdims=True)
            self.beta.grad[...] = sum_g.reshape(self.beta.shape)
        if self.scale:
            gx = self._workspace("gx", grad_out.shape)
            np.multiply(grad_out, xhat, out=gx)
            sum_gx = np.sum(gx, axis=sum_axes, keepdims=True)
            self.gamma.grad[...] = sum_gx.reshape(self.gamma.shape)
        return sum_g, sum_gx

    def _base_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": serialize(self.beta_initializer),
                "gamma_initializer": serialize(self.gamma_initializer)}


class BatchNormalization(_Normalization):
    """Normalize each feature over the batch: ``y = γ ⊙ (x - μ_B) / sqrt(var_B + ε) + β``.

    Statistics are taken over every axis except ``axis`` (the feature axis, ``-1``): over the
    batch for ``(N, F)`` inputs, over batch and positions for channels-last ``(N, H, W, C)``.
    ``γ`` (``gamma``, trainable, omitted when ``scale=False``), ``β`` (``beta``, omitted when
    ``center=False``) and the non-trainable ``moving_mean`` / ``moving_variance`` all have the
    shape of the feature axis, ``(C,)``. Weight order (Keras): gamma, beta, moving_mean,
    moving_variance.

    Training (``training=True``): ``μ_B`` and the biased ``var_B`` of the batch normalize, and
    ``moving = momentum·moving + (1 - momentum)·stat`` (Keras's convention: PyTorch's momentum
    is ``1 - momentum``). The variance fed to that update is the *unbiased* one,
    ``var_B · n/(n - 1)`` with ``n`` the entries per feature, as PyTorch does; Keras uses the
    biased one. We follow PyTorch on purpose, so that running statistics match ``torch.nn``'s
    ``BatchNorm1d/2d`` exactly. A training batch therefore needs ``n >= 2``.

    Inference (``training=False``): ``moving_mean`` and ``moving_variance`` replace ``μ_B`` and
    ``var_B``, so each sample's output depends on that sample only.

    Backward, with ``g = ∂L/∂y``, ``x̂`` the normalized input, sums over the reduced axes:
    ``∂L/∂γ = Σ g·x̂``, ``∂L/∂β = Σ g``; in training (μ_B and var_B depend on x)
    ``∂L/∂x = (1/n)·γ/σ·(n·g - Σ g - x̂·Σ g·x̂)``; at inference (constant statistics)
    ``∂L/∂x = g·γ/σ``.

    In a distributed fit (:mod:`neuralnp.distributed`) the statistics are synchronised (as
    PyTorch's ``SyncBatchNorm``): ``μ_B`` and ``var_B`` are those of the global batch, from sums
    added up across the ranks (two small ``Allreduce`` calls, the same two-pass formula), and
    backward sums ``Σ g`` and ``Σ g·x̂`` over the global batch (one more). Every rank then
    normalizes, and updates the moving statistics, exactly as one process would on the global
    batch; the price is three latency-bound collectives per layer and step.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        if (not is_real(momentum)
                or not 0.0 <= float(momentum) < 1.0):
            raise ValueError(f"BatchNormalization momentum must be a number in [0, 1) (the "
                             f"weight of the old moving statistics), got {momentum!r}")
        self.momentum = float(momentum)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        full = (None, *input_shape)
        self._axes = self._resolve_axes(input_shape)
        self._reduce = tuple(a for a in range(len(full)) if a not in self._axes)
        param_shape = tuple(full[a] for a in self._axes)
        self._bshape = tuple(full[a] if a in self._axes else 1 for a in range(len(full)))
        self._build_affine(param_shape)
        self.moving_mean = self.add_state("moving_mean", param_shape, self.moving_mean_initializer)
        self.moving_variance = self.add_state("moving_variance", param_shape,
                                              self.moving_variance_initializer)

    def forward(self, x, training=False):
        self._training = bool(training)
        xhat = self._workspace("xhat", x.shape)
        if self._training:
            if not self.context.distributed:
                n = x.size // math.prod(x.shape[a] for a in self._axes)
            else:  # the entries per feature of the global batch
                n = self.context.batch[0] * math.prod(x.shape[a] for a in self._reduce[1:])
            mean = self._batch_mean(x, n)
            np.subtract(x, mean, out=xhat)
            sq = self._workspace("sq", x.shape)
            np.multiply(xhat, xhat, out=sq)
            var = self._batch_mean(sq, n)  # biased: normalizes the batch
            self._inv_std = 1.0 / np.sqrt(var + self.epsilon)
            xhat *= self._inv_std
            self._n = n
            # In place, so the states stay the arrays that get_weights and saving read.
            m = self.momentum
            mm, mv = self.moving_mean.value, self.moving_variance.value
            # A last batch of one sample has no unbiased variance (PyTorch raises): it is still
            # normalized, as Keras does, but leaves the moving statistics alone.
            if n > 1:
                mm *= m
                mm += (1.0 - m) * mean.reshape(mm.shape)
                mv *= m
                mv += ((1.0 - m) * n / (n - 1)) * var.reshape(mv.shape)  # unbiased, as PyTorch
        else:
            mean = self.moving_mean.value.reshape(self._bshape)
            self._inv_std = 1.0 / np.sqrt(self.moving_variance.value.reshape(self._bshape)
                                          + self.epsilon)
            np.subtract(x, mean, out=xhat)
            xhat *= self._inv_std
        self._xhat = xhat
        return self._affine(xhat, self._workspace("y", x.shape))

    def _batch_mean(self, a, n):
        """The mean of ``a`` over the reduced axes (``n`` entries per feature): of this batch,
        or in a distributed fit of the global batch, from every rank's sums."""
        if not self.context.distributed:
            return np.mean(a, axis=self._reduce, keepdims=True)
        total = np.sum(a, axis=self._reduce, keepdims=True)
        self.context.allreduce_sum(total)
        return total / n

    def backward(self, grad_out):
        xhat = self._xhat
        sum_g, sum_gx = self._affine_grads(grad_out, xhat, self._reduce)
        if not self.need_input_grad:
            return None
        coef = self._inv_std
        if self.scale:
            coef = self.gamma.value.reshape(self._bshape) * coef
        grad_in = self._workspace("grad_in", grad_out.shape)
        if not self._training:
            return np.multiply(grad_out, coef, out=grad_in)
        # (1/n)·γ/σ·(n·g - Σg - x̂·Σg·x̂), written as γ/σ·(g - Σg/n - x̂·(Σg·x̂)/n).
        n = self._n
        if sum_g is None:  # center=False skipped Σg for β; the input gradient still needs it
            sum_g = np.sum(grad_out, axis=self._reduce, keepdims=True)
        if sum_gx is None:
            sum_gx = np.sum(grad_out * xhat, axis=self._reduce, keepdims=True)
        if self.context.distributed:
            # The global batch's sums for the input gradient. γ's and β's gradients keep this
            # rank's part: the model's one Allreduce of the flat buffer adds those up.
            both = np.stack([sum_g, sum_gx])
            self.context.allreduce_sum(both)
            sum_g, sum_gx = both
        np.multiply(xhat, sum_gx / n, out=grad_in)
        np.subtract(grad_out, grad_in, out=grad_in)
        grad_in -= sum_g / n
        grad_in *= coef
        return grad_in

    def get_config(self):
        return {**self._base_config(), "momentum": self.momentum,
                "moving_mean_initializer": serialize(self.moving_mean_initializer),
                "moving_variance_initializer": serialize(self.moving_variance_initializer)}


class LayerNormalization(_Normalization):
    """Normalize each sample over ``axis``: ``y = γ ⊙ (x - μ_s) / sqrt(var_s + ε) + β``.

    ``μ_s`` and the biased ``var_s`` are taken per sample over the axes in ``axis`` (an int or a
    list, ``-1`` by default); ``γ`` and ``β`` have those axes' shape, e.g. ``(C,)`` for
    ``axis=-1`` or ``(H, W, C)`` for ``axis=[1, 2, 3]`` on ``(N, H, W, C)`` inputs. The same in
    training and at inference. Over trailing axes it is ``torch.nn.LayerNorm(normalized_shape)``.

    Backward, with ``g = ∂L/∂y``, ``ĝ = γ ⊙ g``, ``mean`` over the normalized axes:
    ``∂L/∂x = (ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) / σ``; ``∂L/∂γ = Σ g·x̂`` and ``∂L/∂β = Σ g`` over the
    other axes (batch included).
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)

    def build(self, input_shape):
        full = (None, *input_shape)
        self._axes = self._resolve_axes(input_shape)
        self._others = tuple(a for a in range(len(full)) if a not in self._axes)
        self._bshape = tuple(full[a] if a in self._axes else 1 for a in range(len(full)))
        self._build_affine(tuple(full[a] for a in self._axes))

    def forward(self, x, training=False):
        xhat = self._workspace("xhat", x.shape)
        mean = np.mean(x, axis=self._axes, keepdims=True)
        np.subtract(x, mean, out=xhat)
        sq = self._workspace("sq", x.shape)
        np.multiply(xhat, xhat, out=sq)
        var = np.mean(sq, axis=self._axes, keepdims=True)
        self._inv_std = 1.0 / np.sqrt(var + self.epsilon)
        xhat *= self._inv_std
        self._xhat = xhat
        return self._affine(xhat, self._workspace("y", x.shape))

    def backward(self, grad_out):
        xhat = self._xhat
        self._affine_grads(grad_out, xhat, self._others)
        if not self.need_input_grad:
            return None
        grad_in = self._workspace("grad_in", grad_out.shape)
        gh = grad_out
        if self.scale:  # ĝ = γ ⊙ g: the gradient with respect to x̂
            gh = self._workspace("gh", grad_out.shape)
            np.multiply(grad_out, self.gamma.value.reshape(self._bshape), out=gh)
        np.multiply(gh, xhat, out=grad_in)
        mean_ghx = np.mean(grad_in, axis=self._axes, keepdims=True)
        mean_gh = np.mean(gh, axis=self._axes, keepdims=True)
        np.multiply(xhat, mean_ghx, out=grad_in)
        np.subtract(gh, grad_in, out=grad_in)
        grad_in -= mean_gh
        grad_in *= self._inv_std
        return grad_in

    def get_config(self):
        return self._base_config()


def _is_int(a):
    return is_int(a)
