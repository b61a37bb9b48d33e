"""Data-parallel training over MPI: every rank of ``mpirun -n K`` runs the same script.

``model.fit(x, y, ..., distributed=True)`` (or ``distributed=MPIStrategy(comm)``) on every rank
trains one model as a single process would with the same global batch:

- at the start, the ranks check that they agree on the model, its compile settings, the data's
  size (and a sample of its rows), ``batch_size``, ``epochs`` and ``shuffle``; then rank 0's
  weights, running statistics, optimizer state and random generators are broadcast, so every
  rank draws the same shuffle and the same dropout masks from then on;
- every rank holds the whole data set; each global batch (a slice of the shared permutation) is
  split into ``K`` near-equal contiguous shards, and rank ``r`` gathers and runs shard ``r`` only;
- each rank scales its loss gradient by ``shard rows / global rows`` (the loss is a mean over its
  shard), so that one ``Allreduce`` (sum, in place) of the flat gradient buffer gives every rank
  the global batch's gradient; regularizer gradients, clipping and the update follow, identical
  everywhere;
- ``Dropout`` draws the mask of the whole global batch on every rank, from the same stream, and
  keeps its shard's rows; ``BatchNormalization`` uses synchronised statistics (the mean and
  variance of the global batch, and in backward the global sums the input gradient needs), so
  the running statistics are the same on every rank and equal to a single process's;
- the loss of each step, the epoch's metrics and the validation scores are reduced across ranks,
  so every rank logs the same numbers and callbacks (EarlyStopping, ReduceLROnPlateau) decide
  the same everywhere;
- only rank 0 prints and writes: callbacks with ``only_chief = True`` (the progress displays,
  ``CSVLogger``, ``ModelCheckpoint``) run on rank 0 only, and the other ranks' standard output is
  discarded during ``fit``. ``model.save`` is not filtered: call it on rank 0
  (``if strategy.is_chief``);
- a rank that raises inside ``fit`` prints ``neuralnp: rank R failed: <error>`` on stderr and
  aborts the whole job (``MPI_Abort``), since the others would wait for it forever. Errors that
  every rank detects together (a mismatch between ranks, a NaN loss) are raised normally on
  every rank.

The same global batch gives the same training as one process up to floating-point rounding (the
sums run in another order): the tests check 50 float64 steps to 1e-6.

Only the CPU is wired in; on GPUs the gradient sum would go through NCCL, which is not
implemented.

Run it with, for example, ``OMP_NUM_THREADS=1 mpirun -n 2 python train.py`` (one BLAS thread
per rank on a 2-core machine: ``fit`` warns when ranks share a machine without a limit), where
``train.py`` is::

    import neuralnp as nn
    from neuralnp.distributed import MPIStrategy

    strategy = MPIStrategy()
    x, y = nn.datasets.breast_cancer()       # every rank loads the whole data set
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = nn.Sequential([nn.Dense(32, activation="relu"),
                           nn.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, distributed=strategy)
    if strategy.is_chief:
        model.save("model")
"""

import contextlib
import json
import os
import sys
import time
import traceback
import warnings
import zlib

import numpy as np

from ._registry import serialize
from .errors import TrainingDivergedError


class DistributedMismatchError(ValueError):
    """The ranks disagree on the model, the data or the fit settings; raised on every rank."""


# Any of them limits the threads of the BLAS that NumPy uses (OpenBLAS, MKL).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Raised on every rank at the same step, so they end the job without an abort.
_COLLECTIVE_ERRORS = (DistributedMismatchError, TrainingDivergedError)


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError('distributed training needs mpi4py and an MPI library: '
                          'pip install "neuralnp[mpi]"') from None
    return MPI


