"""Array module and dtype policy.

Every layer asks this module for its array namespace instead of importing NumPy names directly, so
that the same layer code can later run on CuPy. Today only NumPy is wired in; ``to("cuda")`` is a
later step.
"""

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def resolve_dtype(dtype):
    """Return the NumPy dtype for ``"float32"`` / ``"float64"`` (or the dtype objects themselves)."""
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return np.dtype(DTYPES[key])


def get_array_module(array=None):
    """The array namespace (``numpy`` or ``cupy``) that ``array`` belongs to."""
    return np


def to_numpy(array):
    """A NumPy copy (or view) of ``array``, whatever device it lives on."""
    return np.asarray(array)
