"""The layer contract every layer follows.

A layer is built once its input shape is known, runs ``forward`` (caching what ``backward`` needs)
and ``backward`` (overwriting its parameters' gradients and returning the gradient with respect to
its input). It never updates its own weights: that is the optimizer's job.
"""

import contextlib
import contextvars
import re

import numpy as np

from .. import initializers
from ..backends import get_ops
from .._registry import Configurable
from ..backend import resolve_dtype
from ..parameters import Parameter
from .input import sample_shape


# Every Layer subclass by class name, filled as each class is defined (Layer.__init_subclass__):
# the only names a saved config may give a layer, so a file can never name arbitrary code.
REGISTRY = {}


def register_layer(cls):
    """Make ``cls`` loadable from a config under ``cls.__name__``; Layer subclasses call this
    when they are defined. Defining a class again under the same module and qualified name (a
    notebook cell run twice, a reloaded module) replaces the old one; a second, different class
    claiming a name already taken raises ValueError."""
    name = cls.__name__
    old = REGISTRY.get(name)
    if old is not None and old is not cls and _where(old) != _where(cls):
        raise ValueError(
            f"two layer classes are called {name!r}: {_where(old)} and {_where(cls)}. A saved "
            "config names a layer by its class name alone, so the name must be unique: rename "
            "one, or define the one that is never saved with `class ...(Layer, register=False)`")
    REGISTRY[name] = cls
    return cls


