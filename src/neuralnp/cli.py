"""The ``neuralnp`` command: split a CSV file, train on it, predict, evaluate, look at the model,
export it to ONNX.

Every subcommand checks its input and ends a failure with one line on stderr and exit status 2
(set ``NEURALNP_DEBUG=1`` for the traceback). The preprocessing that ``train`` decides (column
types, scaling, one-hot encoding, imputation) is saved inside the model, so ``predict`` takes raw
rows exactly like the training file.
"""

import argparse
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with the examples kept as written (they are the best part of --help)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def _example(text):
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def build_parser():
    parser = _Parser(prog="neuralnp", description="Train small neural networks on CSV files.",
                     epilog=_example("""
                         neuralnp datasets export breast_cancer cancer.csv
                         neuralnp split cancer.csv --stratify diagnosis
                         neuralnp train train.csv --target diagnosis --early-stopping 10
                         neuralnp predict model valid.csv
                     """))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("split", help="split a CSV file into train.csv and valid.csv",
                       epilog=_example("neuralnp split data.csv --train 0.8 --stratify label"))
    p.add_argument("data", help="the CSV file")
    p.add_argument("--train", type=float, default=0.8, help="fraction of rows for training")
    p.add_argument("--stratify", metavar="COL", help="keep the classes of COL in proportion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="folder for train.csv and valid.csv")
    p.set_defaults(run=cmd_split)

    p = sub.add_parser("train", help="train a network on a CSV file", epilog=_example("""
        neuralnp train train.csv --target diagnosis --validation valid.csv --early-stopping 10
        neuralnp train data.csv --target 1 --layers 32 16 --epochs 100   # column 1, no header
    """))
    p.add_argument("data", help="the training CSV file (with or without a header row)")
    p.add_argument("--target", required=True, metavar="COL",
                   help="the column to predict: its name, or its number counting from 0")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--validation", metavar="VALID.csv", help="a validation file")
    group.add_argument("--validation-split", type=float, default=0.2, metavar="F",
                       help="hold out this fraction of DATA for validation (default 0.2)")
    p.add_argument("--layers", type=int, nargs="+", default=[64, 32], metavar="UNITS",
                   help="hidden layer sizes (default: 64 32)")
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--learning-rate", type=float, help="default: the optimizer's own")
    p.add_argument("--loss", default="auto", help="auto: from the task (binary cross-entropy, "
                   "sparse categorical cross-entropy or mse)")
    p.add_argument("--task", default="auto", choices=["auto", "binary", "multiclass",
                                                      "regression"])
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss and keep "
                        "the best weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="model", metavar="MODEL", help="model folder (default model)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI, run as: mpirun -n K neuralnp train ... "
                        "--distributed (needs neuralnp[mpi]); rank 0 prints and saves")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("predict", help="predict the rows of a CSV file", epilog=_example("""
        neuralnp predict model valid.csv --out predictions.csv
    """))
    p.add_argument("model", help="a model folder written by neuralnp train")
    p.add_argument("data", help="rows with the training file's columns (the target is optional)")
    p.add_argument("--out", default="predictions.csv")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("evaluate", help="scores of a model on a labelled CSV file",
                       epilog=_example("neuralnp evaluate model valid.csv"))
    p.add_argument("model")
    p.add_argument("data")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("info", help="describe a model", epilog=_example("neuralnp info model"))
    p.add_argument("model")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("plot", help="learning curves and a drawing of the network",
                       epilog=_example("neuralnp plot model --out figures"))
    p.add_argument("model")
    p.add_argument("--out", help="folder for the pictures (default: the model folder)")
    p.set_defaults(run=cmd_plot)

    from .onnx import DEFAULT_OPSET
    p = sub.add_parser("export", help="write a model as an ONNX file (for onnxruntime)",
                       epilog=_example("neuralnp export model model.onnx --opset 17"))
    p.add_argument("model", help="a model folder or .zip saved by neuralnp")
    p.add_argument("out", metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX operator set version (default {DEFAULT_OPSET})")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("datasets", help="list the data sets shipped with neuralnp, or export one",
                       epilog=_example("""
                           neuralnp datasets
                           neuralnp datasets export titanic titanic.csv
                       """))
    p.add_argument("action", nargs="?", choices=["list", "export"], default="list")
    p.add_argument("name", nargs="?", help="data set to export")
    p.add_argument("file", nargs="?", help="CSV file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=cmd_datasets)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        if os.environ.get("NEURALNP_DEBUG"):
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if getattr(args, "distributed", False):
            _abort_job(exc, message)
        print(f"neuralnp: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE


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
    try:
        path = draw()
    except ImportError as exc:
        _say(f"{what} not drawn: {exc}")
        return None
    _say(f"{what}: {path}")
    return path


# -- split ----------------------------------------------------------------------------------------

def cmd_split(args):
    from .preprocessing import train_test_split
    from .tabular import read_csv, write_csv

    if not 0.0 < args.train < 1.0:
        raise ValueError(f"--train must be a fraction between 0 and 1, got {args.train}")
    table = read_csv(args.data)
    rows = np.arange(len(table))
    labels = None
    if args.stratify is not None:
        labels = np.array(table.column(table.index(args.stratify, "--stratify column")))
    train, valid = train_test_split(rows, test_size=1.0 - args.train, seed=args.seed,
                                    stratify=labels)
    out = Path(args.out)
    names = table.names if table.has_header else None
    for name, part in (("train.csv", np.sort(train)), ("valid.csv", np.sort(valid))):
        write_csv(out / name, names, [table.rows[i] for i in part])  # None: no header
        _say(f"{out / name}: {len(part)} rows")
    return 0


# -- train ----------------------------------------------------------------------------------------

def _prepare(table, target_index, source):
    """Rows of ``table`` whose target is present, with a notice when some are not."""
    from .tabular import Table, is_missing
    keep = [row for row in table.rows if not is_missing(row[target_index])]
    dropped = len(table) - len(keep)
    if dropped:
        _say(f"notice: {source}: {dropped} rows without a target value are left out")
    if not keep:
        raise ValueError(f"{source}: no row has a value in the target column")
    return Table(table.names, keep, source=table.source, has_header=table.has_header)


def _output_and_loss(task, n_outputs, loss):
    from . import losses
    if loss == "auto":
        loss = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                "regression": "mse"}[task]
    losses.get(loss)  # an unknown name fails here, listing the valid ones
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if task == "regression":
            raise ValueError(f"--loss {loss} needs a classification target")
        return max(n_outputs, 2), "softmax", "sparse_categorical_crossentropy"
    if loss == "binary_crossentropy":
        if task != "binary":
            raise ValueError(f"--loss binary_crossentropy needs a target with two classes; this "
                             f"one is {task}")
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


def cmd_train(args):
    import neuralnp as nn
    from .tabular import TableEncoder, TargetEncoder, read_csv

    strategy = _strategy(args)

    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if any(units < 1 for units in args.layers):
        raise ValueError(f"--layers needs positive sizes, got {args.layers}")
    table = read_csv(args.data)
    target = table.index(args.target, "target column")
    target_name = table.names[target]
    table = _prepare(table, target, args.data)
    target_encoder = TargetEncoder(None if args.task == "auto" else args.task)
    target_encoder.fit(target_name, table.column(target))

    if args.validation:
        train_table = table
        valid_table = read_csv(args.validation, header=table.has_header)
        valid_table = _prepare(valid_table, valid_table.index(target_name, "target column"),
                               args.validation)
    else:
        train_table, valid_table = _split_rows(table, target, target_encoder, args)
    features = [i for i in range(len(table.names)) if i != target]
    encoder = TableEncoder().fit(train_table, features)
    for notice in encoder.notices:
        _say(f"notice: {notice}")
    x_train = encoder.transform(train_table)
    y_train = target_encoder.transform(train_table.column(target), args.data)
    x_valid = encoder.transform(valid_table)
    valid_target = valid_table.names.index(target_name)
    y_valid = target_encoder.transform(valid_table.column(valid_target), valid_table.source)

    units, activation, loss = _output_and_loss(target_encoder.task, target_encoder.n_outputs,
                                               args.loss)
    layers = []
    for size in args.layers:
        layers.append(nn.Dense(size, activation=args.activation))
        if args.dropout:
            layers.append(nn.Dropout(args.dropout))
    layers.append(nn.Dense(units, activation=activation))
    model = nn.Sequential(layers, seed=args.seed)
    optimizer = nn.optimizers.REGISTRY.get(args.optimizer.lower())
    if optimizer is None:
        nn.optimizers.get(args.optimizer)  # raises, listing the valid names
    optimizer = optimizer() if args.learning_rate is None else optimizer(args.learning_rate)
    metric = "mae" if target_encoder.task == "regression" else "accuracy"
    model.compile(loss=loss, optimizer=optimizer, metrics=[metric])

    callbacks = []
    if args.early_stopping is not None:
        callbacks.append(nn.callbacks.EarlyStopping("val_loss", patience=args.early_stopping,
                                                    restore_best_weights=True))
    verbose = 0
    if not args.quiet:
        if sys.stdout.isatty():
            try:
                callbacks.append(nn.callbacks.RichProgress())
            except ImportError:
                verbose = 1
        else:
            verbose = 1
    _say(f"training {x_train.shape[1]}-{'-'.join(map(str, args.layers))}-{units} "
         f"({target_encoder.task}, {loss}) on {len(x_train)} rows, validating on {len(x_valid)}")
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_valid, y_valid), callbacks=callbacks, verbose=verbose,
                        distributed=strategy)
    if strategy is not None and not strategy.is_chief:
        return 0  # rank 0 scores, saves, prints and plots the model every rank holds

    scores = {"train": model.evaluate(x_train, y_train, return_dict=True),
              "validation": model.evaluate(x_valid, y_valid, return_dict=True)}
    model.metadata["cli"] = {
        "target": target_name, "header": table.has_header, "data": str(args.data),
        "encoder": encoder.get_config(), "target_encoder": target_encoder.get_config(),
        "notices": encoder.notices, "history": history.history, "scores": scores,
        "training": {k: v for k, v in vars(args).items() if k not in ("run", "command")},
    }
    model.save(args.out)
    rows = [(name, *(f"{scores[part][name]:.4f}" for part in ("train", "validation")))
            for name in scores["train"]]
    _table(f"final scores ({len(history.history['loss'])} epochs)", ["", "train", "validation"],
           rows)
    _say(f"model: {args.out}")
    _try_plot("learning curves", lambda: _plots().learning_curves(
        history.history, Path(args.out) / "learning_curves.png",
        title=f"Learning curves: {Path(args.data).name}, target {target_name}"))
    return 0


