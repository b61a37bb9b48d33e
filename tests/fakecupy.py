"""A NumPy-backed stand-in for the part of CuPy neuralnp uses: the CUDA path's Python logic in CI.

``import fakecupy as cp`` in place of ``import cupy as cp``. It is strict where CuPy or CUDA is
strict, so that code which passes here is likely to run on a GPU:

* ``cp.ndarray`` holds a NumPy array (``_a``) but is not one: ``np.asarray(a)`` raises CuPy's
  ``TypeError`` and ``a.get()`` is the explicit copy back. Indexing hands back 0-d arrays, never
  numbers; basic slices, ``reshape``, ``T`` and ``view`` share memory; ``a += b`` writes in place.
* Module functions are NumPy's, refusing a ``numpy.ndarray`` argument as CuPy does and honouring
  ``out=``; ``np.exp(a)`` and ``np.sum(a)`` dispatch here. ``asarray``/``array`` are the upload.
  Nothing warns about overflow or NaN (CuPy never does).
* Host reads (``float``, ``int``, ``bool``, ``item``, ``tolist``, ``get``, ``in``, a boolean mask,
  ``nonzero``...) and host writes (uploads, ``a[i] = number``) are counted: :func:`counters`.
* Graph capture as in CuPy 13/14: between ``stream.begin_capture()`` and ``stream.end_capture()``,
  work issued on that stream (``with stream:``) is checked by running it on copies of its arrays,
  then recorded and NOT executed; ``graph.launch()`` replays it on the same buffers. Allocating,
  reading back, uploading, synchronising or issuing work on another stream during a capture
  raises :class:`CaptureError` and invalidates the capture (``end_capture`` raises too), as CUDA.
  Allocation is allowed inside ``cp.cuda.using_allocator(pool.malloc)`` with a private
  ``MemoryPool``: the new array is the graph's, and replays recompute it from the current inputs
  (on a GPU the pool must already hold free blocks of those sizes, from a warm-up run).
* cuBLAS: ``cp.matmul``/``dot`` (CuPy's own cuBLAS calls) are refused during capture, as recent
  CuPy refuses them (cupy#6290). ``cp.cuda.cublas_library()`` is a fake of libcublas loaded with
  ctypes (create, setStream, setWorkspace, S/Dgemm), computing column-major gemm with NumPy on
  the memory its raw pointers name, checked as cuBLAS checks and recorded during capture.
* ``RawModule`` parses one-line ``__global__`` declarations, checks each launch argument against
  its C type (dtype, C-contiguity, exact NumPy scalar width, count) and runs the kernel's NumPy
  twin: the function of the same name in ``cuda_twins`` (or the module given to ``set_twins``).

Not modelled: real device memory and its limits, asynchrony outside capture (work runs at once),
several devices or threads, performance, grid coverage (a twin computes its whole result whatever
the grid), CuPy's dtype promotion where it differs from NumPy's, and CuPy beyond the NumPy
namespace (``cp.random``, ``ElementwiseKernel``, ``cupyx``). Stricter than CuPy on purpose:
``a[...] = 0.5`` is a host write, refused during capture (CuPy would bake the number into the
graph), and a non-contiguous kernel argument is an error (CuPy passes the pointer regardless).
"""

import contextlib
import ctypes
import importlib
import math
import operator
import re
import sys
import types
import weakref

import numpy as np

__version__ = "13.0.0+fakecupy"
_counts = dict.fromkeys(
    ("reads", "writes", "allocations", "ops", "launches", "recorded", "replays"), 0)
_capture = None  # the Stream capturing now, if any
_allocator = None  # the private pool's malloc inside using_allocator(), if any
_twins = None    # the kernel twins module; None: import cuda_twins
_memory = {}  # id -> weakref of every live device allocation: what a raw pointer can name
_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


class CaptureError(RuntimeError):
    """Something CUDA graph capture forbids was done while a capture was active."""


def counters():
    """Host reads and writes, allocations, eager operations, kernel launches (eager or recorded),
    recorded operations and graph replays since :func:`reset_counters`."""
    return dict(_counts)


def reset_counters():
    _counts.update(dict.fromkeys(_counts, 0))


def set_twins(module):
    """Take kernel twins from ``module`` (None: ``import cuda_twins``); returns the previous one."""
    global _twins
    previous, _twins = _twins, module
    return previous


def _refuse(message):
    if _capture is not None and _capture._invalid is None:
        _capture._invalid = message  # as CUDA: the capture is now invalid
    raise CaptureError(message)