class MPIStrategy:
    """Synchronous data parallelism over the MPI communicator ``comm`` (``MPI.COMM_WORLD`` by
    default); pass it to ``fit(..., distributed=strategy)`` on every rank.

    ``rank`` and ``size`` are the communicator's; ``is_chief`` is true on rank 0, the rank that
    prints and saves. After (or during) a ``fit``, ``steps`` counts its training steps and
    ``comm_seconds`` the seconds spent in that fit's training-step collectives (the gradient
    ``Allreduce``, the loss sum, BatchNormalization's statistics), waiting for slower ranks
    included.

    With ``abort_on_exception`` (default) and more than one rank, an exception that nothing
    catches ends the whole job through ``MPI_Abort`` after its traceback is printed, instead of
    leaving the other ranks waiting (``python -m mpi4py script.py`` does the same).

    In a script run as ``OMP_NUM_THREADS=1 mpirun -n 2 python train.py``::

        strategy = MPIStrategy()
        model.fit(x, y, epochs=5, batch_size=128, distributed=strategy)
        if strategy.is_chief:
            model.save("model")
    """

    def __init__(self, comm=None, abort_on_exception=True):
        self._mpi = _import_mpi()
        self.comm = self._mpi.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.steps = 0
        self.comm_seconds = 0.0
        # (global rows, shard start, shard stop) of the current training step, shard bounds
        # relative to the global batch: Dropout and BatchNormalization read it.
        self.batch = None
        self._loss = np.zeros(1)
        self._loss_request = None
        if abort_on_exception and self.size > 1:
            _abort_on_uncaught_exceptions(self)

    @property
    def is_chief(self):
        return self.rank == 0

    distributed = True  # as the layers' context (see layers.base.LocalContext)

    def __repr__(self):
        return f"MPIStrategy(rank={self.rank}, size={self.size})"

    # -- sharding ---------------------------------------------------------------------------

    def shard(self, count):
        """``(start, stop)`` of this rank's rows among ``count``: contiguous, sizes differing by
        at most one (the first ``count % size`` ranks take one more), possibly empty."""
        base, extra = divmod(count, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def begin_step(self, start, stop):
        """Enter the training step on the global batch ``[start, stop)``; returns this rank's
        rows ``[lo, hi)`` of it in the same (epoch) coordinates."""
        lo, hi = self.shard(stop - start)
        self.batch = (stop - start, lo, hi)
        return start + lo, start + hi

    # -- collectives ------------------------------------------------------------------------

    def allreduce_sum(self, array):
        """Sum ``array`` (contiguous) over the ranks, in place, timed into ``comm_seconds``."""
        begin = time.perf_counter()
        self.comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)
        self.comm_seconds += time.perf_counter() - begin

    def reduce_gradients(self, grads):
        """The one collective of a step for the parameters: the flat gradient buffer summed in
        place (each rank has already scaled its part)."""
        self.allreduce_sum(grads)
        self.steps += 1

    def start_loss_mean(self, loss, rows, count):
        """Start summing this rank's ``loss[0] × rows`` (its loss is a mean over its ``rows``
        of the ``count``-row batch); it runs while backward does."""
        self._loss[0] = loss[0] * rows if rows else 0.0
        self._loss_count = count
        self._loss_request = self.comm.Iallreduce(self._mpi.IN_PLACE, self._loss,
                                                  op=self._mpi.SUM)

    def loss_mean(self, loss):
        """``loss[0] ←`` the global batch's mean loss started by :meth:`start_loss_mean`, the
        same on every rank."""
        begin = time.perf_counter()
        self._loss_request.Wait()
        self.comm_seconds += time.perf_counter() - begin
        loss[0] = float(self._loss[0]) / self._loss_count

    def sum(self, value):
        """A float summed over the ranks."""
        return float(self.comm.allreduce(float(value), op=self._mpi.SUM))

    def merge_metrics(self, metrics):
        """Replace each metric's accumulators by their merge over every rank, in rank order, so
        every rank's ``result()`` is the one of all the samples."""
        if not metrics:
            return
        everyone = self.comm.allgather([m.state() for m in metrics])
        for i, metric in enumerate(metrics):
            metric.reset()
            for states in everyone:
                metric.merge_state(states[i])

    # -- the start of a fit -----------------------------------------------------------------

    def prepare(self, model, arrays, validation, **settings):
        """Check that every rank trains the same model on the same data with the same
        ``settings``, then broadcast rank 0's weights, states, optimizer and generators."""
        if model.device != "cpu":
            raise NotImplementedError(
                f"distributed training on device {model.device!r} would sum gradients through "
                "NCCL (CuPy), which neuralnp does not implement yet; train on device='cpu'")
        summary = {
            "model": _config_digest(model),
            "parameters": int(model.buffer.size),
            "dtype": model.dtype.name,
            **{name: _rows_digest(a) for name, a in zip(("x", "y", "sample_weight"), arrays)},
            **{name: _rows_digest(a) for name, a in zip(("x_val", "y_val"), validation or ())},
            **settings,
        }
        self._check_agreement(summary)
        self._check_threads()
        self._broadcast(model)
        self.steps = 0
        self.comm_seconds = 0.0

    def _check_agreement(self, summary):
        everyone = self.comm.allgather(summary)
        differ = [key for key in summary if any(s[key] != everyone[0][key] for s in everyone)]
        if not differ:
            return
        details = []
        for key in differ:
            rank = next(r for r, s in enumerate(everyone) if s[key] != everyone[0][key])
            details.append(f"{key} (rank 0: {_describe(everyone[0][key])}, rank {rank}: "
                           f"{_describe(everyone[rank][key])})")
        raise DistributedMismatchError(
            f"the {self.size} ranks disagree on {'; '.join(details)}. Every rank must build the "
            "same model and call fit with the same arguments on the whole data set (fit shards "
            "each batch itself)")

    def _check_threads(self):
        """Warn (once, from one rank per machine) when several ranks share a machine and
        nothing limits their BLAS threads: each would start one per core, and threads that
        outnumber the cores make training several times slower."""
        if self._threads_checked:
            return
        self._threads_checked = True
        local = self.comm.Split_type(self._mpi.COMM_TYPE_SHARED)
        here, local_rank = local.Get_size(), local.Get_rank()
        local.Free()
        if here == 1 or local_rank != 0 or any(os.environ.get(v) for v in THREAD_VARIABLES):
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if cores and cores > 1:
            warnings.warn(
                f"{here} ranks share this machine's {cores} cores and OMP_NUM_THREADS is not "
                f"set, so each rank's BLAS starts {cores} threads and they slow each other "
                f"down; run OMP_NUM_THREADS={max(1, cores // here)} mpirun ...", RuntimeWarning,
                stacklevel=5)  # the caller's fit()

    _threads_checked = False

    def _broadcast(self, model):
        self.comm.Bcast(model.buffer.values, root=0)
        for layer in model.layers:
            for state in layer.states():  # running statistics, outside the flat buffer
                self.comm.Bcast(state.value, root=0)
        generators = _generators(model)
        payload = None
        if self.is_chief:
            payload = (model.optimizer.state_dict(), [g.bit_generator.state for g in generators])
        optimizer_state, generator_states = self.comm.bcast(payload, root=0)
        if not self.is_chief:
            model.optimizer.load_state_dict(optimizer_state)
            for generator, state in zip(generators, generator_states):
                generator.bit_generator.state = state

    # -- failures ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def training(self, model):
        """For the duration of one ``fit``: the layers see this strategy, other ranks' standard
        output is discarded, and an exception on this rank alone aborts the job."""
        model.set_context(self)
        quiet = None if self.is_chief else open(os.devnull, "w")
        try:
            with contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
                yield self
        except _COLLECTIVE_ERRORS:
            raise
        except Exception as exc:
            if self.size == 1:
                raise
            self.abort(exc)
        finally:
            model.set_context(None)
            self.batch = None
            if quiet is not None:
                quiet.close()

    def abort(self, error, code=1):
        """Print ``neuralnp: rank R failed: <error>`` on stderr and end every rank of the job
        (``MPI_Abort``). ``NEURALNP_DEBUG=1`` prints the traceback first."""
        if isinstance(error, BaseException) and os.environ.get("NEURALNP_DEBUG"):
            traceback.print_exception(type(error), error, error.__traceback__)
        print(f"neuralnp: rank {self.rank} failed: {_one_line(error)}", file=sys.stderr,
              flush=True)
        _abort(self.comm, code)


