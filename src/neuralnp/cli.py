"""The ``neuralnp`` command: split a CSV file, train on it, predict, evaluate, look at the model,
export it to ONNX.

Every subcommand checks its input and ends a failure with one line on stderr and exit status 2
(set ``NEURALNP_DEBUG=1`` for the traceback); output paths are checked before any data is read.
Ctrl-C during ``train`` stops after the current batch, saves what was trained and exits with
status 130. The preprocessing that ``train`` decides (column types, scaling, one-hot encoding,
imputation) is saved inside the model, so ``predict`` takes raw rows exactly like the training
file.
"""

import argparse
import contextlib
import math
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

from . import __version__
from .callbacks import Callback
from .errors import DeviceError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cmd | head`
DEFAULT_PATIENCE = 10


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples as written, and ends each option's help with its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False
                or default == argparse.SUPPRESS
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """argparse with the examples kept as written (they are the best part of --help), the
    defaults shown, and a usage mistake told in one line like every other mistake."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"neuralnp: error: {message}; see {self.prog} --help\n")


def _example(text):
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def _delimiter_flag(p):
    p.add_argument("--delimiter", metavar="CHAR", help="the cell separator: , ; | or '\\t' "
                   "(default: detected from the first rows)")


def _delimiter(args):
    text = getattr(args, "delimiter", None)
    return {"\\t": "\t", "tab": "\t"}.get(text, text)


def _reading(text):
    """Said before a large file is read, on stderr so that piped output stays data."""
    print(text, file=sys.stderr, flush=True)


def _notice(text):
    _say(f"notice: {text}")


def build_parser():
    parser = _Parser(prog="neuralnp", description="Train small neural networks on CSV files.",
                     epilog=_example("""
                         neuralnp datasets export breast_cancer cancer.csv
                         neuralnp split cancer.csv --stratify diagnosis
                         neuralnp train train.csv --target diagnosis
                         neuralnp predict model valid.csv
                     """))
    parser.add_argument("--version", action="version", version=f"neuralnp {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="what to do; 'neuralnp COMMAND --help' shows its options")

    p = sub.add_parser("split", help="split a CSV file into train.csv and valid.csv",
                       epilog=_example("neuralnp split data.csv --train 0.8 --stratify label"))
    p.add_argument("data", help="the CSV file")
    p.add_argument("--train", type=float, default=0.8, help="fraction of rows for training")
    p.add_argument("--stratify", metavar="COL", help="keep the classes of COL in proportion")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--out", default=".", metavar="FOLDER",
                   help="folder for train.csv and valid.csv")
    p.add_argument("--overwrite", action="store_true",
                   help="replace train.csv and valid.csv when they exist (never the input file)")
    p.set_defaults(run=cmd_split)

    p = sub.add_parser("train", help="train a network on a CSV file", epilog=_example("""
        neuralnp train train.csv --target diagnosis --validation valid.csv
        neuralnp train data.csv --target 1 --layers 32 16 --epochs 100   # column 1, no header
    """))
    p.add_argument("data", help="the training CSV file (with or without a header row)")
    p.add_argument("--target", required=True, metavar="COL",
                   help="the column to predict: its name, or its number counting from 0")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--validation", metavar="VALID.csv", help="a validation file")
    group.add_argument("--validation-split", type=float, default=0.2, metavar="F",
                       help="hold out this fraction of DATA for validation")
    p.add_argument("--layers", type=int, nargs="+", default=[64, 32], metavar="UNITS",
                   help="hidden layer sizes")
    p.add_argument("--activation", default="relu", help="hidden activation")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout rate after each hidden layer, from 0 to below 1")
    p.add_argument("--epochs", type=int, default=50, help="passes over the training rows")
    p.add_argument("--batch-size", type=int, default=32, help="rows per optimizer step")
    p.add_argument("--optimizer", default="adam",
                   help="sgd, rmsprop, adagrad, adam, adamw or nadam")
    p.add_argument("--learning-rate", type=float, help="default: the optimizer's own")
    p.add_argument("--loss", default="auto", help="auto: from the task (binary cross-entropy, "
                   "sparse categorical cross-entropy or mse)")
    p.add_argument("--task", default="auto", choices=["auto", "binary", "multiclass",
                                                      "regression"],
                   help="auto: from the target (text or few whole numbers: classification)")
    stopping = p.add_mutually_exclusive_group()
    stopping.add_argument("--early-stopping", type=int, default=DEFAULT_PATIENCE,
                          metavar="PATIENCE",
                          help="stop after PATIENCE epochs without a better validation loss and "
                               "keep the best epoch's weights")
    stopping.add_argument("--no-early-stopping", dest="early_stopping", action="store_const",
                          const=None, default=argparse.SUPPRESS,
                          help="train every epoch and keep the last epoch's weights")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the shuffles and the validation split")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help='cuda: train on an NVIDIA GPU (pip install "neuralnp[gpu]")')
    p.add_argument("--out", default="model", metavar="MODEL", help="model folder")
    p.add_argument("--drop", nargs="+", default=[], metavar="COL",
                   help="columns to leave out (names or numbers)")
    p.add_argument("--keep", nargs="+", default=[], metavar="COL",
                   help="columns to use even when they look like identifiers")
    _delimiter_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI, run as: mpirun -n K neuralnp train ... "
                        "--distributed (needs neuralnp[mpi]); rank 0 prints and saves")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("predict", help="predict the rows of a CSV file", epilog=_example("""
        neuralnp predict model test.csv --out predictions.csv
        neuralnp predict model test.csv --id PassengerId
    """))
    p.add_argument("model", help="a model folder written by neuralnp train")
    p.add_argument("data", help="rows with the training file's columns (the target is optional)")
    p.add_argument("--out", default="predictions.csv", metavar="FILE.csv",
                   help="the predictions file")
    p.add_argument("--id", action="append", metavar="COL",
                   help="a column of DATA to copy as the first column of the predictions; "
                        "repeat for several (default: the identifier columns that train "
                        "dropped, or the row number)")
    _delimiter_flag(p)
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("evaluate", help="scores of a model on a labelled CSV file",
                       epilog=_example("neuralnp evaluate model valid.csv"))
    p.add_argument("model", help="a model folder written by neuralnp train")
    p.add_argument("data", help="rows with the training file's columns, target included")
    _delimiter_flag(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("info", help="describe a model", epilog=_example("neuralnp info model"))
    p.add_argument("model", help="a model folder or .zip saved by neuralnp")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("plot", help="learning curves and a drawing of the network",
                       epilog=_example("neuralnp plot model --out figures"))
    p.add_argument("model", help="a model folder or .zip saved by neuralnp")
    p.add_argument("--out", metavar="FOLDER",
                   help="folder for the pictures (default: the model folder)")
    p.set_defaults(run=cmd_plot)

    from .onnx import DEFAULT_OPSET
    p = sub.add_parser("export", help="write a model as an ONNX file (for onnxruntime)",
                       epilog=_example("neuralnp export model model.onnx --opset 17"))
    p.add_argument("model", help="a model folder or .zip saved by neuralnp")
    p.add_argument("out", metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX operator set version")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("datasets", help="list the data sets shipped with neuralnp, or export one",
                       epilog=_example("""
                           neuralnp datasets
                           neuralnp datasets export titanic titanic.csv
                       """))
    p.add_argument("action", nargs="?", choices=["list", "export"], default="list",
                   help="list them, or export one as a CSV file")
    p.add_argument("name", nargs="?", help="data set to export")
    p.add_argument("file", nargs="?", help="CSV file to write")
    p.add_argument("--overwrite", action="store_true", help="replace FILE when it exists")
    p.set_defaults(run=cmd_datasets)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `neuralnp`: what it can do, rather than a complaint
        parser.print_help()
        return 0
    try:
        return args.run(args) or 0
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:  # outside training (which handles Ctrl-C itself): nothing saved
        if os.environ.get("NEURALNP_DEBUG"):
            raise
        print("neuralnp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError, ImportError, KeyError, FloatingPointError,
            DeviceError) as exc:
        if os.environ.get("NEURALNP_DEBUG"):
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if getattr(args, "distributed", False):
            _abort_job(exc, message)
        print(f"neuralnp: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE


def _reader_gone():
    """The reader of standard output went away (`neuralnp datasets | head`): stop quietly. Point
    stdout at /dev/null so that the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (captured, in tests)
        pass
    return EXIT_BROKEN_PIPE


def _abort_job(exc, message):
    """Under --distributed, a rank that fails outside fit ends the whole job: the other ranks
    may be waiting in a collective that this one will never join."""
    if "mpi4py.MPI" not in sys.modules:  # MPI never started: no other rank can be waiting
        return
    from .distributed import MPIStrategy
    strategy = MPIStrategy(abort_on_exception=False)
    if strategy.size > 1:
        strategy.abort(f"{type(exc).__name__}: {' '.join(message.split())}", code=EXIT_USAGE)


# -- output helpers -------------------------------------------------------------------------------

def _console():
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(highlight=False)


def _say(text):
    print(text, flush=True)


def _table(title, header, rows):
    """A table through rich when it is installed, plain aligned text otherwise."""
    console = _console()
    if console is not None:
        from rich.table import Table
        table = Table(title=title)
        for i, h in enumerate(header):
            numeric = i > 0 and all(_is_number(row[i]) for row in rows)
            table.add_column(h, justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
        return
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    _say(title)
    for row in (header, *rows):
        _say("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _try_plot(what, draw):
    """A picture is a by-product: without matplotlib, or in a folder that cannot be written
    (a read-only model folder under evaluate), the command says so and carries on."""
    try:
        path = draw()
    except (ImportError, OSError) as exc:
        _say(f"{what} not drawn: {exc}")
        return None
    _say(f"{what}: {path}")
    return path


def _check_output(path, flag, kind, inputs=(), overwrite=None):
    """Fail now, before any data is read or any epoch is trained, on an output that could not
    be written or must not be: an input file, a file where a folder goes (or the reverse), a
    folder that holds something other than a model, a place under a file or without write
    permission, and, when ``overwrite`` is False, anything that exists.

    ``kind``: ``"file"``, ``"folder"``, or ``"model"`` (a folder, or a file ending in .zip).
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise ValueError(f"{path} would overwrite the input file {source}; neuralnp never "
                             f"writes onto its input: choose another {flag}")
    if path.exists():
        wants_file = kind == "file" or (kind == "model" and path.suffix == ".zip")
        if wants_file and path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; give a file name")
        if not wants_file and not path.is_dir():
            raise ValueError(f"{flag} {path} is a file; give a folder name")
        if kind == "model" and path.is_dir() and not (path / "config.json").is_file() \
                and any(path.iterdir()):
            raise ValueError(f"{flag} {path} is a folder that holds no neuralnp model, and a "
                             f"model replaces only a model: choose a new {flag}")
        if overwrite is False:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose "
                                  f"another {flag}")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path} cannot be written: {parent} is not writable; "
                              f"choose another {flag}")


def _same_file(a, b):
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


# -- split ----------------------------------------------------------------------------------------

def cmd_split(args):
    from .preprocessing import train_test_split
    from .tabular import read_csv, write_csv

    if not 0.0 < args.train < 1.0:
        raise ValueError(f"--train must be a fraction between 0 and 1, got {args.train}")
    out = Path(args.out)
    _check_output(out, "--out", "folder")
    outputs = [out / "train.csv", out / "valid.csv"]
    for path in outputs:  # every input check first: --overwrite never permits writing on DATA
        _check_output(path, "--out", "file", inputs=[args.data])
    for path in outputs:
        _check_output(path, "--out", "file", overwrite=args.overwrite)
    table = read_csv(args.data, notify=_reading, numbers=False)  # cells written back as read
    rows = np.arange(len(table))
    labels = None
    if args.stratify is not None:
        labels = np.array(table.column(table.index(args.stratify, "--stratify column")))
    train, valid = train_test_split(rows, test_size=1.0 - args.train, seed=args.seed,
                                    stratify=labels)
    names = table.names if table.has_header else None
    for path, part in zip(outputs, (np.sort(train), np.sort(valid))):
        write_csv(path, names, _rows_of(table, part),  # names None: no header
                  delimiter=table.delimiter)  # decimal commas stay unambiguous
        _say(f"{path}: {len(part)} rows")
    return 0


# Rows written to a CSV file are made this many at a time: one str object per cell of a whole
# large file would hold several times the file.
ROWS_AT_A_TIME = 10_000


def _rows_of(table, positions):
    """The rows at ``positions`` as lists of str, a chunk at a time."""
    for start in range(0, len(positions), ROWS_AT_A_TIME):
        yield from table.take(positions[start:start + ROWS_AT_A_TIME]).rows


# -- train ----------------------------------------------------------------------------------------

def _prepare(table, target_index, source):
    """Rows of ``table`` whose target is usable, with a notice when some are not."""
    from .tabular import usable_target_rows
    keep, why = usable_target_rows(table.column_data(target_index), table.row_numbers)
    dropped = len(table) - int(keep.sum())
    if dropped:
        _notice(f"{source}: {dropped} rows without a usable target value are left out{why}")
    if not keep.any():
        raise ValueError(f"{source}: no row has a value in the target column")
    return table.take(keep) if dropped else table


_REGRESSION_LOSSES = ("mse", "mae", "huber")


def _output_and_loss(task, n_outputs, loss):
    from . import losses
    default = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
               "regression": "mse"}[task]
    if loss == "auto":
        loss = default
    losses.get(loss)  # an unknown name fails here, listing the valid ones
    loss = loss.lower()
    fits = loss in _REGRESSION_LOSSES if task == "regression" else \
        loss not in _REGRESSION_LOSSES and (task == "binary" or loss != "binary_crossentropy")
    if not fits:
        raise ValueError(f"--loss {loss} does not fit a {task} target; leave --loss out to "
                         f"use {default}, or set --task if the target was misread")
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return max(n_outputs, 2), "softmax", "sparse_categorical_crossentropy"
    if loss == "binary_crossentropy":
        return 1, "sigmoid", loss
    return n_outputs, None, loss


def _strategy(args):
    """The MPIStrategy of --distributed, or None. Only rank 0 speaks: every other rank sends
    its standard output to /dev/null for the rest of the command."""
    if not args.distributed:
        return None
    from .distributed import MPIStrategy
    strategy = MPIStrategy()
    if not strategy.is_chief:
        sys.stdout = open(os.devnull, "w")
    return strategy


def _check_train_args(args):
    """The numbers of the command line, in its own words, before anything is read."""
    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if any(units < 1 for units in args.layers):
        raise ValueError(f"--layers needs positive sizes, got {' '.join(map(str, args.layers))}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must be a rate from 0 to below 1, got {args.dropout}")
    if args.learning_rate is not None and not (args.learning_rate > 0
                                               and math.isfinite(args.learning_rate)):
        raise ValueError(f"--learning-rate must be a positive number such as 0.001, got "
                         f"{args.learning_rate}")
    if args.early_stopping is not None and args.early_stopping < 0:
        raise ValueError(f"--early-stopping needs a patience of 0 epochs or more, got "
                         f"{args.early_stopping}; --no-early-stopping turns it off")
    if not args.validation and not 0.0 < args.validation_split < 1.0:
        raise ValueError(f"--validation-split must be between 0 and 1, got "
                         f"{args.validation_split}")


def _drop_and_keep(table, target_name, args):
    """The names of --drop and --keep, checked against the table's columns."""
    names = {}
    for flag in ("drop", "keep"):
        names[flag] = {table.names[table.index(c, f"--{flag} column")] for c in getattr(args, flag)}
        if target_name in names[flag]:
            raise ValueError(f"--{flag} {target_name}: that is the target column")
    both = names["drop"] & names["keep"]
    if both:
        raise ValueError(f"{', '.join(sorted(both))} is given to both --drop and --keep; "
                         "choose one")
    return names["drop"], names["keep"]


def _check_target(target_encoder, name, labels, split):
    """A classification target must have classes to learn, not one value per row (a name, an
    id); and a validation ``split`` needs two rows of each class. ``labels``: the target's
    class numbers (None for a regression)."""
    if target_encoder.task == "regression":
        return
    counts = np.bincount(labels, minlength=len(target_encoder.classes))
    if len(counts) == len(labels):
        raise ValueError(f"--target {name}: every row holds a different value, so it looks like "
                         "an identifier or free text, not classes to predict; choose another "
                         "--target")
    single = [target_encoder.classes[i] for i in np.flatnonzero(counts == 1)]
    if split and single:
        raise ValueError(f"--target {name}: {len(single)} classes have a single row "
                         f"({', '.join(map(repr, single[:3]))}{', ...' if len(single) > 3 else ''})"
                         "; a class needs rows in both training and validation: remove or merge "
                         "the rare ones, or give --validation FILE")


def _identifier_columns(table, encoder):
    """The dropped columns that identify rows (a different whole number in every row, or a name
    that says id, with no cell missing), which predict copies into its output so that a row can
    be found again."""
    found = []
    for spec in encoder.columns:
        if spec["kind"] != "drop":
            continue
        column = table.column_data(table.names.index(spec["name"]))
        numbers = column.numbers(mostly=1.0)  # None unless every present cell is a number
        whole = numbers is not None and not numbers[2].any() and \
            np.all(numbers[0] == np.round(numbers[0]))
        if not (whole or spec["name"].lower().replace("_", "").endswith("id")):
            continue  # free text (names): no need to count its distinct cells
        if whole:  # by value: '7' and '7.0' are one identifier
            distinct = not numbers[1].any() and np.unique(numbers[0]).size == len(column)
        else:
            codes, levels = column.codes()
            distinct = not (codes < 0).any() and len(levels) == len(column)
        if distinct:
            found.append(spec["name"])
    return found


class _TargetUnits(Callback):
    """Puts a regression's epoch scores in the target's units, before anything prints them:
    the network learns a standardised target, so MAE and RMSE are multiplied by its standard
    deviation (R² needs nothing). Keeps the epoch logs as the command reports them."""

    def __init__(self, scale=None):
        self.scale = scale
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.scale is not None:
            converted = {}
            for key, value in logs.items():
                prefix = "val_" if key.startswith("val_") else ""
                name = key[len(prefix):]
                if name == "mse":
                    continue  # reported as RMSE, after MAE
                converted[key] = value * self.scale if name == "mae" else value
                if name == "mae" and f"{prefix}mse" in logs:
                    converted[f"{prefix}rmse"] = math.sqrt(logs[f"{prefix}mse"]) * self.scale
            logs.clear()
            logs.update(converted)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))


class _Interrupted(Exception):
    """Raised between two batches once Ctrl-C was pressed."""


class _StopOnCtrlC(Callback):
    """Ctrl-C sets a flag and training stops at the next batch boundary, never inside an
    update, so the weights are whole. A second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_batch_end(self, batch, logs=None):
        if self.requested:
            raise _Interrupted

    on_epoch_end = on_batch_end


def _regression_scores(outputs, y, scale):
    """MAE, RMSE and R² in the target's units from standardised outputs and targets."""
    error = (np.asarray(outputs, np.float64).reshape(-1) - np.asarray(y, np.float64)) * scale
    truth = np.asarray(y, np.float64) * scale
    total = float(((truth - truth.mean()) ** 2).sum())
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())),
            "r2": 1.0 - float((error ** 2).sum()) / total if total > 0 else float("nan")}


def _scores_of(model, target_encoder, x, y):
    scores = model.evaluate(x, y, return_dict=True)
    if target_encoder.task == "regression":
        scores = {**_regression_scores(model.predict(x), y, target_encoder.scale),
                  "loss": scores["loss"]}
    return scores


def _shown(scores, task):
    """The score names worth printing: a regression's loss is on the standardised target, so its
    table shows MAE, RMSE and R², which are in the target's units."""
    return [k for k in scores if not (task == "regression" and k == "loss")]


def cmd_train(args):
    import neuralnp as nn
    from .tabular import TableEncoder, TargetEncoder, read_csv, release_memory

    _check_train_args(args)
    _check_output(args.out, "--out", "model", inputs=[args.data, args.validation])
    if args.device == "cuda":  # before reading the file: a missing GPU is said at once
        from .backends import get_ops
        get_ops("cuda")
    strategy = _strategy(args)

    table = read_csv(args.data, delimiter=_delimiter(args), notify=_reading)
    target = table.index(args.target, "target column")
    target_name = table.names[target]
    table = _prepare(table, target, args.data)
    target_encoder = TargetEncoder(None if args.task == "auto" else args.task)
    target_encoder.fit(target_name, table.column_data(target))
    labels = None  # class numbers, for the checks and the stratified split
    if target_encoder.task != "regression":  # class numbers: '1' and '1.0' are one class
        labels = target_encoder.transform(table.column_data(target), args.data)
    _check_target(target_encoder, target_name, labels, split=not args.validation)
    units, activation, loss = _output_and_loss(target_encoder.task, target_encoder.n_outputs,
                                               args.loss)

    if args.validation:
        train_table = table
        valid_table = read_csv(args.validation, header=table.has_header,
                               delimiter=_delimiter(args), notify=_reading)
        valid_table = _prepare(valid_table, valid_table.index(target_name, "target column"),
                               args.validation)
    else:
        train_table, valid_table = _split_rows(table, labels, args)
    features = [i for i in range(len(table.names)) if i != target]
    drop, keep = _drop_and_keep(table, target_name, args)
    encoder = TableEncoder().fit(train_table, features, drop=drop, keep=keep)
    for notice in encoder.notices:
        _say(f"notice: {notice}")
    has_header, id_columns = table.has_header, _identifier_columns(table, encoder)
    x_train = encoder.transform(train_table)
    y_train = target_encoder.transform(train_table.column_data(target), args.data)
    x_valid = encoder.transform(valid_table, notify=_notice)
    valid_target = valid_table.names.index(target_name)
    y_valid = target_encoder.transform(valid_table.column_data(valid_target),
                                       valid_table.source)
    # The cells are encoded: training needs only the matrices, so the file's columns go now
    # rather than sit beside the network's workspaces until the model is saved.
    del table, train_table, valid_table, labels
    release_memory()

    layers = []
    for size in args.layers:
        layers.append(nn.Dense(size, activation=args.activation))
        if args.dropout:
            layers.append(nn.Dropout(args.dropout))
    layers.append(nn.Dense(units, activation=activation))
    model = nn.Sequential(layers, seed=args.seed, device=args.device)
    optimizer = nn.optimizers.REGISTRY.get(args.optimizer.lower())
    if optimizer is None:
        nn.optimizers.get(args.optimizer)  # raises, listing the valid names
    optimizer = optimizer() if args.learning_rate is None else optimizer(args.learning_rate)
    regression = target_encoder.task == "regression"
    model.compile(loss=loss, optimizer=optimizer,
                  metrics=["mae", "mse", "r2"] if regression else ["accuracy"])

    scores_log = _TargetUnits(target_encoder.scale if regression else None)
    callbacks = [scores_log]
    early = None
    if args.early_stopping is not None:
        early = nn.callbacks.EarlyStopping("val_loss", patience=args.early_stopping,
                                           restore_best_weights=True)
        callbacks.append(early)
    verbose = 0
    if not args.quiet:
        if sys.stdout.isatty():
            try:
                callbacks.append(nn.callbacks.RichProgress())
            except ImportError:
                verbose = 1
        else:
            verbose = 1
    ctrl_c = _StopOnCtrlC()
    if strategy is None:  # under mpirun every rank would stop at a batch of its own
        callbacks.append(ctrl_c)
    catch_ctrl_c = ctrl_c if strategy is None else contextlib.nullcontext()
    _say(f"training {x_train.shape[1]}-{'-'.join(map(str, args.layers))}-{units} "
         f"({target_encoder.task}, {loss}) on {len(x_train)} rows, validating on {len(x_valid)}")
    interrupted = False
    # Overflow on the way to a diverged loss is reported once, as the divergence below.
    with catch_ctrl_c, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      validation_data=(x_valid, y_valid), callbacks=callbacks, verbose=verbose,
                      distributed=strategy)
        except _Interrupted:
            interrupted = True
            for cb in callbacks:  # what fit would have done: close the display, restore the best
                cb.on_train_end({})
        except nn.TrainingDivergedError as exc:
            for cb in callbacks:
                if isinstance(cb, nn.callbacks.RichProgress):
                    cb.on_train_end({})
            rate = args.learning_rate if args.learning_rate is not None else \
                f"{optimizer.learning_rate:g}, the {args.optimizer} default"
            epoch = len(scores_log.history.get("loss", [])) + 1
            detail = str(exc).split(";")[0]  # "the loss became nan at optimizer step 12"
            raise FloatingPointError(f"training diverged in epoch {epoch}: {detail}; lower "
                                     f"--learning-rate (it was {rate}) and train again") from None
    if strategy is not None and not strategy.is_chief:
        return 0  # rank 0 scores, saves, prints and plots the model every rank holds

    history = scores_log.history
    epochs_run = len(history.get("loss", []))
    kept = epochs_run
    if early is not None and early.best_epoch is not None:
        kept = early.best_epoch + 1
    scores = {"train": _scores_of(model, target_encoder, x_train, y_train),
              "validation": _scores_of(model, target_encoder, x_valid, y_valid)}
    title = f"Learning curves: {Path(args.data).name}, target {target_name}"
    model.metadata["cli"] = {
        "target": target_name, "header": has_header, "data": str(args.data),
        "encoder": encoder.get_config(), "target_encoder": target_encoder.get_config(),
        "notices": encoder.notices, "history": history, "scores": scores,
        "kept_epoch": kept, "interrupted": interrupted, "title": title,
        "id_columns": id_columns,
        "training": {k: v for k, v in vars(args).items() if k not in ("run", "command")},
    }
    model.save(args.out)
    shown = _shown(scores["train"], target_encoder.task)
    rows = [(name, *(f"{scores[part][name]:.4f}" for part in ("train", "validation")))
            for name in shown]
    _table(f"final scores ({epochs_run} epochs)", ["", "train", "validation"], rows)
    _say(_kept_line(kept, epochs_run, history, early))
    _say(f"model: {args.out}")
    if epochs_run:
        _try_plot("learning curves", lambda: _plots().learning_curves(
            history, Path(args.out) / "learning_curves.png", title=title,
            metric=_curve_metrics(history), kept_epoch=kept))
    if interrupted:
        _say(f"interrupted by Ctrl-C in epoch {epochs_run + 1}: saved the model (the weights "
             f"of epoch {kept}) and its learning curves to {args.out}")
        return EXIT_INTERRUPTED
    return 0


def _kept_line(kept, epochs_run, history, early):
    if not epochs_run:
        return "no epoch was finished: the model holds the weights of the batches trained"
    val = history.get("val_loss", [])
    if early is None or kept == epochs_run:
        why = "the last" if early is None else "the last, and the best validation loss"
        return f"kept the weights of epoch {kept} of {epochs_run} ({why})"
    return (f"kept the weights of epoch {kept} of {epochs_run}: the best validation loss, "
            f"{val[kept - 1]:.4f} (the last epoch's: {val[-1]:.4f})")


def _curve_metrics(history):
    """The panels beside the loss: a regression's MAE, RMSE and R², else the first metric."""
    names = [k for k in ("mae", "rmse", "r2") if k in history]
    return names or None


def _split_rows(table, labels, args):
    """Training and validation parts of ``table``, stratified by ``labels`` (None: not)."""
    from .preprocessing import train_test_split
    rows = np.arange(len(table))
    train, valid = train_test_split(rows, test_size=args.validation_split, seed=args.seed,
                                    stratify=labels)
    return table.take(np.sort(train)), table.take(np.sort(valid))


def _plots():
    from . import plotting
    return plotting


# -- predict, evaluate, info, plot ---------------------------------------------------------------

def _load(path, need_cli=True):
    """``(model, cli metadata, encoder, target encoder)``; a model saved from Python has no
    metadata (None for the last three) and fails here when ``need_cli``."""
    import neuralnp as nn
    from .tabular import TableEncoder, TargetEncoder
    model = nn.load_model(path)
    meta = model.metadata.get("cli")
    if not meta:
        if need_cli:
            raise ValueError(f"{path} was not trained by the neuralnp command, so it carries no "
                             "preprocessing; use it from Python with model.predict(x)")
        return model, None, None, None
    return (model, meta, TableEncoder.from_config(meta["encoder"]),
            TargetEncoder.from_config(meta["target_encoder"]))


def _score(model, meta, target_encoder, table, x, out_folder, outputs=None):
    """Scores (and, for classes, the confusion matrix) when ``table`` carries the target.
    ``outputs``: the model's outputs for ``x``, when the caller has them."""
    from . import metrics
    target = meta["target"]
    if target not in table.names:
        return None
    column = table.column_data(table.names.index(target))
    present = ~column.missing()
    if not present.any():
        return None
    if not present.all():  # a copy of x only when some rows lack the target
        column, x = column.take(np.flatnonzero(present)), x[present]
        outputs = None if outputs is None else outputs[present]
    y = target_encoder.transform(column, table.source)
    scores = _scores_of(model, target_encoder, x, y)
    rows = [(k, f"{scores[k]:.4f}") for k in _shown(scores, target_encoder.task)]
    _table(f"scores on {Path(table.source).name} ({int(present.sum())} rows)", ["", "value"], rows)
    if target_encoder.task != "regression":
        names = target_encoder.classes
        matrix = metrics.confusion_matrix(y, model.predict(x) if outputs is None else outputs,
                                          num_classes=len(names))
        _table("confusion matrix (rows: true, columns: predicted)", ["true \\ predicted", *names],
               [(n, *row) for n, row in zip(names, matrix.tolist())])
        _try_plot("confusion matrix", lambda: _plots().confusion_matrix(
            matrix, Path(out_folder) / "confusion_matrix.png", class_names=names,
            title=f"Confusion matrix: {Path(table.source).name}"))
    return scores


def cmd_predict(args):
    from .tabular import read_csv, release_memory, write_csv
    _check_output(args.out, "--out", "file", inputs=[args.data, args.model])
    model, meta, encoder, target_encoder = _load(args.model)
    wanted = list(args.id) if args.id else list(meta.get("id_columns", []))
    table = read_csv(args.data, header=meta["header"], delimiter=_delimiter(args),
                     notify=_reading, text=wanted)  # identifiers copied as written: 007
    if args.id:
        ids = [table.names[table.index(col, "--id column")] for col in args.id]
    else:  # the identifiers train dropped, when this file has them
        ids = [c for c in meta.get("id_columns", []) if c in table.names]
    x = encoder.transform(table, notify=_notice)
    # Only the identifiers and the target are needed from here on.
    table = table.select([*ids, *[meta["target"]] * (meta["target"] in table.names)])
    release_memory()
    outputs = model.predict(x)
    header = [*ids, f"predicted_{meta['target']}"] if ids else \
        ["row", f"predicted_{meta['target']}"]
    if target_encoder.task != "regression":
        header += [f"p_{c}" for c in target_encoder.classes]
    write_csv(args.out, header, _prediction_rows(table, ids, target_encoder, outputs))
    _say(f"{len(outputs)} predictions: {args.out}")
    _score(model, meta, target_encoder, table, x, Path(args.out).resolve().parent, outputs)
    return 0


def _prediction_rows(table, ids, target_encoder, outputs):
    """The rows of the predictions file, a chunk at a time: as one list, 300,000 rows of str
    held more memory than the encoded file."""
    columns = [table.column_data(table.names.index(c)) for c in ids]
    for start in range(0, len(outputs), ROWS_AT_A_TIME):
        stop = min(start + ROWS_AT_A_TIME, len(outputs))
        predicted, probs = target_encoder.decode(outputs[start:stop])
        first = [c.cells(np.arange(start, stop)) for c in columns] or \
            [range(start + 1, stop + 1)]  # the row number
        rows = [[*cells, p] for *cells, p in zip(*first, predicted)]
        if probs is not None:
            for row, p in zip(rows, probs.tolist()):
                row += [f"{v:.6f}" for v in p]
        yield from rows


def cmd_evaluate(args):
    from .tabular import read_csv
    model, meta, encoder, target_encoder = _load(args.model)
    table = read_csv(args.data, header=meta["header"], delimiter=_delimiter(args),
                     notify=_reading)
    x = encoder.transform(table, notify=_notice)
    # the confusion matrix goes into the model folder, or beside a .zip model
    folder = args.model if Path(args.model).is_dir() else Path(args.model).resolve().parent
    if _score(model, meta, target_encoder, table, x, folder) is None:
        raise ValueError(f"{args.data} has no values in the target column {meta['target']!r}; "
                         "evaluate needs labelled rows")
    return 0


def cmd_info(args):
    model, meta, encoder, target_encoder = _load(args.model, need_cli=False)
    lines = []
    model.summary(print_fn=lines.append)
    _say("\n".join(lines))
    if meta is None:
        _info_from_python(model)
        return 0
    t = meta["training"]
    _say(f"task: {target_encoder.task}, target {meta['target']!r}"
         + (f", classes {target_encoder.classes}" if target_encoder.classes else ""))
    _say(f"inputs: {len(encoder.feature_names)} features from {meta['data']}: "
         f"{', '.join(encoder.feature_names)}")
    for notice in meta.get("notices", []):
        _say(f"  {notice}")
    epochs_run = len(meta["history"].get("loss", []))
    _say(f"training: {t['optimizer']} (learning rate {t['learning_rate'] or 'default'}), "
         f"batch size {t['batch_size']}, {epochs_run} of {t['epochs']} epochs"
         + (f", early stopping patience {t['early_stopping']}" if t["early_stopping"] else "")
         + f", seed {t['seed']}" + (", interrupted by Ctrl-C" if meta.get("interrupted") else ""))
    if "kept_epoch" in meta:
        _say(f"weights: epoch {meta['kept_epoch']} of {epochs_run}")
    scores = meta["scores"]
    _table("final scores", ["", "train", "validation"],
           [(k, f"{scores['train'][k]:.4f}", f"{scores['validation'][k]:.4f}")
            for k in _shown(scores["train"], target_encoder.task)])
    return 0


def _info_from_python(model):
    """What a model saved with model.save() holds: no CSV preprocessing, history or scores."""
    if model.optimizer is not None:
        rate = model.optimizer.learning_rate
        _say(f"compiled: loss {getattr(model.loss, 'name', type(model.loss).__name__)}, "
             f"optimizer {type(model.optimizer).__name__} (learning rate "
             f"{rate if callable(rate) else f'{rate:g}'}), {model.optimizer.iterations} steps "
             f"trained, metrics {', '.join(model.metric_names) or 'none'}")
    else:
        _say("not compiled: no loss or optimizer saved")
    _say(f"numbers: {model.dtype.name}, inputs of shape {tuple(model.input_shape)}")
    _say(f"not trained by the neuralnp command: no CSV preprocessing, history or scores are "
         f"saved with it; use it from Python with model.predict(x)")


def cmd_plot(args):
    from .plotting import learning_curves, model_layers, network_diagram
    out = Path(args.out or args.model)
    _check_output(out, "--out", "folder")
    model, meta, _, _ = _load(args.model, need_cli=False)
    out.mkdir(parents=True, exist_ok=True)
    if meta is None:
        _say(f"learning curves not drawn: {args.model} was saved from Python, without its "
             "history; draw them with neuralnp.plotting.learning_curves(history, path)")
    else:
        title = meta.get("title") or \
            f"Learning curves: {Path(meta['data']).name}, target {meta['target']}"
        path = learning_curves(meta["history"], out / "learning_curves.png", title=title,
                               metric=_curve_metrics(meta["history"]),
                               kept_epoch=meta.get("kept_epoch"))
        _say(f"learning curves: {path}")
    _say(f"network: {network_diagram(model_layers(model), out / 'network.png')}")
    return 0


# -- export ---------------------------------------------------------------------------------------

def cmd_export(args):
    import neuralnp as nn
    from .onnx import export
    _check_output(args.out, "FILE.onnx", "file", inputs=[args.model])
    model = nn.load_model(args.model, compile=False)
    try:
        export(model, args.out, opset=args.opset)
    except ValueError as exc:
        if str(exc).startswith("opset "):  # the library names its argument; say the flag
            raise ValueError(f"--{exc}") from None
        raise
    shape = ", ".join(["batch", *map(str, model.input_shape)])
    # The graph holds the network only: train's CSV preprocessing stays in the model folder.
    note = ("; it takes the encoded numeric features, not raw CSV rows: the preprocessing saved "
            "with the model is not part of the graph" if model.metadata.get("cli") else "")
    _say(f"{args.out}: ONNX opset {args.opset}, input 'input' ({shape}) {model.dtype.name}{note}")
    return 0


# -- datasets -------------------------------------------------------------------------------------

def cmd_datasets(args):
    from . import datasets
    if args.action == "list":
        _table("data sets shipped with neuralnp", ["name", "rows", "columns", "target",
                                                    "description"],
               [(name, shape[0], shape[1], datasets.TARGET_COLUMNS[name], text)
                for name, text, shape in datasets.list_datasets()])
        _say("export one with: neuralnp datasets export NAME FILE.csv")
        return 0
    if not args.name or not args.file:
        raise ValueError("usage: neuralnp datasets export NAME FILE.csv")
    _check_output(args.file, "FILE", "file", overwrite=args.overwrite)
    path = datasets.export(args.name, args.file, overwrite=args.overwrite)
    _say(f"{args.name}: {path}")
    return 0