def _split_rows(table, target, target_encoder, args):
    from .preprocessing import train_test_split
    from .tabular import Table
    if not 0.0 < args.validation_split < 1.0:
        raise ValueError(f"--validation-split must be between 0 and 1, got {args.validation_split}")
    rows = np.arange(len(table))
    labels = None
    if target_encoder.task != "regression":
        labels = np.array(table.column(target))
    train, valid = train_test_split(rows, test_size=args.validation_split, seed=args.seed,
                                    stratify=labels)
    part = lambda idx: Table(table.names, [table.rows[i] for i in np.sort(idx)],  # noqa: E731
                             source=table.source, has_header=table.has_header)
    return part(train), part(valid)


def _plots():
    from . import plotting
    return plotting


# -- predict, evaluate, info, plot ------------------------------------------------------------------

def _load(path):
    import neuralnp as nn
    from .tabular import TableEncoder, TargetEncoder
    model = nn.load_model(path)
    meta = model.metadata.get("cli")
    if not meta:
        raise ValueError(f"{path} was not trained by the neuralnp command, so it carries no "
                         "preprocessing; use it from Python with model.predict(x)")
    return (model, meta, TableEncoder.from_config(meta["encoder"]),
            TargetEncoder.from_config(meta["target_encoder"]))


def _score(model, meta, target_encoder, table, x, out_folder):
    """Loss, accuracy and confusion matrix when ``table`` carries the target column."""
    from . import metrics
    from .tabular import is_missing
    target = meta["target"]
    if target not in table.names:
        return None
    cells = table.column(table.names.index(target))
    present = np.array([not is_missing(c) for c in cells])
    if not present.any():
        return None
    y = target_encoder.transform([c for c, p in zip(cells, present) if p], table.source)
    scores = model.evaluate(x[present], y, return_dict=True)
    rows = [(k, f"{v:.4f}") for k, v in scores.items()]
    _table(f"scores on {Path(table.source).name} ({int(present.sum())} rows)", ["", "value"], rows)
    if target_encoder.task != "regression":
        names = target_encoder.classes
        matrix = metrics.confusion_matrix(y, model.predict(x[present]), num_classes=len(names))
        _table("confusion matrix (rows: true, columns: predicted)", ["true \\ predicted", *names],
               [(n, *row) for n, row in zip(names, matrix.tolist())])
        _try_plot("confusion matrix", lambda: _plots().confusion_matrix(
            matrix, Path(out_folder) / "confusion_matrix.png", class_names=names,
            title=f"Confusion matrix: {Path(table.source).name}"))
    return scores


