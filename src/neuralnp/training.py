"""The training loop, in reading order: ``prepare`` (what compile decides), then ``fit`` →
``_fit`` → ``_prepare`` (the data) → ``_run_epoch`` → ``train_step``.

One step is forward, loss, backward, update. It reads nothing back from the arrays: it writes
its loss into the epoch's :class:`EpochRecord`, and a gate there closes when a loss or an
update is not finite, after which the updates are skipped. The loop reads the record: after
each step on the CPU, where reading costs nothing, and once per epoch on a device (a GPU can
then replay the step without waiting for the host), or per step when a callback asks for each
batch's loss.

A strategy decides which rows of each batch this process runs and combines what the processes
computed; :class:`LocalStrategy` is one process on its own, where every hook does nothing, and
:class:`~neuralnp.distributed.MPIStrategy` fills the same hooks with MPI collectives.
"""

import contextlib
import math

import numpy as np

from . import metrics
from ._checks import check_fraction, check_positive_int, class_weights, sample_weights
from .callbacks import CallbackList, History, ProgbarLogger
from .errors import TrainingDivergedError, refused_update
from .layers.activations import Activation, Softmax, output_activation
from .losses import CROSSENTROPIES


class LocalStrategy:
    """One process training alone: the hooks of a data-parallel strategy, doing nothing."""

    is_chief = True

    def prepare(self, model, arrays, validation, **settings):
        """Check agreement and broadcast the starting state (nothing to agree with here)."""

    def begin_step(self, start, stop):
        """The rows of the global batch ``[start, stop)`` this process runs: all of them."""
        return start, stop

    def start_loss_mean(self, loss, rows, count):
        """Begin combining this process's batch loss ``loss[0]`` (a mean over ``rows`` of
        ``count``)."""

    def reduce_gradients(self, grads):
        """Sum the flat gradient buffer over the processes (one process: it already is)."""

    def loss_mean(self, loss):
        """``loss[0] ←`` the global batch's mean loss, the same in every process (one process:
        it already is)."""

    def merge_metrics(self, metrics):
        """Combine the processes' metric states before they are read."""

    def shard(self, n):
        """The rows of an ``n``-row evaluation this process scores: all of them."""
        return 0, n

    def sum(self, value):
        """``value`` summed over the processes."""
        return value


def prepare(model):
    """Bind the optimizer and decide how the model trains: when the loss takes over the final
    softmax or sigmoid (reading logits), that activation is skipped in training (the last
    layer emits logits) and applied by ``predict``; and which metrics read what."""
    model.optimizer.build(model.buffer, model.ops)
    last = model.layers[-1]
    act = output_activation(last)
    fused = model.loss.fused(act, model.output_shape)
    last.emit_logits = False
    model._run_layers, model._output_fn, model._train_loss = model.layers, None, model.loss
    if fused is not None:
        model._train_loss = fused
        model._output_fn = "softmax" if isinstance(act, Softmax) else "sigmoid"
        if last is act or isinstance(last, Activation):
            model._run_layers = model.layers[:-1]
        else:
            last.emit_logits = True
    model._train_loss.build(model.ops)
    model._regularized = [pair for layer in model.layers for pair in layer.regularized()]
    model._penalties = model.ops.xp.zeros(2)  # the total and one term of _add_penalty
    # Metrics read probabilities; a cross-entropy from logits has computed them already.
    model._metrics_from_loss = model._output_fn is not None or (
        isinstance(model.loss, CROSSENTROPIES) and model.loss.from_logits)
    units = model.output_shape[-1] if model.output_shape else 1
    model._metrics = metrics.get_all(model.metric_names, model.loss.name, units)


def fit(model, x, y, *, distributed=None, **settings):
    """Train ``model`` (see :meth:`Sequential.fit`); returns its :class:`History`."""
    if distributed is None or distributed is False:
        return _fit(model, x, y, LocalStrategy(), **settings)
    from .distributed import MPIStrategy
    if distributed is True:
        distributed = MPIStrategy()
    elif not isinstance(distributed, MPIStrategy):
        raise TypeError(f"distributed must be True, False or an MPIStrategy, got "
                        f"{type(distributed).__name__}")
    with distributed.training(model):
        return _fit(model, x, y, distributed, **settings)


