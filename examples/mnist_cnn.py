"""A small CNN on MNIST: two convolution blocks and a dense head.

    python examples/mnist_cnn.py [MNIST_FOLDER] [EPOCHS]

Images are channels-last, (batch, 28, 28, 1), as everywhere in neuralnp.
"""

import os
import sys
import time
from pathlib import Path

import neuralnp as nn

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def build(seed=0):
    return nn.Sequential([
        nn.Conv2D(32, 3, activation="relu"),          # 28x28x1 -> 26x26x32
        nn.MaxPooling2D(),                             # -> 13x13x32
        nn.Conv2D(64, 3, activation="relu"),           # -> 11x11x64
        nn.MaxPooling2D(),                             # -> 5x5x64
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Dense(128, activation="relu"),
        nn.Dense(10, activation="softmax"),
    ], seed=seed)


def main(folder=None, epochs=5, seed=0):
    folder = folder or (None if os.environ.get("NEURALNP_DATA") else DEFAULT)
    (x_train, y_train), (x_test, y_test) = nn.datasets.mnist(folder, download=False)
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    model = build(seed)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-3),
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=128)
    seconds = time.perf_counter() - start
    model.summary()
    loss, accuracy = model.evaluate(x_test, y_test)
    print(f"test accuracy {accuracy:.4f} (loss {loss:.4f}) after {epochs} epochs in {seconds:.0f} s "
          f"({seconds / epochs:.1f} s per epoch)")
    return accuracy


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None,
         int(sys.argv[2]) if len(sys.argv) > 2 else 5)
