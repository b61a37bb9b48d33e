"""Export a built model to ONNX, so that onnxruntime (or another ONNX runtime) can serve it.

The graph computes what ``model.predict`` computes, at inference: Dropout is the identity,
BatchNormalization uses its moving statistics, a final softmax or sigmoid is applied (the
output is probabilities for a classifier). Its input is named ``"input"``, shape
``(batch, *model.input_shape)`` with a free batch size, channels-last as in the library; its
output is ``"output"``, shape ``(batch, *model.output_shape)``.

How each layer becomes ONNX operators:

============================  ==============================================================
Dense                         MatMul, Add (bias), then the activation
Conv2D                        Conv (NCHW, explicit pads: TensorFlow's "same" split), activation
MaxPooling2D                  MaxPool (NCHW, explicit pads)
AveragePooling2D              AveragePool (NCHW, explicit pads, count_include_pad=0)
GlobalAveragePooling2D        ReduceSum over height and width, Div by their product
BatchNormalization            Sub moving_mean, Mul 1/sqrt(moving_variance + ε), Mul γ, Add β
LayerNormalization            ReduceMean, Sub, Mul, ReduceMean, Add ε, Sqrt, Reciprocal, Mul,
                              Mul γ, Add β (any axes, so not the trailing-axes operator)
Flatten, Reshape              Flatten(axis=1), Reshape
Dropout, Linear               nothing
ReLU, Sigmoid, Tanh, Softmax  Relu, Sigmoid, Tanh, Softmax(axis)
ArcTan                        Atan
PReLU, LeakyReLU, ELU, SELU,  PRelu, LeakyRelu, Elu, Selu, Softplus in float32; in float64
Softplus                      Where(x > 0, x, ...) and Exp/Log formulas (see below)
GELU                          Gelu from opset 20; before, x·½(1 + Erf(x/√2)) or the tanh form
SiLU (swish)                  Mul(x, Sigmoid(x))
BinaryStep                    Cast(GreaterOrEqual(x, 0))
============================  ==============================================================

ONNX's Conv and pooling are channels-first: the graph transposes to NCHW at the first of them
and back only where the order of the values matters (Flatten, Reshape, Dense, the output).
Layers in between run in NCHW with their constants and axes moved to match, so a CNN of
Conv → BatchNormalization → ReLU → MaxPool blocks has one transpose in and one out.

onnxruntime has no float64 kernel for PRelu, LeakyRelu, Elu, Selu, Softplus, Atan, Erf, Conv and
AveragePool: a float64 model writes the first five as formulas of operators it does have, and
refuses the others with an error that says to pass ``dtype="float32"``.
"""

from pathlib import Path

import numpy as np

from .layers import activations as act
from .layers.base import Layer as _Layer
from .layers.conv import Conv2D
from .layers.dense import Dense
from .layers.dropout import Dropout
from .layers.normalization import BatchNormalization, LayerNormalization
from .layers.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .layers.reshape import Flatten, Reshape
from ._checks import is_int

# 13: Softmax over one axis and ReduceSum's axes as an input start there.
MIN_OPSET = 13
DEFAULT_OPSET = 17


