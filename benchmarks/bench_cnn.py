"""The MNIST CNN of examples/mnist_cnn.py, neuralnp against PyTorch eager, one process each.

    python benchmarks/bench_cnn.py [--samples N] [--epochs E]

Both train the same architecture (two conv blocks of 32 and 64 3x3 filters with max pooling,
dropout, a 128-unit dense layer, softmax + cross-entropy) with Adam 1e-3 at batch 128 on MNIST
(or random data of its shape when the files are missing); the time is the median epoch after the
first. neuralnp is channels-last, PyTorch channels-first, each in its own native layout.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _data(samples):
    import numpy as np
    folder = Path(os.environ.get("NEURALNP_DATA", ROOT.parent / "shared" / "data" / "mnist"))
    try:
        import neuralnp as nn
        (x, y), _ = nn.datasets.mnist(folder, download=False)
        x = x[:samples].astype("float32") / 255
        y = y[:samples]
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        x = rng.random((samples, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, samples)
    return x, y


def run_neuralnp(samples, epochs):
    sys.path.insert(0, str(ROOT / "examples"))
    import neuralnp as nn
    from mnist_cnn import build
    x, y = _data(samples)
    model = build(seed=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-3))
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x.reshape(-1, 28, 28, 1), y, epochs=1, batch_size=128, verbose=0)
        times.append(time.perf_counter() - start)
    return times


def run_torch(samples, epochs):
    import torch
    torch.set_num_threads(os.cpu_count())
    x, y = _data(samples)
    x, y = torch.tensor(x.reshape(-1, 1, 28, 28)), torch.tensor(y).long()
    nn_ = torch.nn
    net = nn_.Sequential(nn_.Conv2d(1, 32, 3), nn_.ReLU(), nn_.MaxPool2d(2), nn_.Conv2d(32, 64, 3),
                         nn_.ReLU(), nn_.MaxPool2d(2), nn_.Flatten(), nn_.Dropout(0.25),
                         nn_.Linear(1600, 128), nn_.ReLU(), nn_.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = nn_.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            rows = order[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[rows]), y[rows]).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", choices=["neuralnp", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runner = run_neuralnp if args.child == "neuralnp" else run_torch
        print(json.dumps(runner(args.samples, args.epochs)))
        return
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    medians = {}
    for name in ("neuralnp", "torch"):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--samples",
                              str(args.samples), "--epochs", str(args.epochs)],
                             capture_output=True, text=True, env=env, check=True).stdout
        times = json.loads(out.strip().splitlines()[-1])
        medians[name] = statistics.median(times[1:] or times)
        print(f"{name:9} {medians[name]:7.2f} s per epoch of {args.samples} samples")
    print(f"neuralnp throughput = {medians['torch'] / medians['neuralnp']:.2f} × PyTorch eager's")


if __name__ == "__main__":
    main()
