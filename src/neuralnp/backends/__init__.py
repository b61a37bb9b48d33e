"""Where the hot-path operations run: one :class:`Ops` interface, one implementation per device.

``get_ops()`` gives the default: :class:`NumbaOps` when Numba is installed
(``pip install "neuralnp[fast]"``), :class:`NumpyOps` otherwise, or as ``NEURALNP_KERNELS=numpy``
asks. A model hands its ops to its layers, loss and optimizer when it builds them; each reaches
its arrays' module as ``ops.xp``.
"""

import os

from .numpy_ops import NumpyOps
from .ops import Ops

__all__ = ["Ops", "NumpyOps", "get_ops", "numba_available", "ops_for_device"]

_instances = {}
_numba = []


def numba_available():
    """Whether Numba imports (and so whether ``get_ops("numba")`` works)."""
    if not _numba:
        try:
            import numba  # noqa: F401
        except ImportError:
            _numba.append(False)
        else:
            _numba.append(True)
    return _numba[0]


def get_ops(name=None):
    """The shared Ops for ``name``: ``"numpy"`` (NumpyOps), ``"numba"`` (NumbaOps; ImportError
    without Numba), ``"cuda"`` (CupyOps on the GPU; RuntimeError saying what is missing when
    CuPy, the driver or a GPU is not there) or ``None``: ``NEURALNP_KERNELS`` when set, else
    NumbaOps when Numba imports and NumpyOps otherwise.

    >>> get_ops("numpy")
    NumpyOps()
    """
    if name is None:
        name = os.environ.get("NEURALNP_KERNELS", "auto").lower()
        if name == "auto":
            name = "numba" if numba_available() else "numpy"
    ops = _instances.get(name)
    if ops is None:
        if name == "numpy":
            ops = NumpyOps()
        elif name == "numba":
            from .numba_ops import NumbaOps
            ops = NumbaOps()
        elif name == "cuda":
            cupy = _gpu_cupy()  # first: the error says what is missing
            from .cupy_ops import CupyOps
            ops = CupyOps(cupy)
        else:
            raise ValueError(f"unknown ops {name!r}; use 'numpy', 'numba' or 'cuda' "
                             "(NEURALNP_KERNELS takes the CPU ones, or 'auto')")
        _instances[name] = ops
    return ops


def _gpu_cupy():
    """CuPy, once it has shown a usable GPU; otherwise one error that says what is missing."""
    from ..errors import DeviceError
    try:
        import cupy
    except ImportError:
        raise DeviceError(
            "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'neuralnp[gpu]' (CUDA 12) "
            "or 'neuralnp[gpu13]' (CUDA 13); the CPU works without them: device='cpu'") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own CUDARuntimeError without a driver
        raise DeviceError(f"device 'cuda': CuPy is installed but no CUDA GPU is usable "
                           f"({exc}); check the NVIDIA driver (nvidia-smi), or use "
                           "device='cpu'") from None
    if count < 1:
        raise DeviceError("device 'cuda': CuPy found no GPU; use device='cpu'")
    return cupy


def ops_for_device(device):
    """The Ops a model on ``device`` (``"cpu"`` or ``"cuda"``, see ``backend.check_device``)
    runs: the CPU's default, or the GPU's."""
    return get_ops("cuda" if device == "cuda" else None)
