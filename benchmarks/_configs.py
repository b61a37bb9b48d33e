"""The benchmark configurations, their data and their shared initial weights.

Everything here runs in the parent process: it writes each data set and each configuration's
initial weights to ``.npz`` files once, so every framework's child process trains on the same
arrays from the same starting point.
"""

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# MNIST lives beside the repository (../shared/data/mnist) unless $NEURALNP_DATA says otherwise.
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Config:
    """One network, data set and training recipe, trained identically by every framework."""

    name: str
    dataset: str                 # "mnist" or "breast_cancer"
    units: tuple                 # output units of each Dense layer; the last one is softmax
    hidden_activation: str       # "relu" or "sigmoid"
    optimizer: str               # "adam" or "sgd" (plain: no momentum)
    learning_rate: float
    batch_size: int
    epochs: int                  # the first is warm-up; the median of the others is reported
    per_step: bool = False       # report µs per optimizer step rather than s per epoch
    description: str = ""
    notes: tuple = field(default_factory=tuple)

    def layer_sizes(self, n_inputs):
        """``[n_inputs, *units]``: the (fan-in, fan-out) chain of the Dense layers."""
        return [n_inputs, *self.units]

    def to_dict(self):
        return asdict(self)


CONFIGS = {
    "mnist-seed-128": Config(
        "mnist-seed-128", "mnist", (512, 128, 64, 10), "relu", "adam", 1e-3, 128, 6,
        description="MNIST 784-512-128-64-10 ReLU, softmax + cross-entropy, Adam 1e-3, batch 128"),
    "mnist-seed-1000": Config(
        "mnist-seed-1000", "mnist", (512, 128, 64, 10), "relu", "adam", 1e-3, 1000, 6,
        description="MNIST 784-512-128-64-10 ReLU, softmax + cross-entropy, Adam 1e-3, "
                    "batch 1000"),
    "nielsen": Config(
        "nielsen", "mnist", (100, 10), "sigmoid", "sgd", 0.1, 100, 6,
        description="MNIST 784-100-10 sigmoid hidden layer, softmax + cross-entropy output, "
                    "plain SGD 0.1, batch 100",
        # Nielsen's book uses a sigmoid output with a quadratic cost; every framework here has
        # a fused softmax + cross-entropy, so that is what is compared.
        notes=("Nielsen's network has sigmoid outputs and MSE; here the output is softmax + "
               "cross-entropy so that every framework runs its usual fused loss",)),
    "tabular-tiny": Config(
        "tabular-tiny", "breast_cancer", (24, 24, 2), "relu", "adam", 1e-3, 32, 200,
        per_step=True,
        description="breast cancer (standardised) 30-24-24-2 ReLU, softmax + cross-entropy, "
                    "Adam 1e-3, batch 32"),
}


