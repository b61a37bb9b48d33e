"""A NumPy-backed stand-in for a GPU array module, to prove a training step never talks to the host.

On a GPU every read of a value back to the host (``float(loss)``, ``if x.any():``, ``.item()``)
synchronises the device and breaks CUDA-graph capture, and so does a Python number that changes
from step to step written into an array. ``xp`` is used in place of ``numpy``/``cupy``: its
functions hand back ``DeviceArray`` views, which count every host read and every host write, and
refuse both (``HostRead``) inside ``no_reads()``::

    with no_reads():
        model.train_step(x, y)        # any float()/bool()/item()/a[i] = 0.5 raises HostRead

Limits: it is plain NumPy underneath, so it cannot see what never reaches Python: ``np.asarray(a)``
or ``np.array(a)`` turning a device array into a host one (real CuPy refuses), ``np.float32(a)``,
``a.fill(x)``, ``np.copyto(a, host)``, ``memoryview(a)``, or a host ``where=``/index array. Every
non-device value written with ``a[...] = v`` counts as a per-step write, even a constant; in-place
arithmetic with a constant (``a *= 0.9``) is allowed, since the two cannot be told apart.
"""

import contextlib
import functools
import types

import numpy as np

_counts = {"reads": 0, "writes": 0}
_refusing = 0  # depth of no_reads() blocks


class HostRead(AssertionError):
    """A device value was read on the host (or a host value written) inside ``no_reads()``."""


def _note(kind, what):
    _counts[kind] += 1
    if _refusing:
        raise HostRead(f"host {kind[:-1]} inside no_reads(): {what}")


def _reading(what, read):
    def method(self, *args):
        _note("reads", what)
        return read(self.view(np.ndarray), *args)
    return method


class DeviceArray(np.ndarray):
    """An ndarray that stays on the "device": scalars come back as 0-d DeviceArrays, reads count."""

    __float__ = _reading("float()", float)
    __int__ = _reading("int()", int)
    __complex__ = _reading("complex()", complex)
    __bool__ = _reading("bool() (an array in an if/and/or/while)", bool)
    __index__ = _reading("__index__ (an array used as a Python int)", np.ndarray.__index__)
    item = _reading("item()", np.ndarray.item)
    tolist = _reading("tolist()", np.ndarray.tolist)
    tobytes = _reading("tobytes()", np.ndarray.tobytes)

    def __contains__(self, value):
        _note("reads", "`in`")
        return value in self.view(np.ndarray)

    def __format__(self, spec):
        if spec:  # f"{loss:.4f}" reads the value; plain f"{a}" is str(), free for debugging
            _note("reads", f"format(..., {spec!r})")
        return format(self.view(np.ndarray), spec)

    def get(self):
        """The explicit device-to-host copy (as CuPy's): a plain ndarray; counted as a read."""
        _note("reads", "get()")
        return np.array(self.view(np.ndarray))

    def __getitem__(self, key):
        result = super().__getitem__(key)
        return result if isinstance(result, np.ndarray) else np.asarray(result).view(DeviceArray)

    def __setitem__(self, key, value):
        if isinstance(value, DeviceArray):
            value = value.view(np.ndarray)  # a device copy: ndarray's would float() a 0-d value
        else:
            _note("writes", f"a[{key!r}] = {type(value).__name__} (a host value written)")
        super().__setitem__(key, value)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # never a NumPy scalar (NumPy 2.4 already keeps subclasses 0-d; this does not rely on it)
        return super().__array_wrap__(array, context, False)

    def __repr__(self):
        return "DeviceArray" + repr(self.view(np.ndarray))[len("array"):]

    def __str__(self):
        return str(self.view(np.ndarray))


def _on_device(result, outs):
    if isinstance(result, DeviceArray) or any(result is o for o in outs):
        return result  # the out= array given, or already on the device
    if isinstance(result, (np.ndarray, np.generic)):
        return np.asarray(result).view(DeviceArray)
    if isinstance(result, (tuple, list)):
        items = [_on_device(r, outs) for r in result]
        return type(result)(*items) if hasattr(result, "_fields") else type(result)(items)
    return result


class _Call:
    """A NumPy callable (ufuncs too, with .reduce/.at/...) whose arrays come back on the device."""

    def __init__(self, func):
        self._func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        out = kwargs.get("out")
        outs = out if isinstance(out, tuple) else (out,)
        if isinstance(self._func, np.ufunc):
            outs += args[self._func.nin:]
        return _on_device(self._func(*args, **kwargs), outs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _wrap(getattr(self._func, name))


def _wrap(obj, name=""):
    if isinstance(obj, types.ModuleType):
        return obj if name == "random" else _Namespace(obj)
    if callable(obj) and not isinstance(obj, type):  # types (float32, dtype, finfo, ndarray) pass
        return _Call(obj)
    return obj


class _Namespace:
    """``numpy`` (or a submodule) as a device array module; see ``xp``."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        if name.startswith("__"):
            return getattr(self._module, name)
        value = _wrap(getattr(self._module, name), name)
        setattr(self, name, value)  # cached
        return value


def _upload(a, dtype=None):
    """The explicit host-to-device copy: a DeviceArray (a DeviceArray of that dtype as it is)."""
    if isinstance(a, DeviceArray) and (dtype is None or a.dtype == dtype):
        return a
    return np.array(a, dtype=dtype).view(DeviceArray)


xp = _Namespace(np)
xp.asarray = _upload


def to_host(a):
    """The explicit device-to-host copy, ``a.get()``."""
    return a.get() if isinstance(a, DeviceArray) else np.asarray(a)


def counts():
    """Host reads and writes so far: ``{"reads": n, "writes": m}``."""
    return dict(_counts)


def reset_counts():
    _counts.update(reads=0, writes=0)


@contextlib.contextmanager
def no_reads():
    """Inside the block every host read or write raises HostRead."""
    global _refusing
    _refusing += 1
    try:
        yield
    finally:
        _refusing -= 1


class _Tally:
    def __init__(self):
        self._start, self._end = counts(), None

    def _count(self, kind):
        return (self._end or _counts)[kind] - self._start[kind]

    reads = property(lambda self: self._count("reads"))
    writes = property(lambda self: self._count("writes"))


@contextlib.contextmanager
def counting():
    """Yields an object whose ``.reads``/``.writes`` are the counts made inside the block."""
    tally = _Tally()
    try:
        yield tally
    finally:
        tally._end = counts()