def export(model, path, opset=DEFAULT_OPSET, dtype=None):
    """Write ``model`` to ``path`` as an ONNX file; returns the ``onnx.ModelProto``.

    ``model`` is a built :class:`~neuralnp.Sequential`, or a fitted scikit-learn-style estimator
    whose ``model_`` attribute holds one (``neuralnp.sklearn.MLPClassifier`` after ``fit``):
    the graph then outputs ``model_.predict(x)``, the network's own output, so a classifier
    gives its probabilities (one sigmoid column for two classes). ``opset`` is the ONNX
    operator set, from 13 to the installed onnx's newest (17, the default, runs on
    onnxruntime 1.13 and later). ``dtype`` is the graph's float type, the model's by default;
    ``"float32"`` exports a float64 model's weights rounded to float32.

    The input is ``"input"``, ``(batch, *model.input_shape)``; the output is ``"output"``,
    ``(batch, *model.output_shape)``. The file is checked with ``onnx.checker`` and written
    atomically (a failure leaves an existing file as it was).

    >>> import neuralnp as nn, numpy as np, onnxruntime as ort
    >>> model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2, activation="softmax")])
    >>> model.build((3,))
    >>> _ = export(model, "model.onnx")
    >>> x = np.ones((5, 3), dtype="float32")
    >>> session = ort.InferenceSession("model.onnx")
    >>> np.allclose(session.run(None, {"input": x})[0], model.predict(x), rtol=1e-5)
    True
    """
    try:
        import onnx
    except ImportError:
        raise ImportError('exporting to ONNX needs the onnx package: pip install "neuralnp[onnx]"'
                          ) from None
    from ._version import __version__
    from .backend import resolve_dtype

    model = _sequential(model)
    newest = onnx.defs.onnx_opset_version()
    if not is_int(opset) or not (
            MIN_OPSET <= opset <= newest):
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest "
                         f"the installed onnx knows), got {opset!r}; {DEFAULT_OPSET}, the "
                         "default, runs on onnxruntime 1.13 and later")
    dtype = model.dtype if dtype is None else resolve_dtype(dtype)

    g = _Graph(onnx, dtype, int(opset))
    x = "input"
    for layer in model.layers:
        convert = _LAYERS.get(type(layer))
        if convert is None:
            known = sorted(c.__name__ for c in _LAYERS)
            raise TypeError(f"layer {layer.name!r} of type {type(layer).__name__} has no ONNX "
                            f"export; the exportable layers are {', '.join(known)}. Replace it, "
                            "or give it a converter: neuralnp.onnx.register_converter("
                            f"{type(layer).__name__}, convert)")
        g.scope = layer.name
        x = convert(g, layer, x)
    x = g.to_nhwc(x)

    helper = onnx.helper
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        g.finish(x, "output"), model.name,
        [helper.make_tensor_value_info("input", elem, ["batch", *model.input_shape])],
        [helper.make_tensor_value_info("output", elem, ["batch", *model.output_shape])],
        g.initializers)
    opsets = [helper.make_opsetid("", int(opset))]
    proto = helper.make_model(
        graph, opset_imports=opsets, producer_name="neuralnp", producer_version=__version__,
        # The oldest IR version that carries this opset, so older runtimes load the file too.
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=f"neuralnp Sequential {model.name!r}: output = model.predict(input); "
                   "images are channels-last (batch, height, width, channels)")
    onnx.checker.check_model(proto, full_check=True)

    from ._files import atomic_write
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto


def _sequential(model):
    """The Sequential to export: ``model`` itself or an estimator's ``model_``, built."""
    from .model import Sequential
    if not isinstance(model, Sequential):
        inner = getattr(model, "model_", None)
        if isinstance(inner, Sequential):
            model = inner
        elif hasattr(model, "fit"):
            raise ValueError(f"{type(model).__name__} is not fitted, so it has no network to "
                             "export; call fit(x, y) first")
        else:
            raise TypeError(f"export takes a neuralnp.Sequential or a fitted estimator with a "
                            f"model_ attribute, got {type(model).__name__}")
    if not model.built:
        raise ValueError("the model is not built, so its weights and shapes do not exist yet; "
                         "fit it, or call model.build(input_shape), before exporting")
    return model