def glorot_uniform_weights(layer_sizes, seed=0):
    """Keras-ordered ``[kernel0, bias0, kernel1, bias1, ...]``: Glorot-uniform float32 kernels
    of shape (fan_in, fan_out), zero biases, from one seeded generator."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
        weights.append(np.zeros(fan_out, dtype=np.float32))
    return weights


def count_kernel_weights(layer_sizes):
    """Multiply-adds per sample in the forward pass: the number of kernel weights."""
    return sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


def flops_per_sample(layer_sizes):
    """``(approximate, exact)`` training FLOPs per sample.

    The approximation is the usual 6 × weights (forward X·W, backward Xᵀ·G and G·Wᵀ, two FLOPs
    per multiply-add each). The exact count of the matrix products leaves out G·Wᵀ for the first
    layer, whose input gradient nobody needs; on MNIST's 784-wide first layer that is a lot.
    """
    weights = count_kernel_weights(layer_sizes)
    first = layer_sizes[0] * layer_sizes[1]
    return 6 * weights, 6 * weights - 2 * first


# -- data --------------------------------------------------------------------------------------

def find_mnist():
    """The folder holding the four MNIST files ($NEURALNP_DATA[/mnist], then the shared folder
    beside the repository), or None."""
    candidates = []
    if os.environ.get("NEURALNP_DATA"):
        base = Path(os.environ["NEURALNP_DATA"])
        candidates += [base, base / "mnist"]
    candidates.append(DEFAULT_MNIST)
    for folder in candidates:
        if all((folder / f).is_file() for f in MNIST_FILES):
            return folder
    return None


def load_mnist(max_train=None, max_test=None, seed=0):
    """MNIST as float32 rows of 784 pixels in [0, 1] with int64 labels, and a note saying where
    it came from. Random data of the same shape stands in when the files are absent (the
    timings stay meaningful; the accuracies do not)."""
    folder = find_mnist()
    if folder is not None:
        import neuralnp as nn
        (x_train, y_train), (x_test, y_test) = nn.datasets.mnist(folder, download=False)
        x_train = x_train.reshape(len(x_train), -1).astype(np.float32) / 255
        x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255
        note = f"MNIST from {folder}"
    else:
        rng = np.random.default_rng(seed)
        x_train = rng.random((60000, 784), dtype=np.float32)
        x_test = rng.random((10000, 784), dtype=np.float32)
        y_train, y_test = rng.integers(0, 10, 60000), rng.integers(0, 10, 10000)
        note = ("RANDOM data of MNIST's shape with random labels: MNIST not found (set "
                f"$NEURALNP_DATA or put the four files in {DEFAULT_MNIST}); accuracies are "
                "meaningless")
    x_train, y_train = x_train[:max_train], y_train[:max_train]
    x_test, y_test = x_test[:max_test], y_test[:max_test]
    if max_train is not None and max_train < 60000:
        note += f", first {len(x_train)} training and {len(x_test)} test samples"
    return _arrays(x_train, y_train, x_test, y_test), note


def load_breast_cancer(seed=0):
    """The bundled breast-cancer data: a fixed stratified 20% test split, standardised with the
    training part's mean and standard deviation."""
    import neuralnp as nn
    from neuralnp.preprocessing import train_test_split
    x, y = nn.datasets.breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        seed=seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    note = "breast cancer (bundled WDBC), stratified 80/20 split with seed 0, standardised"
    return _arrays(x_train, y_train, x_test, y_test), note


def _arrays(x_train, y_train, x_test, y_test):
    """C-contiguous float32 inputs and int64 labels: the form every framework takes as is."""
    return {
        "x_train": np.ascontiguousarray(x_train, dtype=np.float32),
        "y_train": np.ascontiguousarray(y_train, dtype=np.int64),
        "x_test": np.ascontiguousarray(x_test, dtype=np.float32),
        "y_test": np.ascontiguousarray(y_test, dtype=np.int64),
    }


def write_inputs(configs, folder, max_mnist=None):
    """Write each data set once and each configuration's initial weights to ``folder``.

    Returns ``{config name: {"data": path, "weights": path, "data_note": str, "n_train": int,
    "n_test": int, "n_inputs": int}}``.
    """
    folder = Path(folder)
    datasets = {}
    inputs = {}
    for cfg in configs:
        if cfg.dataset not in datasets:
            if cfg.dataset == "mnist":
                arrays, note = load_mnist(max_mnist, None if max_mnist is None else
                                          max(max_mnist // 2, 100))
            else:
                arrays, note = load_breast_cancer()
            path = folder / f"data-{cfg.dataset}.npz"
            np.savez(path, **arrays)  # uncompressed: the children load it in a moment
            datasets[cfg.dataset] = (path, note, arrays["x_train"].shape, len(arrays["x_test"]))
        data_path, note, train_shape, n_test = datasets[cfg.dataset]
        weights = glorot_uniform_weights(cfg.layer_sizes(train_shape[1]), seed=0)
        weights_path = folder / f"weights-{cfg.name}.npz"
        np.savez(weights_path, *weights)  # arr_0, arr_1, ... in Keras order
        inputs[cfg.name] = {"data": str(data_path), "weights": str(weights_path),
                            "data_note": note, "n_train": train_shape[0], "n_test": n_test,
                            "n_inputs": train_shape[1]}
    return inputs
