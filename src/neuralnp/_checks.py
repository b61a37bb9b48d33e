"""Input checks shared by the public entry points: one clear message per mistake."""

import numbers

import numpy as np


def as_numeric_array(x, name):
    """``x`` as a NumPy array of real numbers (bool, integer or float), not yet converted."""
    if x is None:
        raise TypeError(f"{name} is None; pass a NumPy array (or nested lists) of numbers")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} could not be read as an array ({exc}); pass a rectangular "
                        "array of numbers") from None
    # Complex and timedelta arrays count as numbers to NumPy, but casting them to float drops
    # the imaginary part or reads the raw ticks.
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} holds complex numbers; pass real ones (np.real(x), or np.abs(x) "
                        "for the magnitudes)")
    if arr.dtype.kind in "mM":
        raise TypeError(f"{name} holds {arr.dtype.name} values; convert them to numbers first, "
                        "e.g. (t - t.min()) / np.timedelta64(1, 's') for seconds")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}; encode text columns "
                        "as numbers first (neuralnp.preprocessing.one_hot)")
    return arr


def as_float_array(x, name, dtype):
    """``x`` as a C-contiguous float array of ``dtype``, after checking it is numeric, non-empty
    and finite in ``dtype``."""
    arr = as_numeric_array(x, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar; pass one row per sample")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least one sample")
    if arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape}: its samples have no features; pass at "
                         "least one column")
    return cast_finite(arr, name, dtype)


def cast_finite(arr, name, dtype, samples=True, fix="impute or drop them before training"):
    """``arr`` as a C-contiguous array of ``dtype``, checked finite after the cast: a float64
    1e39 is finite but becomes inf in float32. ``samples``: the first axis counts samples (the
    message names the sample and column); ``fix`` says what to do about NaN or infinity."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):  # an overflow is found and named just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    # Booleans and integers up to 64 bits are finite in float32: only floats need the pass.
    if arr.dtype.kind == "f" and not np.isfinite(out).all():
        bad = ~np.isfinite(out)
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        value = arr[index]
        where = _location(index, samples)
        if np.isfinite(value):
            raise ValueError(f"{name} {where} holds {float(value):g}, beyond the range of "
                             f"{dtype.name} (±{float(np.finfo(dtype).max):.3g}); scale the values "
                             "down, or build the model with dtype='float64'")
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite values (first "
                         f"{where}); {fix}")
    return out


def _location(index, samples):
    if not samples:
        return f"at index {index}"
    if len(index) == 1:
        return f"at sample {index[0]}"
    if len(index) == 2:
        return f"at sample {index[0]}, column {index[1]}"
    return f"at sample {index[0]}, position {index[1:]}"


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