class _Graph:
    """The nodes and initializers so far, and whether the current 4-D tensor is NCHW."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes, self.initializers = [], []
        self.nchw = False
        self.scope = "model"
        self._used = set()
        self._scalars = {}

    def _name(self, hint):
        name, i = f"{self.scope}/{hint}", 1
        while name in self._used:
            i += 1
            name = f"{self.scope}/{hint}_{i}"
        self._used.add(name)
        return name

    def const(self, value, hint, dtype=None):
        """An initializer holding ``value`` in the graph's float type (or ``dtype``)."""
        name = self._name(hint)
        array = np.ascontiguousarray(value, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value):
        """A shared float scalar constant (0, 1, ½, ...), broadcast by the element-wise ops."""
        key = float(value)
        if key not in self._scalars:
            scope, self.scope = self.scope, "const"
            self._scalars[key] = self.const(value, repr(key))
            self.scope = scope
        return self._scalars[key]

    def op(self, op_type, inputs, **attrs):
        out = self._name(op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                     **attrs))
        return out

    def float32_only(self, op_type):
        if self.dtype != np.float32:
            raise ValueError(f"layer {self.scope!r} needs the ONNX operator {op_type}, which "
                             f"onnxruntime runs in float32 only, so a {self.dtype} graph would "
                             "not load there; export a float32 graph: "
                             "export(model, path, dtype='float32')")

    def here(self, array):
        """A per-sample constant shaped like a channels-last sample (``(H, W, C)`` or
        broadcastable to it), transposed to ``(C, H, W)`` while the tensor is NCHW."""
        array = np.asarray(array)
        return array.transpose(2, 0, 1) if self.nchw and array.ndim == 3 else array

    def axis(self, a, rank):
        """Channels-last axis ``a`` (counting the batch) of a rank-``rank`` tensor, in the
        current layout."""
        a = a % rank
        return (0, 2, 3, 1)[a] if self.nchw and rank == 4 else a

    def to_nchw(self, x):
        if not self.nchw:
            x = self.op("Transpose", [x], perm=[0, 3, 1, 2])
            self.nchw = True
        return x

    def to_nhwc(self, x):
        if self.nchw:
            x = self.op("Transpose", [x], perm=[0, 2, 3, 1])
            self.nchw = False
        return x

    def finish(self, x, name):
        """The nodes, the last one writing ``name`` (an Identity when no node wrote ``x``)."""
        if self.nodes and self.nodes[-1].output[0] == x:
            self.nodes[-1].output[0] = name
        else:
            self.nodes.append(self.onnx.helper.make_node("Identity", [x], [name], name=name))
        return self.nodes


# -- weighted layers --------------------------------------------------------------------------

def _dense(g, layer, x):
    x = g.op("MatMul", [x, g.const(layer.kernel.value, "kernel")])
    if layer.use_bias:
        x = g.op("Add", [x, g.const(layer.bias.value, "bias")])
    return _activation(g, layer.activation, x)


def _conv2d(g, layer, x):
    g.float32_only("Conv")
    x = g.to_nchw(x)
    inputs = [x, g.const(layer.kernel.value.transpose(3, 2, 0, 1), "kernel")]  # (F, C, kh, kw)
    if layer.use_bias:
        inputs.append(g.const(layer.bias.value, "bias"))
    x = g.op("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
             dilations=list(layer.dilation_rate), pads=_pads(layer))
    return _activation(g, layer.activation, x)


def _pads(layer):
    # ONNX wants [top, left, bottom, right]; the layer's geometry holds TensorFlow's split.
    (top, bottom), (left, right) = layer._geo.pads
    return [top, left, bottom, right]


# -- pooling ----------------------------------------------------------------------------------

def _max_pool(g, layer, x):
    x = g.to_nchw(x)
    return g.op("MaxPool", [x], kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                pads=_pads(layer))


def _average_pool(g, layer, x):
    g.float32_only("AveragePool")
    x = g.to_nchw(x)
    # count_include_pad=0 divides by the real pixels of each window, as the layer does.
    return g.op("AveragePool", [x], kernel_shape=list(layer.pool_size),
                strides=list(layer.strides), pads=_pads(layer), count_include_pad=0)


def _global_average_pool(g, layer, x):
    h, w, _ = layer.input_shape
    axes = g.const([2, 3] if g.nchw else [1, 2], "axes", np.int64)
    x = g.op("ReduceSum", [x, axes], keepdims=int(layer.keepdims))
    if not layer.keepdims:
        g.nchw = False  # (batch, channels) has no layout
    return g.op("Div", [x, g.scalar(h * w)])


# -- normalization and shapes -----------------------------------------------------------------

def _affine(g, layer, x):
    shape = layer._bshape[1:]  # the parameters' broadcast shape, without the batch axis
    if layer.scale:
        x = g.op("Mul", [x, g.const(g.here(layer.gamma.value.reshape(shape)), "gamma")])
    if layer.center:
        x = g.op("Add", [x, g.const(g.here(layer.beta.value.reshape(shape)), "beta")])
    return x