def _fit(model, x, y, strategy, *, epochs=1, batch_size=32, verbose=1, callbacks=None,
         validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
         sample_weight=None, class_weight=None, graphs=True):
    model._require_compiled("fit")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    arrays, validation = _prepare(model, x, y, sample_weight, class_weight, validation_split,
                                  validation_data)
    strategy.prepare(model, arrays, validation, batch_size=batch_size, epochs=epochs,
                     initial_epoch=initial_epoch, shuffle=bool(shuffle))
    if validation is not None:  # moved to the device once (on the host: nothing happens)
        validation = tuple(model.ops.to_device(a) for a in validation)
    history = History()
    cbs = [history, *(callbacks or []), *([ProgbarLogger(epochs)] if verbose else [])]
    if not strategy.is_chief:
        cbs = [cb for cb in cbs if not cb.only_chief]  # rank 0 prints and writes
    cbs = CallbackList(cbs, model)
    model.history = history
    model.stop_training = False
    n = len(arrays[0])
    steps = math.ceil(n / batch_size)
    cbs.set_params({"epochs": epochs, "steps": steps, "samples": n,
                    "batch_size": batch_size, "do_validation": validation is not None})
    logs = {}
    cbs.on_train_begin(logs)
    graphs = _graphs(model, strategy) if graphs else None
    batches = _Batches(arrays, batch_size, model.rng if shuffle else None, model.ops,
                       into_buffers=graphs is not None)
    record = EpochRecord(model.ops, steps, model.buffer.size)
    with contextlib.nullcontext() if graphs is None else graphs.run():
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            epoch_logs = _run_epoch(model, batches, record, strategy, cbs, graphs)
            if epoch_logs is None:  # diverged, and a callback chose to stop rather than raise
                break
            logs = epoch_logs
            if validation is not None:
                val = evaluate(model, *validation, batch_size=max(batch_size, 256),
                               strategy=strategy)
                logs.update({f"val_{k}": v for k, v in val.items()})
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    cbs.on_train_end(logs)
    return history


def _prepare(model, x, y, sample_weight, class_weight, validation_split, validation_data):
    """``((x, y, w), validation)`` checked, in the loss's target form, split when asked."""
    validation_split = check_fraction(validation_split, "validation_split",
                                      "e.g. 0.2 holds out the last 20% of x")
    x = model._inputs(x)
    y = model._targets(y, len(x))
    w = None if sample_weight is None else sample_weights(sample_weight, len(x), model.dtype)
    if class_weight is not None:
        cw = class_weights(class_weight, y, model.dtype)
        w = cw if w is None else w * cw
        if not w.any():
            raise ValueError("class_weight (times sample_weight) is all zero over y, so "
                             "nothing would be learned; give the classes positive weights")
    validation = None
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        xv = model._inputs(validation_data[0], "x_val")
        validation = (xv, model._targets(validation_data[1], len(xv), "y_val"))
    elif validation_split:
        cut = int(len(x) * (1.0 - validation_split))
        if cut < 1 or cut == len(x):
            raise ValueError(f"validation_split={validation_split} leaves no training or no "
                             f"validation samples out of {len(x)}")
        validation = (x[cut:], y[cut:])
        x, y, w = x[:cut], y[:cut], None if w is None else w[:cut]
    return (x, y, w), validation


class _Batches:
    """Each epoch's batches, gathered from a fresh permutation (drawn from the model's
    generator) into buffers made once: a batch stays in cache for the matrix products, and no
    epoch-sized copy of the data is ever made."""

    def __init__(self, arrays, batch_size, rng, ops, into_buffers=False):
        # On a device the data moves there once (on the host this copies nothing)
        self.arrays = [None if a is None else ops.to_device(a) for a in arrays]
        self.batch_size, self.rng, self.ops = batch_size, rng, ops
        self.take_rows = ops.take_rows
        self.n = n = len(arrays[0])
        size = min(batch_size, n)
        self.buffers = [None if a is None else ops.xp.empty((size,) + a.shape[1:], a.dtype)
                        for a in arrays]
        # The number of rows of each batch of an epoch
        self.counts = [min(batch_size, n - start) for start in range(0, n, batch_size)]
        # A replayed graph reads the buffers: then unshuffled batches are copied there too
        self.in_order = ops.to_device(np.arange(n)) if into_buffers else None

    def epoch(self, strategy):
        """``(batch index, global rows, x, y, w)`` of this process's rows, for one epoch
        (``w`` None without weights)."""
        (x, y, w), (xbuf, ybuf, wbuf), take = self.arrays, self.buffers, self.take_rows
        order = self.in_order if self.rng is None else \
            self.ops.to_device(self.rng.permutation(self.n))
        for batch, start in enumerate(range(0, self.n, self.batch_size)):
            stop = min(start + self.batch_size, self.n)
            lo, hi = strategy.begin_step(start, stop)
            if order is None:
                yield batch, stop - start, x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
                continue
            rows, k = order[lo:hi], hi - lo
            yield (batch, stop - start, take(x, rows, xbuf[:k]), take(y, rows, ybuf[:k]),
                   None if w is None else take(w, rows, wbuf[:k]))


