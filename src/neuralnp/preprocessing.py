"""Data preparation: train/test splitting, standardisation and one-hot encoding (NumPy only)."""

from __future__ import annotations

import math
import numbers

import numpy as np
from ._checks import is_int, is_real

__all__ = ["StandardScaler", "one_hot", "train_test_split"]


def _n_samples(a: np.ndarray, position: int) -> int:
    if a.ndim == 0:
        raise ValueError(f"array {position} is a scalar; pass arrays with one row per sample")
    return a.shape[0]


def _resolve_test_count(test_size, n: int) -> int:
    if not is_real(test_size):
        raise ValueError(
            f"test_size must be a fraction in (0, 1) or a sample count, got {test_size!r}"
        )
    if isinstance(test_size, numbers.Integral):
        if not 1 <= test_size <= n - 1:
            raise ValueError(
                f"test_size={test_size} samples leaves no train or no test samples out of {n}; "
                f"use a count between 1 and {n - 1}"
            )
        return int(test_size)
    if not 0.0 < test_size < 1.0:
        raise ValueError(
            f"test_size={test_size} is not a fraction in (0, 1); e.g. 0.25 holds out a quarter"
        )
    # Rounding up as scikit-learn does, so split sizes match theirs.
    n_test = math.ceil(test_size * n)
    if n_test >= n:
        raise ValueError(
            f"test_size={test_size} of {n} samples leaves no training samples; use a smaller test_size"
        )
    return n_test


