"""Tables from CSV files, and the encoders that turn their raw rows into network inputs.

This is what the ``neuralnp`` command saves inside a model, so that ``predict`` takes rows exactly
like the training file. :class:`TableEncoder` types each feature column and remembers how to
encode it:

- numbers are standardised, ``(x - mean) / std``; missing numbers get the training median;
- text is one-hot encoded; categories seen fewer than ``min_frequency`` times share one
  ``other`` column, and missing text gets the most frequent category;
- identifier-like columns (a distinct value in every row: names, ids), empty and constant
  columns are dropped.

:class:`TargetEncoder` decides the task from the target column: text or at most 20 distinct
whole numbers make a classification (binary with two classes), anything else a regression.
Every decision is reported as a notice, a plain sentence for the user.
"""

import csv
import math
import os
from collections import Counter

import numpy as np

from ._files import atomic_write

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
MAX_CLASSES_FOR_NUMBERS = 20


def is_missing(cell):
    return cell.strip().lower() in MISSING


def _to_float(cell):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Table:
    """Rows of text cells with column names (``"0"``, ``"1"``, ... for a file without header)."""

    def __init__(self, names, rows, source="table", has_header=True):
        self.names, self.rows, self.source, self.has_header = list(names), rows, source, has_header

    def __len__(self):
        return len(self.rows)

    def column(self, index):
        return [row[index] for row in self.rows]

    def index(self, spec, what="column"):
        """The position of a column given by name, or by number (counting from 0)."""
        spec = str(spec)
        if spec in self.names:
            return self.names.index(spec)
        if spec.lstrip("-").isdigit() and -len(self.names) <= int(spec) < len(self.names):
            return int(spec) % len(self.names)
        shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
        raise ValueError(f"{self.source} has no {what} {spec!r}; its columns are: {shown} "
                         f"(or give a number from 0 to {len(self.names) - 1})")


def read_csv(path, header="auto"):
    """Read a CSV file into a :class:`Table`, with one clear error per kind of bad file.

    ``header``: ``"auto"`` (a first row without any number, whose cells do not recur below, is a
    header), ``True`` or ``False``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a CSV file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a readable CSV file ({exc})") from None
    rows = [row for row in rows if any(row)]
    if not rows:
        raise ValueError(f"{path} is empty; a CSV file with one row per sample is needed")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"{path}: row {number} has {len(row)} fields but the first row has "
                             f"{width}; every row needs the same columns")
    has_header = _looks_like_header(rows) if header == "auto" else bool(header)
    if has_header:
        names = _unique_names(rows[0])
        rows = rows[1:]
    else:
        names = [str(i) for i in range(width)]
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    return Table(names, rows, source=path, has_header=has_header)


def _looks_like_header(rows):
    first = rows[0]
    if any(_to_float(cell) is not None for cell in first):
        return False
    if len(rows) == 1:
        return True
    below = [set(row[i] for row in rows[1:200]) for i in range(len(first))]
    return not any(cell in seen for cell, seen in zip(first, below) if cell)


def _unique_names(cells):
    names, seen = [], Counter()
    for i, cell in enumerate(cells):
        name = cell or str(i)
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def write_csv(path, names, rows):
    """Write rows atomically (see :func:`neuralnp._files.atomic_write`), with a header row of
    ``names`` unless ``names`` is None."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        if names is not None:
            writer.writerow(names)
        writer.writerows(rows)


# -- features -------------------------------------------------------------------------------------

