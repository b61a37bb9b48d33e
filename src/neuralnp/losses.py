"""Losses: the mean over the batch and its gradient with respect to the predictions.

``forward(y_pred, y_true, sample_weight=None)`` returns ``L = (1/N) Σ_i w_i · ℓ_i`` (``w_i = 1``
without weights, N the batch size) and caches what ``backward()`` needs; ``backward()`` returns
``∂L/∂y_pred``, the same shape as ``y_pred``. Per-sample losses average over the output features,
as Keras does, so ``mse`` equals PyTorch's ``MSELoss(reduction="mean")``.

The cross-entropies take ``from_logits``. The model passes logits itself when the network ends in
softmax (or sigmoid) and the loss is a cross-entropy: that fused path is stable (log-sum-exp) and
its gradient is simply ``p - y``.
"""

import numpy as np

from ._checks import cast_finite
from ._registry import Configurable, resolve
from .backends import get_ops
from .layers.activations import Sigmoid, Softmax

EPSILON = 1e-7  # probabilities are clipped to [ε, 1 - ε] before a log, as Keras does


class Loss(Configurable):
    """Base class: subclasses return per-sample losses and unscaled gradients from ``_compute``."""

    name = "loss"

    # The operations this loss runs (see neuralnp.backends) and their array module, set by
    # build: by the model with its own, or on the first forward with get_ops().
    ops = xp = None

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def build(self, ops=None):
        """Compute with ``ops`` (``get_ops()`` when None); returns the loss."""
        self.ops = ops if ops is not None else get_ops()
        self.xp = self.ops.xp
        return self

    def forward(self, y_pred, y_true, sample_weight=None, out=None):
        """The batch's loss as a float; with ``out`` (a 1-element array) the loss is written
        there and ``out`` is returned, so that a loop may read it when it chooses (on a GPU,
        once per epoch rather than once per step)."""
        if self.ops is None:
            self.build()
        value = self._mean(y_pred, y_true, sample_weight)
        if out is None:
            return float(value)
        out[...] = value
        return out

    def _mean(self, y_pred, y_true, sample_weight):
        """The batch's loss as a 0-d array (not read back) and the gradient, kept for
        backward."""
        xp = self.xp
        per_sample, grad = self._compute(y_pred, y_true)
        n = y_pred.shape[0]
        if per_sample.ndim > 1:
            # (N, T, K) outputs: a sample's loss is the mean over its T positions, as in Keras.
            t = per_sample[0].size
            per_sample = per_sample.reshape(n, -1).mean(axis=1)
            grad = grad / t
        if sample_weight is None:
            self._grad = grad / n
            return xp.sum(per_sample) / n
        w = xp.asarray(sample_weight, dtype=y_pred.dtype).reshape((n,) + (1,) * (y_pred.ndim - 1))
        self._grad = grad * (w / n)
        return xp.sum(per_sample * w.reshape(n)) / n

    __call__ = forward

    def backward(self):
        return self._grad

    def get_config(self):
        return {"from_logits": self.from_logits} if self.from_logits else {}

    # How targets are given to this loss: "columns" (one value per output), "onehot" rows,
    # integer "labels", or "binary" columns in [0, 1]. Cross-entropies set their own.
    targets = "columns"
    # The final activation this loss can take over from (reading logits): "softmax", "sigmoid".
    fuses_with = None

    def prepare_targets(self, y, output_shape, dtype, name="y"):
        """``y`` (a checked float64 array, one row per sample) in the form ``forward`` takes:
        one-hot rows for categorical cross-entropy, integer labels for the sparse one, one
        column per output otherwise. Labels and one-hot rows are both accepted."""
        n, units = len(y), output_shape[-1]
        as_labels = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and units > 1)
        if self.targets in ("onehot", "labels") and as_labels:
            labels = y.reshape(-1)
            wrong = (labels != np.round(labels)) | (labels < 0) | (labels >= units)
            if wrong.any():
                raise ValueError(
                    f"{name} holds the label {labels[wrong][0]:g}, but the output layer has "
                    f"{units} units (classes 0..{units - 1}); give the last Dense layer one unit "
                    "per class")
            labels = labels.astype(np.intp)
            if self.targets == "labels":
                return labels
            onehot = np.zeros((n, units), dtype=dtype)
            onehot[np.arange(n), labels] = 1
            return onehot
        if y.ndim == 1:
            y = y.reshape(n, 1)
        if y.shape[1:] != tuple(output_shape):
            raise ValueError(f"{name} has shape {y.shape[1:]} per sample but the model outputs "
                             f"{tuple(output_shape)}; match the last layer's units to y")
        if self.targets == "labels":
            return np.argmax(y, axis=-1).astype(np.intp)  # one-hot rows given to a sparse loss
        if self.targets == "binary" and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"binary cross-entropy needs {name} in [0, 1], got values from "
                             f"{y.min():g} to {y.max():g}; encode the two classes as 0 and 1")
        return cast_finite(y, name, dtype)  # y was checked in float64: 1e39 passed

    def fused(self, activation, output_shape):
        """The loss to train with when the network ends in ``activation``: for a cross-entropy
        after the softmax (or sigmoid) it reads, the same loss from logits, so the final
        activation is skipped in training and the gradient is ``p - y``; otherwise None."""
        if self.from_logits or activation is None:
            return None
        kind = ("softmax" if isinstance(activation, Softmax)
                else "sigmoid" if isinstance(activation, Sigmoid) else None)
        if kind is None or kind != self.fuses_with:
            return None
        if kind == "softmax" and getattr(activation, "axis", -1) not in (-1, len(output_shape)):
            return None  # a softmax over another axis than the classes'
        return type(self).from_config({**self.get_config(), "from_logits": True})


