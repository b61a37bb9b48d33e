"""Where the hot-path operations run: one :class:`Ops` interface, one implementation per device.

``get_ops()`` gives the default: :class:`NumbaOps` when Numba is installed
(``pip install "neuralnp[fast]"``), :class:`NumpyOps` otherwise, or as ``NEURALNP_KERNELS=numpy``
asks. A model hands its ops to its layers, loss and optimizer when it builds them; each reaches
its arrays' module as ``ops.xp``.
"""

import os

from .numpy_ops import NumpyOps
from .ops import Ops

__all__ = ["Ops", "NumpyOps", "get_ops", "numba_available"]

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
    without Numba) or ``None``: ``NEURALNP_KERNELS`` when set, else NumbaOps when Numba
    imports and NumpyOps otherwise.

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
        else:
            raise ValueError(f"unknown ops {name!r}; use 'numpy' or 'numba' (NEURALNP_KERNELS "
                             "takes the same names, or 'auto')")
        _instances[name] = ops
    return ops