class EpochRecord:
    """What the steps of an epoch write for the loop to read, in one float64 array so that a
    device hands it back in one copy: ``gate`` (1 while every step so far was finite), ``bad``
    (how many weights a refused update made NaN or infinite), ``updates`` (the updates made,
    counted on a device) and each batch's loss in ``losses``."""

    def __init__(self, ops, steps, weights):
        self.ops, self.weights = ops, weights
        self.values = ops.xp.zeros(3 + steps)
        self.gate, self.bad, self.updates = (self.values[i:i + 1] for i in range(3))
        self.losses = self.values[3:]
        self.slots = [self.losses[i:i + 1] for i in range(steps)]  # each step's, made once

    def begin(self):
        self.gate.fill(1.0)
        self.bad.fill(0.0)
        self.updates.fill(0.0)

    def count_update(self):
        """On a device: ``updates += gate`` after a step (the host counts its own)."""
        self.ops.xp.add(self.updates, self.gate, out=self.updates)

    def problem(self, values, step):
        """Why the gate closed at batch ``step``, from the host copy ``values``."""
        loss = float(values[3 + step])
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        return refused_update(int(values[1]), self.weights)


def _graphs(model, strategy):
    """The CUDA graphs the steps replay, where the model can be captured (else None: eager)."""
    if not model.ops.can_capture or type(strategy) is not LocalStrategy:  # MPI steps talk
        return None
    from .graphs import StepGraphs, capturable
    if not capturable(model):
        return None

    def step(xb, yb, wb, count, loss, gate, bad):
        return train_step(model, xb, yb, wb, count, strategy, loss, gate, bad)
    return StepGraphs(model, step)


def _run_epoch(model, batches, record, strategy, cbs, graphs=None):
    """One pass over the batches; the epoch's logs, or None when training diverged and a
    callback (TerminateOnNaN) stopped it."""
    for m in model._metrics:
        m.reset()
    optimizer, host = model.optimizer, model.ops.reads_are_free
    record.begin()
    optimizer.plan(len(record.slots))
    begin_hooks = cbs.overrides("on_batch_begin")  # most fits have none: skip the call
    end_hooks = cbs.overrides("on_batch_end")
    slots, gate, bad, metrics = record.slots, record.gate, record.bad, model._metrics
    for batch, count, xb, yb, wb in batches.epoch(strategy):
        if begin_hooks:
            cbs.on_batch_begin(batch, {"size": count})
        if graphs is None:
            out = train_step(model, xb, yb, wb, count, strategy, slots[batch], gate, bad)
        else:
            out = graphs.step(xb, yb, wb, count, slots[batch], gate, bad)
        if metrics and len(xb):
            _update_metrics(model, yb, model._train_loss.probabilities
                            if model._metrics_from_loss else out, wb)
        if not host:
            record.count_update()
        if host or end_hooks:  # a read: free on the host, asked for by a per-batch callback
            if not gate[0]:
                return _stop(model, record, batch, cbs)
            if end_hooks:
                cbs.on_batch_end(batch, {"loss": float(record.losses[batch])})
    values = model.ops.to_host(record.values)  # on a device, the epoch's one read
    if not values[0]:
        return _stop(model, record, int(values[2]), cbs, values)
    if not host:
        optimizer.iterations += int(values[2])
    total = 0.0
    for loss, count in zip(values[3:].tolist(), batches.counts):
        total += loss * count
    strategy.merge_metrics(model._metrics)
    return {"loss": total / batches.n, **{m.name: m.result() for m in model._metrics}}


def _stop(model, record, batch, cbs, values=None):
    """The gate closed at ``batch``: the updates before it were made (the host counted them;
    a device's are added here), the rest skipped."""
    if values is None:
        values = model.ops.to_host(record.values)
    if not model.ops.reads_are_free:
        model.optimizer.iterations += int(values[2])
    return _diverged(model, record.problem(values, batch), cbs,
                     model.optimizer.iterations + 1)