def _batch_norm(g, layer, x):
    shape = layer._bshape[1:]
    # 1/σ computed here exactly as the layer computes it at inference, in the model's dtype.
    inv_std = 1.0 / np.sqrt(layer.moving_variance.value.reshape(shape) + layer.epsilon)
    mean = layer.moving_mean.value.reshape(shape)
    x = g.op("Sub", [x, g.const(g.here(mean), "moving_mean")])
    x = g.op("Mul", [x, g.const(g.here(inv_std), "inv_std")])
    return _affine(g, layer, x)


def _reduce_mean(g, x, axes):
    if g.opset >= 18:  # axes moved from an attribute to an input
        return g.op("ReduceMean", [x, g.const(axes, "axes", np.int64)], keepdims=1)
    return g.op("ReduceMean", [x], axes=list(axes), keepdims=1)


def _layer_norm(g, layer, x):
    rank = len(layer.input_shape) + 1
    axes = sorted(g.axis(a, rank) for a in layer._axes)
    d = g.op("Sub", [x, _reduce_mean(g, x, axes)])
    var = _reduce_mean(g, g.op("Mul", [d, d]), axes)
    std = g.op("Sqrt", [g.op("Add", [var, g.scalar(layer.epsilon)])])
    x = g.op("Mul", [d, g.op("Reciprocal", [std])])
    return _affine(g, layer, x)


def _flatten(g, layer, x):
    return g.op("Flatten", [g.to_nhwc(x)], axis=1)


def _reshape(g, layer, x):
    # 0 copies the batch size from the input.
    shape = g.const([0, *layer.output_shape], "shape", np.int64)
    return g.op("Reshape", [g.to_nhwc(x), shape])


def _identity(g, layer, x):
    return x


# -- activations ------------------------------------------------------------------------------

def _activation(g, layer, x):
    """``layer`` (an activation layer, an Activation wrapper or None) applied to ``x``."""
    if isinstance(layer, act.Activation):
        layer = layer.activation
    if layer is None:
        return x
    convert = _ACTIVATIONS.get(type(layer))
    if convert is None:
        raise TypeError(f"layer {g.scope!r} applies the activation {type(layer).__name__}, which "
                        "has no ONNX export; use one of the built-in activations, or add a "
                        "converter to neuralnp/onnx.py")
    return convert(g, layer, x)


def _binary_step(g, layer, x):
    ge = g.op("GreaterOrEqual", [x, g.scalar(0)])
    return g.op("Cast", [ge], to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype))


def _arctan(g, layer, x):
    g.float32_only("Atan")
    return g.op("Atan", [x])


def _where_positive(g, x, negative):
    """``x if x > 0 else negative``: how float64 graphs write the ReLU family, since
    onnxruntime has no float64 LeakyRelu, PRelu or Elu kernel."""
    return g.op("Where", [g.op("Greater", [x, g.scalar(0)]), x, negative])


def _leaky_relu(g, layer, x):
    if g.dtype == np.float32:
        return g.op("LeakyRelu", [x], alpha=layer.negative_slope)
    return _where_positive(g, x, g.op("Mul", [g.scalar(layer.negative_slope), x]))


def _prelu(g, layer, x):
    alpha = g.const(g.here(layer.alpha.value), "alpha")
    if g.dtype == np.float32:
        return g.op("PRelu", [x, alpha])
    return _where_positive(g, x, g.op("Mul", [alpha, x]))


def _elu_formula(g, x, alpha):
    """``x if x > 0 else α(eˣ - 1)`` from operators onnxruntime runs in float64."""
    em1 = g.op("Sub", [g.op("Exp", [g.op("Min", [x, g.scalar(0)])]), g.scalar(1)])
    return _where_positive(g, x, g.op("Mul", [g.scalar(alpha), em1]))


def _elu(g, layer, x):
    if g.dtype == np.float32:
        return g.op("Elu", [x], alpha=layer.alpha)
    return _elu_formula(g, x, layer.alpha)


def _selu(g, layer, x):
    if g.dtype == np.float32:
        return g.op("Selu", [x], alpha=layer.ALPHA, gamma=layer.SCALE)
    return g.op("Mul", [g.scalar(layer.SCALE), _elu_formula(g, x, layer.ALPHA)])


