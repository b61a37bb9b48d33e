"""The Sequential model: a stack of layers, trained by explicit backpropagation.

>>> import neuralnp as nn
>>> x, y = nn.datasets.xor()
>>> model = nn.Sequential([nn.Dense(3, activation="tanh"), nn.Dense(1, activation="tanh")], seed=0)
>>> model.compile(loss="mse", optimizer=nn.optimizers.SGD(0.1))
>>> history = model.fit(x, y, epochs=5, batch_size=4, verbose=0)
>>> model.predict(x).shape
(4, 1)
"""

import math
import numbers

import numpy as np

from . import losses, metrics as metrics_module, optimizers
from ._checks import as_float_array, as_numeric_array, cast_finite, check_positive_int
from ._registry import serialize
from .backend import check_device, resolve_dtype
from .callbacks import CallbackList, History, ProgbarLogger
from .layers import Layer, deserialize as deserialize_layer
from .layers.input import Input
from .layers.activations import Activation, Sigmoid, Softmax, output_activation, sigmoid, softmax
from .errors import TrainingDivergedError
from .parameters import FlatBuffer


def _kind(value):
    return "None" if value is None else type(value).__name__


class Sequential:
    """A linear stack of layers with one flat parameter buffer.

    ``seed`` feeds the model's ``numpy.random.Generator``, which draws the initial weights and
    every epoch's shuffle: the same seed on the same machine gives bit-identical weights and
    history. ``dtype`` is ``"float32"`` (default) or ``"float64"``.
    """

    def __init__(self, layers=None, seed=None, dtype="float32", name="sequential", device="cpu"):
        self.name = name
        self.device = check_device(device)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be None or an integer >= 0, got {seed!r}; e.g. seed=0")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}; e.g. seed=0")
        self.seed = None if seed is None else int(seed)  # a plain int: the config is JSON
        self.rng = np.random.default_rng(self.seed)
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
        shape = self.layers[-1].build_for(self.output_shape, self.dtype, self.rng)
        self.buffer = FlatBuffer([p for layer in self.layers for p in layer.parameters()], self.dtype)
        self.output_shape = shape

    def build(self, input_shape):
        """Create every layer's weights for inputs of ``input_shape`` (with or without a leading
        ``None`` batch axis) and gather them into the flat buffer."""
        self.build_layers(input_shape)
        self.buffer = FlatBuffer([p for layer in self.layers for p in layer.parameters()], self.dtype)
        self.built = True
        if self.optimizer is not None:
            self._prepare_training()

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
            shape = layer.build_for(shape, self.dtype, self.rng)
        self.output_shape = shape
        self.layers[0].need_input_grad = False

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
        loss, optimizer = losses.get(loss), optimizers.get(optimizer)
        if not isinstance(loss, losses.Loss):
            raise TypeError(f"loss must be a name such as 'mse' or 'categorical_crossentropy', a "
                            f"neuralnp.losses.Loss or its config dict; got {_kind(loss)}")
        if not isinstance(optimizer, optimizers.Optimizer):
            raise TypeError(f"optimizer must be a name such as 'adam' or 'sgd', a "
                            f"neuralnp.optimizers.Optimizer (nn.Adam(1e-3)) or its config dict; "
                            f"got {_kind(optimizer)}")
        self.loss, self.optimizer = loss, optimizer
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metric_names = list(metrics or [])
        for name in self.metric_names:
            metrics_module.get(name)  # fail now on an unknown name, not at the first fit
        if not self.built and self._declared_input_shape():
            self.build(self._declared_input_shape())
        elif self.built:
            self._prepare_training()

    def _prepare_training(self):
        """Bind the optimizer, decide on fusion and create the metric objects."""
        self.optimizer.build(self.buffer)
        last = self.layers[-1]
        act = output_activation(last)
        fused = not self.loss.from_logits and (
            (isinstance(self.loss, (losses.CategoricalCrossentropy,
                                    losses.SparseCategoricalCrossentropy))
             and isinstance(act, Softmax) and act.axis in (-1, len(self.output_shape)))
            or (isinstance(self.loss, losses.BinaryCrossentropy) and isinstance(act, Sigmoid))
        )
        last.emit_logits = False
        self._run_layers = self.layers
        self._output_fn = None
        if fused:
            self._train_loss = type(self.loss).from_config({**self.loss.get_config(),
                                                             "from_logits": True})
            self._output_fn = softmax if isinstance(act, Softmax) else sigmoid
            if last is act or isinstance(last, Activation):
                self._run_layers = self.layers[:-1]
            else:
                last.emit_logits = True
        else:
            self._train_loss = self.loss
        self._regularized = [pair for layer in self.layers for pair in layer.regularized()]
        # Metrics read probabilities; a cross-entropy from logits has computed them already.
        self._metrics_from_loss = self._output_fn is not None or (
            isinstance(self.loss, losses.CROSSENTROPIES) and self.loss.from_logits)
        units = self.output_shape[-1] if self.output_shape else 1
        self._metrics = [metrics_module.get(m, self.loss.name, units) for m in self.metric_names]
        names = [m.name for m in self._metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metrics {self.metric_names} log the same name twice "
                             f"({', '.join(duplicates)}); keep one of each")

    def _require_compiled(self, what):
        if self.optimizer is None:
            raise RuntimeError(f"call model.compile(loss=..., optimizer=...) before {what}()")

    # -- data checks ----------------------------------------------------------------------------

    def _inputs(self, x, name="x"):
        x = as_float_array(x, name, self.dtype)
        if x.ndim == 1:
            raise ValueError(f"{name} is 1-D with shape {x.shape}; pass (samples, features): "
                             "x.reshape(-1, 1) for one feature, x.reshape(1, -1) for one sample")
        if not self.built:
            declared = self._declared_input_shape()
            self.build(declared or x.shape[1:])
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"the model expects samples of shape {self.input_shape} "
                             f"({math.prod(self.input_shape)} features), {name} has "
                             f"{x.shape[1:]}; pass the same columns as in training")
        return x

    def _targets(self, y, n, name="y"):
        """``y`` in the form the loss needs: one-hot rows for categorical cross-entropy, integer
        labels for the sparse one, ``(n, units)`` columns otherwise."""
        y = as_float_array(y, name, np.float64)
        if y.shape[0] != n:
            raise ValueError(f"x has {n} samples but {name} has {y.shape[0]}; they must match")
        units = self.output_shape[-1]
        loss = self.loss
        categorical = isinstance(loss, (losses.CategoricalCrossentropy,
                                        losses.SparseCategoricalCrossentropy))
        as_labels = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and units > 1)
        if categorical and as_labels:
            labels = y.reshape(-1)
            if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= units:
                bad = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= units)][0]
                raise ValueError(
                    f"{name} holds the label {bad:g}, but the output layer has {units} units "
                    f"(classes 0..{units - 1}); give the last Dense layer one unit per class"
                )
            labels = labels.astype(np.intp)
            if isinstance(loss, losses.SparseCategoricalCrossentropy):
                return labels
            onehot = np.zeros((n, units), dtype=self.dtype)
            onehot[np.arange(n), labels] = 1
            return onehot
        if y.ndim == 1:
            y = y.reshape(n, 1)
        if y.shape[1:] != tuple(self.output_shape):
            raise ValueError(f"{name} has shape {y.shape[1:]} per sample but the model outputs "
                             f"{tuple(self.output_shape)}; match the last layer's units to y")
        if isinstance(loss, losses.SparseCategoricalCrossentropy):
            return np.argmax(y, axis=-1).astype(np.intp)  # one-hot given to the sparse loss
        if isinstance(loss, losses.BinaryCrossentropy) and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"binary cross-entropy needs {name} in [0, 1], got values from "
                             f"{y.min():g} to {y.max():g}; encode the two classes as 0 and 1")
        return cast_finite(y, name, self.dtype)  # y was checked in float64: 1e39 passed

    # -- training -------------------------------------------------------------------------------

    def fit(self, x, y, epochs=1, batch_size=32, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, sample_weight=None,
            class_weight=None, distributed=None):
        """Train for ``epochs`` passes over ``(x, y)`` in shuffled mini-batches.

        ``y`` may be integer labels or one-hot rows for the categorical losses. With
        ``validation_split`` the last fraction of the samples (before shuffling) is held out,
        as Keras does. ``class_weight`` (``{class: weight}``) multiplies each training sample's
        loss by its class's weight (and by ``sample_weight`` when given too); the training
        metrics are weighted the same way, validation is not (as in Keras). Returns a
        :class:`~neuralnp.callbacks.History`.

        ``distributed=True`` (or a :class:`~neuralnp.distributed.MPIStrategy`), on every rank of
        ``mpirun -n K``, trains data-parallel: each rank runs its shard of every global batch of
        ``batch_size`` rows, and the training is one process's up to rounding (see
        :mod:`neuralnp.distributed`).
        """
        args = (x, y, epochs, batch_size, verbose, callbacks, validation_split, validation_data,
                shuffle, initial_epoch, sample_weight, class_weight)
        if distributed is None or distributed is False:
            return self._fit(*args)
        from .distributed import MPIStrategy
        if distributed is True:
            distributed = MPIStrategy()
        elif not isinstance(distributed, MPIStrategy):
            raise TypeError(f"distributed must be True, False or an MPIStrategy, got "
                            f"{type(distributed).__name__}")
        with distributed.training(self):
            return self._fit(*args, strategy=distributed)

    def _fit(self, x, y, epochs, batch_size, verbose, callbacks, validation_split,
             validation_data, shuffle, initial_epoch, sample_weight, class_weight, strategy=None):
        self._require_compiled("fit")
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        if (isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)
                or not 0.0 <= validation_split < 1.0):
            raise ValueError(f"validation_split must be a number in [0, 1), got "
                             f"{validation_split!r}; e.g. 0.2 holds out the last 20% of x")
        x = self._inputs(x)
        y = self._targets(y, len(x))
        w = None if sample_weight is None else self._sample_weights(sample_weight, len(x))
        if class_weight is not None:
            cw = self._class_weights(class_weight, y)
            w = cw if w is None else w * cw
            if not w.any():
                raise ValueError("class_weight (times sample_weight) is all zero over y, so "
                                 "nothing would be learned; give the classes positive weights")
        validation = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            xv = self._inputs(validation_data[0], "x_val")
            validation = (xv, self._targets(validation_data[1], len(xv), "y_val"))
        elif validation_split:
            cut = int(len(x) * (1.0 - validation_split))
            if cut < 1 or cut == len(x):
                raise ValueError(f"validation_split={validation_split} leaves no training or no "
                                 f"validation samples out of {len(x)}")
            validation = (x[cut:], y[cut:])
            x, y = x[:cut], y[:cut]
            w = None if w is None else w[:cut]
        if strategy is not None:
            strategy.prepare(self, (x, y, w), validation, batch_size=batch_size, epochs=epochs,
                             initial_epoch=initial_epoch, shuffle=bool(shuffle))

        history = History()
        extra = [ProgbarLogger(epochs)] if verbose else []
        cbs = [history, *(callbacks or []), *extra]
        if strategy is not None and not strategy.is_chief:
            cbs = [cb for cb in cbs if not cb.only_chief]  # rank 0 prints and writes
        cbs = CallbackList(cbs, self)
        self.history = history
        self.stop_training = False
        n = len(x)
        # Each shuffled batch is gathered into one preallocated buffer: it stays in cache for the
        # matrix products, and no epoch-sized copy of the data is ever made.
        size = min(batch_size, n)
        xbuf = np.empty((size,) + x.shape[1:], x.dtype)
        ybuf = np.empty((size,) + y.shape[1:], y.dtype)
        wbuf = None if w is None else np.empty(size, w.dtype)
        cbs.set_params({"epochs": epochs, "steps": math.ceil(n / batch_size), "samples": n,
                        "batch_size": batch_size, "do_validation": validation is not None})
        logs = {}
        cbs.on_train_begin(logs)
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            order = self.rng.permutation(n) if shuffle else None
            for m in self._metrics:
                m.reset()
            total = 0.0
            for batch, start in enumerate(range(0, n, batch_size)):
                stop = min(start + batch_size, n)
                lo, hi = (start, stop) if strategy is None else strategy.begin_step(start, stop)
                if order is None:
                    xb, yb, wb = x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
                else:
                    # mode="clip": the rows of a permutation are in range, and the default
                    # mode="raise" gathers into a temporary and copies it to `out` (half the
                    # time of a 100-row MNIST batch)
                    rows = order[lo:hi]
                    xb = x.take(rows, axis=0, out=xbuf[:hi - lo], mode="clip")
                    yb = y.take(rows, axis=0, out=ybuf[:hi - lo], mode="clip")
                    wb = None if w is None else w.take(rows, out=wbuf[:hi - lo], mode="clip")
                try:
                    if strategy is None:
                        loss = self._train_step(xb, yb, wb)
                    else:
                        loss = self._train_step_sharded(xb, yb, wb, strategy)
                except TrainingDivergedError as exc:  # the optimizer put the weights back
                    loss = math.nan
                    self._diverged(str(exc), cbs, self.optimizer.iterations)
                    break
                if not math.isfinite(loss):
                    self._diverged(f"the loss became {loss}", cbs, self.optimizer.iterations + 1)
                    break
                total += loss * (stop - start)
                cbs.on_batch_end(batch, {"loss": loss})
            if self.stop_training and not math.isfinite(loss):
                break
            if strategy is not None:
                strategy.merge_metrics(self._metrics)
            logs = {"loss": total / n, **{m.name: m.result() for m in self._metrics}}
            if validation is not None:
                val = self._evaluate_arrays(*validation, batch_size=max(batch_size, 256),
                                            strategy=strategy)
                logs.update({f"val_{k}": v for k, v in val.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _forward(self, x, training):
        for layer in self._run_layers:
            x = layer.forward(x, training=training)
        return x

    def _train_step(self, xb, yb, wb=None):
        """Forward, loss, backward, update; returns the batch loss. A non-finite loss returns
        before the update, so the weights stay the last finite ones."""
        out = self._forward(xb, training=True)
        loss = self._train_loss.forward(out, yb, wb)
        if self._regularized:
            loss += self._penalty()
        if not math.isfinite(loss):
            return loss
        grad = self._train_loss.backward()
        for layer in reversed(self._run_layers):
            grad = layer.backward(grad)
        for param, regularizer in self._regularized:
            regularizer.add_gradient(param.value, param.grad)
        self.optimizer.step()
        probs = self._train_loss.probabilities if self._metrics_from_loss else out
        for m in self._metrics:
            m.update(yb, probs, wb)
        return loss

    def _train_step_sharded(self, xb, yb, wb, strategy):
        """:meth:`_train_step` on this rank's shard of a global batch; returns the global
        batch's loss, the same on every rank.

        The loss is a mean over the shard, so its gradient is scaled by shard rows / global rows:
        every layer then sees its part of the global batch's gradient, and one sum over the ranks
        of the flat gradient buffer is the global gradient. An empty shard (a last batch with
        fewer rows than ranks) adds nothing but still joins every collective.
        """
        count, lo, hi = strategy.batch
        rows = hi - lo
        out = self._forward(xb, training=True)
        strategy.start_loss_sum(self._train_loss.forward(out, yb, wb) * rows if rows else 0.0)
        if rows:
            grad = self._train_loss.backward()
            grad *= rows / count
        else:
            grad = np.zeros_like(out)
        for layer in reversed(self._run_layers):
            grad = layer.backward(grad)
        strategy.allreduce_gradients(self.buffer.grads)
        loss = strategy.loss_sum() / count
        if self._regularized:
            loss += self._penalty()  # the same weights on every rank: added once, after the sum
        if not math.isfinite(loss):
            return loss
        for param, regularizer in self._regularized:
            regularizer.add_gradient(param.value, param.grad)
        self.optimizer.step()
        if rows:
            probs = self._train_loss.probabilities if self._metrics_from_loss else out
            for m in self._metrics:
                m.update(yb, probs, wb)
        return loss

    def _sample_weights(self, sample_weight, n):
        w = as_float_array(sample_weight, "sample_weight", self.dtype).reshape(-1)
        if len(w) != n:
            raise ValueError(f"sample_weight has {len(w)} entries for {n} samples; give one "
                             "weight per sample")
        if (w < 0).any():
            first = int(np.argmax(w < 0))
            raise ValueError(f"sample_weight holds negative values (first {w[first]:g} at sample "
                             f"{first}); weights must be >= 0 (0 leaves a sample out)")
        if not w.any():
            raise ValueError("sample_weight is all zero, so no sample counts in the loss; give "
                             "at least one sample a positive weight")
        return w

    def _penalty(self):
        return sum(regularizer(param.value) for param, regularizer in self._regularized)

    def _diverged(self, what, callbacks, step):
        from .callbacks import TerminateOnNaN
        if any(isinstance(cb, TerminateOnNaN) for cb in callbacks.callbacks):
            print(f"TerminateOnNaN: {what} at optimizer step {step}; training stopped with the "
                  "last finite weights")
            self.stop_training = True
            return
        raise TrainingDivergedError(
            f"{what} at optimizer step {step}; the model keeps its last finite weights. Lower "
            "the learning rate or scale the inputs"
        ) from None

    def _class_weights(self, class_weight, y):
        """Per-sample weights from ``{class: weight}`` for targets in the loss's form."""
        if not isinstance(class_weight, dict):
            raise TypeError("class_weight must be a dict {class index: weight}")
        if y.ndim == 1:
            labels = y
        elif y.shape[1] == 1:
            labels = np.round(y[:, 0]).astype(np.intp)
        else:
            labels = np.argmax(y, axis=1)
        for cls, weight in class_weight.items():
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or cls < 0:
                raise ValueError(f"class_weight keys must be class indices (integers >= 0), got "
                                 f"{cls!r}; e.g. {{0: 1.0, 1: 5.0}}")
            if (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
                    or not (math.isfinite(weight) and weight >= 0)):
                raise ValueError(f"class_weight's weight for class {cls} must be a finite number "
                                 f">= 0, got {weight!r}")
        present = set(np.unique(labels).tolist())
        missing = present - set(class_weight)
        if missing:
            raise ValueError(f"class_weight has no weight for classes {sorted(missing)}; give "
                             "every class present in y a weight")
        absent = sorted(set(class_weight) - present)
        if absent:
            raise ValueError(f"class_weight names class {absent[0]}, which y does not hold (y's "
                             f"classes: {sorted(present)}); drop it from class_weight")
        table = np.zeros(labels.max() + 1, dtype=self.dtype)
        for cls, weight in class_weight.items():
            table[cls] = weight
        return table[labels]

    # -- inference ------------------------------------------------------------------------------

    def predict(self, x, batch_size=256, verbose=0):
        """Outputs for ``x`` in batches: probabilities for a softmax/sigmoid network."""
        if not self.built and self.optimizer is None:
            pass
        x = self._inputs(x)
        if self.optimizer is None:
            self._run_layers, self._output_fn = self.layers, None
        batch_size = check_positive_int(batch_size, "batch_size")
        result = np.empty((len(x), *self.output_shape), dtype=self.dtype)
        for start in range(0, len(x), batch_size):
            out = self._forward(x[start:start + batch_size], training=False)
            result[start:start + batch_size] = self._output_fn(out) if self._output_fn else out
        return result

    def evaluate(self, x, y, batch_size=256, verbose=0, return_dict=False, sample_weight=None):
        """The loss (and compiled metrics) on ``(x, y)``: a float, a list ``[loss, *metrics]``, or
        a dict with ``return_dict=True``."""
        self._require_compiled("evaluate")
        x = self._inputs(x)
        y = self._targets(y, len(x))
        w = None if sample_weight is None else self._sample_weights(sample_weight, len(x))
        logs = self._evaluate_arrays(x, y, check_positive_int(batch_size, "batch_size"), w)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def _evaluate_arrays(self, x, y, batch_size, w=None, strategy=None):
        n = len(x)
        if strategy is not None:  # each rank scores its slice; the sums are added up below
            lo, hi = strategy.shard(n)
            x, y, w = x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
        for m in self._metrics:
            m.reset()
        total = 0.0
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            wb = None if w is None else w[start:stop]
            out = self._forward(x[start:stop], training=False)
            total += self._train_loss.forward(out, y[start:stop], wb) * len(out)
            probs = self._train_loss.probabilities if self._metrics_from_loss else out
            for m in self._metrics:
                m.update(y[start:stop], probs, wb)
        if strategy is not None:
            total = strategy.sum(total)
            strategy.merge_metrics(self._metrics)
        loss = total / n + self._penalty()  # Keras reports the penalty in the loss too
        return {"loss": loss, **{m.name: m.result() for m in self._metrics}}

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
        self._require_built("weights")
        weights = list(weights)
        params = [p for layer in self.layers for p in layer.variables()]
        expected = len(params)
        if len(weights) != expected:
            raise ValueError(f"the model has {expected} weight arrays, got {len(weights)}; "
                             "pass them in get_weights() order")
        # Every array is checked (and cast) before any is written: a bad one changes nothing.
        arrays = []
        for p, w in zip(params, weights):
            name = f"weight {p.name!r}"
            w = as_numeric_array(w, name)
            if w.shape != p.shape:
                raise ValueError(f"{name} has shape {p.shape}, got an array of shape "
                                 f"{w.shape}; pass them in get_weights() order")
            arrays.append(cast_finite(w, name, self.dtype, samples=False,
                                      fix="pass finite weights (get_weights() of a model that "
                                          "has not diverged)"))
        for p, w in zip(params, arrays):
            p.value[...] = w

    def _snapshot(self):
        """A copy of every weight and state: the flat buffer in one copy, plus the states."""
        states = [p.value.copy() for layer in self.layers for p in layer.states()]
        return self.buffer.values.copy(), states

    def _restore(self, snapshot):
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
        """Move the model to ``device`` (``"cpu"``; a GPU request explains what is missing)."""
        self.device = check_device(device)
        return self

    def save(self, path):
        """Write the model to a folder, or to one zip file when ``path`` ends in ``.keras`` or
        ``.zip``: ``config.json`` + ``weights.safetensors``. ``.h5`` is refused (no HDF5)."""
        from .serialization import save_model
        save_model(self, path)
