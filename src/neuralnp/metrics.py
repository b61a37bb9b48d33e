"""Metrics, accumulated batch by batch over an epoch: ``reset()``, ``update()``, ``result()``.

``update(y_true, y_pred, sample_weight=None)`` receives the targets in the form the loss uses
(integer labels for the sparse cross-entropy, one-hot rows or 0/1 columns otherwise) and the
model's predictions as probabilities (or values, for regression). Each metric keeps only running
sums (float64) between batches, except :class:`AUC`, which must keep the epoch's scores to rank
them exactly. ``result()`` is a float, logged under the metric's ``name``.

Classification: accuracy, :class:`Precision`, :class:`Recall`, :class:`F1Score`, :class:`AUC`,
and the plain function :func:`confusion_matrix`. Regression: mse, mae, :class:`R2Score`.
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
            # count_nonzero on the boolean accuracies is several times cheaper than a float sum
            self._total += (int(np.count_nonzero(values)) if values.dtype == bool
                            else float(np.add.reduce(values, axis=None)))
            self._count += values.shape[0]
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            self._total += float(np.sum(values * w))
            self._count += float(np.sum(w))

    def state(self):
        """The accumulators as plain values: what a distributed fit gathers from every rank.
        A metric that keeps other accumulators overrides this and :meth:`merge_state`."""
        return self._total, self._count

    def merge_state(self, state):
        """Add the accumulators of another copy of this metric, fed other samples (its
        :meth:`state`), as if this one had seen those samples too."""
        total, count = state
        self._total += total
        self._count += count


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
        return y_pred.argmax(axis=-1) == y_true.reshape(-1)


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


# -- classification counts: precision, recall, F1 ------------------------------------------------

def _weights(sample_weight, n):
    """``sample_weight`` as a float64 vector of length ``n`` (``None`` stays ``None``)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"sample_weight has {len(w)} entries for {n} samples")
    return w


def _columns(y_pred):
    """Predictions as ``(N, C)``: a 1-D vector is one column."""
    y_pred = np.asarray(y_pred)
    return y_pred.reshape(len(y_pred), -1) if y_pred.ndim != 2 else y_pred


def _same_size(y_true, y_pred):
    """``y_true`` reshaped to ``y_pred``'s ``(N, C)``, or a ValueError if they do not match."""
    y_true = np.asarray(y_true)
    n, c = y_pred.shape
    if y_true.ndim == 0 or len(y_true) != n or y_true.size != n * c:
        raise ValueError(f"y_true has shape {y_true.shape} for predictions of shape "
                         f"{y_pred.shape}; they must match")
    return y_true.reshape(n, c)


