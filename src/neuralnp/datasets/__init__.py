"""Datasets: small tabular sets bundled with the package, and an MNIST reader.

Every loader returns NumPy arrays ``(x, y)``; see each function's docstring for shapes,
encodings, source and license.
"""

from ._mnist import mnist
from ._tabular import CLASS_NAMES, FEATURE_NAMES, breast_cancer, feature_names, iris, titanic, xor

__all__ = [
    "CLASS_NAMES",
    "FEATURE_NAMES",
    "breast_cancer",
    "feature_names",
    "iris",
    "mnist",
    "titanic",
    "xor",
]