def _features(y):
    return int(np.prod(y.shape[1:])) or 1


class MeanSquaredError(Loss):
    """``ℓ = mean_j (ŷ_j - y_j)²``; ``∂ℓ/∂ŷ = 2(ŷ - y)/d``."""

    name = "mse"

    def _compute(self, y_pred, y_true):
        xp = self.xp
        diff = y_pred - y_true
        d = _features(y_pred)
        return xp.mean((diff * diff).reshape(len(diff), -1), axis=1), diff * (2.0 / d)


class MeanAbsoluteError(Loss):
    """``ℓ = mean_j |ŷ_j - y_j|``; ``∂ℓ/∂ŷ = sign(ŷ - y)/d``."""

    name = "mae"

    def _compute(self, y_pred, y_true):
        xp = self.xp
        diff = y_pred - y_true
        d = _features(y_pred)
        return xp.mean(xp.abs(diff).reshape(len(diff), -1), axis=1), xp.sign(diff) / d


class Huber(Loss):
    """``ℓ = mean_j (½a² if a ≤ δ else δ(a - ½δ))`` with ``a = |ŷ - y|``; gradient ``clip(ŷ-y, ±δ)/d``."""

    name = "huber"

    def __init__(self, delta=1.0, from_logits=False):
        super().__init__(from_logits)
        if not delta > 0:
            raise ValueError(f"Huber delta must be positive, got {delta}")
        self.delta = float(delta)

    def _compute(self, y_pred, y_true):
        xp = self.xp
        diff = y_pred - y_true
        a = xp.abs(diff)
        per = xp.where(a <= self.delta, 0.5 * a * a, self.delta * (a - 0.5 * self.delta))
        d = _features(y_pred)
        grad = xp.clip(diff, -self.delta, self.delta) / d
        return xp.mean(per.reshape(len(diff), -1), axis=1), grad

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class _FusedLogits:
    """Softmax (or sigmoid) + cross-entropy from the logits of a batch ``(N, K)`` in one
    operation of the ops (``Ops.softmax_xent``, ``softmax_xent_dense``, ``sigmoid_xent``, named
    by ``_fused_op``), into arrays made once per batch shape."""

    _fused_key = None
    # The targets the fused operation takes: rows of the logits' dtype, or integer labels
    _labels_dtype, _target_ndim = None, 2

    def build(self, ops=None):
        super().build(ops)
        self._fused = getattr(self.ops, self._fused_op)  # bound once: it runs every step
        self._fused_key = None
        return self

    def forward(self, y_pred, y_true, sample_weight=None, out=None):
        if not (self.from_logits and sample_weight is None and y_pred.ndim == 2):
            return super().forward(y_pred, y_true, sample_weight, out)
        if self.ops is None:
            self.build()
        key = (y_pred.shape, y_pred.dtype)
        if self._fused_key != key:
            self._fused_key, xp = key, self.xp
            self._target_dtype = self._labels_dtype or y_pred.dtype
            self._probs, self._fused_grad = xp.empty_like(y_pred), xp.empty_like(y_pred)
            self._value = xp.empty(1)
        loss = self._value if out is None else out
        if (getattr(y_true, "dtype", None) != self._target_dtype
                or y_true.ndim != self._target_ndim):  # the loop's batches never need this
            y_true = self._fused_targets(y_true, y_pred.dtype)
        self._fused(y_pred, y_true, self._probs, self._fused_grad, loss)
        self.probabilities, self._grad = self._probs, self._fused_grad
        return float(loss[0]) if out is None else out

    def _fused_targets(self, y_true, dtype):
        """The targets as the operation takes them: an array of the logits' dtype."""
        dtype_of = getattr(y_true, "dtype", None)
        return y_true if dtype_of == dtype else self.xp.asarray(y_true, dtype=dtype)


