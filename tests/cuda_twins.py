"""The CUDA kernels' CPU twins: one NumPy function per kernel of src/neuralnp/backends/kernels.cu.

Each twin has its kernel's name and parameters, in the same order: a pointer arrives as a NumPy
array (any shape: the twin reads it as the flat memory the kernel sees, and writes the kernel's
outputs into it in place), a scalar as a NumPy scalar of the declared C type. Each computes what
the kernel computes, vectorised, in the kernel's order of operations and types (sequential sums
where the kernel adds in a loop, float64 where it does), so that the float32 numbers agree with
Ops's within a few roundings (the exp/log of CUDA and NumPy may differ in the last bit).

They serve three places: tests/test_cuda_kernels.py holds every twin against Ops's reference
(which is what shows the kernels compute the reference's formulas); the CuPy stand-in runs them
in place of the compiled kernels; and so does ``benchmarks/gpu_check.py --fake``.
:func:`declarations` parses the kernels' one-line declarations, and :func:`check_arguments`
holds a launch's arguments to them.
"""

import re

import numpy as np

# The parameter types a kernel may declare (kernels.cu's header comment says why so few).
PARAM_TYPES = ("T*", "const T*", "double*", "const double*", "const long long*", "int*", "int",
               "long long", "T", "double", "float")
_DECLARATION = re.compile(r"template <typename T> __global__ void (\w+)\((.*)\)\s*\{?")
_PARAMETER = re.compile(r"(.*?[\s*])(\w+)")


def declarations(source):
    """``{kernel name: [(C type, parameter name), ...]}`` for every kernel in ``source``, read
    from its one-line ``template <typename T> __global__ void name(...)`` declaration; the
    types come back spaced as in :data:`PARAM_TYPES` (``"const T*"``). A ``__global__`` that
    is not such a line, or a type outside the list, raises ValueError."""
    kernels = {}
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("//", 1)[0].strip()
        if "__global__" not in code:
            continue
        match = _DECLARATION.fullmatch(code)
        if match is None:
            raise ValueError(f"line {number}: a kernel is declared on one line as "
                             f"`template <typename T> __global__ void name(...)`: {code!r}")
        name, params = match.groups()
        parsed = []
        for param in params.split(","):
            found = _PARAMETER.fullmatch(param.strip())
            ctype = " ".join(found.group(1).replace("*", " * ").split()).replace(" *", "*") \
                if found else None
            if ctype not in PARAM_TYPES:
                raise ValueError(f"line {number}: kernel {name}: parameter {param.strip()!r} "
                                 f"is not one of {', '.join(PARAM_TYPES)}")
            parsed.append((ctype, found.group(2)))
        kernels[name] = parsed
    return kernels


_SCALARS = {"int": np.int32, "long long": np.int64, "double": np.float64, "float": np.float32}
_POINTERS = {"double*": np.float64, "const double*": np.float64, "const long long*": np.int64,
             "int*": np.int32}


def check_arguments(kernel, params, args, dtype):
    """Raise TypeError unless ``args`` fit ``params`` (from :func:`declarations`) for the
    instantiation with ``T`` = ``dtype``: a pointer must be an array of its element type
    (C-contiguous: the kernel reads flat memory), a scalar a NumPy scalar of exactly its C type
    (a Python float would reach a ``float`` parameter as 8 bytes of double)."""
    dtype = np.dtype(dtype)
    if len(args) != len(params):
        raise TypeError(f"{kernel}: {len(args)} arguments for {len(params)} parameters")
    for (ctype, name), arg in zip(params, args):
        if ctype.endswith("*"):
            want = dtype if ctype in ("T*", "const T*") else np.dtype(_POINTERS[ctype])
            if not isinstance(arg, np.ndarray) or arg.dtype != want:
                raise TypeError(f"{kernel}: {ctype} {name} takes a {want} array, not "
                                f"{getattr(arg, 'dtype', type(arg).__name__)}")
            if not arg.flags.c_contiguous:
                raise TypeError(f"{kernel}: {ctype} {name} is not C-contiguous")
        else:
            want = dtype.type if ctype == "T" else _SCALARS[ctype]
            if type(arg) is not want:
                raise TypeError(f"{kernel}: {ctype} {name} takes a numpy.{want.__name__}, "
                                f"not {type(arg).__name__}")


# -- helpers: the flat memory a kernel sees -------------------------------------------------------

def _flat(a, size=None):
    """``a``'s memory as a plain 1-D array (a view: writes reach ``a``), its first ``size``."""
    if not a.flags.c_contiguous:
        raise ValueError("a kernel reads C-contiguous memory; this array is strided")
    flat = a.view(np.ndarray).reshape(-1)
    return flat if size is None else flat[:size]


def _shaped(a, *shape):
    """``a``'s memory seen with the shape the kernel indexes it by."""
    shape = tuple(int(s) for s in shape)
    return _flat(a, int(np.prod(shape))).reshape(shape)


def _relu(x):
    """``x <= 0 ? 0 : x``: NaN is not <= 0, so it stays."""
    return np.where(x <= 0, x.dtype.type(0), x)