def _where(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


class LocalContext:
    """The batch as one process training alone sees it. A data-parallel strategy passes layers
    an object with the same members: ``distributed``, ``batch`` (global rows, this process's
    first row, its end) and ``allreduce_sum``."""

    distributed = False
    batch = None

    def allreduce_sum(self, array):
        """Sum ``array`` over the processes, in place: alone, it already is the sum."""


LOCAL = LocalContext()


class Layer(Configurable):
    """Base class: ``build`` → ``forward`` / ``backward`` → ``parameters``.

    Shapes exclude the batch axis: a Dense layer fed ``(batch, 30)`` has ``input_shape == (30,)``.
    Arrays returned by ``forward``/``backward`` may be workspaces that the next call overwrites;
    copy them if you keep them.
    """

    # What a layer may ask about the batch beyond its own rows. The model hands every layer a
    # data-parallel strategy's context for the duration of a distributed fit: layers that mix
    # the samples of a batch (Dropout's mask, BatchNormalization's statistics) read the global
    # batch from it.
    context = None  # set to LOCAL below, once the class exists
    # Whether a training step through this layer can be captured as a CUDA graph and replayed
    # (see neuralnp.graphs): not when it draws random numbers on the host, say.
    capturable = True
    declared_input_shape = None  # set by __init__; a subclass that skips it declares nothing

    def __init_subclass__(cls, register=True, **kwargs):
        """Register every subclass, so that a model holding it loads from its saved config with
        no extra call. ``class Base(Layer, register=False)`` opts out (a base class never saved
        itself); names starting with ``_`` are private helpers and are never registered."""
        super().__init_subclass__(**kwargs)
        if register and not cls.__name__.startswith("_"):
            register_layer(cls)

    def __init__(self, name=None, dtype=None, input_shape=None):
        self.name = name or _default_name(type(self).__name__)
        # Keras's input_shape=: one sample's shape, declared on the model's first layer so that
        # the model builds when made; later layers ignore it, as in Keras.
        self.declared_input_shape = (None if input_shape is None
                                     else sample_shape(input_shape, "input_shape"))
        self._dtype_arg = None if dtype is None else resolve_dtype(dtype).name
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        # The model clears this on its first layer: nobody needs dL/dx of the data.
        self.need_input_grad = True
        # Set by the model when the final activation is fused into the loss (see model.compile).
        self.emit_logits = False
        self._params = []
        self._states = []
        self._rng = None
        self._workspaces = {}

    # -- building -------------------------------------------------------------------------------

    # The operations this layer runs (see neuralnp.backends), and their array module: set by
    # build_for, so that the same layer code runs wherever its model's ops run.
    ops = xp = None

    def build_for(self, input_shape, dtype=None, rng=None, ops=None):
        """Build for ``input_shape`` (no batch axis) with the model's dtype, generator and
        :class:`~neuralnp.backends.Ops` (``get_ops()`` when None)."""
        self.ops = ops if ops is not None else get_ops()
        self.xp = self.ops.xp
        if self.dtype is None or dtype is not None:
            self.dtype = resolve_dtype(dtype or self.dtype or "float32")
        self._rng = rng if rng is not None else np.random.default_rng()
        self.input_shape = tuple(int(d) for d in input_shape)
        self._params, self._states = [], []
        self._workspaces = {}  # arrays of the previous build (another device, another shape)
        self.build(self.input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.built = True
        return self.output_shape

    def build(self, input_shape):
        """Create parameters with :meth:`add_weight`; the default layer has none."""

    def add_weight(self, name, shape, initializer):
        param = self._new_parameter(name, shape, initializer, trainable=True)
        self._params.append(param)
        return param

    def add_state(self, name, shape, initializer):
        """A non-trainable array (running statistics, say): saved and exchanged with the
        weights, but outside the flat parameter buffer, so no optimizer ever touches it."""
        state = self._new_parameter(name, shape, initializer, trainable=False)
        self._states.append(state)
        return state

    def _new_parameter(self, name, shape, initializer, trainable):
        init = initializers.get(initializer)
        shape, full_name = tuple(shape), f"{self.name}.{name}"
        mode = _WEIGHTS.get()
        if mode == "initialize":  # drawn on the host: the same weights on every device
            value = init(shape, self.dtype, self._rng)
            return Parameter(full_name, value if trainable else self.ops.to_device(value))
        # A zero-strided view of one zero: any shape, no memory. The flat buffer gives trainable
        # parameters their storage; states get theirs here, uninitialised, when filled later.
        placeholder = np.broadcast_to(np.zeros((), self.dtype), shape)
        if mode == "uninitialized" and not trainable:
            return Parameter(full_name, self.xp.empty(shape, self.dtype))
        return Parameter(full_name, placeholder, grad=placeholder)

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- running --------------------------------------------------------------------------------

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, x, training=False):
        """Build from ``x`` if needed (standalone use), then ``forward``."""
        if not self.built:
            dtype = x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else None
            self.build_for(np.shape(x)[1:], dtype=dtype)
        return self.forward(x, training=training)

    def _workspace(self, key, shape, dtype=None):
        """A cached array for ``key`` and ``shape``, so hot paths allocate once per batch size."""
        shape, dtype = tuple(shape), np.dtype(dtype or self.dtype)
        buf = self._workspaces.get((key, shape, dtype))
        if buf is None:
            buf = self.xp.empty(shape, dtype=dtype)
            self._workspaces[(key, shape, dtype)] = buf
        return buf

    # -- weights --------------------------------------------------------------------------------

    def parameters(self):
        """This layer's parameters, in Keras's weight order (e.g. kernel, then bias)."""
        return list(self._params)

    def regularized(self):
        """``(parameter, regularizer)`` pairs whose penalty the model adds to the loss."""
        return []

    def states(self):
        """Non-trainable arrays created with :meth:`add_state`."""
        return list(self._states)

    def variables(self):
        """Trainable parameters, then non-trainable states: the order of :meth:`get_weights`."""
        return self.parameters() + self.states()

    def count_params(self):
        return sum(p.size for p in self.variables())

    def own_generator(self):
        """The random generator this layer keeps apart from the model's (a seeded Dropout's),
        or None; a saved model stores its state, so a resumed fit draws what one unbroken
        fit would have drawn."""
        return None

    def get_weights(self):
        """Copies of the weights as NumPy arrays, in Keras's order and shapes."""
        host = self.ops.to_host if self.ops is not None else np.asarray  # from any device
        return [np.array(host(p.value), copy=True) for p in self.variables()]

    def set_weights(self, weights):
        """Copy ``weights`` (arrays in :meth:`get_weights` order) into the parameters in place."""
        params = self.variables()
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(
                f"layer {self.name!r} has {len(params)} weight arrays, got {len(weights)}; "
                "pass them in get_weights() order"
            )
        arrays = [np.asarray(w) for w in weights]
        # Check everything before copying anything, so a bad call leaves the layer unchanged.
        for p, w in zip(params, arrays):
            if w.shape != p.shape:
                raise ValueError(
                    f"weight {p.name!r} has shape {p.shape}, got an array of shape {w.shape}"
                )
        device = self.ops.to_device if self.ops is not None else np.asarray
        for p, w in zip(params, arrays):
            p.value[...] = device(w)

    def get_config(self):
        config = {"name": self.name}
        if self._dtype_arg is not None:
            config["dtype"] = self._dtype_arg
        if self.declared_input_shape is not None:  # only when given: older files stay the same
            config["input_shape"] = list(self.declared_input_shape)
        return config

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


_counters = {}

# How add_weight / add_state create arrays: "initialize" (draw from the initializer),
# "uninitialized" (the caller fills every weight next, as load_model does) or "shapes" (no
# memory at all: only the names and shapes are wanted, e.g. to check a file before allocating).
_WEIGHTS = contextvars.ContextVar("neuralnp_weights", default="initialize")


@contextlib.contextmanager
def weight_creation(mode):
    """Within the block, layers built create their weights as ``mode`` says (see ``_WEIGHTS``)."""
    if mode not in ("initialize", "uninitialized", "shapes"):
        raise ValueError(f"unknown weight creation mode {mode!r}")
    token = _WEIGHTS.set(mode)
    try:
        yield
    finally:
        _WEIGHTS.reset(token)


def _default_name(class_name):
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)).lower()
    _counters[snake] = _counters.get(snake, 0) + 1
    count = _counters[snake]
    return snake if count == 1 else f"{snake}_{count - 1}"


Layer.context = LOCAL
