"""The training loop, in reading order: ``prepare`` (what compile decides), then ``fit`` →
``_fit`` → ``_prepare`` (the data) → ``_run_epoch`` → ``train_step``.

One step is forward, loss, backward, update. A strategy decides which rows of each batch this
process runs and combines what the processes computed; :class:`LocalStrategy` is one process on
its own, where every hook does nothing, and :class:`~neuralnp.distributed.MPIStrategy` fills the
same hooks with MPI collectives.
"""

import math

import numpy as np

from . import metrics
from ._checks import check_fraction, check_positive_int, class_weights, sample_weights
from .callbacks import CallbackList, History, ProgbarLogger
from .errors import TrainingDivergedError
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
        """Begin combining this process's batch loss (a mean over ``rows`` of ``count``)."""
        self._loss = loss

    def reduce_gradients(self, grads):
        """Sum the flat gradient buffer over the processes (one process: it already is)."""

    def loss_mean(self):
        """The global batch's mean loss, the same in every process."""
        return self._loss

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
         sample_weight=None, class_weight=None):
    model._require_compiled("fit")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    arrays, validation = _prepare(model, x, y, sample_weight, class_weight, validation_split,
                                  validation_data)
    strategy.prepare(model, arrays, validation, batch_size=batch_size, epochs=epochs,
                     initial_epoch=initial_epoch, shuffle=bool(shuffle))
    history = History()
    cbs = [history, *(callbacks or []), *([ProgbarLogger(epochs)] if verbose else [])]
    if not strategy.is_chief:
        cbs = [cb for cb in cbs if not cb.only_chief]  # rank 0 prints and writes
    cbs = CallbackList(cbs, model)
    model.history = history
    model.stop_training = False
    n = len(arrays[0])
    cbs.set_params({"epochs": epochs, "steps": math.ceil(n / batch_size), "samples": n,
                    "batch_size": batch_size, "do_validation": validation is not None})
    logs = {}
    cbs.on_train_begin(logs)
    batches = _Batches(arrays, batch_size, model.rng if shuffle else None, model.ops)
    for epoch in range(initial_epoch, epochs):
        cbs.on_epoch_begin(epoch, {})
        epoch_logs = _run_epoch(model, batches, strategy, cbs)
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

    def __init__(self, arrays, batch_size, rng, ops):
        self.arrays, self.batch_size, self.rng = arrays, batch_size, rng
        self.take_rows = ops.take_rows
        self.n = n = len(arrays[0])
        size = min(batch_size, n)
        self.buffers = [None if a is None else np.empty((size,) + a.shape[1:], a.dtype)
                        for a in arrays]

    def epoch(self, strategy):
        """``(batch index, global rows, x, y, w)`` of this process's rows, for one epoch
        (``w`` None without weights)."""
        (x, y, w), (xbuf, ybuf, wbuf), take = self.arrays, self.buffers, self.take_rows
        order = None if self.rng is None else self.rng.permutation(self.n)
        for batch, start in enumerate(range(0, self.n, self.batch_size)):
            stop = min(start + self.batch_size, self.n)
            lo, hi = strategy.begin_step(start, stop)
            if order is None:
                yield batch, stop - start, x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
                continue
            rows, k = order[lo:hi], hi - lo
            yield (batch, stop - start, take(x, rows, xbuf[:k]), take(y, rows, ybuf[:k]),
                   None if w is None else take(w, rows, wbuf[:k]))


def _run_epoch(model, batches, strategy, cbs):
    """One pass over the batches; the epoch's logs, or None when training diverged and a
    callback (TerminateOnNaN) stopped it."""
    for m in model._metrics:
        m.reset()
    total = 0.0
    begin_hooks = cbs.overrides("on_batch_begin")  # most fits have none: skip the call
    for batch, count, xb, yb, wb in batches.epoch(strategy):
        if begin_hooks:
            cbs.on_batch_begin(batch, {"size": count})
        try:
            loss = train_step(model, xb, yb, wb, count, strategy)
        except TrainingDivergedError as exc:  # the optimizer put the weights back
            return _diverged(model, str(exc), cbs, model.optimizer.iterations)
        if not math.isfinite(loss):
            return _diverged(model, f"the loss became {loss}", cbs,
                             model.optimizer.iterations + 1)
        total += loss * count
        cbs.on_batch_end(batch, {"loss": loss})
    strategy.merge_metrics(model._metrics)
    return {"loss": total / batches.n, **{m.name: m.result() for m in model._metrics}}


def train_step(model, xb, yb, wb, count, strategy):
    """Forward, loss, backward, update on this process's rows of a ``count``-row batch; returns
    the batch's mean loss. A non-finite loss returns before the update, so the weights stay the
    last finite ones.

    The loss is a mean over this process's rows, so with a strategy that splits the batch its
    gradient is scaled by rows / count: every layer then sees its part of the global batch's
    gradient, and the strategy's sum of the flat gradient buffer is the global gradient. An
    empty share (a last batch with fewer rows than processes) adds nothing but still joins
    every collective.
    """
    rows = len(xb)
    loss_fn = model._train_loss
    out = model._forward(xb, training=True)
    strategy.start_loss_mean(loss_fn.forward(out, yb, wb) if rows else 0.0, rows, count)
    if rows:
        grad = loss_fn.backward()
        if rows != count:
            grad *= rows / count
    else:
        grad = np.zeros_like(out)
    for layer in reversed(model._run_layers):
        grad = layer.backward(grad)
    strategy.reduce_gradients(model.buffer.grads)
    loss = strategy.loss_mean()
    if model._regularized:
        loss += model._penalty()  # the same weights in every process: added once, after the sum
    if not math.isfinite(loss):
        return loss
    for param, regularizer in model._regularized:
        regularizer.add_gradient(param.value, param.grad)
    model.optimizer.step()
    if rows:
        probs = loss_fn.probabilities if model._metrics_from_loss else out
        for m in model._metrics:
            m.update(yb, probs, wb)
    return loss


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
    total = 0.0
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        wb = None if w is None else w[start:stop]
        out = model._forward(x[start:stop], training=False)
        total += model._train_loss.forward(out, y[start:stop], wb) * len(out)
        probs = model._train_loss.probabilities if model._metrics_from_loss else out
        for m in model._metrics:
            m.update(y[start:stop], probs, wb)
    if strategy is not None:
        total = strategy.sum(total)
        strategy.merge_metrics(model._metrics)
    loss = total / n + model._penalty()  # Keras reports the penalty in the loss too
    return {"loss": loss, **{m.name: m.result() for m in model._metrics}}


def predict(model, x, batch_size):
    """The model's outputs for checked samples ``x``, ``batch_size`` rows at a time, through its
    final activation when training skips it (probabilities for a fused cross-entropy)."""
    result = np.empty((len(x), *model.output_shape), dtype=model.dtype)
    final = None if model._output_fn is None else getattr(model.ops, model._output_fn)
    for start in range(0, len(x), batch_size):
        out = model._forward(x[start:start + batch_size], training=False)
        if final is None:
            result[start:start + batch_size] = out
        else:
            final(out, result[start:start + batch_size])
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
