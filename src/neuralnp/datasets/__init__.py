"""Datasets: small sets bundled with the package, CSV export, and MNIST / Fashion-MNIST.

Every loader returns NumPy arrays ``(x, y)`` (the IDX sets: ``((x_train, y_train), (x_test,
y_test))``); see each function's docstring for shapes, encodings, source and license.
``export(name, path)`` writes a bundled set as a CSV file with a header row.
"""

from ._export import TARGET_COLUMNS, DatasetInfo, export, list_datasets, names
from ._mnist import ChecksumError, DownloadError, cache_folder, fashion_mnist, mnist
from ._tabular import (
    CLASS_NAMES, FEATURE_NAMES, breast_cancer, digits, feature_names, iris, titanic, xor,
)

__all__ = [
    "CLASS_NAMES",
    "FEATURE_NAMES",
    "TARGET_COLUMNS",
    "ChecksumError",
    "DatasetInfo",
    "DownloadError",
    "breast_cancer",
    "cache_folder",
    "digits",
    "export",
    "fashion_mnist",
    "feature_names",
    "iris",
    "list_datasets",
    "mnist",
    "names",
    "titanic",
    "xor",
]