def _class_labels(y_true, k, n):
    """Integer labels ``(N,)`` from sparse labels (``(N,)`` or ``(N, 1)``) or one-hot rows
    ``(N, k)``, checked to lie in ``0..k-1``."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2 and y_true.shape[1] == k and k > 1 and len(y_true) == n:
        return np.argmax(y_true, axis=1)
    if y_true.ndim == 0 or len(y_true) != n or y_true.size != n:
        raise ValueError(f"y_true has shape {y_true.shape} for {n} predictions of {k} classes; "
                         f"pass integer labels (N,) or one-hot rows (N, {k})")
    labels = y_true.reshape(-1)
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError("y_true holds non-integer class labels")
    labels = labels.astype(np.intp, copy=False)
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"y_true holds labels from {labels.min()} to {labels.max()}, but the "
                         f"predictions have {k} classes (0..{k - 1})")
    return labels


class _ClassCounts(Metric):
    """Computed from the epoch's per-class (weighted) counts of true positives, predictions and
    targets.

    How the classes are read:

    * **binary** – predictions with one column (a sigmoid): a sample is predicted positive when
      ``ŷ > threshold`` and is a true positive when ``y > 0.5``; the positive class is 1 only.
    * **multi-class** – predictions with ``K > 1`` columns (a softmax): the predicted class is
      ``argmax ŷ``; targets are integer labels ``(N,)`` or one-hot rows ``(N, K)``. The score is
      the macro average over all ``K`` classes, a class that is never present and never
      predicted counting 0 (scikit-learn's ``average="macro", labels=range(K),
      zero_division=0``). This includes ``K = 2``: a two-column softmax is scored as two classes,
      not as "class 1 is positive"; use one sigmoid output for the binary score.
    * **multi-label** (``multi_label=True``, chosen by :func:`get` for binary cross-entropy with
      several outputs) – each column is its own binary problem (``ŷ > threshold``, ``y > 0.5``)
      and the score is the macro average over the columns (scikit-learn's ``average="macro"``
      on indicator matrices).

    A ratio whose denominator is 0 counts 0 (``zero_division=0``). Sample weights weight the
    counts. With no samples seen the result is ``nan``.
    """

    def __init__(self, threshold=0.5, multi_label=False):
        self.threshold = float(threshold)
        self.multi_label = bool(multi_label)
        super().__init__()

    def reset(self):
        self._tp = self._pred = self._true = None  # float64 (C,), allocated at the first batch
        self._mode = None
        self._seen = 0

    def update(self, y_true, y_pred, sample_weight=None):
        y_pred = _columns(y_pred)
        n, c = y_pred.shape
        w = _weights(sample_weight, n)
        mode = "indicator" if c == 1 or self.multi_label else "classes"
        if self._mode is None:
            self._mode = (mode, c)
            self._tp, self._pred, self._true = (np.zeros(c) for _ in range(3))
        elif self._mode != (mode, c):
            raise ValueError(f"{self.name}: predictions changed from {self._mode[1]} to {c} "
                             "columns within one epoch; call reset() between data sets")
        if mode == "classes":
            true = _class_labels(y_true, c, n)
            pred = np.argmax(y_pred, axis=1)
            hit = true == pred
            self._true += np.bincount(true, weights=w, minlength=c)
            self._pred += np.bincount(pred, weights=w, minlength=c)
            self._tp += np.bincount(true[hit], weights=None if w is None else w[hit], minlength=c)
        else:
            true = _same_size(y_true, y_pred) > 0.5
            pred = y_pred > self.threshold
            if w is None:
                self._true += np.count_nonzero(true, axis=0)
                self._pred += np.count_nonzero(pred, axis=0)
                self._tp += np.count_nonzero(true & pred, axis=0)
            else:
                self._true += w @ true
                self._pred += w @ pred
                self._tp += w @ (true & pred)
        self._seen += n

    def state(self):
        return self._mode, self._tp, self._pred, self._true, self._seen

    def merge_state(self, state):
        mode, tp, pred, true, seen = state
        if mode is None:
            return
        if self._mode is None:
            self._mode = mode
            self._tp, self._pred, self._true = (np.array(a, dtype=np.float64)
                                                for a in (tp, pred, true))
        elif self._mode != mode:
            raise ValueError(f"{self.name}: cannot merge counts of {mode[1]} columns into "
                             f"counts of {self._mode[1]}")
        else:
            self._tp += tp
            self._pred += pred
            self._true += true
        self._seen += seen

    def result(self):
        if not self._seen:
            return float("nan")
        return float(np.mean(self._per_class()))

    @staticmethod
    def _ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def get_config(self):
        return {"threshold": self.threshold, "multi_label": self.multi_label}


class Precision(_ClassCounts):
    __doc__ = ("Precision ``TP / (TP + FP)``: of the samples predicted in a class, the share that "
               "belong to it.\n\n    " + _ClassCounts.__doc__)

    name = "precision"

    def _per_class(self):
        return self._ratio(self._tp, self._pred)


class Recall(_ClassCounts):
    __doc__ = ("Recall ``TP / (TP + FN)``: of the samples of a class, the share predicted in "
               "it.\n\n    " + _ClassCounts.__doc__)

    name = "recall"

    def _per_class(self):
        return self._ratio(self._tp, self._true)


class F1Score(_ClassCounts):
    __doc__ = ("F1 ``2TP / (2TP + FP + FN)`` per class (the harmonic mean of precision and "
               "recall), then averaged: the macro F1 is the mean of the per-class F1s, not the F1 "
               "of the macro precision and recall.\n\n    " + _ClassCounts.__doc__)

    name = "f1"

    def _per_class(self):
        return self._ratio(2.0 * self._tp, self._pred + self._true)


# -- ROC AUC ---------------------------------------------------------------------------------------

def _binary_auc(scores, positive, weights=None):
    """Exact (weighted) ROC AUC: P(score of a positive > score of a negative) + ½ P(tie), the
    trapezoid area of the ROC curve through every distinct score, as scikit-learn computes it.
    ``nan`` when the positives or the negatives have no weight."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = positive[order]
    w = np.ones(len(s)) if weights is None else weights[order]
    wp = np.where(pos, w, 0.0)
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), len(s) - 1)  # last index of each score
    cum_p = np.cumsum(wp)[ends]
    cum_n = np.cumsum(w - wp)[ends]
    total_p, total_n = cum_p[-1], cum_n[-1]
    if not (total_p > 0 and total_n > 0):
        return float("nan")
    group_p = np.diff(cum_p, prepend=0.0)
    group_n = np.diff(cum_n, prepend=0.0)
    # The positives of a group beat the negatives of the lower groups and tie with their own.
    return float(np.sum(group_p * (cum_n - 0.5 * group_n)) / (total_p * total_n))


