"""Train a 784-512-128-64-10 MLP on MNIST with Adam for 10 epochs.

    python examples/mnist_mlp.py [MNIST_FOLDER]

MNIST_FOLDER holds the four IDX .gz files (default: $NEURALNP_DATA, else ../shared/data/mnist
beside the repository).
"""

import sys
import time
from pathlib import Path

import neuralnp as nn

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def main(folder=None, epochs=10, seed=0):
    import os
    folder = folder or (None if os.environ.get("NEURALNP_DATA") else DEFAULT)
    (x_train, y_train), (x_test, y_test) = nn.datasets.mnist(folder)
    # Pixels to [0, 1] floats, one row of 784 per image.
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 255
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 255

    model = nn.Sequential([
        nn.Dense(512, activation="relu"),
        nn.Dense(128, activation="relu"),
        nn.Dense(64, activation="relu"),
        nn.Dense(10, activation="softmax"),
    ], seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer=nn.Adam(1e-3), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=128, validation_split=0.1)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test)
    print(f"test accuracy {accuracy:.4f} (loss {loss:.4f}) after {epochs} epochs in {seconds:.1f} s "
          f"({seconds / epochs:.2f} s per epoch)")
    return accuracy


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