def _sigmoid(x):
    """``1 / (1 + e^-x)`` in x's type; e^-x overflowing to inf gives 0, as on the GPU."""
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


def _reciprocal(x, dtype):
    """``T(1.0 / double(x))``: inf for an empty batch, as in C, where Python would raise."""
    with np.errstate(divide="ignore"):
        return np.dtype(dtype).type(np.float64(1.0) / np.float64(x))


def _log_sum_exp(z):
    """Per row: the NaN-propagating max, and log of the sum of e^(z - max) added column by
    column from 0, as the kernel's loop adds."""
    top = np.max(z, axis=1)
    s = np.zeros(z.shape[0], z.dtype)
    for j in range(z.shape[1]):
        s += np.exp(z[:, j] - top)
    return top, np.log(s)


# -- activations ----------------------------------------------------------------------------------

def bias_act(z, b, has_bias, act, rows, cols):
    x = _shaped(z, rows, cols)
    t = x + _flat(b, cols) if has_bias else x.copy()
    if act == 1:
        t = _relu(t)
    elif act == 2:
        t = _sigmoid(t)
    elif act == 3:
        t = np.tanh(t)
    x[...] = t


def act_grad(g, y, out, act, n):
    g, y, out = _flat(g, n), _flat(y, n), _flat(out, n)
    one = g.dtype.type(1)
    if act == 1:
        out[...] = g * np.where(y > 0, one, g.dtype.type(0))
    elif act == 2:
        out[...] = (one - y) * y * g
    elif act == 3:
        out[...] = (one - y * y) * g
    else:
        out[...] = g


# -- losses from logits ---------------------------------------------------------------------------

def softmax_xent(z, labels, probs, grad, row_loss, rows, cols):
    z = _shaped(z, rows, cols)
    labels = _flat(labels, rows)
    probs, grad = _shaped(probs, rows, cols), _shaped(grad, rows, cols)
    inv_n = _reciprocal(rows, z.dtype)
    top, log_s = _log_sum_exp(z)
    log_p = z - top[:, None] - log_s[:, None]
    p = np.exp(log_p)
    d = p * inv_n
    here = np.arange(cols) == labels[:, None]  # the label's column; none for a bad label
    d[here] -= inv_n
    probs[...], grad[...] = p, d
    picked = np.where(here, -log_p.astype(np.float64), 0.0).sum(axis=1)  # one term per row
    _flat(row_loss, rows)[...] = np.where(here.any(axis=1), picked, np.nan)


def softmax_xent_dense(z, y, probs, grad, row_loss, rows, cols):
    z, y = _shaped(z, rows, cols), _shaped(y, rows, cols)
    probs, grad = _shaped(probs, rows, cols), _shaped(grad, rows, cols)
    inv_n = _reciprocal(rows, z.dtype)
    top, log_s = _log_sum_exp(z)
    y_sum = np.zeros(rows, z.dtype)
    for j in range(cols):
        y_sum += y[:, j]
    log_p = z - top[:, None] - log_s[:, None]
    p = np.exp(log_p)
    terms = (y * log_p).astype(np.float64)  # y·log p in T, then added in double
    loss = np.zeros(rows)
    for j in range(cols):
        loss -= terms[:, j]
    probs[...] = p
    grad[...] = (p * y_sum[:, None] - y) * inv_n
    _flat(row_loss, rows)[...] = loss


def sigmoid_xent(z, y, probs, grad, row_loss, rows, cols):
    z, y = _shaped(z, rows, cols), _shaped(y, rows, cols)
    probs, grad = _shaped(probs, rows, cols), _shaped(grad, rows, cols)
    scale = _reciprocal(np.float64(rows) * np.float64(cols), z.dtype)
    p = _sigmoid(z)
    term = np.log1p(np.exp(-np.abs(z)))
    term += _relu(z)
    term -= z * y
    terms = term.astype(np.float64)
    loss = np.zeros(rows)
    for j in range(cols):
        loss += terms[:, j]
    probs[...] = p
    grad[...] = (p - y) * scale
    _flat(row_loss, rows)[...] = loss


# -- optimizers over the flat buffer --------------------------------------------------------------

def _count_not_finite(p, bad):
    """The kernel's ``atomicAdd(bad, count)``: adds to what ``bad[0]`` holds."""
    _flat(bad, 1)[0] += np.count_nonzero(~np.isfinite(p))


def sgd(p, g, lr, previous, keep, bad, n):
    p, g = _flat(p, n), _flat(g, n)
    if keep:
        _flat(previous, n)[...] = p
    p -= g * _flat(lr, 1)[0]
    _count_not_finite(p, bad)


