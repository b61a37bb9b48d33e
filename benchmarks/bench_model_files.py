"""Time and peak memory of loading hostile model files, each in a fresh process.

    python benchmarks/bench_model_files.py [--timeout 30] [--cases units zip_tensor ...]

Each case writes a small hostile file (a 2 KB config asking for 50 million units, a 1 MB zip
holding a 1 GiB zero tensor or a 1 GiB padded config.json, Nadam saved at step 10^8 and 10^12,
devices and a FIFO) and loads it in a child process, which reports the seconds the load took,
the error it raised and its peak resident memory above the interpreter with neuralnp imported.
Set PYTHONPATH to another checkout's src/ to measure that one the same way.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import neuralnp as nn
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    nn.load_model(sys.argv[1])
    outcome = "loaded"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:90]}"
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "extra_mb": (peak - base) / 1024, "outcome": outcome}))
"""

GiB = 1 << 30


def _saved(folder, optimizer="adam"):
    import neuralnp as nn
    model = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(3, activation="softmax")],
                          seed=0)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)
    model.build((None, 8))
    path = Path(folder) / f"model-{optimizer}"
    model.save(path)
    return path


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


def case_units(folder):
    def edit(config):
        config["model"]["layers"][0]["config"]["units"] = 50_000_000
    return _edit_config(_saved(folder), edit)


def _zip_with(path, out, config=None, extra_zeros=0):
    """A zip of the model at ``path`` whose config may be replaced and whose weights may carry
    an extra all-zero tensor of ``extra_zeros`` bytes, written in chunks."""
    weights = (path / "weights.safetensors").read_bytes()
    n = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + n])
    data = weights[8 + n:]
    if extra_zeros:
        header["extra"] = {"dtype": "F32", "shape": [extra_zeros // 4],
                           "data_offsets": [len(data), len(data) + extra_zeros]}
    raw = json.dumps(header).encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        if config is None:
            zf.write(path / "config.json", "config.json")
        else:
            with zf.open("config.json", "w", force_zip64=True) as f:
                for chunk in config:
                    f.write(chunk)
        with zf.open("weights.safetensors", "w", force_zip64=True) as f:
            f.write(len(raw).to_bytes(8, "little") + raw + data)
            chunk = bytes(1 << 24)
            for _ in range(extra_zeros // len(chunk)):
                f.write(chunk)
    return out


def case_zip_tensor(folder):
    return _zip_with(_saved(folder), Path(folder) / "extra-tensor.zip", extra_zeros=GiB)


def case_zip_config(folder):
    path = _saved(folder)
    text = (path / "config.json").read_bytes()
    padding = b" " * (1 << 24)
    chunks = [text[:-1]] + [padding] * (GiB // len(padding)) + [text[-1:]]
    return _zip_with(path, Path(folder) / "padded-config.zip", config=chunks)


def _nadam_at(folder, steps):
    def edit(config):
        config["compile"]["optimizer_iterations"] = steps
        config["compile"].get("optimizer_state", {}).pop("mu_product", None)
        config.pop("weights_sha256", None)  # a checksum would not change; keep the file v1
        config.pop("save_id", None)
        config["format_version"] = 1
    path = _saved(folder, "nadam")
    renamed = path.with_name(f"nadam-{steps:.0e}")
    path.rename(renamed)
    return _edit_config(renamed, edit)


def case_nadam_1e8(folder):
    return _nadam_at(folder, 10 ** 8)


def case_nadam_1e12(folder):
    return _nadam_at(folder, 10 ** 12)


def case_dev_zero(folder):
    return Path("/dev/zero")


def case_dev_urandom(folder):
    return Path("/dev/urandom")


def case_fifo(folder):
    path = Path(folder) / "fifo"
    os.mkfifo(path)
    return path


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per load (30)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            path = CASES[name](folder)
            size = os.path.getsize(path) if path.is_file() and name != "fifo" else None
            if path.is_dir():
                size = sum(p.stat().st_size for p in path.iterdir())
            try:
                out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                                     text=True, timeout=args.timeout)
                row = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {
                    "outcome": f"child died: {out.stderr.strip().splitlines()[-1:]}"}
            except subprocess.TimeoutExpired:
                row = {"seconds": None, "extra_mb": None,
                       "outcome": f"still running after {args.timeout:g} s (killed)"}
            row["file_bytes"] = size
            results[name] = row
            secs = "—" if row.get("seconds") is None else f"{row['seconds']:.3f} s"
            mb = "—" if row.get("extra_mb") is None else f"{row['extra_mb']:.0f} MB"
            print(f"{name:12} {secs:>10} {mb:>8}  {row['outcome']}", flush=True)
    return results


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
