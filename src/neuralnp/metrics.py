"""Metrics, accumulated batch by batch over an epoch: ``reset()``, ``update()``, ``result()``.

``update(y_true, y_pred)`` receives the targets in the form the loss uses (integer labels for the
sparse cross-entropy, one-hot rows or 0/1 columns otherwise) and the model's predictions as
probabilities (or values, for regression).
"""

import numpy as np

from ._registry import Configurable


class Metric(Configurable):
    name = "metric"

    def __init__(self):
        self.reset()

    def reset(self):
        self._total = 0.0
        self._count = 0.0

    def result(self):
        return self._total / self._count if self._count else float("nan")

    def update(self, y_true, y_pred, sample_weight=None):
        values = self._values(y_true, y_pred)
        if sample_weight is None:
            self._total += float(np.sum(values))
            self._count += values.shape[0]
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            self._total += float(np.sum(values * w))
            self._count += float(np.sum(w))


class BinaryAccuracy(Metric):
    """Share of samples whose ``ŷ > threshold`` agrees with ``y`` (averaged over outputs)."""

    name = "accuracy"

    def __init__(self, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__()

    def _values(self, y_true, y_pred):
        hit = (y_pred > self.threshold) == (y_true > 0.5)
        return np.mean(hit.reshape(len(hit), -1), axis=1)

    def get_config(self):
        return {"threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """Share of samples whose ``argmax ŷ`` equals ``argmax y`` (one-hot targets)."""

    name = "accuracy"

    def _values(self, y_true, y_pred):
        return np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)


class SparseCategoricalAccuracy(Metric):
    """Share of samples whose ``argmax ŷ`` equals the integer label ``y``."""

    name = "accuracy"

    def _values(self, y_true, y_pred):
        return np.argmax(y_pred, axis=-1) == np.asarray(y_true).reshape(-1)


class MeanSquaredError(Metric):
    """``mean (ŷ - y)²``."""

    name = "mse"

    def _values(self, y_true, y_pred):
        d = (y_pred - y_true).reshape(len(y_pred), -1)
        return np.mean(d * d, axis=1)


class MeanAbsoluteError(Metric):
    """``mean |ŷ - y|``."""

    name = "mae"

    def _values(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - y_true).reshape(len(y_pred), -1), axis=1)


REGISTRY = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
}


def get(identifier, loss_name=None, output_units=None):
    """A metric from a name or instance; ``"accuracy"``/``"acc"`` picks the variant that fits the
    loss (sparse labels, one-hot rows, or a single 0/1 output)."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if loss_name == "sparse_categorical_crossentropy":
            return SparseCategoricalAccuracy()
        if loss_name == "categorical_crossentropy" or (output_units or 1) > 1:
            return CategoricalAccuracy()
        return BinaryAccuracy()
    if isinstance(identifier, str) and identifier.lower() not in REGISTRY:
        raise ValueError(
            f"unknown metric {identifier!r}; valid names are: accuracy, "
            f"{', '.join(sorted(REGISTRY))}"
        )
    from ._registry import resolve
    return resolve(identifier, REGISTRY, "metric")