def adam(p, g, m, v, vmax, use_vmax, beta_1, beta_2, one_minus_beta_1, one_minus_beta_2, eps,
         step_size, bc2_sqrt, previous, keep, bad, n):
    p, g, m, v = _flat(p, n), _flat(g, n), _flat(m, n), _flat(v, n)
    s, c = _flat(step_size, 1)[0], _flat(bc2_sqrt, 1)[0]
    m[...] = m * beta_1 + g * one_minus_beta_1
    v[...] = v * beta_2 + g * g * one_minus_beta_2
    v_hat = v
    if use_vmax:
        vmax = _flat(vmax, n)
        vmax[...] = np.maximum(vmax, v)  # NaN in either wins, as the kernel's nan_max
        v_hat = vmax
    if keep:
        _flat(previous, n)[...] = p
    p -= m / (np.sqrt(v_hat) / c + eps) * s
    _count_not_finite(p, bad)


# -- images ---------------------------------------------------------------------------------------
#
# The kernels' gathers add a pixel's contributions in row-major (p, q) order, starting from 0;
# adding whole strided slices tap by tap, in that order, makes the same sums.

def _tap(p, q, oh, ow, sh, sw):
    """The padded pixels (i·sh + p, j·sw + q) for every output (i, j), as a slice."""
    return (slice(None), slice(p, p + sh * (oh - 1) + 1, sh), slice(q, q + sw * (ow - 1) + 1, sw))


def im2col(padded, cols, n, hp, wp, c, oh, ow, kh, kw, sh, sw, dh, dw):
    padded = _shaped(padded, n, hp, wp, c)
    cols = _shaped(cols, n, oh, ow, kh, kw, c)
    for p in range(kh):
        for q in range(kw):
            cols[:, :, :, p, q] = padded[_tap(p * dh, q * dw, oh, ow, sh, sw)]


def col2im(dcols, dpadded, n, hp, wp, c, oh, ow, kh, kw, sh, sw, dh, dw):
    dcols = _shaped(dcols, n, oh, ow, kh, kw, c)
    dpadded = _shaped(dpadded, n, hp, wp, c)
    total = np.zeros_like(dpadded)
    for p in range(kh):
        for q in range(kw):
            total[_tap(p * dh, q * dw, oh, ow, sh, sw)] += dcols[:, :, :, p, q]
    dpadded[...] = total


def max_pool(padded, y, win, n, hp, wp, c, oh, ow, sh, sw, ph, pw):
    padded = _shaped(padded, n, hp, wp, c)
    y, win = _shaped(y, n, oh, ow, c), _shaped(win, n, oh, ow, c)
    best = padded[_tap(0, 0, oh, ow, sh, sw)].copy()
    winner = np.zeros(best.shape, np.int32)
    for k in range(1, ph * pw):
        x = padded[_tap(k // pw, k % pw, oh, ow, sh, sw)]
        better = (x > best) | np.isnan(x)  # strictly greater: the first maximum keeps a tie
        best[better] = x[better]
        winner[better] = k
    y[...], win[...] = best, winner


def max_pool_grad(g, win, dpadded, n, hp, wp, c, oh, ow, sh, sw, ph, pw):
    g, win = _shaped(g, n, oh, ow, c), _shaped(win, n, oh, ow, c)
    dpadded = _shaped(dpadded, n, hp, wp, c)
    total = np.zeros_like(dpadded)
    for k in range(ph * pw):
        tap = total[_tap(k // pw, k % pw, oh, ow, sh, sw)]
        np.add(tap, g, out=tap, where=win == k)  # only the winners: no inf·0 elsewhere
    dpadded[...] = total


def _counts(count, per_window, count_value, oh, ow):
    """The divisor of each window, shaped to divide (n, oh, ow, c) arrays."""
    return _shaped(count, oh, ow)[:, :, None] if per_window else count_value


def avg_pool(padded, y, count, per_window, count_value, n, hp, wp, c, oh, ow, sh, sw, ph, pw):
    padded, y = _shaped(padded, n, hp, wp, c), _shaped(y, n, oh, ow, c)
    total = padded[_tap(0, 0, oh, ow, sh, sw)].copy()
    for k in range(1, ph * pw):
        total += padded[_tap(k // pw, k % pw, oh, ow, sh, sw)]
    y[...] = total / _counts(count, per_window, count_value, oh, ow)


def avg_pool_grad(g, dpadded, count, per_window, count_value, n, hp, wp, c, oh, ow, sh, sw, ph,
                  pw):
    g, dpadded = _shaped(g, n, oh, ow, c), _shaped(dpadded, n, hp, wp, c)
    share = g / _counts(count, per_window, count_value, oh, ow)
    total = np.zeros_like(dpadded)
    for k in range(ph * pw):
        total[_tap(k // pw, k % pw, oh, ow, sh, sw)] += share
    dpadded[...] = total


def dropout_mask(mask, key, rate, bits, n):
    """``mask[i] = (u_i >= rate)``, ``u_i`` from the splitmix64 hash of the key and ``i``."""
    words = key.view(np.uint64)
    z = words[0:1] + words[1:2] * np.uint64(0xD1B54A32D192ED03) \
        + np.arange(int(n), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    u = (z >> np.uint64(64 - int(bits))).astype(mask.dtype) * mask.dtype.type(2.0 ** -int(bits))
    _flat(mask, n)[...] = u >= rate