class AUC(Metric):
    """Exact area under the ROC curve over the whole epoch (ties count ½, as in scikit-learn's
    ``roc_auc_score``). It keeps every score of the epoch (a copy per batch, ``(N,)`` floats for
    binary, ``(N, K)`` for multi-class) and ranks them in ``result()``.

    * **binary** – one output column: the score is ``ŷ`` and the positives are ``y > 0.5``; a
      two-column softmax is binary too, scored by column 1 (the probability of class 1), which
      equals the one-vs-rest average for softmax rows.
    * **multi-class** – ``K > 2`` columns, integer labels or one-hot rows: the unweighted mean of
      the one-vs-rest AUCs (``roc_auc_score(..., multi_class="ovr", average="macro")``).
    * **multi-label** (``multi_label=True``, chosen by :func:`get` for binary cross-entropy with
      several outputs): the mean of the per-column AUCs (``average="macro"`` on indicator
      targets).

    Sample weights weight the pairs. The AUC is undefined for a class (or column) that the
    targets never contain or contain in every sample: the result is ``nan`` (no exception) when
    only one class is present (binary) or when no class's AUC is defined; otherwise the macro
    average is taken over the classes whose AUC is defined (scikit-learn returns ``nan`` when
    any one is missing). Non-finite scores give ``nan``.
    """

    name = "auc"

    def __init__(self, multi_label=False):
        self.multi_label = bool(multi_label)
        super().__init__()

    def reset(self):
        self._scores, self._targets, self._weights = [], [], []
        self._mode = None

    def update(self, y_true, y_pred, sample_weight=None):
        y_pred = _columns(y_pred)
        n, c = y_pred.shape
        w = _weights(sample_weight, n)
        if c == 1 or self.multi_label:
            mode = "indicator"
            targets = _same_size(y_true, y_pred) > 0.5
            scores = y_pred
        elif c == 2:
            mode = "indicator"
            targets = (_class_labels(y_true, c, n) == 1).reshape(n, 1)
            scores = y_pred[:, 1:]
        else:
            mode = "classes"
            targets = _class_labels(y_true, c, n)
            scores = y_pred
        if self._mode is None:
            self._mode = (mode, scores.shape[1])
        elif self._mode != (mode, scores.shape[1]):
            raise ValueError(f"{self.name}: predictions changed shape within one epoch; call "
                             "reset() between data sets")
        self._scores.append(np.array(scores, copy=True))  # the caller may reuse its buffer
        self._targets.append(np.array(targets, copy=True))
        self._weights.append(w)

    def state(self):
        return self._mode, self._scores, self._targets, self._weights

    def merge_state(self, state):
        mode, scores, targets, weights = state
        if mode is None:
            return
        if self._mode is None:
            self._mode = mode
        elif self._mode != mode:
            raise ValueError(f"{self.name}: cannot merge scores of another shape")
        self._scores += scores
        self._targets += targets
        self._weights += weights

    def result(self):
        if not self._scores:
            return float("nan")
        scores = np.concatenate(self._scores)
        if not np.all(np.isfinite(scores)):
            return float("nan")
        targets = np.concatenate(self._targets)
        weights = None
        if any(w is not None for w in self._weights):
            weights = np.concatenate([np.ones(len(s)) if w is None else w
                                      for s, w in zip(self._scores, self._weights)])
        if self._mode[0] == "classes":
            targets = targets[:, None] == np.arange(scores.shape[1])
        aucs = np.array([_binary_auc(scores[:, j], targets[:, j], weights)
                         for j in range(scores.shape[1])])
        defined = aucs[~np.isnan(aucs)]
        return float(np.mean(defined)) if len(defined) else float("nan")

    def get_config(self):
        return {"multi_label": self.multi_label}


