"""Write a bundled data set to a CSV file, for tools that read CSV (``neuralnp train FILE.csv``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from .._files import atomic_write
from ._tabular import _read_bytes, digits, xor


class DatasetInfo(NamedTuple):
    """One row of :func:`list_datasets`: ``shape`` is (data rows, columns) of the export."""

    name: str
    description: str
    shape: tuple[int, int]


# Column that holds the label in each export, for ``--target``.
TARGET_COLUMNS: dict[str, str] = {
    "xor": "y",
    "iris": "Species",
    "breast_cancer": "diagnosis",
    "titanic": "Survived",
    "digits": "digit",
}

# Header written above the raw UCI wdbc.data rows, which have none. Kaggle's widely used copy
# ("uciml/breast-cancer-wisconsin-data") names the columns this way, except that it writes
# "concave points_mean" with a space; an underscore keeps every name a plain identifier.
_WDBC_HEADER = ["id", "diagnosis"] + [
    f"{name}_{stat}"
    for stat in ("mean", "se", "worst")
    for name in (
        "radius", "texture", "perimeter", "area", "smoothness", "compactness",
        "concavity", "concave_points", "symmetry", "fractal_dimension",
    )
]

_INFO = (
    DatasetInfo("xor", "the four XOR points: x1, x2 -> y (0/1)", (4, 3)),
    DatasetInfo(
        "iris",
        "Fisher's Iris flowers: Id, 4 measurements in cm -> Species (3 classes, 50 each)",
        (150, 6),
    ),
    DatasetInfo(
        "breast_cancer",
        "Wisconsin Diagnostic Breast Cancer: id, 30 cell-nucleus features -> diagnosis "
        "(M = malignant 212, B = benign 357)",
        (569, 32),
    ),
    DatasetInfo(
        "titanic",
        "Titanic passengers (Kaggle train.csv, raw, with missing values) -> Survived (0/1)",
        (891, 12),
    ),
    DatasetInfo(
        "digits",
        "8x8 handwritten digits: pixel_0..pixel_63 (0-16) -> digit (0-9)",
        (1797, 65),
    ),
)


def names() -> tuple[str, ...]:
    """Names accepted by :func:`export`: xor, iris, breast_cancer, titanic, digits."""
    return tuple(info.name for info in _INFO)


def list_datasets() -> list[DatasetInfo]:
    """One ``(name, description, shape)`` row per exportable data set.

    ``shape`` is (data rows, columns) of the CSV that :func:`export` writes, not counting the
    header row; ``TARGET_COLUMNS[name]`` is the label column.
    """
    return list(_INFO)


def _csv_lines(header: list[str], rows) -> bytes:
    # Plain comma-joined numbers and identifiers: nothing here needs CSV quoting.
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("ascii")


def _export_bytes(name: str) -> bytes:
    if name == "xor":
        x, y = xor(dtype="int64")
        return _csv_lines(["x1", "x2", "y"], [[*a, *b] for a, b in zip(x.tolist(), y.tolist())])
    if name == "iris":
        return _read_bytes("iris.csv")  # already has its header: Id, ..., Species
    if name == "titanic":
        return _read_bytes("titanic_train.csv")  # Kaggle train.csv as shipped
    if name == "breast_cancer":
        return (",".join(_WDBC_HEADER) + "\n").encode("ascii") + _read_bytes("wdbc.csv")
    if name == "digits":
        x, y = digits()
        header = [f"pixel_{k}" for k in range(64)] + ["digit"]
        rows = [[*pixels, label] for pixels, label in zip(x.astype(int).tolist(), y.tolist())]
        return _csv_lines(header, rows)
    raise AssertionError(name)  # unreachable: export() checks the name first


def export(name: str, path, overwrite: bool = False) -> Path:
    """Write the bundled data set ``name`` to the CSV file ``path``; return the path written.

    The file has a header row and can be given to a CSV-reading tool, e.g.
    ``neuralnp train iris.csv --target Species`` (label columns: ``TARGET_COLUMNS``).
    ``path`` may also be an existing folder; the file is then ``<folder>/<name>.csv``.

    Contents (UTF-8, LF line endings):

    - ``xor``: ``x1,x2,y``, 4 rows of 0/1.
    - ``iris``: Kaggle's ``Iris.csv`` unchanged: ``Id``, four measurements, ``Species``.
    - ``breast_cancer``: ``id,diagnosis,radius_mean,...,fractal_dimension_worst`` above the
      raw UCI ``wdbc.data`` rows; ``diagnosis`` is ``M`` or ``B``.
    - ``titanic``: Kaggle's ``train.csv`` unchanged (``PassengerId``, ``Survived``, ...; empty
      fields where Age, Cabin or Embarked are missing).
    - ``digits``: ``pixel_0..pixel_63,digit``, integers.

    The id columns (``Id``, ``id``, ``PassengerId``) are kept as in the sources; drop them
    before training.

    The file is written under a temporary name in the same folder and renamed into place,
    so a reader never sees half a file. Raises ValueError for an unknown ``name``,
    FileExistsError when ``path`` exists and ``overwrite`` is False, and FileNotFoundError
    when the folder of ``path`` does not exist.
    """
    if name not in names():
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(names())}")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / f"{name}.csv"
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}: folder {folder} does not exist; create it first"
        )
    # Checked before writing, so a refusal leaves nothing behind. A file created by someone
    # else between this check and the rename below is replaced; that race is accepted.
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True to replace it, or choose another path"
        )
    data = _export_bytes(name)
    with atomic_write(target) as f:
        f.write(data)
    return target