def _one_line(error):
    text = " ".join(str(error).split())
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def _abort(comm, code):
    # The process manager forwards our stderr through a pipe, and an abort can tear the job
    # down before it has: give it a moment to pass the message on.
    time.sleep(0.2)
    comm.Abort(code)
    # MPICH's MPI_Abort can return before the process manager kills this process: never let the
    # program go on (past fit, to a save), nor finalize MPI, which could wait for the others.
    os._exit(code)


def _abort_on_uncaught_exceptions(strategy):
    previous = sys.excepthook
    if getattr(previous, "neuralnp_aborts", False):
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        if isinstance(value, _COLLECTIVE_ERRORS):
            return  # every rank raised it at the same point: they all end without help
        # The traceback is printed already: only the one-line summary, then the abort.
        print(f"neuralnp: rank {strategy.rank} failed: {_one_line(value)}", file=sys.stderr,
              flush=True)
        _abort(strategy.comm, 1)

    hook.neuralnp_aborts = True
    sys.excepthook = hook


def _generators(model):
    """The model's generator and any other one a layer keeps (a seeded Dropout's), in layer
    order, each once."""
    found = {id(model.rng): model.rng}
    for layer in model.layers:
        for value in vars(layer).values():
            if isinstance(value, np.random.Generator):
                found.setdefault(id(value), value)
    return list(found.values())


def _without_names(config):
    """``config`` less every ``name``: auto-generated layer names count the layers created
    before in that process, which may differ between ranks without changing the model."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def _config_digest(model):
    optimizer = model.optimizer
    try:
        optimizer_config = serialize(optimizer)
    except ValueError:  # a plain-function learning rate has no config
        optimizer_config = type(optimizer).__name__
    text = json.dumps({"model": _without_names(model.get_config()),
                       "loss": serialize(model.loss), "optimizer": optimizer_config,
                       "metrics": [repr(m) if not isinstance(m, str) else m
                                   for m in model.metric_names]},
                      sort_keys=True, default=repr)
    return f"architecture and compile settings digest {zlib.crc32(text.encode()):08x}"


def _rows_digest(array):
    """Shape, dtype and a checksum of up to 64 evenly spaced rows: cheap, and enough to tell
    another file, another order or another preprocessing."""
    if array is None:
        return "none"
    rows = np.unique(np.linspace(0, len(array) - 1, num=min(len(array), 64)).astype(np.intp))
    checksum = zlib.crc32(np.ascontiguousarray(array[rows]).tobytes())
    return f"{len(array)} rows of {tuple(array.shape[1:])} {array.dtype}, checksum {checksum:08x}"


def _describe(value):
    return value if isinstance(value, str) else repr(value)
