"""Small tabular datasets bundled with the package (see ``files/README.md``)."""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from importlib import resources

import numpy as np

FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "xor": ("x1", "x2"),
    "iris": ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"),
    "breast_cancer": tuple(
        f"{stat}_{name}"
        for stat in ("mean", "se", "worst")
        for name in (
            "radius", "texture", "perimeter", "area", "smoothness", "compactness",
            "concavity", "concave_points", "symmetry", "fractal_dimension",
        )
    ),
    "titanic": ("pclass", "sex", "age", "sibsp", "parch", "fare", "embarked"),
    # pixel_k is row k // 8, column k % 8 of the 8x8 image (scikit-learn names it pixel_{row}_{col}).
    "digits": tuple(f"pixel_{k}" for k in range(64)),
}

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "xor": ("0", "1"),
    "iris": ("setosa", "versicolor", "virginica"),
    "breast_cancer": ("benign", "malignant"),
    "titanic": ("died", "survived"),
    "digits": tuple(str(d) for d in range(10)),
    # The IDX sets have no FEATURE_NAMES entry: their x is a stack of 28x28 images.
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}

_IRIS_SPECIES = {"Iris-setosa": 0, "Iris-versicolor": 1, "Iris-virginica": 2}
_SEX = {"male": 0, "female": 1}
_EMBARKED = {"S": 0, "C": 1, "Q": 2}


def feature_names(name: str) -> tuple[str, ...]:
    """Column names, in order, of the ``x`` returned by the loader called ``name``."""
    if name not in FEATURE_NAMES:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {sorted(FEATURE_NAMES)}"
        )
    return FEATURE_NAMES[name]


def _read_bytes(filename: str) -> bytes:
    """The bytes of one bundled file, unchanged (``.gz`` files are not decompressed)."""
    resource = resources.files(__package__) / "files" / filename
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        # Only happens when the package was installed without its package data.
        raise FileNotFoundError(
            f"bundled data file {filename!r} is missing from neuralnp/datasets/files; "
            "reinstall neuralnp (the wheel must include package data 'datasets/files/*')"
        ) from None


def _read_rows(filename: str) -> list[list[str]]:
    raw = _read_bytes(filename)
    if filename.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(
                f"bundled data file {filename!r} is corrupted ({err}); reinstall neuralnp"
            ) from None
    text = raw.decode("utf-8")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _check_shape(filename: str, rows: list[list[str]], n_rows: int, n_cols: int) -> None:
    # The counts are fixed for bundled files, so a mismatch means a corrupted install.
    bad = [i for i, row in enumerate(rows) if len(row) != n_cols]
    if len(rows) != n_rows or bad:
        raise ValueError(
            f"bundled data file {filename!r} is corrupted (expected {n_rows} rows of "
            f"{n_cols} fields, got {len(rows)} rows, {len(bad)} malformed); reinstall neuralnp"
        )