def _host(kind, what):
    """Count a host read or write; refuse it during a capture."""
    _counts[kind] += 1
    if _capture is not None:
        when = "read it after end_capture()" if kind == "reads" else "upload before begin_capture()"
        _refuse(f"{what} during capture: a host {kind[:-1]} cannot be captured; {when}")


def _track(a, what, recompute=None):
    """``a``, a fresh NumPy array, as a device allocation: refused during capture, unless a
    private pool is in use (:func:`using_allocator`), where the allocation is the graph's and
    ``recompute()`` (the values it is given) is recorded to run again on each replay."""
    if _capture is not None:
        if _allocator is None:
            _refuse(f"allocation during capture; allocate workspaces before capture ({what})")
        if recompute is not None:
            _capture._ops.append((what, lambda: np.copyto(a, recompute()), (), {}))
            _counts["recorded"] += 1
    _counts["allocations"] += 1
    _pool._used += a.nbytes
    weakref.finalize(a, _pool._release, a.nbytes)
    _memory[id(a)] = weakref.ref(a)
    weakref.finalize(a, _memory.pop, id(a), None)
    return a


def _wrap(a):
    obj = object.__new__(ndarray)
    obj._a = a
    return obj


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _arrays(x):
    if isinstance(x, np.ndarray):
        yield x
    elif isinstance(x, (tuple, list, dict)):
        for v in (x.values() if isinstance(x, dict) else x):
            yield from _arrays(v)


def _result(r, inputs, what, recompute=None):
    """Wrap NumPy's result: a view of an input stays a view, anything else is an allocation
    (``recompute()`` gives its values again, for a replay of a capture)."""
    if isinstance(r, (tuple, list)):
        return type(r)(_result(v, inputs, what, None if recompute is None else
                               (lambda k=k: recompute()[k])) for k, v in enumerate(r))
    if isinstance(r, np.generic):
        r = np.asarray(r)
    if not isinstance(r, np.ndarray):
        return r
    if any(_owner(a) is _owner(r) for a in _arrays(inputs)):
        return _wrap(r)
    return _wrap(_track(r, what, recompute))


def _quiet(compute):
    def run():
        with np.errstate(all="ignore"):
            return compute()
    return run


def _host_array(what):
    return TypeError(f"{what}: got a numpy.ndarray; CuPy does not take host arrays here: "
                     "upload it with cp.asarray() first")


def _operand(x, what):
    """A ufunc operand: a device array or a scalar (Python or NumPy), as CuPy accepts."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _host_array(what)
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return x
    raise TypeError(f"{what}: unsupported type {type(x).__name__}")


def _unwrap(x, what):
    """Any other argument: device arrays unwrapped (also inside lists), host arrays refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _host_array(what)
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(v, what) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what) for k, v in x.items()}
    return x


def _copies(x):
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_copies(v) for v in x)
    return {k: _copies(v) for k, v in x.items()} if isinstance(x, dict) else x


def _issue(what, fn, args, kwargs=None, stream=None):
    """Device work ``fn(*args, **kwargs)`` on NumPy buffers: run now, or checked and recorded."""
    kwargs = kwargs or {}
    with np.errstate(all="ignore"):
        if _capture is None:
            _counts["ops"] += 1
            return fn(*args, **kwargs)
        stream = stream or _streams[-1]
        if stream is not _capture:
            _refuse(f"{what} issued on {stream} while {_capture} captures: issue it inside "
                    "`with stream:`")
        try:  # shape and dtype errors surface now, as CuPy raises them when work is issued
            fn(*_copies(args), **_copies(kwargs))
        except Exception as exc:
            _capture._invalid = _capture._invalid or f"{what}: {exc}"
            raise
    _capture._ops.append((what, fn, args, kwargs))
    _counts["recorded"] += 1


# -- module functions ----------------------------------------------------------------------------

_wrapped = {}  # NumPy name -> wrapper, kept out of globals() so sum/max/abs stay Python's here
_SYNCING = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract"}
_NOT_HERE = {
    "errstate": "CuPy has no errstate (it never warns)", "seterr": "CuPy has no seterr",
    "ElementwiseKernel": "not provided: the library uses RawModule only",
    "ReductionKernel": "not provided: the library uses RawModule only",
    "RawKernel": "not provided: the library uses RawModule only",
    **dict.fromkeys(("put", "place", "putmask", "fill_diagonal", "put_along_axis"),
                    "in-place writes without out= are not modelled"),
}