def _stratified_test_counts(counts: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class test counts summing to n_test, as close as possible to n_test * counts / n."""
    ideal = n_test * counts / counts.sum()
    taken = np.floor(ideal).astype(np.int64)
    remainder = n_test - taken.sum()
    if remainder:
        # Largest fractional parts first; random tie-breaking so no class is always favoured.
        frac = ideal - taken
        order = np.lexsort((rng.random(len(counts)), -frac))
        taken[order[:remainder]] += 1
    return taken


def train_test_split(*arrays, test_size=0.25, seed=None, stratify=None, shuffle=True):
    """Split arrays into random train and test parts along their first axis.

    ``train_test_split(x, y)`` returns ``[x_train, x_test, y_train, y_test]`` (scikit-learn's
    order): for each input array of shape (n, ...), a train part of shape (n - k, ...) then a
    test part of shape (k, ...), with the same rows chosen for every array.
    ``test_size`` is a fraction in (0, 1) (k = ceil(test_size * n)) or a count k.
    ``seed`` (int, None or ``numpy.random.Generator``) feeds ``numpy.random.default_rng``;
    the global NumPy random state is never used. ``stratify``, an array of n class labels
    (1-D, or 2-D such as one-hot rows), makes each class's share of the test set match its
    share of the data (per-class test counts are rounded to sum to k). ``shuffle=False``
    takes the last k rows as the test set, in order.
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array, e.g. train_test_split(x, y)")
    arrays = [np.asarray(a) for a in arrays]
    lengths = [_n_samples(a, i) for i, a in enumerate(arrays)]
    n = lengths[0]
    if any(length != n for length in lengths):
        raise ValueError(
            f"all arrays must have the same number of samples (first axis), got lengths {lengths}"
        )
    if n < 2:
        raise ValueError(f"need at least 2 samples to split into train and test, got {n}")
    n_test = _resolve_test_count(test_size, n)
    rng = np.random.default_rng(seed)

    if stratify is None:
        order = rng.permutation(n) if shuffle else np.arange(n)
        train_idx, test_idx = order[: n - n_test], order[n - n_test :]
    else:
        if not shuffle:
            raise ValueError("stratify requires shuffle=True; pass shuffle=True or stratify=None")
        labels = np.asarray(stratify)
        if labels.ndim == 0 or labels.shape[0] != n:
            raise ValueError(
                f"stratify must hold one label per sample ({n}), got shape {labels.shape}"
            )
        if labels.ndim == 1:
            classes, class_of = np.unique(labels, return_inverse=True)
        else:  # e.g. one-hot rows: each distinct row is a class
            classes, class_of = np.unique(labels.reshape(n, -1), axis=0, return_inverse=True)
        class_of = class_of.reshape(-1)
        counts = np.bincount(class_of, minlength=len(classes))
        if counts.min() < 2:
            rare = classes[np.argmin(counts)].tolist()
            raise ValueError(
                f"class {rare!r} in stratify has only 1 sample, so it cannot appear in "
                "both train and test; drop or merge rare classes, or pass stratify=None"
            )
        per_class = _stratified_test_counts(counts, n_test, rng)
        train_parts, test_parts = [], []
        for c, k in enumerate(per_class):
            members = rng.permutation(np.flatnonzero(class_of == c))
            test_parts.append(members[:k])
            train_parts.append(members[k:])
        # Shuffle across classes too, so neither part is grouped by class.
        train_idx = rng.permutation(np.concatenate(train_parts))
        test_idx = rng.permutation(np.concatenate(test_parts))

    out = []
    for a in arrays:
        out += [a[train_idx], a[test_idx]]
    return out


class StandardScaler:
    """Standardise features: z = (x - mean_) / scale_, per column.

    ``fit`` takes x of shape (n_samples, n_features) and stores ``mean_`` and ``scale_``
    (population standard deviation, ddof=0), both of shape (n_features,). Constant columns
    get ``scale_ = 1`` so they map to 0 instead of dividing by zero. Floating inputs keep
    their dtype (float32 stays float32); other inputs become float64.
    """

    def __init__(self):
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    @staticmethod
    def _as_2d_float(x, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(
                f"{what} expects a 2-D array (n_samples, n_features), got shape {x.shape}; "
                "reshape a single feature with x.reshape(-1, 1)"
            )
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ValueError(f"{what} expects numeric data, got dtype {x.dtype}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(f"{what} got NaN or infinite values; fill or drop them first")
        return x

    def _check_fitted(self, x: np.ndarray, what: str) -> None:
        if self.mean_ is None:
            raise RuntimeError(f"StandardScaler is not fitted; call fit(x) before {what}")
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"{what} got {x.shape[1]} features but the scaler was fitted on "
                f"{self.mean_.shape[0]}"
            )

    def fit(self, x) -> "StandardScaler":
        """Compute ``mean_`` and ``scale_`` from x of shape (n_samples, n_features); returns self."""
        x = self._as_2d_float(x, "fit")
        if x.shape[0] == 0:
            raise ValueError("fit got 0 samples; pass at least one row")
        # Accumulate in float64 so float32 data does not lose precision in the sums.
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        std = x64.std(axis=0)
        # Exact test: with rounding, std of a constant column may come out as a tiny non-zero.
        std[x.max(axis=0) == x.min(axis=0)] = 1.0
        self.mean_ = mean.astype(x.dtype)
        self.scale_ = std.astype(x.dtype)
        return self

    def transform(self, x) -> np.ndarray:
        """Return (x - mean_) / scale_, same shape as x (n_samples, n_features)."""
        x = self._as_2d_float(x, "transform")
        self._check_fitted(x, "transform")
        return ((x - self.mean_) / self.scale_).astype(x.dtype, copy=False)

    def fit_transform(self, x) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, z) -> np.ndarray:
        """Undo ``transform``: x = z * scale_ + mean_, same shape as z."""
        z = self._as_2d_float(z, "inverse_transform")
        self._check_fitted(z, "inverse_transform")
        return (z * self.scale_ + self.mean_).astype(z.dtype, copy=False)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the fitted arrays: ``{"mean": mean_, "scale": scale_}``."""
        if self.mean_ is None:
            raise RuntimeError("StandardScaler is not fitted; call fit(x) first")
        return {"mean": self.mean_.copy(), "scale": self.scale_.copy()}


def one_hot(labels, num_classes=None, dtype="float32") -> np.ndarray:
    """Encode integer class labels as one-hot rows: out[..., c] = 1 where labels == c.

    ``labels`` of shape (n,) (any shape works) with values in [0, num_classes) gives an array
    of shape (n, num_classes) of ``dtype``. ``num_classes`` defaults to max(labels) + 1.
    Integer-valued floats (e.g. 2.0) are accepted; negative, fractional or too large labels
    raise ValueError naming the first bad value.
    """
    labels = np.asarray(labels)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype={dtype!r} is not a NumPy dtype; use e.g. 'float32'") from None
    if num_classes is not None and (
        not is_int(num_classes) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")

    if np.issubdtype(labels.dtype, np.floating):
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            raise ValueError(
                f"labels must be whole numbers, got {labels[bad][0].item()!r}; "
                "map classes to 0..num_classes-1 first"
            )
    elif not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integers, got dtype {labels.dtype}; convert class names with "
            "np.unique(labels, return_inverse=True)[1]"
        )
    if labels.size == 0 and num_classes is None:
        raise ValueError("cannot infer num_classes from empty labels; pass num_classes")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min().item()!r}")
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"label {int(labels.max())} does not fit num_classes={num_classes} (valid labels are "
            f"0..{num_classes - 1}); pass num_classes={int(labels.max()) + 1} or fix the labels"
        )
    out = np.zeros(labels.shape + (int(num_classes),), dtype=dt)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out