class TableEncoder:
    """Fit on the training table's feature columns; then turn any table with those columns into
    a float32 matrix ``(rows, features)``. ``notices`` says what was decided and why."""

    def __init__(self, min_frequency=None):
        self.min_frequency = min_frequency
        self.columns = []  # one spec per used or dropped column
        self.notices = []

    def fit(self, table, indices):
        n = len(table)
        min_freq = self.min_frequency or max(2, math.ceil(0.01 * n))
        self.columns, self.notices = [], []
        for i in indices:
            name, cells = table.names[i], table.column(i)
            present = [c for c in cells if not is_missing(c)]
            missing = n - len(present)
            numbers = [_to_float(c) for c in present]
            numeric = bool(present) and all(v is not None for v in numbers)
            distinct = len(set(present))
            if not present:
                self._drop(name, "it is empty")
            elif distinct == 1 and not missing:
                self._drop(name, f"it holds the same value ({present[0]}) in every row")
            elif distinct == n and (not numeric or all(v.is_integer() for v in numbers)):
                self._drop(name, "it looks like an identifier (a different value in every row)")
            elif numeric:
                values = np.array(numbers)
                median = float(np.median(values))
                filled = np.concatenate([values, np.full(missing, median)])
                std = float(filled.std())
                self.columns.append({"name": name, "kind": "number", "fill": median,
                                     "mean": float(filled.mean()), "scale": std or 1.0,
                                     "indicator": missing >= min_freq})
                if missing:
                    self.notices.append(f"{name}: {missing} missing values filled with the "
                                        f"median {median:g}" + self._flagged(missing, min_freq))
            else:
                counts = Counter(present)
                kept = sorted(c for c, k in counts.items() if k >= min_freq)
                rare = len(counts) - len(kept)
                indicator = missing >= min_freq
                if not kept and not indicator:
                    self._drop(name, f"none of its {len(counts)} values occurs {min_freq} times")
                    continue
                most = counts.most_common(1)[0][0]
                self.columns.append({"name": name, "kind": "text", "fill": most,
                                     "categories": kept, "other": rare > 0 and bool(kept),
                                     "indicator": indicator})
                if missing and kept:
                    self.notices.append(f"{name}: {missing} missing values filled with the most "
                                        f"frequent value {most!r}" + self._flagged(missing,
                                                                                   min_freq))
                if rare and kept:
                    self.notices.append(f"{name}: {rare} values seen fewer than {min_freq} times "
                                        "share one 'other' column")
                elif rare:
                    self.notices.append(f"{name}: none of its {rare} values occurs {min_freq} "
                                        f"times; only whether it is missing ({missing} rows) is "
                                        "kept")
        if not any(c["kind"] != "drop" for c in self.columns):
            raise ValueError("no usable feature columns are left; the data needs at least one "
                             "column besides the target that is not an identifier")
        return self

    @staticmethod
    def _flagged(missing, min_freq):
        # Whether a value was missing often says something (a passenger without a cabin):
        # a 0/1 column keeps it, as scikit-learn's SimpleImputer(add_indicator=True) does.
        return ", plus a column marking them" if missing >= min_freq else ""

    def _drop(self, name, why):
        self.columns.append({"name": name, "kind": "drop"})
        self.notices.append(f"{name}: dropped, {why}")

    @property
    def feature_names(self):
        names = []
        for c in self.columns:
            if c["kind"] == "number":
                names.append(c["name"])
            elif c["kind"] == "text":
                names += [f"{c['name']}={v}" for v in c["categories"]]
                names += [f"{c['name']}=other"] if c["other"] else []
            if c.get("indicator"):
                names.append(f"{c['name']} missing")
        return names

    def transform(self, table):
        """The encoded matrix; raises ValueError naming any training column the table lacks."""
        blocks = []
        for spec in self.columns:
            if spec["kind"] == "drop":
                continue
            if spec["name"] not in table.names:
                raise ValueError(f"{table.source} lacks the column {spec['name']!r} that the "
                                 "model was trained with; give it the training file's columns")
            cells = table.column(table.names.index(spec["name"]))
            blocks.append(self._encode(spec, cells, table.source))
        return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)

    @classmethod
    def _encode(cls, spec, cells, source):
        block = cls._encode_values(spec, cells, source)
        if spec.get("indicator"):
            flags = np.array([[1.0 if is_missing(c) else 0.0] for c in cells]).reshape(-1, 1)
            block = np.concatenate([block, flags], axis=1)
        return block

    @staticmethod
    def _encode_values(spec, cells, source):
        if spec["kind"] == "number":
            values = np.empty(len(cells))
            for row, cell in enumerate(cells):
                if is_missing(cell):
                    values[row] = spec["fill"]
                    continue
                value = _to_float(cell)
                if value is None:
                    raise ValueError(f"{source}: column {spec['name']!r} row {row + 1} holds "
                                     f"{cell!r}, but the model was trained on numbers there")
                values[row] = value
            return ((values - spec["mean"]) / spec["scale"]).reshape(-1, 1)
        categories = spec["categories"]
        width = len(categories) + (1 if spec["other"] else 0)
        position = {c: i for i, c in enumerate(categories)}
        out = np.zeros((len(cells), width))
        for row, cell in enumerate(cells):
            value = spec["fill"] if is_missing(cell) else cell
            column = position.get(value, len(categories) if spec["other"] else None)
            if column is not None:  # an unseen category with no 'other' column: all zeros
                out[row, column] = 1.0
        return out

    def get_config(self):
        return {"min_frequency": self.min_frequency, "columns": self.columns}

    @classmethod
    def from_config(cls, config):
        encoder = cls(config.get("min_frequency"))
        encoder.columns = list(config["columns"])
        return encoder


