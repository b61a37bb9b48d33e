"""Input checks shared by the public entry points: one clear message per mistake."""

import math
import numbers

import numpy as np


def is_int(value):
    """An integer, and not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """A real number, and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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


def check_fraction(value, name, example):
    """``value`` as a float in [0, 1)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}; {example}")
    return float(value)


def sample_weights(sample_weight, n, dtype):
    """One finite weight >= 0 per sample, not all zero."""
    w = as_float_array(sample_weight, "sample_weight", dtype).reshape(-1)
    if len(w) != n:
        raise ValueError(f"sample_weight has {len(w)} entries for {n} samples; give one "
                         "weight per sample")
    if (w < 0).any():
        first = int(np.argmax(w < 0))
        raise ValueError(f"sample_weight holds negative values (first {w[first]:g} at sample "
                         f"{first}); weights must be >= 0 (0 leaves a sample out)")
    if not w.any():
        raise ValueError("sample_weight is all zero, so no sample counts in the loss; give "
                         "at least one sample a positive weight")
    return w


def class_weights(class_weight, y, dtype):
    """Per-sample weights from ``{class: weight}`` for targets ``y`` in the loss's form
    (labels, a 0/1 column, or one-hot rows)."""
    if not isinstance(class_weight, dict):
        raise TypeError("class_weight must be a dict {class index: weight}")
    if y.ndim == 1:
        labels = y
    elif y.shape[1] == 1:
        labels = np.round(y[:, 0]).astype(np.intp)
    else:
        labels = np.argmax(y, axis=1)
    for cls, weight in class_weight.items():
        if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or cls < 0:
            raise ValueError(f"class_weight keys must be class indices (integers >= 0), got "
                             f"{cls!r}; e.g. {{0: 1.0, 1: 5.0}}")
        if (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
                or not (math.isfinite(weight) and weight >= 0)):
            raise ValueError(f"class_weight's weight for class {cls} must be a finite number "
                             f">= 0, got {weight!r}")
    present = set(np.unique(labels).tolist())
    missing = present - set(class_weight)
    if missing:
        raise ValueError(f"class_weight has no weight for classes {sorted(missing)}; give "
                         "every class present in y a weight")
    absent = sorted(set(class_weight) - present)
    if absent:
        raise ValueError(f"class_weight names class {absent[0]}, which y does not hold (y's "
                         f"classes: {sorted(present)}); drop it from class_weight")
    table = np.zeros(labels.max() + 1, dtype=dtype)
    for cls, weight in class_weight.items():
        table[cls] = weight
    return table[labels]


def check_seed(seed, name="seed"):
    """None, or ``seed`` as a plain int >= 0 (it goes into JSON configs)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None or an integer >= 0, got {seed!r}; e.g. {name}=0")
    if seed < 0:
        raise ValueError(f"{name} must be None or an integer >= 0, got {seed!r}; e.g. {name}=0")
    return int(seed)


def check_instance(value, cls, expected):
    """``value`` if it is a ``cls``; else a TypeError saying what was ``expected``."""
    if not isinstance(value, cls):
        got = "None" if value is None else type(value).__name__
        raise TypeError(f"{expected}; got {got}")
    return value


def samples(x, name, dtype):
    """``x`` as checked samples: a finite float array of ``dtype``, at least 2-D."""
    x = as_float_array(x, name, dtype)
    if x.ndim == 1:
        raise ValueError(f"{name} is 1-D with shape {x.shape}; pass (samples, features): "
                         "x.reshape(-1, 1) for one feature, x.reshape(1, -1) for one sample")
    return x


def check_sample_shape(x, sample_shape, name):
    """``x`` when each of its samples has ``sample_shape``."""
    if x.shape[1:] != tuple(sample_shape):
        raise ValueError(f"the model expects samples of shape {tuple(sample_shape)} "
                         f"({math.prod(sample_shape)} features), {name} has {x.shape[1:]}; "
                         "pass the same columns as in training")
    return x


def weights_like(params, weights, dtype):
    """``weights`` checked against ``params`` one by one (count, numbers, shape, finite in
    ``dtype``) and cast, before the caller writes any: a bad array changes nothing."""
    weights = list(weights)
    if len(weights) != len(params):
        raise ValueError(f"the model has {len(params)} weight arrays, got {len(weights)}; "
                         "pass them in get_weights() order")
    arrays = []
    for p, w in zip(params, weights):
        name = f"weight {p.name!r}"
        w = as_numeric_array(w, name)
        if w.shape != p.shape:
            raise ValueError(f"{name} has shape {p.shape}, got an array of shape {w.shape}; "
                             "pass them in get_weights() order")
        arrays.append(cast_finite(w, name, dtype, samples=False,
                                  fix="pass finite weights (get_weights() of a model that has "
                                      "not diverged)"))
    return arrays
