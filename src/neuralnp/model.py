"""The Sequential model: a stack of layers, trained by explicit backpropagation.

>>> import neuralnp as nn
>>> x, y = nn.datasets.xor()
>>> model = nn.Sequential([nn.Dense(3, activation="tanh"), nn.Dense(1, activation="tanh")], seed=0)
>>> model.compile(loss="mse", optimizer=nn.optimizers.SGD(0.1))
>>> history = model.fit(x, y, epochs=5, batch_size=4, verbose=0)
>>> model.predict(x).shape
(4, 1)
"""


import numpy as np

from . import devices, losses, metrics as metrics_module, optimizers, training
from ._checks import (as_float_array, check_instance, check_positive_int, check_sample_shape,
                      check_seed, sample_weights, samples, weights_like)
from ._registry import serialize
from .backend import check_device, resolve_dtype
from .backends import ops_for_device
from .layers import Layer, deserialize as deserialize_layer
from .layers.base import LOCAL
from .layers.input import Input
from .parameters import FlatBuffer


class Sequential:
    """A linear stack of layers with one flat parameter buffer.

    ``seed`` feeds the model's ``numpy.random.Generator``, which draws the initial weights and
    every epoch's shuffle: the same seed on the same machine gives bit-identical weights and
    history. ``dtype`` is ``"float32"`` (default) or ``"float64"``.
    """

    def __init__(self, layers=None, seed=None, dtype="float32", name="sequential", device="cpu"):
        self.name = name
        self.device = check_device(device)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        # The operations its layers, loss and optimizer run, handed to them when built.
        self.ops = ops_for_device(self.device)
        self.dtype = resolve_dtype(dtype)
        self.layers = []
        self._input = None  # the sample shape nn.Input declared, when the model starts with one
        self.built = False
        self.buffer = None
        self.loss = self.optimizer = None
        self.metric_names = []
        self.history = None
        self.stop_training = False
        # JSON-serialisable notes saved with the model (the CLI keeps its preprocessing here).
        self.metadata = {}
        for layer in layers or []:
            self.add(layer)

    # -- building -------------------------------------------------------------------------------

    def add(self, layer):
        """Append ``layer`` (or take ``nn.Input(shape)`` as the first element).

        A model whose input is declared (``nn.Input`` first, or ``input_shape=`` / ``input_dim=``
        on the first layer) is built as its layers arrive, as in Keras, so ``summary()`` works
        before ``compile``. Each new layer draws its weights after the earlier layers' (which
        stay as they are), so a seed gives the weights one build of the whole stack gives.
        """
        if isinstance(layer, Input):
            if self.layers or self._input is not None:
                raise ValueError(f"{layer!r} must be the first element of the model, and only "
                                 "one; e.g. nn.Sequential([nn.Input((30,)), nn.Dense(8), ...])")
            self._input = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes layers, got {type(layer).__name__}; "
                            "e.g. nn.Dense(10) or nn.Activation('relu')")
        growing = self.optimizer is None and self._declared_input_shape() is not None
        if self.built and not growing:
            raise ValueError("the model is compiled; add every layer before compile()"
                             if self.optimizer is not None else
                             "the model is already built; add layers before the first fit, "
                             "predict or build call")
        self.layers.append(layer)
        if self.optimizer is None and self._declared_input_shape() is not None:
            try:
                self._build_added()
            except Exception:
                self.layers.pop()  # a layer that cannot take the shape leaves the model as it was
                raise

    def _build_added(self):
        """Build the model for its declared input, or (built already) only its new last layer."""
        if not self.built:
            self.build(self._declared_input_shape())
            return
        shape = self.layers[-1].build_for(self.output_shape, self.dtype, self.rng, self.ops)
        params = [p for layer in self.layers for p in layer.parameters()]
        self.buffer = FlatBuffer(params, self.dtype, self.ops)
        self.output_shape = shape

    def build(self, input_shape):
        """Create every layer's weights for inputs of ``input_shape`` (with or without a leading
        ``None`` batch axis) and gather them into the flat buffer."""
        self.build_layers(input_shape)
        params = [p for layer in self.layers for p in layer.parameters()]
        self.buffer = FlatBuffer(params, self.dtype, self.ops)
        self.built = True
        if self.optimizer is not None:
            training.prepare(self)

    def build_layers(self, input_shape):
        """Build each layer in turn for ``input_shape``, without gathering the flat buffer
        (under ``layers.base.weight_creation("shapes")`` this only works out the shapes)."""
        if not self.layers:
            raise ValueError("the model has no layers; pass a list to Sequential([...]) or add()")
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        self.input_shape = tuple(int(d) for d in shape)
        for declared in (self._input, self.layers[0].declared_input_shape):
            if declared is not None and declared != self.input_shape:
                raise ValueError(f"the model's input was declared as {declared} (nn.Input or "
                                 f"input_shape=) but is being built for {self.input_shape}; "
                                 "make the declaration and the data agree")
        for layer in self.layers:
            shape = layer.build_for(shape, self.dtype, self.rng, self.ops)
        self.output_shape = shape
        self.layers[0].need_input_grad = False

    def set_context(self, context=None):
        """Hand every layer the batch context of a data-parallel strategy (None: this process
        training alone); see ``layers.base.LocalContext``."""
        for layer in self.layers:
            layer.context = context or LOCAL

    def _declared_input_shape(self):
        """One sample's shape as ``nn.Input``, or ``input_shape=`` / ``input_dim=`` on the first
        layer, declared it; None when undeclared."""
        if self._input is not None or not self.layers:
            return self._input
        if self.layers[0].declared_input_shape is not None:
            return self.layers[0].declared_input_shape
        dim = getattr(self.layers[0], "input_dim", None)
        return None if dim is None else (dim,)

    def compile(self, loss, optimizer="adam", metrics=None):
        """Choose the loss, the optimizer and the metrics to report.

        A final softmax with (sparse) categorical cross-entropy, or a final sigmoid with binary
        cross-entropy, is fused: the loss reads the logits (stable log-sum-exp) and its gradient
        is ``p - y``; ``predict`` still returns probabilities.
        """
        self.loss = check_instance(losses.get(loss), losses.Loss, (
            "loss must be a name such as 'mse' or 'categorical_crossentropy', a "
            "neuralnp.losses.Loss or its config dict"))
        self.optimizer = check_instance(optimizers.get(optimizer), optimizers.Optimizer, (
            "optimizer must be a name such as 'adam' or 'sgd', a neuralnp.optimizers.Optimizer "
            "(nn.Adam(1e-3)) or its config dict"))
        self.metric_names = [metrics] if isinstance(metrics, str) else list(metrics or [])
        metrics_module.get_all(self.metric_names)  # fail now on a bad name, not at the first fit
        if not self.built and self._declared_input_shape():
            self.build(self._declared_input_shape())
        elif self.built:
            training.prepare(self)

    def _require_compiled(self, what):
        if self.optimizer is None:
            raise RuntimeError(f"call model.compile(loss=..., optimizer=...) before {what}()")

    # -- data checks ----------------------------------------------------------------------------

    def _inputs(self, x, name="x"):
        """``x`` checked; the first data a model sees builds it when its input was not declared."""
        x = samples(x, name, self.dtype)
        if not self.built:
            self.build(self._declared_input_shape() or x.shape[1:])
        return check_sample_shape(x, self.input_shape, name)

    def _targets(self, y, n, name="y"):
        """``y`` checked and in the form the loss takes (see ``Loss.prepare_targets``)."""
        y = as_float_array(y, name, np.float64)
        if y.shape[0] != n:
            raise ValueError(f"x has {n} samples but {name} has {y.shape[0]}; they must match")
        return self.loss.prepare_targets(y, self.output_shape, self.dtype, name)

    # -- training -------------------------------------------------------------------------------

    def fit(self, x, y, epochs=1, batch_size=32, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, sample_weight=None,
            class_weight=None, distributed=None, graphs=True):
        """Train for ``epochs`` passes over ``(x, y)`` in shuffled mini-batches.

        ``y`` may be integer labels or one-hot rows for the categorical losses. With
        ``validation_split`` the last fraction of the samples (before shuffling) is held out,
        as Keras does. ``class_weight`` (``{class: weight}``) multiplies each training sample's
        loss by its class's weight (and by ``sample_weight`` when given too); the training
        metrics are weighted the same way, validation is not (as in Keras). Returns a
        :class:`~neuralnp.callbacks.History`. ``distributed=True`` (or a
        :class:`~neuralnp.distributed.MPIStrategy`), on every rank of ``mpirun -n K``, trains
        data-parallel (see :mod:`neuralnp.distributed`). On a GPU each step is a replayed CUDA
        graph (:mod:`neuralnp.graphs`); ``graphs=False`` runs the same steps eagerly.
        """
        return training.fit(self, x, y, epochs=epochs, batch_size=batch_size, verbose=verbose,
                            callbacks=callbacks, validation_split=validation_split,
                            validation_data=validation_data, shuffle=shuffle,
                            initial_epoch=initial_epoch, sample_weight=sample_weight,
                            class_weight=class_weight, distributed=distributed, graphs=graphs)

    def _forward(self, x, training):
        for layer in self._run_layers:
            x = layer.forward(x, training=training)
        return x

    def _penalty(self):
        return sum(regularizer(param.value) for param, regularizer in self._regularized)

    # -- inference ------------------------------------------------------------------------------

    def predict(self, x, batch_size=256, verbose=0):
        """Outputs for ``x`` in batches: probabilities for a softmax/sigmoid network."""
        x = self._inputs(x)
        if self.optimizer is None:
            self._run_layers, self._output_fn = self.layers, None
        return training.predict(self, x, check_positive_int(batch_size, "batch_size"))

    def evaluate(self, x, y, batch_size=256, verbose=0, return_dict=False, sample_weight=None):
        """The loss (and compiled metrics) on ``(x, y)``: a float, a list ``[loss, *metrics]``, or
        a dict with ``return_dict=True``."""
        self._require_compiled("evaluate")
        x = self._inputs(x)
        y = self._targets(y, len(x))
        w = None if sample_weight is None else sample_weights(sample_weight, len(x), self.dtype)
        logs = training.evaluate(self, x, y, check_positive_int(batch_size, "batch_size"), w)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    # -- weights and description ----------------------------------------------------------------

    def _require_built(self, what):
        if not self.built:
            raise RuntimeError(f"the model is not built yet, so it has no {what}; call fit(), "
                               "predict() or build(input_shape) first, or declare the input: "
                               "nn.Input((n_features,)) as the first element, or input_dim= "
                               "(input_shape=) on the first layer")

    def get_weights(self):
        """Every layer's weights as NumPy arrays, in Keras's order (kernel, bias, ... per layer)."""
        self._require_built("weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Copy ``weights`` (arrays in :meth:`get_weights` order) into the model, after checking
        every one: a bad array changes nothing."""
        self._require_built("weights")
        params = [p for layer in self.layers for p in layer.variables()]
        for p, w in zip(params, weights_like(params, weights, self.dtype)):
            p.value[...] = w

    def snapshot(self):
        """A copy of every weight and state: the flat buffer in one copy, plus the states."""
        states = [p.value.copy() for layer in self.layers for p in layer.states()]
        return self.buffer.values.copy(), states

    def restore(self, snapshot):
        """Put back the weights and states of a :meth:`snapshot`."""
        values, states = snapshot
        self.buffer.values[...] = values
        for p, v in zip((p for layer in self.layers for p in layer.states()), states):
            p.value[...] = v

    def count_params(self):
        """All weights, trainable (the flat buffer) and not (running statistics)."""
        self._require_built("parameters")
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=print):
        """Print each layer's output shape and parameter count."""
        self._require_built("summary")
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                 f"{layer.count_params():,}") for layer in self.layers]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in
                  enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = "  ".join("{:<%d}" % w for w in widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(line.format("Layer (type)", "Output Shape", "Param #"))
        print_fn("-" * (sum(widths) + 4))
        for r in rows:
            print_fn(line.format(*r))
        print_fn("-" * (sum(widths) + 4))
        print_fn(f"Total params: {self.count_params():,} ({self.dtype.name})")
        print_fn(f"Trainable params: {self.buffer.size:,}")

    def get_config(self):
        config = {"name": self.name, "seed": self.seed, "dtype": self.dtype.name,
                  "layers": [serialize(layer) for layer in self.layers]}
        if self.built:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config, build=True):
        """The model ``config`` describes; built (with fresh weights) when it names an input
        shape and ``build`` is true."""
        model = cls(seed=config.get("seed"), dtype=config.get("dtype", "float32"),
                    name=config.get("name", "sequential"))
        # Not add()ed: a declared input would build the model now, and build=False (the loader
        # checking a file before it allocates) must build nothing.
        model.layers = [deserialize_layer(spec) for spec in config["layers"]]
        if build and config.get("input_shape") is not None:
            model.build(tuple(config["input_shape"]))
        return model

    def to(self, device):
        """Move the model, its optimizer state too, to ``"cpu"`` or ``"cuda"``; returns it."""
        return devices.to(self, device)

    def save(self, path):
        """Write the model to a folder, or to one zip file when ``path`` ends in ``.keras`` or
        ``.zip``: ``config.json`` + ``weights.safetensors``. ``.h5`` is refused (no HDF5)."""
        from .serialization import save_model
        save_model(self, path)
