"""CupyOps: the operations of :class:`~neuralnp.backends.ops.Ops` on a CUDA GPU through CuPy.

:class:`Ops` already runs on CuPy (``xp = cupy``): every operation is written with array
functions. What it cannot do there is fuse: ``bias_act`` with a sigmoid is five passes over
memory, Adam a dozen, a cross-entropy many more, each its own kernel launch. This class runs
those chains as one kernel each, from ``kernels.cu`` beside this module (one template per
operation, compiled once with NVRTC for float and double, the first time one is needed), and
leaves everything else to :class:`Ops`. Matrix products call cuBLAS through a handle of this
object's own (``cublas.py``), bound to the current stream and a fixed workspace before any
capture, since CuPy's own cuBLAS calls cannot be captured in a graph (cupy#6290).

Each override checks its conditions (float32 or float64, every array of the same dtype, the
arrays it writes C-contiguous: a strided input is first copied into a workspace) and otherwise
calls :class:`Ops`, which computes the same formula. tests/cuda_twins.py has a NumPy twin of
every kernel, tested against :class:`Ops` on the CPU; the kernels themselves need a GPU.

Nothing here reads the device: no ``float()``, ``bool()``, ``.item()`` or ``.get()`` per call,
so that a training step can be captured as a CUDA graph and replayed. Every scalar argument is
converted to the exact C type its kernel declares (a Python float where a kernel takes ``float``
would be passed as a double, and CuPy cannot tell).
"""

import importlib.resources
import re

import numpy

from . import cublas
from .ops import Ops

# --fmad=false: a*b + c rounds twice, as in NumPy, so an Adam step gives the reference's numbers
OPTIONS = ("--std=c++14", "--fmad=false")
_C_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
_ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
_THREADS = 256  # per block, for kernels with one thread per value
_ROW_THREADS = 128  # per block, for the losses' one thread per row (batches are small)
_MAX_BLOCKS = 1 << 16  # the grid-stride loops cover any size; more blocks than this gain nothing
_i32, _i64 = numpy.int32, numpy.int64
# cuBLAS's workspace: NVIDIA's recommended size for Hopper (32 MiB), allocated once per object
CUBLAS_WORKSPACE_BYTES = 32 << 20


def kernel_source():
    """The CUDA source of every kernel (kernels.cu, shipped beside this module)."""
    return importlib.resources.files(__package__).joinpath("kernels.cu").read_text()


def kernel_names(source=None):
    """The kernels ``source`` (kernels.cu by default) declares, in order."""
    source = kernel_source() if source is None else source
    return re.findall(r"(?m)^template <typename T> __global__ void (\w+)\(", source)


