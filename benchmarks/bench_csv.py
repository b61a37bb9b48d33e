"""How long the ``neuralnp`` command takes, and how much memory it holds, on a large CSV file.

Generates a tabular file in a temporary folder (by default 300,000 rows, 120 MB: an
identifier, a counter, 40 decimal columns, an income column in whole numbers, 5 text columns,
names, a target), then runs, each in a child process of its own so that the peak resident memory
(``ru_maxrss`` from ``os.wait4``) belongs to that command alone:

- ``read+encode``: ``read_csv`` + ``TableEncoder.fit`` + ``transform``, the part of ``train``
  and ``predict`` that is about the file rather than the network;
- ``train --epochs 1`` and ``predict`` through the real command line.

``--src`` runs another checkout's code (e.g. an export of the previous commit) for a before/after
comparison on the very same file::

    python benchmarks/bench_csv.py                          # this checkout
    git archive ac7a43d src | tar -x -C /tmp/base
    python benchmarks/bench_csv.py --src /tmp/base/src      # the code before the columnar reader

Measured on a 2-core container shared with other work (load average 2-6 while measuring), so
seconds vary; two runs of each, file 120 MB, 300,000 rows; MB are 2**20 bytes, and the peak
includes ~130 MB of Python, NumPy, neuralnp and pyarrow (~50 MB more once numba compiles):

================  =====================  ====================  ==========================
step              before (ac7a43d)       all cells Arrow text  numbers parsed as numbers,
                                         (12ec297)             cells freed once encoded
================  =====================  ====================  ==========================
read+encode       29-39 s, 1640 MB       4.9-6.5 s, 540 MB     3.3-4.1 s, 400 MB
train --epochs 1  37-59 s, 1543 MB       12.6-13.8 s, 615 MB   8.3-9.6 s, 402 MB
predict           36-48 s, 1621 MB       12.8-18.4 s, 676 MB   7.7-10.6 s, 440 MB
================  =====================  ====================  ==========================

The goal of issue 14 (point 12) is a peak of at most 3 times the file plus 250 MB (610 MB
here). What holds the rest: the parsed columns (float64 for columns of numbers, Arrow text for
the others, ~120 MB), the encoded matrix (float32, 93 MB), then, once the cells are freed, the
network's workspaces.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CITIES = ["paris", "rome", "oslo", "lisbon", "madrid", "vienna", "prague", "dublin"]
FIRST = ["anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas"]


def generate(path, rows, seed=0):
    """Write the benchmark file in blocks (the generator itself stays small in memory)."""
    rng = np.random.default_rng(seed)
    header = (["id", "row"] + [f"x{i}" for i in range(40)] + ["income"]
              + [f"c{i}" for i in range(5)] + ["name", "label"])
    block = 20_000
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, 40)) * 100
            income = rng.integers(15_000, 250_000, size=n)
            cats = rng.integers(0, len(CITIES), size=(n, 5))
            label = (x[:, 0] + x[:, 1] > 0).astype(int)
            ids = rng.integers(10**8, 10**9, size=n)
            first = rng.integers(0, len(FIRST), size=n)
            lines = []
            for r in range(n):
                cells = [str(ids[r]), str(start + r + 1)]
                cells += [f"{v:.4f}" for v in x[r]]
                cells.append(str(income[r]))
                cells += [CITIES[c] for c in cats[r]]
                cells.append(f"{FIRST[first[r]]} {start + r}")
                cells.append(str(label[r]))
                lines.append(",".join(cells))
            f.write("\n".join(lines) + "\n")


READ_ENCODE = """
import sys, time
t = time.perf_counter()
from neuralnp.tabular import TableEncoder, read_csv
table = read_csv(sys.argv[1])
target = table.index("label")
encoder = TableEncoder().fit(table, [i for i in range(len(table.names)) if i != target])
x = encoder.transform(table)
print(time.perf_counter() - t, x.shape)
"""


def measure(argv, env):
    """(seconds, peak resident MB, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{out}")
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return seconds, usage.ru_maxrss * scale / 2**20, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--src", help="the src folder of the code to measure (default: this "
                        "checkout's)")
    parser.add_argument("--keep", help="keep the generated file and model in this folder")
    args = parser.parse_args()

    src = Path(args.src or Path(__file__).resolve().parents[1] / "src").resolve()
    env = dict(os.environ, PYTHONPATH=str(src))
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_csv_"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data.csv"
    try:
        if not data.exists():
            generate(data, args.rows)
        size = data.stat().st_size / 2**20
        print(f"{data}: {args.rows} rows, {size:.0f} MB; code from {src}")
        cli = [sys.executable, "-m", "neuralnp"]
        steps = {
            "read+encode": [sys.executable, "-c", READ_ENCODE, str(data)],
            "train --epochs 1": cli + ["train", str(data), "--target", "label", "--epochs", "1",
                                       "--quiet", "--out", str(folder / "model")],
            "predict": cli + ["predict", str(folder / "model"), str(data), "--out",
                              str(folder / "predictions.csv")],
        }
        for name, argv in steps.items():
            seconds, peak, out = measure(argv, env)
            detail = f"  (in-process {float(out.split()[0]):.1f} s)" if name == "read+encode" \
                else ""
            print(f"{name:18s} {seconds:7.1f} s  peak {peak:6.0f} MB  "
                  f"({peak / size:.1f}x the file){detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