def _ufunc(uf):
    what = f"cupy.{uf.__name__}"

    def call(*args, out=None, **kwargs):
        if len(args) > uf.nin:
            args, out = args[:uf.nin], args[uf.nin:]
        a = [_operand(x, what) for x in args]
        if "where" in kwargs:
            kwargs["where"] = _operand(kwargs["where"], what)
        if out is None:
            if _capture is not None and _allocator is None:
                _refuse(f"allocation during capture; allocate workspaces before capture "
                        f"({what} without out=)")
            with np.errstate(all="ignore"):
                return _result(uf(*a, **kwargs), (), what, _quiet(lambda: uf(*a, **kwargs)))
        outs = out if isinstance(out, tuple) else (out,)
        if not all(isinstance(o, ndarray) for o in outs):
            raise TypeError(f"{what}: out= must be a cupy array, got "
                            f"{', '.join(type(o).__name__ for o in outs)}")
        _issue(what, uf, a, dict(kwargs, out=tuple(o._a for o in outs)))
        return outs[0] if len(outs) == 1 else outs

    call.__name__ = call.__qualname__ = uf.__name__
    return call


def _generic(fn, name):
    what = f"cupy.{name}"

    def call(*args, **kwargs):
        if name in _SYNCING or (name == "where" and len(args) == 1):
            _host("reads", f"{what} (the size of its result is read back)")
        a, kw = _unwrap(args, what), _unwrap(kwargs, what)
        if kwargs.get("out") is not None:
            if not isinstance(kwargs["out"], ndarray):
                raise TypeError(f"{what}: out= must be a cupy array")
            _issue(what, fn, a, kw)
            return kwargs["out"]
        with np.errstate(all="ignore"):
            r = fn(*a, **kw)
        return _result(np.asarray(r) if name in ("allclose", "array_equal") else r, a, what,
                       _quiet(lambda: fn(*a, **kw)))

    call.__name__ = call.__qualname__ = name
    return call


for _name in dir(np):
    if isinstance(getattr(np, _name), np.ufunc):
        _wrapped[_name] = _ufunc(getattr(np, _name))


# CuPy's functions that call cuBLAS through CuPy's own handle: its ``setStream``, made on every
# call on a non-default stream, is refused during capture (cupy#6290).
CUBLAS_REFUSED = {"matmul", "dot", "vdot", "inner", "tensordot"}


def _cublas_call(name, call):
    """``call``, refused during capture while ``name`` is in :data:`CUBLAS_REFUSED`."""
    def refusing(*args, **kwargs):
        if _capture is not None and name in CUBLAS_REFUSED:
            _refuse(f"cupy.{name} during capture: CuPy's cuBLAS calls cannot be captured; "
                    "call cuBLAS through a handle of your own")
        return call(*args, **kwargs)

    refusing.__name__ = refusing.__qualname__ = name
    return refusing


_wrapped["matmul"] = _cublas_call("matmul", _wrapped["matmul"])
for _name in ("dot", "vdot", "inner", "tensordot"):
    _wrapped[_name] = _cublas_call(_name, _generic(getattr(np, _name), _name))


def _function(name):
    if name not in _wrapped:
        _wrapped[name] = _generic(getattr(np, name), name)
    return _wrapped[name]


def __getattr__(name):
    """``cp.<name>``: NumPy's function wrapped, or NumPy's dtype, class or constant itself."""
    if not name.startswith("_") and name not in _NOT_HERE and hasattr(np, name):
        obj = getattr(np, name)
        if isinstance(obj, type) or not (callable(obj) or isinstance(obj, types.ModuleType)):
            return obj  # float32, dtype, finfo, newaxis, inf, nan, pi
        if not isinstance(obj, types.ModuleType):
            return _function(name)
    why = _NOT_HERE.get(name, "not modelled" if hasattr(np, name) else "")
    raise AttributeError(f"module 'fakecupy' has no attribute {name!r}"
                         + (f" ({why})" if why else ""))


def _upload(obj, dtype, what):
    _host("writes", f"{what} of a {type(obj).__name__} (a host-to-device copy)")
    return _wrap(_track(np.array(obj, dtype=dtype), what))


def asarray(a, dtype=None, order=None):
    """``a`` on the device: a device array itself (cast if ``dtype`` differs), else an upload."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return _upload(a, dtype, "cupy.asarray")


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(obj, ndarray):
        return obj.astype(obj.dtype if dtype is None else dtype, copy=copy)
    return _upload(obj, dtype, "cupy.array")


def asnumpy(a, stream=None, order="C", out=None):
    return a.get(out=out) if isinstance(a, ndarray) else np.asarray(a)


def copyto(dst, src, casting="same_kind", where=True):
    if not isinstance(dst, ndarray):
        raise TypeError(f"cupy.copyto: dst must be a cupy array, got {type(dst).__name__}")
    _issue("cupy.copyto", np.copyto, (dst._a, _operand(src, "cupy.copyto")),
           {"casting": casting, "where": _operand(where, "cupy.copyto")})


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


# -- arrays --------------------------------------------------------------------------------------

def _reader(what, read):
    def method(self, *args):
        _host("reads", what)
        return read(self._a, *args)
    return method


def _index(key):
    """An index with device arrays unwrapped; a host index array is an upload, a mask a read."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        if key.dtype == bool:
            _host("reads", "a boolean mask index (the size of its result is read back)")
        return key._a
    if isinstance(key, (np.ndarray, list)):
        _host("writes", f"an index given as a {type(key).__name__} (uploaded)")
    return key


