"""Input checks shared by the public entry points: one clear message per mistake."""

import numbers

import numpy as np


def as_float_array(x, name, dtype):
    """``x`` as a C-contiguous float array of ``dtype``, after checking it is numeric, non-empty
    and finite."""
    if x is None:
        raise TypeError(f"{name} is None; pass a NumPy array (or nested lists) of numbers")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} could not be read as an array ({exc}); pass a rectangular "
                        "array of numbers") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}; encode text columns "
                        "as numbers first (neuralnp.preprocessing.one_hot)")
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar; pass one row per sample")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least one sample")
    check_finite(arr, name)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_finite(arr, name):
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite values (first in "
                         f"sample {row}); impute or drop them before training")


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
