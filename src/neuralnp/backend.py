"""Dtype policy and device names.

The dtypes a model may have and the devices it may run on; each device's operations come from
:func:`neuralnp.backends.get_ops`.
"""

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def resolve_dtype(dtype):
    """Return the NumPy dtype for ``"float32"`` / ``"float64"`` (or the dtype objects themselves)."""
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return np.dtype(DTYPES[key])


DEVICES = ("cpu", "cuda")


def check_device(device):
    """The device name ``device`` asks for: ``"cpu"``, or ``"cuda"`` (also ``"gpu"``,
    ``"cuda:0"``). Whether the GPU can be used is for :func:`neuralnp.backends.get_ops`
    (``get_ops("cuda")``) to say, when a model is given the device."""
    name = str(device).lower()
    if name in ("cuda", "gpu", "cuda:0"):
        return "cuda"
    if name != "cpu":
        raise ValueError(f"unknown device {device!r}; valid devices are: {', '.join(DEVICES)} "
                         "(one GPU: 'cuda' is 'cuda:0')")
    return "cpu"