class ndarray:
    """A device array: a NumPy array ``_a`` behind CuPy's strictness (see the module docstring)."""

    __slots__ = ("_a", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = _track(np.empty(shape, dtype, order=order), "cupy.ndarray()")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or ufunc.__name__ not in _wrapped:
            return NotImplemented
        return _wrapped[ufunc.__name__](*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        fn = getattr(sys.modules[__name__], func.__name__, None)
        return NotImplemented if fn is None or isinstance(fn, type) else fn(*args, **kwargs)

    T = property(lambda self: _wrap(self._a.T))
    data = property(lambda self: types.SimpleNamespace(
        ptr=self._a.__array_interface__["data"][0], device_id=0))

    __float__ = _reader("float()", float)
    __int__ = _reader("int()", int)
    __complex__ = _reader("complex()", complex)
    __bool__ = _reader("bool() (an array in an if/and/or/while)", bool)
    __index__ = _reader("__index__ (an array used as a Python int)", operator.index)
    __contains__ = _reader("`in`", operator.contains)
    item = _reader("item()", np.ndarray.item)
    tolist = _reader("tolist()", np.ndarray.tolist)

    def get(self, stream=None, order="C", out=None):
        """A NumPy copy: the device-to-host transfer."""
        _host("reads", "get()")
        return self._a.copy() if out is None else (np.copyto(out, self._a), out)[1]

    def __repr__(self):
        if _capture is not None:  # no read, no error: debuggers and pytest call repr
            return f"<fakecupy.ndarray {self.shape} {self.dtype}, not read during capture>"
        _counts["reads"] += 1
        return repr(self._a)

    __str__ = __repr__

    def __format__(self, spec):
        return format(self.item(), spec) if spec else str(self)

    def __reduce__(self):
        return array, (self.get(),)

    def __copy__(self, memo=None):
        return self.copy()

    __deepcopy__ = __copy__

    def __len__(self):
        if not self._a.ndim:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if not self._a.ndim:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        key = _index(key)
        with np.errstate(all="ignore"):
            r = self._a[key]
            if not isinstance(r, np.ndarray):  # an element: CuPy gives a 0-d view, not a number
                r = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return _result(r, self._a, "indexing with arrays", _quiet(lambda: self._a[key]))

    def __setitem__(self, key, value):
        key = _index(key)
        if not isinstance(value, ndarray):
            _host("writes", f"a[...] = {type(value).__name__} (a host value written to the device)")
        _issue("a[...] = value", operator.setitem,
               (self._a, key, value._a if isinstance(value, ndarray) else value))

    def fill(self, value):
        """Every element ← ``value`` (a number, baked into a captured graph, or a 0-d array)."""
        if isinstance(value, ndarray):
            return copyto(self, value)
        _issue("fill()", np.ndarray.fill, (self._a, _operand(value, "fill()")))

    def reshape(self, *shape, order="C"):
        return _function("reshape")(self, shape[0] if len(shape) == 1 else shape, order=order)

    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and self._a.dtype == np.dtype(dtype):
            return self
        return _wrap(_track(self._a.astype(dtype, order=order), "astype()",
                            lambda: self._a.astype(dtype, order=order)))

    def copy(self, order="C"):
        return _wrap(_track(self._a.copy(order=order), "copy()", lambda: self._a.copy()))


for _p in ("shape", "dtype", "ndim", "size", "strides", "itemsize", "nbytes", "flags"):
    setattr(ndarray, _p, property(operator.attrgetter(f"_a.{_p}")))


def _method(name):
    return lambda self, *args, **kwargs: _function(name)(self, *args, **kwargs)


for _m in ("sum", "mean", "max", "min", "any", "all", "argmax", "argmin", "prod", "var", "std",
           "cumsum", "clip", "dot", "take", "ravel", "squeeze", "swapaxes", "repeat", "nonzero",
           "round", "conj"):
    setattr(ndarray, _m, _method(_m))


def _operators(op, uf):
    call = _wrapped[uf]

    def inplace(self, other):
        call(self, other, out=self)
        return self
    setattr(ndarray, f"__{op}__", lambda self, other: call(self, other))
    setattr(ndarray, f"__r{op}__", lambda self, other: call(other, self))
    setattr(ndarray, f"__i{op}__", inplace)


for _op, _uf in {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide",
                 "floordiv": "floor_divide", "mod": "remainder", "pow": "power",
                 "matmul": "matmul", "and": "bitwise_and", "or": "bitwise_or",
                 "xor": "bitwise_xor", "lshift": "left_shift", "rshift": "right_shift"}.items():
    _operators(_op, _uf)
for _op, _uf in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                 "eq": "equal", "ne": "not_equal", "neg": "negative", "pos": "positive",
                 "abs": "absolute", "invert": "invert"}.items():
    setattr(ndarray, f"__{_op}__",
            (lambda call: lambda self, *other: call(self, *other))(_wrapped[_uf]))


# -- streams, graphs, device, memory -------------------------------------------------------------

class Stream:
    """A CUDA stream: ``with stream:`` makes it current; it can capture a :class:`Graph`."""

    null = None
    _made = 0

    def __init__(self, null=False, non_blocking=False, ptds=False):
        Stream._made += not null
        self.ptr = 0 if null else Stream._made
        self._ops = self._invalid = None

    def __repr__(self):
        return f"<Stream {self.ptr or 'null'}>"

    def __enter__(self):
        _streams.append(self)
        return self

    def __exit__(self, *exc):
        _streams.pop()

    def begin_capture(self, mode=None):
        global _capture
        if self.ptr == 0:
            raise RuntimeError("the null stream cannot capture: "
                               "use cp.cuda.Stream(non_blocking=True)")
        if _capture is not None:
            raise RuntimeError(f"{_capture} is already capturing")
        self._ops, self._invalid, _capture = [], None, self

    def is_capturing(self):
        return self._ops is not None

    def end_capture(self):
        global _capture
        if _capture is not self:
            raise RuntimeError(f"{self} is not capturing")
        ops, invalid = self._ops, self._invalid
        self._ops = self._invalid = _capture = None
        if invalid is not None:
            raise CaptureError(f"capture invalidated by: {invalid}")
        return Graph(ops)

    def synchronize(self):
        if _capture is not None:
            _refuse(f"{self}.synchronize() during capture")


class Graph:
    """A captured sequence of operations; :meth:`launch` replays them on the same buffers."""

    def __init__(self, ops):
        self._ops = ops

    def __len__(self):
        return len(self._ops)

    def launch(self, stream=None):
        if _capture is not None:
            _refuse("graph.launch() during capture (not modelled)")
        _counts["replays"] += 1
        with np.errstate(all="ignore"):
            for _what, fn, args, kwargs in self._ops:
                fn(*args, **kwargs)


class Device:
    """Device 0, the only one modelled."""

    def __init__(self, device=None):
        if device not in (None, 0):
            raise RuntimeError(f"fakecupy models one device (0), not {device!r}")
        self.id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        _streams[-1].synchronize()


class MemoryPool:
    """``used_bytes()``: the bytes of the device arrays alive now (freed as NumPy frees them);
    ``malloc`` for :func:`using_allocator`."""

    def __init__(self):
        self._used = 0

    def malloc(self, nbytes):
        raise NotImplementedError("fakecupy allocates through NumPy; pass malloc to "
                                  "using_allocator() only")

    def _release(self, nbytes):
        self._used -= nbytes

    def used_bytes(self):
        return self._used

    total_bytes = used_bytes

    def free_all_blocks(self):
        pass


_pool = MemoryPool()
Stream.null = Stream(null=True)
_streams = [Stream.null]


def get_default_memory_pool():
    return _pool


@contextlib.contextmanager
def using_allocator(allocator=None):
    """Allocate from ``allocator`` (a private pool's ``malloc``) inside the block; during a
    capture this is what lets a step allocate (see the module docstring)."""
    global _allocator
    previous, _allocator = _allocator, allocator
    try:
        yield
    finally:
        _allocator = previous


# -- cuBLAS through ctypes ------------------------------------------------------------------------

class _Memory:
    """A NumPy view of raw device memory (``np.asarray`` of it) that keeps its owner alive."""

    def __init__(self, interface, owner):
        self.__array_interface__, self._owner = interface, owner


def _device_view(ptr, dtype, rows, cols, ld, writable, what):
    """The column-major ``rows × cols`` matrix at ``ptr`` (element (i, j) at ptr + (i + j·ld)·
    itemsize) as a NumPy view, checked to lie inside one live device allocation."""
    dtype = np.dtype(dtype)
    extent = ((cols - 1) * ld + rows) * dtype.itemsize
    for ref in list(_memory.values()):
        owner = ref()
        if owner is None:
            continue
        start = owner.__array_interface__["data"][0]
        if start <= ptr and ptr + extent <= start + owner.nbytes:
            break
    else:
        raise RuntimeError(f"cuBLAS: {what} ({extent} bytes at {ptr:#x}) is not inside one "
                           "device allocation (an illegal address on a GPU)")
    if ptr % dtype.itemsize:
        raise RuntimeError(f"cuBLAS: {what} at {ptr:#x} is misaligned for {dtype}")
    return np.asarray(_Memory({"data": (ptr, not writable), "shape": (rows, cols),
                               "strides": (dtype.itemsize, ld * dtype.itemsize),
                               "typestr": dtype.str, "version": 3}, owner))


def _gemm_numpy(a, b, c, transa, transb, alpha, beta):
    """``c ← alpha·op(a)·op(b) + beta·c`` on column-major views (c not read when beta = 0).
    Computed as its transpose, cᵀ = op(b)ᵀ·op(a)ᵀ: for a row-major product that is NumPy's
    own ``a @ b`` on the caller's arrays."""
    op_a, op_b = (a.T if transa else a), (b.T if transb else b)
    if op_a.shape[1] == 0:  # an empty sum, as reference BLAS: c ← beta·c
        c[...] = 0 if beta == 0 else beta * c
        return
    if alpha == 1 and beta == 0:
        np.matmul(op_b.T, op_a.T, out=c.T)
        return
    product = alpha * np.matmul(op_b.T, op_a.T).T
    c[...] = product if beta == 0 else product + beta * c


class _FakeCublas:
    """libcublas as ``ctypes.CDLL`` gives it, for the five functions the library calls. Each
    takes exactly the ctypes arguments the C function declares (ctypes without argtypes would
    pass a Python int as a 32-bit int, truncating a pointer) and returns a cuBLAS status.
    Checked as cuBLAS checks (NOT_INITIALIZED for an unknown handle, INVALID_VALUE for a bad
    op, size or leading dimension) and stricter, as errors: a gemm whose handle is not bound
    to the current stream (on a GPU it would run on another stream, outside the capture), a
    gemm during capture without a workspace set (cuBLAS would allocate its own), a matrix
    outside device memory. setStream resets the workspace to cuBLAS's pool, as documented.
    A gemm goes through the stand-in's ``_issue``: during capture it is recorded, not run."""

    def __init__(self):
        self._handles = {}  # handle value -> {"stream": ptr or None, "workspace": (ptr, size)}
        self.calls = dict.fromkeys(("create", "set_stream", "set_workspace", "gemm"), 0)

    @staticmethod
    def _typed(name, args, types_):
        if len(args) != len(types_):
            raise TypeError(f"{name} takes {len(types_)} arguments, got {len(args)}")
        for i, (arg, want) in enumerate(zip(args, types_)):
            if want == "ref":
                ok = type(arg).__name__ == "CArgObject"
            else:
                ok = type(arg) is want
            if not ok:
                raise TypeError(f"{name}: argument {i} must be "
                                f"{'ctypes.byref(...)' if want == 'ref' else want.__name__}, "
                                f"got {type(arg).__name__}")

    def _handle(self, handle):
        return self._handles.get(handle.value) if handle.value else None

    def cublasCreate_v2(self, *args):
        self._typed("cublasCreate_v2", args, ["ref"])
        target = args[0]._obj
        if not isinstance(target, ctypes.c_void_p):
            raise TypeError("cublasCreate_v2: byref() of a ctypes.c_void_p (cublasHandle_t*)")
        target.value = 0x1000 + len(self._handles)
        self._handles[target.value] = {"stream": None, "workspace": None}
        self.calls["create"] += 1
        return 0

    def cublasSetStream_v2(self, *args):
        self._typed("cublasSetStream_v2", args, [ctypes.c_void_p, ctypes.c_void_p])
        state = self._handle(args[0])
        if state is None:
            return 1
        state["stream"], state["workspace"] = args[1].value or 0, None
        self.calls["set_stream"] += 1
        return 0

    def cublasSetWorkspace_v2(self, *args):
        self._typed("cublasSetWorkspace_v2", args,
                    [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t])
        state = self._handle(args[0])
        if state is None:
            return 1
        ptr, size = args[1].value or 0, args[2].value
        if size and not ptr:
            return 7
        if size:
            _device_view(ptr, np.uint8, size, 1, size, True, "the workspace")
        state["workspace"] = (ptr, size) if size else None
        self.calls["set_workspace"] += 1
        return 0

    def _gemm(self, name, ctype, dtype, args):
        i, p = ctypes.c_int, ctypes.c_void_p
        self._typed(name, args, [p, i, i, i, i, i, "ref", p, i, p, i, "ref", p, i])
        handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = args
        state = self._handle(handle)
        if state is None:
            return 1
        if not (isinstance(alpha._obj, ctype) and isinstance(beta._obj, ctype)):
            raise TypeError(f"{name}: alpha and beta must be byref({ctype.__name__}) (host "
                            "pointer mode)")
        ta, tb, m, n, k = ta.value, tb.value, m.value, n.value, k.value
        lda, ldb, ldc = lda.value, ldb.value, ldc.value
        if ta not in (0, 1) or tb not in (0, 1) or min(m, n, k) < 0:
            return 7
        a_rows, b_rows = (k if ta else m), (n if tb else k)
        if lda < max(1, a_rows) or ldb < max(1, b_rows) or ldc < max(1, m):
            return 7
        current = _streams[-1]
        if state["stream"] != current.ptr:
            message = (f"{name} on a handle bound to stream {state['stream']} while {current} "
                       "is current: cublasSetStream_v2 it to the current stream first")
            _refuse(message) if _capture is not None else None
            raise RuntimeError(message)
        if _capture is not None and state["workspace"] is None:
            _refuse(f"{name} during capture without cublasSetWorkspace_v2: cuBLAS would "
                    "allocate its workspace; set one before capture")
        self.calls["gemm"] += 1
        if m == 0 or n == 0:
            return 0
        a_cols, b_cols = (m if ta else k), (k if tb else n)
        va = _device_view(a.value or 0, dtype, a_rows, a_cols, lda, False, f"{name}'s A")
        vb = _device_view(b.value or 0, dtype, b_rows, b_cols, ldb, False, f"{name}'s B")
        vc = _device_view(c.value or 0, dtype, m, n, ldc, True, f"{name}'s C")
        _issue(name, _gemm_numpy, (va, vb, vc, ta, tb, alpha._obj.value, beta._obj.value))
        return 0

    def cublasSgemm_v2(self, *args):
        return self._gemm("cublasSgemm_v2", ctypes.c_float, np.float32, args)

    def cublasDgemm_v2(self, *args):
        return self._gemm("cublasDgemm_v2", ctypes.c_double, np.float64, args)


_cublas = None


def cublas_library():
    """The fake libcublas (one per process, as a loaded library is)."""
    global _cublas
    if _cublas is None:
        _cublas = _FakeCublas()
    return _cublas


cuda = types.SimpleNamespace(
    Stream=Stream, Graph=Graph, Device=Device, MemoryPool=MemoryPool,
    using_allocator=using_allocator, cublas_library=cublas_library,
    get_current_stream=lambda: _streams[-1], is_available=lambda: True,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))