class CupyOps(Ops):
    """:class:`Ops` on CuPy, with the element-wise chains of a training step as CUDA kernels."""

    name = "cuda"
    can_capture = True

    def __init__(self, cupy=None):
        if cupy is None:
            try:
                import cupy
            except ImportError as error:
                raise ImportError(
                    f"the GPU backend needs CuPy ({error}): pip install \"neuralnp[gpu]\" for "
                    "CUDA 12, or \"neuralnp[gpu13]\" for CUDA 13") from None
        super().__init__(cupy)
        self._module = None  # the compiled kernels, built on first use
        self._functions = {}
        # (p, check, count) of the latest sgd/adam with a check: keep_finite can trust that
        # count for that p, instead of counting the non-finite weights again.
        self._counted = None
        self._zero_inf = {}
        # The own cuBLAS handle, made by the first product. An array module without CUDA
        # streams (a test's NumPy in CuPy's clothes) has no cuBLAS: its products are Ops's.
        self._has_blas = hasattr(self.xp, "cuda")
        self._blas = None
        self._blas_workspace = None
        self._blas_stream = None  # the ptr of the stream the handle is bound to

    # -- launching ------------------------------------------------------------------------------

    def _kernel(self, name, dtype):
        """The compiled ``name<float>`` or ``name<double>``."""
        key = (name, dtype)
        function = self._functions.get(key)
        if function is None:
            if self._module is None:
                source = kernel_source()
                expressions = [f"{k}<{t}>" for k in kernel_names(source)
                               for t in ("float", "double")]
                self._module = self.xp.RawModule(code=source, options=OPTIONS,
                                                 name_expressions=expressions)
            function = self._functions[key] = self._module.get_function(
                f"{name}<{_C_TYPES[dtype]}>")
        return function

    def _launch(self, name, dtype, items, *args, threads=_THREADS):
        """Run kernel ``name`` for ``dtype`` with enough threads for ``items`` (at least one
        block: a launch of zero blocks is an error, and the kernel's loop does nothing)."""
        blocks = min(max(1, -(-items // threads)), _MAX_BLOCKS)
        self._kernel(name, dtype)((blocks,), (threads,), args)

    def _input(self, key, a):
        """``a`` when C-contiguous, else a copy in a workspace: a kernel reads flat memory."""
        if a.flags.c_contiguous:
            return a
        buf = self._scratch(("input", key), a.shape, a.dtype)
        self.xp.copyto(buf, a)
        return buf

    def _as(self, key, a, dtype):
        """``a`` as a C-contiguous array of ``dtype``: itself, or converted into a workspace."""
        if a.dtype == dtype and a.flags.c_contiguous:
            return a
        buf = self._scratch(("as", key), a.shape, dtype)
        self.xp.copyto(buf, a, casting="unsafe")
        return buf

    def _mean_of_rows(self, row_loss, loss, count):
        """``loss[0] ← Σ row_loss / count``, summed in float64 by a (deterministic) reduction."""
        self.xp.sum(row_loss, keepdims=True, out=loss)
        loss /= count
        return loss

    # -- matrix products ------------------------------------------------------------------------

    def _cublas_library(self):
        """libcublas through ctypes: the stand-in's fake when this runs on one, else the real."""
        fake = getattr(self.xp.cuda, "cublas_library", None)
        return fake() if fake is not None else cublas.load_library()

    def _handle(self):
        """The own cuBLAS handle, bound to the current stream (re-bound when it changed).
        Binding is a host call that must precede a capture on that stream; the graphs' eager
        warm-up step runs on the capture's stream first, so its first product binds."""
        stream = self.xp.cuda.get_current_stream()
        if self._blas_stream != stream.ptr:
            if stream.ptr and stream.is_capturing():
                raise RuntimeError(
                    "the first matrix product on a stream ran during a graph capture: run one "
                    "eagerly on that stream first, so that cuBLAS is bound to it before capture")
            if self._blas is None:
                self._blas = cublas.CuBLAS(self._cublas_library())
                with self.xp.cuda.using_allocator(
                        self.xp.get_default_memory_pool().malloc):  # not a graph's pool
                    self._blas_workspace = self.xp.empty(CUBLAS_WORKSPACE_BYTES, numpy.uint8)
            self._blas.bind(stream.ptr, self._blas_workspace.data.ptr,
                            self._blas_workspace.nbytes)
            self._blas_stream = stream.ptr
        return self._blas

    def matmul(self, a, b, out):
        """``out ← a·b`` by one cuBLAS gemm on the own handle, for 2-D float32 or float64 arrays
        of one dtype: strided views map to gemm's transposes and leading dimensions
        (:func:`cublas.matmul_args`), other layouts go through workspaces first. Anything else
        goes to :meth:`Ops.matmul` (CuPy's cuBLAS: not capturable)."""
        dtype = out.dtype
        if not (self._has_blas and dtype in _C_TYPES and a.dtype == dtype and b.dtype == dtype
                and a.ndim == b.ndim == out.ndim == 2 and a.shape[1] == b.shape[0]
                and out.shape == (a.shape[0], b.shape[1])
                and isinstance(a, self.xp.ndarray) and isinstance(b, self.xp.ndarray)
                and isinstance(out, self.xp.ndarray)):
            return super().matmul(a, b, out)
        if out.size == 0:
            return out
        if a.shape[1] == 0:  # an empty sum
            out.fill(0)
            return out
        size = dtype.itemsize
        target = out
        args = cublas.matmul_args(a.shape, a.strides, b.shape, b.strides, out.shape,
                                  out.strides, size)
        if args is None:  # workspaces for what cannot be expressed: copies of the operands
            if not cublas.operand_maps(a.shape, a.strides, size):
                a = self._input(("matmul", "a"), a)
            if not cublas.operand_maps(b.shape, b.strides, size):
                b = self._input(("matmul", "b"), b)
            if not cublas.output_maps(out.shape, out.strides, size):
                target = self._scratch(("matmul", "out"), out.shape, dtype)
            args = cublas.matmul_args(a.shape, a.strides, b.shape, b.strides, target.shape,
                                      target.strides, size)
        first, second = (b, a) if args.first == "b" else (a, b)
        self._handle().gemm(dtype, args.transa, args.transb, args.m, args.n, args.k,
                            first.data.ptr, args.lda, second.data.ptr, args.ldb,
                            target.data.ptr, args.ldc)
        if target is not out:
            self.xp.copyto(out, target)
        return out

    def matmul_for(self, inner):
        return self.matmul

    def sum_squares(self, x, out):
        """``out[0] ← Σ x²`` as a 1×n by n×1 gemm on the own handle (``xp.dot`` is CuPy's
        cuBLAS, not capturable); :meth:`Ops.sum_squares` for other arrays."""
        if not (self._has_blas and x.ndim == 1 and x.size and x.dtype in _C_TYPES and out.dtype == x.dtype
                and out.size == 1 and isinstance(x, self.xp.ndarray)):
            return super().sum_squares(x, out)
        x = self._input("sum_squares", x)
        self.matmul(x.reshape(1, x.size), x.reshape(x.size, 1), out.reshape(1, 1))
        return out

    # -- activations ----------------------------------------------------------------------------

    def bias_act(self, z, b, act):
        if not (act in _ACT_CODES and _writable(z) and z.ndim and z.size
                and (b is None or (b.dtype == z.dtype and b.shape == z.shape[-1:]))):
            return super().bias_act(z, b, act)
        cols = z.shape[-1]
        bias = z if b is None else self._input("b", b)  # z stands in for an absent bias: unread
        self._launch("bias_act", z.dtype, z.size, z, bias, _i32(b is not None),
                     _i32(_ACT_CODES[act]), _i64(z.size // cols), _i64(cols))
        return z

    def act_grad(self, g, y, act, out, bias_grad=None):
        if not (act in _ACT_CODES and _writable(out) and g.dtype == y.dtype == out.dtype
                and g.shape == y.shape == out.shape):
            return super().act_grad(g, y, act, out, bias_grad)
        if act == "linear":
            dz = g  # f' = 1: the gradient is g itself, as in Ops
        else:
            self._launch("act_grad", g.dtype, g.size, self._input("g", g), self._input("y", y),
                         out, _i32(_ACT_CODES[act]), _i64(g.size))
            dz = out
        if bias_grad is not None:
            self.xp.sum(dz, axis=0, out=bias_grad)
        return dz

    # -- losses from logits ---------------------------------------------------------------------

    def _loss_fits(self, z, probs, grad, loss, *targets):
        return (_writable(probs, grad) and z.ndim == 2 and z.shape == probs.shape == grad.shape
                and z.dtype == probs.dtype and all(t.dtype == z.dtype for t in targets)
                and all(t.shape == z.shape for t in targets) and _is_loss(loss))

    def softmax_xent(self, z, labels, probs, grad, loss):
        if not (self._loss_fits(z, probs, grad, loss) and labels.shape == z.shape[:1]
                and labels.dtype.kind in "iu"):
            return super().softmax_xent(z, labels, probs, grad, loss)
        rows, cols = z.shape
        row_loss = self._scratch("row_loss", (rows,), numpy.float64)
        self._launch("softmax_xent", z.dtype, rows, self._input("z", z),
                     self._as("labels", labels, numpy.int64), probs, grad, row_loss,
                     _i64(rows), _i64(cols), threads=_ROW_THREADS)
        self._mean_of_rows(row_loss, loss, rows)
        return probs, grad, loss

    def softmax_xent_dense(self, z, y, probs, grad, loss):
        if not self._loss_fits(z, probs, grad, loss, y):
            return super().softmax_xent_dense(z, y, probs, grad, loss)
        rows, cols = z.shape
        row_loss = self._scratch("row_loss", (rows,), numpy.float64)
        self._launch("softmax_xent_dense", z.dtype, rows, self._input("z", z),
                     self._input("y", y), probs, grad, row_loss, _i64(rows), _i64(cols),
                     threads=_ROW_THREADS)
        self._mean_of_rows(row_loss, loss, rows)
        return probs, grad, loss

    def sigmoid_xent(self, z, y, probs, grad, loss):
        if not self._loss_fits(z, probs, grad, loss, y):
            return super().sigmoid_xent(z, y, probs, grad, loss)
        rows, cols = z.shape
        row_loss = self._scratch("row_loss", (rows,), numpy.float64)
        self._launch("sigmoid_xent", z.dtype, rows, self._input("z", z), self._input("y", y),
                     probs, grad, row_loss, _i64(rows), _i64(cols), threads=_ROW_THREADS)
        self._mean_of_rows(row_loss, loss, z.size)
        return probs, grad, loss

    # -- optimizers over the flat buffer --------------------------------------------------------

    def _update_fits(self, p, g, numbers, state, check):
        return (_writable(p, *state) and p.ndim == 1 and g.shape == p.shape
                and g.dtype == p.dtype and all(a.shape == p.shape for a in state)
                and all(a.dtype == p.dtype and a.size == 1 for a in numbers)
                and (check is None or (check.shape == (1,) and check.dtype.kind == "f")))

    def _count(self):
        """The kernel's count of non-finite weights, zeroed for the next update."""
        count = self._scratch("count", (1,), numpy.int32)
        count.fill(0)
        return count

    def _after_update(self, p, check, count):
        """``check[0] ← 0`` when the update made no weight NaN or infinite, ``inf`` otherwise,
        from the kernel's exact count; remembered for :meth:`keep_finite`."""
        if check is None:
            self._counted = None
            return
        xp = self.xp
        table = self._zero_inf.get(check.dtype)
        if table is None:  # uploaded once: no Python number is written per step
            table = self._zero_inf[check.dtype] = self.to_device(
                numpy.array([0.0, numpy.inf], check.dtype))
        index = self._scratch("check_index", (1,), numpy.int32)
        xp.minimum(count, 1, out=index)
        xp.take(table, index, out=check.reshape(1))
        self._counted = (p, check, count)

    def sgd(self, p, g, lr, tmp, previous=None, check=None):
        state = () if previous is None else (previous,)
        if not self._update_fits(p, g, (lr,), state, check):
            return super().sgd(p, g, lr, tmp, previous, check)
        count = self._count()
        self._launch("sgd", p.dtype, p.size, p, self._input("g", g), self._input("lr", lr),
                     p if previous is None else previous, _i32(previous is not None), count,
                     _i64(p.size))
        self._after_update(p, check, count)
        return p

    def adam(self, p, g, m, v, vmax, beta_1, beta_2, eps, step_size, bc2_sqrt, tmp,
             previous=None, check=None):
        state = tuple(a for a in (m, v, vmax, previous) if a is not None)
        if not self._update_fits(p, g, (step_size, bc2_sqrt), state, check):
            return super().adam(p, g, m, v, vmax, beta_1, beta_2, eps, step_size, bc2_sqrt, tmp,
                                previous, check)
        # The constants rounded to the weights' type from Python's doubles, as NumPy rounds
        # them: 1 - β is computed before rounding.
        t = p.dtype.type
        count = self._count()
        self._launch("adam", p.dtype, p.size, p, self._input("g", g), m, v,
                     m if vmax is None else vmax, _i32(vmax is not None), t(beta_1), t(beta_2),
                     t(1.0 - beta_1), t(1.0 - beta_2), t(eps), self._input("step", step_size),
                     self._input("bc2", bc2_sqrt), p if previous is None else previous,
                     _i32(previous is not None), count, _i64(p.size))
        self._after_update(p, check, count)
        return p

    def dropout_mask(self, mask, key, rate):
        if (mask.dtype not in _C_TYPES or not _writable(mask) or key.dtype != numpy.int64
                or not key.flags.c_contiguous):
            return super().dropout_mask(mask, key, rate)
        bits = 24 if mask.dtype == numpy.float32 else 53
        self._launch("dropout_mask", mask.dtype, mask.size, mask, key, mask.dtype.type(rate),
                     _i32(bits), _i64(mask.size))
        key[1:2] += 1  # on the device: the next draw, and the next replay, get new numbers
        return mask

    def keep_finite(self, p, previous, check, gate, bad):
        """As :meth:`Ops.keep_finite`; after :meth:`sgd` or :meth:`adam` on this ``p`` with this
        ``check`` (the latest update made, and ``p`` not changed since), it takes the kernel's
        exact count instead of counting the weights again."""
        counted, self._counted = self._counted, None
        if counted is None or counted[0] is not p or counted[1] is not check:
            return super().keep_finite(p, previous, check, gate, bad)
        xp, count = self.xp, counted[2]
        refused = self._scratch("refused", (1,), bool)
        kept = self._scratch("kept", (1,), bool)
        xp.greater(count, 0, out=refused)
        xp.logical_and(refused, gate, out=refused)  # a closed gate's update is undone anyway
        xp.copyto(bad, count, where=refused)
        xp.logical_not(refused, out=kept)
        xp.logical_and(gate, kept, out=gate)
        if previous is not None:
            xp.copyto(p, previous, where=refused)
        return gate

    # -- images ---------------------------------------------------------------------------------

    def im2col(self, padded, cols, strides, dilation):
        if not (_writable(cols) and padded.dtype == cols.dtype and padded.ndim == 4
                and cols.ndim == 6):
            return super().im2col(padded, cols, strides, dilation)
        n, hp, wp, c = padded.shape
        _, oh, ow, kh, kw, _ = cols.shape
        self._launch("im2col", cols.dtype, cols.size, self._input("padded", padded), cols,
                     _i64(n), *_ints(hp, wp, c, oh, ow, kh, kw, *strides, *dilation))
        return cols

    def col2im(self, dcols, dpadded, strides, dilation):
        if not (_writable(dpadded) and dcols.dtype == dpadded.dtype and dcols.ndim == 6
                and dpadded.ndim == 4):
            return super().col2im(dcols, dpadded, strides, dilation)
        n, hp, wp, c = dpadded.shape
        _, oh, ow, kh, kw, _ = dcols.shape
        self._launch("col2im", dpadded.dtype, dpadded.size, self._input("dcols", dcols),
                     dpadded, _i64(n), *_ints(hp, wp, c, oh, ow, kh, kw, *strides, *dilation))
        return dpadded

    def max_pool(self, padded, y, win, strides, pool):
        if not (_writable(y) and padded.dtype == y.dtype and win.shape == y.shape):
            return super().max_pool(padded, y, win, strides, pool)
        n, hp, wp, c = padded.shape
        _, oh, ow, _ = y.shape
        # The kernel writes int winners; a layer's smaller type (uint8) is filled from them.
        direct = win.dtype == numpy.int32 and win.flags.c_contiguous
        winners = win if direct else self._scratch("winners", y.shape, numpy.int32)
        self._launch("max_pool", y.dtype, y.size, self._input("padded", padded), y, winners,
                     _i64(n), *_ints(hp, wp, c, oh, ow, *strides, *pool))
        if not direct:
            self.xp.copyto(win, winners, casting="unsafe")
        return y, win

    def max_pool_grad(self, g, win, dpadded, strides, pool):
        if not (_writable(dpadded) and g.dtype == dpadded.dtype and win.shape == g.shape):
            return super().max_pool_grad(g, win, dpadded, strides, pool)
        n, hp, wp, c = dpadded.shape
        _, oh, ow, _ = g.shape
        self._launch("max_pool_grad", g.dtype, dpadded.size, self._input("g", g),
                     self._as("winners", win, numpy.int32), dpadded, _i64(n),
                     *_ints(hp, wp, c, oh, ow, *strides, *pool))
        return dpadded

    def _count_args(self, count, out, out_hw):
        """``(count array, per_window, count_value)`` for the average-pooling kernels, or None
        when ``count`` is neither a number nor an ``(oh, ow, 1)`` array on this device."""
        t = out.dtype.type
        if isinstance(count, (int, float, numpy.number)):
            return out, _i32(0), t(count)  # the output stands in for the array: unread
        if (isinstance(count, self.xp.ndarray) and count.dtype == out.dtype
                and count.size == out_hw[0] * out_hw[1] and count.shape[-1:] == (1,)):
            return self._input("count", count), _i32(1), t(0)
        return None

    def avg_pool(self, padded, y, strides, pool, count):
        counts = self._count_args(count, y, y.shape[1:3]) if y.ndim == 4 else None
        if not (counts and _writable(y) and padded.dtype == y.dtype):
            return super().avg_pool(padded, y, strides, pool, count)
        n, hp, wp, c = padded.shape
        _, oh, ow, _ = y.shape
        self._launch("avg_pool", y.dtype, y.size, self._input("padded", padded), y, *counts,
                     _i64(n), *_ints(hp, wp, c, oh, ow, *strides, *pool))
        return y

    def avg_pool_grad(self, g, dpadded, strides, pool, count):
        counts = self._count_args(count, dpadded, g.shape[1:3]) if g.ndim == 4 else None
        if not (counts and _writable(dpadded) and g.dtype == dpadded.dtype):
            return super().avg_pool_grad(g, dpadded, strides, pool, count)
        n, hp, wp, c = dpadded.shape
        _, oh, ow, _ = g.shape
        self._launch("avg_pool_grad", g.dtype, dpadded.size, self._input("g", g), dpadded,
                     *counts, _i64(n), *_ints(hp, wp, c, oh, ow, *strides, *pool))
        return dpadded


def _writable(*arrays):
    """Whether a kernel can write these arrays: float32 or float64, one dtype, C-contiguous."""
    dtype = arrays[0].dtype
    return dtype in _C_TYPES and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


def _is_loss(loss):
    """The 1-element float64 array the loss kernels' Python side sums the rows into."""
    return loss.dtype == numpy.float64 and loss.shape == (1,)


def _ints(*values):
    """Geometry (sizes, strides, pool) as the kernels' ``int`` parameters."""
    return [_i32(v) for v in values]