# -- target ---------------------------------------------------------------------------------------

class TargetEncoder:
    """The task a target column asks for, and the mapping between its cells and ``y``.

    Classification targets become integer labels ``0..K-1`` (classes sorted, so the positive
    class of a binary task is the larger one: ``1`` of 0/1, ``M`` of B/M); regression targets
    are standardised, and predictions are mapped back.
    """

    def __init__(self, task=None):
        if task not in (None, "binary", "multiclass", "regression"):
            raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
        self.task = task
        self.classes = []
        self.mean, self.scale = 0.0, 1.0

    def fit(self, name, cells):
        present = [c for c in cells if not is_missing(c)]
        numbers = [_to_float(c) for c in present]
        numeric = all(v is not None for v in numbers)
        distinct = sorted(set(present), key=(lambda c: float(c)) if numeric else None)
        if self.task is None:
            few_whole = numeric and all(v.is_integer() for v in numbers) and \
                len(distinct) <= MAX_CLASSES_FOR_NUMBERS
            self.task = "regression" if numeric and not few_whole else \
                ("binary" if len(distinct) == 2 else "multiclass")
        if self.task == "regression":
            if not numeric:
                bad = next(c for c, v in zip(present, numbers) if v is None)
                raise ValueError(f"target {name!r} holds {bad!r}; a regression needs numbers")
            values = np.array(numbers)
            self.mean, self.scale = float(values.mean()), float(values.std()) or 1.0
            return self
        if len(distinct) < 2:
            raise ValueError(f"target {name!r} has a single class ({distinct[0] if distinct else 'none'}); "
                             "a classifier needs at least two")
        if self.task == "binary" and len(distinct) != 2:
            raise ValueError(f"target {name!r} has {len(distinct)} classes, not 2; use the "
                             "multi-class task")
        self.classes = distinct
        return self

    @property
    def n_outputs(self):
        return 1 if self.task in ("binary", "regression") else len(self.classes)

    def transform(self, cells, source="data"):
        if self.task == "regression":
            values = np.array([_to_float(c) for c in cells], dtype=object)
            if any(v is None for v in values):
                raise ValueError(f"{source}: the target holds text; the model predicts numbers")
            return ((values.astype(float) - self.mean) / self.scale).astype(np.float32)
        position = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(cells) - set(position))
        if unknown:
            raise ValueError(f"{source}: the target holds {', '.join(map(repr, unknown[:5]))}, "
                             f"which the model never saw; its classes are {self.classes}")
        return np.array([position[c] for c in cells], dtype=np.int64)

    def decode(self, outputs):
        """``(predicted cells, class probabilities or None)`` from the model's outputs."""
        outputs = np.asarray(outputs, dtype=np.float64)
        if self.task == "regression":
            return [f"{v:.6g}" for v in outputs[:, 0] * self.scale + self.mean], None
        if self.task == "binary":
            p = outputs[:, :1]
            probs = np.concatenate([1 - p, p], axis=1) if outputs.shape[1] == 1 else outputs
        else:
            probs = outputs
        return [self.classes[i] for i in np.argmax(probs, axis=1)], probs

    def get_config(self):
        return {"task": self.task, "classes": self.classes, "mean": self.mean,
                "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        encoder = cls(config["task"])
        encoder.classes = list(config["classes"])
        encoder.mean, encoder.scale = config["mean"], config["scale"]
        return encoder