def train_step(model, xb, yb, wb, count, strategy, loss, gate, bad):
    """Forward, loss, backward, update on this process's rows of a ``count``-row batch; returns
    the network's output. It writes the batch's mean loss into ``loss`` (a 1-element array) and
    reads nothing back: a non-finite loss closes ``gate`` and the update is skipped; an update
    that would make a weight NaN or infinite is undone and closes it too, ``bad[0]`` saying how
    many. Either way the weights stay the last finite ones, and a closed gate skips every later
    update. So on a GPU the step can be captured as a CUDA graph (neuralnp.graphs).

    The loss is a mean over this process's rows, so with a strategy that splits the batch its
    gradient is scaled by rows / count: every layer then sees its part of the global batch's
    gradient, and the strategy's sum of the flat gradient buffer is the global gradient. An
    empty share (a last batch with fewer rows than processes) adds nothing but still joins
    every collective.
    """
    rows = len(xb)
    loss_fn = model._train_loss
    out = model._forward(xb, training=True)
    if rows:
        loss_fn.forward(out, yb, wb, out=loss)
    else:
        loss.fill(0.0)
    strategy.start_loss_mean(loss, rows, count)
    if rows:
        grad = loss_fn.backward()
        if rows != count:
            grad *= rows / count
    else:
        grad = model.ops.xp.zeros_like(out)
    for layer in reversed(model._run_layers):
        grad = layer.backward(grad)
    strategy.reduce_gradients(model.buffer.grads)
    strategy.loss_mean(loss)
    if model._regularized:
        _add_penalty(model, loss)  # the same weights in every process: added once, after the sum
    model.ops.finite_gate(gate, loss)
    for param, regularizer in model._regularized:
        regularizer.add_gradient(param.value, param.grad)
    model.optimizer.apply(gate, bad)
    return out


def _update_metrics(model, y, probs, w):
    """Metrics count on the host: on a device this reads the batch back (a fit without metrics
    never does)."""
    if not model.ops.reads_are_free:
        host = model.ops.to_host
        y, probs, w = host(y), host(probs), None if w is None else host(w)
    for m in model._metrics:
        m.update(y, probs, w)


def _add_penalty(model, loss):
    """``loss[0] +=`` the regularizers' penalty, summed where the weights are."""
    total, term = model._penalties[0:1], model._penalties[1:2]
    total.fill(0.0)
    for param, regularizer in model._regularized:
        total += regularizer.penalty_into(param.value, term, model.ops)
    loss += total


def evaluate(model, x, y, batch_size, w=None, strategy=None):
    """The mean loss (with the regularization penalty, as Keras reports it) and the metrics over
    ``(x, y)`` in the loss's target form, in batches; with a strategy, each process scores its
    share and the sums are combined."""
    n = len(x)
    if strategy is not None:  # each rank scores its slice; the sums are added up below
        lo, hi = strategy.shard(n)
        x, y, w = x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
    for m in model._metrics:
        m.reset()
    total, device = 0.0, model.ops.to_device  # on the host, to_device is the array itself
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        yb, wb = device(y[start:stop]), None if w is None else device(w[start:stop])
        out = model._forward(device(x[start:stop]), training=False)
        total += model._train_loss.forward(out, yb, wb) * len(out)
        if model._metrics:
            _update_metrics(model, yb, model._train_loss.probabilities
                            if model._metrics_from_loss else out, wb)
    if strategy is not None:
        total = strategy.sum(total)
        strategy.merge_metrics(model._metrics)
    loss = total / n + model._penalty()  # Keras reports the penalty in the loss too
    return {"loss": loss, **{m.name: m.result() for m in model._metrics}}


def predict(model, x, batch_size):
    """The model's outputs for checked samples ``x``, ``batch_size`` rows at a time, through its
    final activation when training skips it (probabilities for a fused cross-entropy)."""
    ops = model.ops
    result = np.empty((len(x), *model.output_shape), dtype=model.dtype)  # NumPy on any device
    final = None if model._output_fn is None else getattr(ops, model._output_fn)
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        out = model._forward(ops.to_device(x[rows]), training=False)
        if ops.reads_are_free:  # straight into the result
            if final is None:
                result[rows] = out
            else:
                final(out, result[rows])
        else:
            result[rows] = ops.to_host(out if final is None else final(out, out))
    return result


def _diverged(model, what, cbs, step):
    """A callback may take over (TerminateOnNaN stops training); otherwise raise."""
    message = f"{what} at optimizer step {step}"
    if cbs.on_diverged(message):
        model.stop_training = True
        return None
    raise TrainingDivergedError(
        f"{message}; the model keeps its last finite weights. Lower the learning rate or scale "
        "the inputs") from None
