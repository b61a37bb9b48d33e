"""Array module, dtype policy and devices.

Every layer asks this module for its array namespace instead of importing NumPy names directly, so
that the same layer code can run on CuPy. Today only the CPU is wired in: asking for a GPU checks
what is installed and says what is missing.
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


DEVICES = ("cpu", "cuda")


def check_device(device):
    """Validate a device name; a GPU request says exactly what is missing."""
    name = str(device).lower()
    if name.startswith("cuda") or name == "gpu":
        try:
            import cupy
        except ImportError:
            raise RuntimeError(
                f"device {device!r} needs CuPy and an NVIDIA GPU: pip install 'neuralnp[gpu]' "
                "(CuPy for CUDA 12); the CPU works without it: device='cpu'") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CuPy raises its own CUDARuntimeError without a driver
            raise RuntimeError(f"device {device!r}: CuPy is installed but no CUDA GPU is "
                               f"usable ({exc}); use device='cpu'") from None
        raise RuntimeError(f"device {device!r}: {count} GPU(s) found, but the GPU path of "
                           "neuralnp is not built yet; use device='cpu'")
    if name != "cpu":
        raise ValueError(f"unknown device {device!r}; valid devices are: {', '.join(DEVICES)}")
    return "cpu"