def cmd_predict(args):
    from .tabular import read_csv, write_csv
    model, meta, encoder, target_encoder = _load(args.model)
    table = read_csv(args.data, header=meta["header"])
    x = encoder.transform(table)
    predicted, probs = target_encoder.decode(model.predict(x))
    header = ["row", f"predicted_{meta['target']}"]
    rows = [[i + 1, p] for i, p in enumerate(predicted)]
    if probs is not None:
        header += [f"p_{c}" for c in target_encoder.classes]
        for row, p in zip(rows, probs):
            row += [f"{v:.6f}" for v in p]
    write_csv(args.out, header, rows)
    _say(f"{len(rows)} predictions: {args.out}")
    _score(model, meta, target_encoder, table, x, Path(args.out).resolve().parent)
    return 0


def cmd_evaluate(args):
    from .tabular import read_csv
    model, meta, encoder, target_encoder = _load(args.model)
    table = read_csv(args.data, header=meta["header"])
    if _score(model, meta, target_encoder, table, encoder.transform(table), args.model) is None:
        raise ValueError(f"{args.data} has no values in the target column {meta['target']!r}; "
                         "evaluate needs labelled rows")
    return 0


def cmd_info(args):
    model, meta, encoder, target_encoder = _load(args.model)
    lines = []
    model.summary(print_fn=lines.append)
    _say("\n".join(lines))
    t = meta["training"]
    _say(f"task: {target_encoder.task}, target {meta['target']!r}"
         + (f", classes {target_encoder.classes}" if target_encoder.classes else ""))
    _say(f"inputs: {len(encoder.feature_names)} features from {meta['data']}: "
         f"{', '.join(encoder.feature_names)}")
    for notice in meta.get("notices", []):
        _say(f"  {notice}")
    _say(f"training: {t['optimizer']} (learning rate {t['learning_rate'] or 'default'}), "
         f"batch size {t['batch_size']}, {len(meta['history']['loss'])} of {t['epochs']} epochs"
         + (f", early stopping patience {t['early_stopping']}" if t["early_stopping"] else "")
         + f", seed {t['seed']}")
    scores = meta["scores"]
    _table("final scores", ["", "train", "validation"],
           [(k, f"{scores['train'][k]:.4f}", f"{scores['validation'][k]:.4f}")
            for k in scores["train"]])
    return 0


def cmd_plot(args):
    from .plotting import learning_curves, model_layers, network_diagram
    model, meta, _, _ = _load(args.model)
    out = Path(args.out or args.model)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"learning curves: {learning_curves(meta['history'], out / 'learning_curves.png')}")
    _say(f"network: {network_diagram(model_layers(model), out / 'network.png')}")
    return 0


# -- export ---------------------------------------------------------------------------------------

def cmd_export(args):
    import neuralnp as nn
    from .onnx import export
    model = nn.load_model(args.model, compile=False)
    export(model, args.out, opset=args.opset)
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
    path = datasets.export(args.name, args.file, overwrite=args.overwrite)
    _say(f"{args.name}: {path}")
    return 0
