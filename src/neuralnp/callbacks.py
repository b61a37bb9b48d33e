"""Callbacks: hooks that ``fit`` calls at the start and end of training, epochs and batches.

``logs`` is a dict of the current numbers (``loss``, metrics, and their ``val_`` twins at epoch
end). A callback may set ``self.model.stop_training = True`` to end training after the epoch.
History and the progress display are callbacks too.
"""

import csv
import math
import re
import string
import sys
import time
from ._checks import is_int
from pathlib import Path


_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "r2")


class Callback:
    """Base class; override the hooks you need. ``fit`` sets ``self.model`` and ``self.params``
    (``epochs``, ``steps`` per epoch, ``samples``, ``batch_size``).

    ``only_chief = True`` marks a callback that prints or writes files: a distributed fit
    (:mod:`neuralnp.distributed`) runs it on rank 0 only.
    """

    model = None
    params = None
    only_chief = False

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_diverged(self, message):
        """The loss or an update became NaN or infinite (``message`` says which, at which
        step); the weights are the last finite ones. Return True to stop training quietly
        instead of letting ``fit`` raise ``TrainingDivergedError``."""
        return False


class CallbackList(Callback):
    """Calls each hook on every callback in order."""

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
            cb.set_model(model)

    def _each(hook):
        def call(self, *args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call

    set_params = _each("set_params")
    on_train_begin = _each("on_train_begin")
    on_train_end = _each("on_train_end")
    on_epoch_begin = _each("on_epoch_begin")
    on_epoch_end = _each("on_epoch_end")

    def _overriding(self, hook):
        """The callbacks' own ``hook`` methods, skipping the base class's do-nothing ones."""
        return [getattr(cb, hook) for cb in self.callbacks
                if getattr(type(cb), hook) is not getattr(Callback, hook) or hook in vars(cb)]

    def overrides(self, hook):
        """Whether any callback has a ``hook`` of its own (asked every epoch: kept)."""
        known = self.__dict__.setdefault("_overrides", {})
        if hook not in known:
            known[hook] = bool(self._overriding(hook))
        return known[hook]

    # Called every step: only the callbacks that override the hook are visited.
    def on_batch_begin(self, batch, logs=None):
        if self._begin_hooks is None:
            self._begin_hooks = self._overriding("on_batch_begin")
        for hook in self._begin_hooks:
            hook(batch, logs)

    def on_batch_end(self, batch, logs=None):
        if self._end_hooks is None:
            self._end_hooks = self._overriding("on_batch_end")
        for hook in self._end_hooks:
            hook(batch, logs)

    _begin_hooks = _end_hooks = None

    def on_diverged(self, message):
        """True when a callback took over (each is told, in order)."""
        handled = [cb.on_diverged(message) for cb in self.callbacks]
        return any(handled)


class History(Callback):
    """Records the epoch logs: ``history.history["val_loss"][k]`` is epoch ``k``'s value."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class ProgbarLogger(Callback):
    """Prints one line per epoch: ``Epoch 3/10 - 0.41s - loss: 0.1234 - val_loss: ...``."""

    only_chief = True

    def __init__(self, epochs, stream=None):
        self.epochs = epochs
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        numbers = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items())
        print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {numbers}", file=self.stream,
              flush=True)


def _check_monitor(monitor):
    """Fail at construction on a name no log can ever carry ("val_acuracy", say)."""
    from . import metrics
    base = monitor[4:] if monitor.startswith("val_") else monitor
    known = {"loss", "accuracy", "acc", *metrics.REGISTRY}
    if base not in known:
        raise ValueError(f"monitor {monitor!r} is not a quantity fit() logs; use 'loss' or a "
                         f"metric name, optionally with 'val_': {', '.join(sorted(known))}")
    return monitor


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if any(key in monitor for key in _HIGHER_IS_BETTER) else "min"
    return mode


def _monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        hint = " (pass validation_data or validation_split to fit)" if monitor.startswith("val_") \
            else ""
        raise ValueError(f"{who} monitors {monitor!r}, which this fit does not log{hint}; "
                         f"available: {', '.join(sorted(logs or {}))}")
    return logs[monitor]


def _check_validation(callback, names):
    """Fail when fit starts, not after its first epoch, if ``names`` include a ``val_``
    quantity and this fit has no validation data."""
    if (callback.params or {}).get("do_validation", True):
        return
    wanted = [name for name in names if name.startswith("val_")]
    if wanted:
        raise ValueError(f"{type(callback).__name__} needs {wanted[0]!r}, which fit logs only with "
                         f"validation data; pass validation_data or validation_split to fit, or "
                         f"use {wanted[0][4:]!r}")


class _Monitor(Callback):
    """Shared bookkeeping: is ``current`` better than ``best`` by more than ``min_delta``?"""

    def __init__(self, monitor, mode, min_delta):
        self.monitor = _check_monitor(monitor)
        self.mode = _resolve_mode(mode, monitor)
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.min_delta = float(min_delta)

    def _improved(self, current, best):
        if best is None:
            return math.isfinite(current)
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights=True`` the weights of the best epoch are put back at the end of
    training, whatever ended it (this callback, another one, or the last epoch). Epochs before
    ``start_from_epoch`` are not counted. ``baseline``: a value the monitor must beat. After
    training, ``stopped_epoch`` is the epoch (0-based) at which it stopped (0 if it did not) and
    ``best_epoch`` the best one.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        if not is_int(patience) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if not is_int(start_from_epoch) \
                or start_from_epoch < 0:
            raise ValueError(f"start_from_epoch must be an integer >= 0, got {start_from_epoch!r}")
        self.patience, self.verbose = patience, verbose
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        _check_validation(self, [self.monitor])
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.snapshot()
            # Below the baseline an improvement is recorded but patience keeps running out.
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(f"EarlyStopping: no improvement in {self.monitor} for {self.wait} epochs; "
                      f"stopping after epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.restore(self.best_weights)
            if self.verbose:
                print(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                      f"({self.monitor} = {self.best:.4f})")


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch to ``filepath``, which may hold ``{epoch}`` and log
    names (``"ckpt-{epoch:02d}-{val_loss:.3f}.zip"``); with ``save_best_only`` only when
    ``monitor`` improved. Saves are atomic (see :func:`neuralnp.serialization.save_model`)."""

    only_chief = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 mode="auto", min_delta=0.0):
        super().__init__(monitor, mode, min_delta)
        self.filepath = str(filepath)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.best = None

    def on_train_begin(self, logs=None):
        fields = [re.split(r"[.\[]", name)[0]
                  for _, name, _, _ in string.Formatter().parse(self.filepath) if name]
        _check_validation(self, fields + ([self.monitor] if self.save_best_only else []))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise ValueError(f"ModelCheckpoint's filepath names {{{exc.args[0]}}}, which this fit "
                             f"does not log; available: {', '.join(sorted({'epoch', *logs}))}"
                             ) from None
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self._improved(current, self.best):
                return
            self.best = current
        self.model.save(path)
        if self.verbose:
            print(f"ModelCheckpoint: saved {path}")


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs; wait ``cooldown`` epochs after a reduction; never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError("patience, cooldown and min_lr must be >= 0")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)

    def on_train_begin(self, logs=None):
        _check_validation(self, [self.monitor])
        if callable(self.model.optimizer.learning_rate):
            raise ValueError("ReduceLROnPlateau needs a constant learning rate, not a schedule")
        self.best, self.wait, self.cooldown_left = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        optimizer = self.model.optimizer
        if self.wait >= self.patience and optimizer.learning_rate > self.min_lr:
            optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
            self.cooldown_left, self.wait = self.cooldown, 0
            if self.verbose:
                print(f"ReduceLROnPlateau: learning rate now {optimizer.learning_rate:.3g}")


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to ``schedule(epoch, lr)``."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError("schedule must be a function (epoch, lr) -> new lr")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = float(self.schedule(epoch, optimizer.learning_rate))
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"the schedule returned learning rate {lr} for epoch {epoch}; it "
                             "must be a positive number")
        optimizer.learning_rate = lr
        if self.verbose:
            print(f"LearningRateScheduler: epoch {epoch + 1} learning rate {lr:.3g}")


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` and every log) to a CSV file."""

    only_chief = True

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = Path(filename), separator, bool(append)

    def on_train_begin(self, logs=None):
        existed = self.append and self.filename.exists() and self.filename.stat().st_size > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._header_written = existed

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *logs],
                                          delimiter=self.separator)
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **logs})
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


class TerminateOnNaN(Callback):
    """Stop training, instead of raising, when the loss becomes NaN or infinite; the model keeps
    its last finite weights (the update with the bad loss is never applied)."""

    def on_diverged(self, message):
        print(f"TerminateOnNaN: {message}; training stopped with the last finite weights")
        return True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None,
                 on_batch_end=None, on_train_begin=None, on_train_end=None):
        for name, fn in list(locals().items()):
            if name != "self" and fn is not None:
                setattr(self, name, fn)


class RichProgress(Callback):
    """A live display for terminals (needs ``rich``): two bars, this epoch's batches with the
    running loss, and the whole run with its time left; one summary line per epoch.

    The run's time left assumes every epoch runs, so early stopping finishes sooner than it says.
    """

    only_chief = True

    def __init__(self, console=None):
        try:
            from rich.console import Console  # noqa: F401
        except ImportError:
            raise ImportError('the progress display needs rich: pip install "neuralnp[cli]"') \
                from None
        self.console = console

    def on_train_begin(self, logs=None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[what]}"), TextColumn("{task.fields[scores]}"),
            TimeElapsedColumn(), TextColumn("elapsed,"), TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console, transient=True)
        self.progress.start()
        p = self.params
        self.epoch_task = self.progress.add_task("epoch", total=p["steps"], what="batches",
                                                 scores="")
        self.run_task = self.progress.add_task(f"all {p['epochs']} epochs",
                                               total=p["epochs"] * p["steps"], what="batches",
                                               scores="")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.seen, self.loss_sum, self._start = epoch, 0, 0.0, time.perf_counter()
        steps = self.params["steps"]
        self.progress.reset(self.epoch_task, total=steps, what="batches", scores="",
                            description=f"epoch {epoch + 1}/{self.params['epochs']}")
        self.progress.update(self.run_task, completed=epoch * steps)
        # Drawn now, not only at the display's 10 Hz: an epoch can be shorter than a refresh.
        self.progress.refresh()

    def on_batch_end(self, batch, logs=None):
        self.seen += 1
        self.loss_sum += (logs or {}).get("loss", 0.0)
        self.progress.update(self.epoch_task, advance=1,
                             scores=f"loss {self.loss_sum / self.seen:.4f}")
        self.progress.update(self.run_task, advance=1)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        numbers = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        self.progress.console.print(f"epoch {epoch + 1:>3}/{self.params['epochs']}  "
                                    f"{seconds:5.2f}s  {numbers}", highlight=False)

    def on_train_end(self, logs=None):
        self.progress.stop()