def xor(dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """The four XOR points.

    Returns ``x`` of shape (4, 2) with rows (0,0), (0,1), (1,0), (1,1) and ``y`` of shape
    (4, 1) with y = x1 XOR x2, i.e. (0, 1, 1, 0); both of ``dtype`` (default float32).
    Built in code; no license applies.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype={dtype!r} is not a NumPy dtype; use e.g. 'float32'") from None
    if not (np.issubdtype(dt, np.number) or dt == np.bool_):
        raise ValueError(f"dtype={dtype!r} is not numeric; use e.g. 'float32' or 'int64'")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dt)
    y = np.array([[0], [1], [1], [0]], dtype=dt)
    return x, y


def iris() -> tuple[np.ndarray, np.ndarray]:
    """Fisher's Iris flowers.

    Returns ``x`` float32 of shape (150, 4): sepal length, sepal width, petal length,
    petal width (cm); ``y`` int64 of shape (150,): 0 = setosa, 1 = versicolor,
    2 = virginica (50 each, rows sorted by class).
    Source: Kaggle "uciml/iris" Iris.csv (UCI iris.data values; Id column dropped).
    License: CC BY 4.0 (UCI).
    """
    filename = "iris.csv"
    header, *rows = _read_rows(filename)
    _check_shape(filename, rows, 150, 6)
    x = np.array([[float(v) for v in row[1:5]] for row in rows], dtype=np.float32)
    y = np.array([_IRIS_SPECIES[row[5]] for row in rows], dtype=np.int64)
    return x, y


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """Wisconsin Diagnostic Breast Cancer (WDBC).

    Returns ``x`` float32 of shape (569, 30): mean, standard error and "worst" of ten
    cell-nucleus measurements (order in ``FEATURE_NAMES["breast_cancer"]``); ``y`` int64 of
    shape (569,): 1 = malignant (212), 0 = benign (357). Note scikit-learn uses the
    opposite coding (malignant = 0).
    Source: UCI wdbc.data (Wolberg, Street, Mangasarian, 1995). License: CC BY 4.0.
    """
    filename = "wdbc.csv"
    rows = _read_rows(filename)
    _check_shape(filename, rows, 569, 32)
    x = np.array([[float(v) for v in row[2:]] for row in rows], dtype=np.float32)
    y = np.array([{"M": 1, "B": 0}[row[1]] for row in rows], dtype=np.int64)
    return x, y


def titanic() -> tuple[np.ndarray, np.ndarray]:
    """Titanic passengers (Kaggle training set), reduced to 7 numeric features.

    Returns ``x`` float32 of shape (891, 7) with columns Pclass (1, 2, 3), Sex (male = 0,
    female = 1), Age (the 177 missing ages filled with the file's median age, 28),
    SibSp, Parch, Fare, Embarked (S = 0, C = 1, Q = 2; the 2 missing filled with the most
    frequent port, S); ``y`` int64 of shape (891,): Survived (1 = survived, 342 of 891).
    Name, Ticket and Cabin are dropped.
    Source: Kaggle "Titanic - Machine Learning from Disaster" train.csv, public historical
    passenger records (Encyclopedia Titanica).
    """
    filename = "titanic_train.csv"
    header, *rows = _read_rows(filename)
    _check_shape(filename, rows, 891, 12)
    col = {name: i for i, name in enumerate(header)}

    def column(name: str) -> list[str]:
        return [row[col[name]] for row in rows]

    ages = [float(a) if a else np.nan for a in column("Age")]
    median_age = float(np.nanmedian(ages))
    ports = column("Embarked")
    most_common_port = Counter(p for p in ports if p).most_common(1)[0][0]

    x = np.column_stack([
        [float(v) for v in column("Pclass")],
        [_SEX[v] for v in column("Sex")],
        np.where(np.isnan(ages), median_age, ages),
        [float(v) for v in column("SibSp")],
        [float(v) for v in column("Parch")],
        [float(v) for v in column("Fare")],
        [_EMBARKED[p or most_common_port] for p in ports],
    ]).astype(np.float32)
    y = np.array([int(v) for v in column("Survived")], dtype=np.int64)
    return x, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """Optical recognition of handwritten digits, 8x8 pixels (the set scikit-learn bundles).

    Returns ``x`` float32 of shape (1797, 64): pixel intensities 0-16 (each is the number of
    "on" pixels in a 4x4 block of a 32x32 bitmap), row-major, so ``x.reshape(-1, 8, 8)`` gives
    the images; ``y`` int64 of shape (1797,): the digit 0-9 (174 to 183 per class). Same
    values and order as ``sklearn.datasets.load_digits()``.
    Source: UCI "Optical Recognition of Handwritten Digits" test part (E. Alpaydin,
    C. Kaynak, 1998), as shipped by scikit-learn in ``sklearn/datasets/data/digits.csv.gz``.
    License: CC BY 4.0 (UCI); scikit-learn, which packaged the file, is BSD-3-Clause.
    """
    filename = "digits.csv.gz"
    rows = _read_rows(filename)
    _check_shape(filename, rows, 1797, 65)
    values = np.array([[int(v) for v in row] for row in rows], dtype=np.int64)
    return values[:, :64].astype(np.float32), values[:, 64].copy()