# -- regression ------------------------------------------------------------------------------------

class R2Score(Metric):
    """Coefficient of determination ``R² = 1 - SS_res / SS_tot`` per output column, averaged
    uniformly over the columns (scikit-learn's ``r2_score``, ``multioutput="uniform_average"``).

    Streams in float64: the (weighted) count, mean and centred sum of squares of ``y`` (merged
    batch by batch with Chan's formula, which equals ``Σw·y² - (Σw·y)²/Σw`` without its
    cancellation) and ``SS_res = Σ w (y - ŷ)²``. A column with ``SS_tot = 0`` scores 1 if
    ``SS_res = 0`` and 0 otherwise (scikit-learn's ``force_finite=True``). Fewer than two samples
    give ``nan``, as in scikit-learn.
    """

    name = "r2"

    def reset(self):
        self._n = 0
        self._w = 0.0
        self._mean = self._m2 = self._res = None  # float64 (d,), allocated at the first batch

    def update(self, y_true, y_pred, sample_weight=None):
        y_pred = _columns(y_pred)
        n, d = y_pred.shape
        y = _same_size(y_true, y_pred).astype(np.float64)
        w = _weights(sample_weight, n)
        if self._mean is None:
            self._mean, self._m2, self._res = np.zeros(d), np.zeros(d), np.zeros(d)
        elif len(self._mean) != d:
            raise ValueError(f"{self.name}: predictions changed from {len(self._mean)} to {d} "
                             "columns within one epoch; call reset() between data sets")
        self._n += n
        resid = y - y_pred
        wb = float(n) if w is None else float(np.sum(w))
        if w is None:
            self._res += np.einsum("ij,ij->j", resid, resid)
        else:
            self._res += np.einsum("i,ij,ij->j", w, resid, resid)
        if not wb > 0:
            return
        # This batch's weighted mean and centred sum of squares, merged into the running ones.
        mean_b = y.mean(axis=0) if w is None else (w @ y) / wb
        y -= mean_b
        m2_b = np.einsum("ij,ij->j", y, y) if w is None else np.einsum("i,ij,ij->j", w, y, y)
        total = self._w + wb
        delta = mean_b - self._mean
        self._mean += delta * (wb / total)
        self._m2 += m2_b + delta * delta * (self._w * wb / total)
        self._w = total

    def state(self):
        return self._n, self._w, self._mean, self._m2, self._res

    def merge_state(self, state):
        n, w, mean, m2, res = state
        if mean is None:
            return
        if self._mean is None:
            self._n, self._w = n, w
            self._mean, self._m2, self._res = (np.array(a, dtype=np.float64)
                                               for a in (mean, m2, res))
            return
        if len(mean) != len(self._mean):
            raise ValueError(f"{self.name}: cannot merge {len(mean)} columns into "
                             f"{len(self._mean)}")
        self._n += n
        self._res += res
        if not w > 0:
            return
        # The same merge of (weight, mean, centred sum of squares) as update's, with Chan's formula.
        total = self._w + w
        delta = mean - self._mean
        self._mean += delta * (w / total)
        self._m2 += m2 + delta * delta * (self._w * w / total)
        self._w = total

    def result(self):
        if self._n < 2 or not self._w > 0:
            return float("nan")
        tot, res = self._m2, self._res
        scores = np.where(tot != 0, 1.0 - res / np.where(tot != 0, tot, 1.0),
                          np.where(res == 0, 1.0, 0.0))
        return float(np.mean(scores))


# -- confusion matrix -----------------------------------------------------------------------------