def _softplus(g, layer, x):
    if g.dtype == np.float32:
        return g.op("Softplus", [x])
    # max(x, 0) + log(1 + e^-|x|), the layer's overflow-free form.
    tail = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])
    return g.op("Add", [g.op("Relu", [x]), g.op("Log", [g.op("Add", [tail, g.scalar(1)])])])


def _gelu(g, layer, x):
    if layer.approximate == "none":
        g.float32_only("Erf")
    if g.opset >= 20:
        return g.op("Gelu", [x], approximate=layer.approximate)
    half_x = g.op("Mul", [g.scalar(0.5), x])
    if layer.approximate == "tanh":
        cube = g.op("Pow", [x, g.scalar(3)])
        inner = g.op("Add", [x, g.op("Mul", [g.scalar(0.044715), cube])])
        t = g.op("Tanh", [g.op("Mul", [g.scalar(layer._K), inner])])
        return g.op("Mul", [half_x, g.op("Add", [g.scalar(1), t])])
    erf = g.op("Erf", [g.op("Div", [x, g.scalar(np.sqrt(2.0))])])
    cdf = g.op("Mul", [g.scalar(0.5), g.op("Add", [g.scalar(1), erf])])
    return g.op("Mul", [x, cdf])


def _silu(g, layer, x):
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


def _native(op_type):
    return lambda g, layer, x: g.op(op_type, [x])


_ACTIVATIONS = {
    act.Linear: _identity,
    act.BinaryStep: _binary_step,
    act.Sigmoid: _native("Sigmoid"),
    act.Tanh: _native("Tanh"),
    act.ArcTan: _arctan,
    act.ReLU: _native("Relu"),
    act.LeakyReLU: _leaky_relu,
    act.PReLU: _prelu,
    act.ELU: _elu,
    act.SELU: _selu,
    act.Softplus: _softplus,
    act.GELU: _gelu,
    act.SiLU: _silu,
    act.Softmax: lambda g, layer, x: g.op(
        "Softmax", [x], axis=g.axis(layer.axis, len(layer.input_shape) + 1)),
}

_LAYERS = {
    Dense: _dense,
    Conv2D: _conv2d,
    MaxPooling2D: _max_pool,
    AveragePooling2D: _average_pool,
    GlobalAveragePooling2D: _global_average_pool,
    BatchNormalization: _batch_norm,
    LayerNormalization: _layer_norm,
    Flatten: _flatten,
    Reshape: _reshape,
    Dropout: _identity,
    act.Activation: _activation,
    **{cls: _activation for cls in _ACTIVATIONS},
}


def register_converter(layer_class, converter=None):
    """Export layers of ``layer_class`` (your own) with ``converter(g, layer, x) -> name``.

    ``x`` is the name of the layer's input tensor; the converter adds nodes with
    ``g.op(op_type, inputs, **attributes)`` (returns the output's name) and weights with
    ``g.const(array, hint)`` (returns the initializer's name), and returns the name of the
    layer's output. Tensors are channels-last unless ``g.nchw``: call ``g.to_nhwc(x)`` first if
    the order of the values matters. Usable as a decorator:

    >>> import neuralnp as nn
    >>> class Double(nn.Layer):
    ...     def forward(self, x, training=False):
    ...         return 2 * x
    ...     def backward(self, grad_out):
    ...         return 2 * grad_out
    >>> @register_converter(Double)
    ... def _double(g, layer, x):
    ...     return g.op("Mul", [x, g.scalar(2)])
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, _Layer)):
        raise TypeError(f"register_converter takes a Layer subclass, got {layer_class!r}")
    if converter is None:
        return lambda fn: register_converter(layer_class, fn)
    if not callable(converter):
        raise TypeError(f"the converter must be a function (g, layer, x) -> name, got "
                        f"{converter!r}")
    _LAYERS[layer_class] = converter
    return converter


def has_converter(layer_class):
    """Whether :func:`export` knows how to write layers of exactly ``layer_class``."""
    return layer_class in _LAYERS