# -- kernels -------------------------------------------------------------------------------------

_CTYPES = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64}
_DECL = re.compile(r'(template\s*<\s*typename\s+T\s*>\s*)?(extern\s+"C"\s+)?'
                   r'__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


def _declarations(source):
    """``{kernel: (templated, extern_c, [(ctype, name), ...])}`` of one-line declarations."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    kernels, lines = {}, [line.split("//")[0] for line in source.splitlines()]
    for n, line in enumerate(lines):
        if "__global__" not in line:
            continue
        m = _DECL.search(line)
        if m is None or (n and re.fullmatch(r"\s*template\s*<.*>\s*", lines[n - 1])):
            raise ValueError("declare each kernel on one line (`template <typename T> __global__ "
                             "void name(T* x, int n)` or `extern \"C\" __global__ ...`): "
                             f"{line.strip()!r}")
        templated, extern_c, name, params = m.groups()
        decl = []
        for p in filter(None, (s.strip() for s in params.split(","))):
            m = re.fullmatch(r"(.+?)\s*(\w+)", p.replace("__restrict__", ""))
            ctype = re.sub(r"\s*\*", "*", " ".join(m[1].split())) if m else p
            base = ctype.removeprefix("const ").removesuffix("*")
            if not m or not (base in _CTYPES or (base == "T" and templated)) or (
                    ctype.startswith("const ") and not ctype.endswith("*")):
                raise ValueError(f"kernel {name}: fakecupy cannot check parameter `{p}`")
            decl.append((ctype, m[2]))
        kernels[name] = (bool(templated), bool(extern_c), decl)
    return kernels


def _describe(arg):
    if isinstance(arg, ndarray):
        layout = "" if arg.flags.c_contiguous else "non-contiguous "
        return f"a {layout}{arg.dtype} cupy array of shape {arg.shape}"
    if isinstance(arg, np.ndarray):
        return "a numpy.ndarray (host memory: upload it with cp.asarray first)"
    if isinstance(arg, np.generic):
        return f"a numpy.{type(arg).__name__}"
    passed = {bool: "bool", int: "long long", float: "double"}.get(type(arg))
    return f"a Python {type(arg).__name__}" + (
        f", which CuPy passes as a {passed}" if passed else "")


class _Kernel:
    """A kernel from :meth:`RawModule.get_function`: ``kernel(grid, block, args)``."""

    def __init__(self, name, params, t, twin):
        self.name, self._params, self._t, self._twin = name, params, t, twin

    def _dims(self, what, dims):
        dims = dims if isinstance(dims, tuple) else (dims,)
        ints = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                   for d in dims)
        if not (ints and 1 <= len(dims) <= 3) or (what == "block" and math.prod(dims) > 1024):
            raise ValueError(f"kernel {self.name}: {what} must be 1 to 3 positive ints"
                             f"{' (at most 1024 threads)' if what == 'block' else ''}, "
                             f"got {dims!r}")

    def _argument(self, i, ctype, pname, arg):
        base = ctype.removeprefix("const ").removesuffix("*")
        want = np.dtype(self._t if base == "T" else _CTYPES[base])
        where = f"kernel {self.name}: parameter {i} `{ctype} {pname}`"
        if ctype.endswith("*"):
            if not (isinstance(arg, ndarray) and arg.dtype == want and arg.flags.c_contiguous):
                raise TypeError(f"{where} needs a C-contiguous {want} cupy array, "
                                f"got {_describe(arg)}")
            if not ctype.startswith("const "):
                return arg._a
            a = arg._a.view()
            a.flags.writeable = False  # a twin must not write what the kernel reads as const
            return a
        if not (isinstance(arg, np.generic) and arg.dtype == want):
            raise TypeError(f"{where} needs numpy.{want.type.__name__}(value), "
                            f"got {_describe(arg)}")
        return arg

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        self._dims("grid", grid)
        self._dims("block", block)
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel {self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self._params):
            raise TypeError(f"kernel {self.name} takes {len(self._params)} arguments ("
                            f"{', '.join(f'{c} {n}' for c, n in self._params)}), got {len(args)}")
        values = tuple(self._argument(i, c, n, a)
                       for i, ((c, n), a) in enumerate(zip(self._params, args)))
        _counts["launches"] += 1
        _issue(f"kernel {self.name}", self._twin, values, stream=stream)


class RawModule:
    """CUDA source compiled (here: parsed); its kernels run their NumPy twins."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False, twins=None):
        if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"RawModule: options must be a tuple of str, got {options!r}")
        if path is not None:
            with open(path) as f:
                code = f.read()
        self.code, self.options, self._twins = code, options, twins
        self.name_expressions = tuple(name_expressions or ())
        self._kernels = _declarations(code)

    def get_function(self, name):
        m = re.fullmatch(r"(\w+)(?:<(.+)>)?", name)
        if not m or m[1] not in self._kernels:
            raise RuntimeError(f"RawModule.get_function({name!r}): no such kernel; declared: "
                               f"{', '.join(self._kernels) or 'none'}")
        templated, extern_c, params = self._kernels[m[1]]
        if templated != (m[2] is not None) or (templated and m[2] not in _CTYPES):
            raise RuntimeError(f"RawModule.get_function({name!r}): {m[1]} is "
                               + (f"a template: ask for {m[1]}<float> or {m[1]}<double>"
                                  if templated else "not a template"))
        if not extern_c and name not in self.name_expressions:
            raise RuntimeError(f"RawModule.get_function({name!r}): not among name_expressions "
                               f"{self.name_expressions}, so CuPy cannot find its mangled name")
        twins = self._twins or _twins or _default_twins()
        twin = getattr(twins, m[1], None)
        if twin is None:
            raise RuntimeError(f"kernel {m[1]} has no NumPy twin in {twins.__name__}")
        return _Kernel(name, params, _CTYPES.get(m[2]), twin)


def _default_twins():
    try:
        return importlib.import_module("cuda_twins")
    except ImportError as exc:
        raise RuntimeError("kernels need their NumPy twins: tests/cuda_twins.py, or "
                           "fakecupy.set_twins(module), or RawModule(..., twins=module)") from exc