def _labels_for_confusion(y, name, threshold):
    """Integer labels from labels, one-hot rows or probabilities, plus the class count they
    imply."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1), y.shape[1]
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"{name} has shape {y.shape}; pass labels (N,), a column (N, 1) or "
                         "rows of class scores (N, K)")
    v = y.reshape(-1)
    if v.dtype.kind == "b":
        return v.astype(np.intp), 2
    if v.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} holds non-finite values")
    if v.dtype.kind == "f" and not np.all(v == np.round(v)):
        if v.min() < 0 or v.max() > 1:
            raise ValueError(f"{name} holds non-integer labels outside [0, 1]; pass integer class "
                             "labels, one-hot rows or probabilities")
        return (v > threshold).astype(np.intp), 2  # probabilities of class 1 (a sigmoid)
    if len(v) and v.min() < 0:
        raise ValueError(f"{name} holds the negative label {v.min():g}; class labels are "
                         "0..K-1")
    v = v.astype(np.intp)
    return v, (int(v.max()) + 1 if len(v) else 0)


def confusion_matrix(y_true, y_pred, num_classes=None, threshold=0.5):
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as class ``j`` (rows = true
    class, columns = predicted, as in scikit-learn), an int64 array ``(K, K)``.

    Each argument may be integer labels ``(N,)`` or ``(N, 1)``, one-hot rows or class scores
    ``(N, K)`` (reduced by argmax), or a vector/column of probabilities of class 1 in ``[0, 1]``
    (a sigmoid's output, with any non-integer value; class 1 when ``p > threshold``).
    ``K`` is ``num_classes`` or, by default, the largest class seen plus one (at least the
    width of any ``(N, K)`` input): the classes are always ``0..K-1``, like scikit-learn's
    ``labels=range(K)`` rather than only the labels present.
    """
    t, kt = _labels_for_confusion(y_true, "y_true", threshold)
    p, kp = _labels_for_confusion(y_pred, "y_pred", threshold)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} samples but y_pred has {len(p)}; they must match")
    k = max(kt, kp)
    if num_classes is not None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if k > num_classes:
            raise ValueError(f"the inputs hold class {k - 1} (or {k} columns) but "
                             f"num_classes={num_classes}")
        k = int(num_classes)
    return np.bincount(t * k + p, minlength=k * k).astype(np.int64).reshape(k, k)


REGISTRY = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "precision": Precision,
    "recall": Recall,
    "f1": F1Score,
    "f1_score": F1Score,
    "auc": AUC,
    "roc_auc": AUC,
    "r2": R2Score,
    "r2_score": R2Score,
}


def get(identifier, loss_name=None, output_units=None):
    """A metric from a name, config dict or instance.

    ``"accuracy"``/``"acc"`` picks the variant that fits the loss (sparse labels, one-hot rows,
    or 0/1 outputs: binary cross-entropy always gets :class:`BinaryAccuracy`, which averages
    over several sigmoid outputs). With binary cross-entropy and several outputs the
    precision/recall/F1/AUC names are created with ``multi_label=True`` (one binary problem per
    output column); otherwise several outputs mean classes (argmax).
    """
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if loss_name == "sparse_categorical_crossentropy":
            return SparseCategoricalAccuracy()
        if loss_name == "binary_crossentropy":
            return BinaryAccuracy()
        if loss_name == "categorical_crossentropy" or (output_units or 1) > 1:
            return CategoricalAccuracy()
        return BinaryAccuracy()
    if isinstance(identifier, str) and identifier.lower() not in REGISTRY:
        raise ValueError(
            f"unknown metric {identifier!r}; valid names are: accuracy, "
            f"{', '.join(sorted(REGISTRY))}"
        )
    if isinstance(identifier, str):
        cls = REGISTRY[identifier.lower()]
        if (issubclass(cls, (_ClassCounts, AUC)) and loss_name == "binary_crossentropy"
                and (output_units or 1) > 1):
            return cls(multi_label=True)
    from ._registry import resolve
    return resolve(identifier, REGISTRY, "metric")


def get_all(names, loss_name=None, units=None):
    """The metric objects for ``names`` (as :func:`get`), refusing two that log the same name."""
    metrics = [get(name, loss_name, units) for name in names]
    logged = [m.name for m in metrics]
    duplicates = sorted({n for n in logged if logged.count(n) > 1})
    if duplicates:
        raise ValueError(f"metrics {list(names)} log the same name twice "
                         f"({', '.join(duplicates)}); keep one of each")
    return metrics