class BinaryCrossentropy(_FusedLogits, Loss):
    """``ℓ = -mean_j [y log p + (1 - y) log(1 - p)]``, ``p = σ(z)`` when ``from_logits``.

    From logits: ``ℓ = max(z, 0) - z·y + log(1 + e^-|z|)`` and ``∂ℓ/∂z = (σ(z) - y)/d``.
    From probabilities, ``p`` is clipped to ``[ε, 1 - ε]``: ``∂ℓ/∂p = (p - y) / (p(1 - p)) / d``.
    """

    name = "binary_crossentropy"
    targets, fuses_with = "binary", "sigmoid"
    _fused_op = "sigmoid_xent"

    def _compute(self, y_pred, y_true):
        xp = self.xp
        n, d = len(y_pred), _features(y_pred)
        if self.from_logits:
            z = y_pred
            per = xp.maximum(z, 0) - z * y_true + xp.log1p(xp.exp(-xp.abs(z)))
            self.probabilities = self.ops.sigmoid(z, self.xp.empty_like(z))
            return xp.mean(per.reshape(n, -1), axis=1), (self.probabilities - y_true) / d
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        per = -(y_true * xp.log(p) + (1 - y_true) * xp.log1p(-p))
        return xp.mean(per.reshape(n, -1), axis=1), (p - y_true) / (p * (1 - p)) / d


class CategoricalCrossentropy(_FusedLogits, Loss):
    """``ℓ = -Σ_k y_k log p_k`` with one-hot (or soft) targets ``y``; ``p = softmax(z)`` from logits.

    From logits: ``log p = z - logsumexp(z)`` and ``∂ℓ/∂z = p·Σ_k y_k - y`` (``p - y`` for one-hot).
    From probabilities (rows assumed to sum to 1, as softmax's do): ``∂ℓ/∂p = -y / clip(p)``.
    """

    name = "categorical_crossentropy"
    targets, fuses_with = "onehot", "softmax"
    _fused_op = "softmax_xent_dense"

    def _compute(self, y_pred, y_true):
        xp = self.xp
        if self.from_logits:
            log_p = self.ops.log_softmax(y_pred, self.xp.empty_like(y_pred))
            self.probabilities = xp.exp(log_p)
            grad = self.probabilities * xp.sum(y_true, axis=-1, keepdims=True) - y_true
            return -xp.sum(y_true * log_p, axis=-1), grad
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        return -xp.sum(y_true * xp.log(p), axis=-1), -y_true / p


class SparseCategoricalCrossentropy(_FusedLogits, Loss):
    """Categorical cross-entropy with integer labels ``y ∈ {0..K-1}`` of shape ``(N,)``:
    ``ℓ = -log p_y``; from logits ``∂ℓ/∂z = p - onehot(y)``."""

    name = "sparse_categorical_crossentropy"
    targets, fuses_with = "labels", "softmax"
    _fused_op = "softmax_xent"
    _labels_dtype, _target_ndim = np.dtype(np.intp), 1

    def _fused_targets(self, y_true, dtype):
        """Integer row indices ``(N,)``, whatever form the caller's labels take."""
        if getattr(y_true, "dtype", None) == np.intp and y_true.ndim == 1:
            return y_true
        return self.xp.asarray(y_true).reshape(-1).astype(np.intp)

    def _compute(self, y_pred, y_true):
        xp = self.xp
        labels = xp.asarray(y_true).reshape(-1).astype(np.intp, copy=False)
        rows = xp.arange(len(labels))
        if self.from_logits:
            log_p = self.ops.log_softmax(y_pred, self.xp.empty_like(y_pred))
            self.probabilities = xp.exp(log_p)
            grad = self.probabilities.copy()
            grad[rows, labels] -= 1
            return -log_p[rows, labels], grad
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        grad = xp.zeros_like(y_pred)
        grad[rows, labels] = -1.0 / p[rows, labels]
        return -xp.log(p[rows, labels]), grad


REGISTRY = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}

CROSSENTROPIES = (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy)


def get(identifier):
    """A loss from a name (``"mse"``), a config dict, or an instance."""
    return resolve(identifier, REGISTRY, "loss")
