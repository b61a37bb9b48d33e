"""Throughput of data-parallel training over MPI: one process against 1, 2, ... ranks.

    python benchmarks/bench_distributed.py [--ranks 1 2] [--epochs N] [--repeats R]
                                           [--samples N] [--wait-quiet S] [--json OUT.json]

Trains ``mnist-seed-128`` (MNIST 784-512-128-64-10 ReLU, softmax + cross-entropy, Adam 1e-3,
global batch 128, float32, the initial weights of bench_mlp.py) three ways, each in fresh
processes: ``fit`` in one plain process (no MPI), then ``mpirun -n K`` with
``fit(..., distributed=strategy)`` for each K of ``--ranks``. Every process gets
``cores / processes`` BLAS/OpenMP/Numba threads, and runs without ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` (as bench_mlp.py's children). Reported per run: samples per second
(training samples / the median epoch after the first), the speedup over one rank, and the
milliseconds per step spent in the step's collectives (``strategy.comm_seconds / steps``,
averaged over the ranks: the gradient Allreduce and the loss sum, waiting for the slower rank
included). Runs are
interleaved (A B C, A B C) and the best median of ``--repeats`` is kept. Prints a table and
writes every number to benchmarks/results/distributed.json (git-ignored).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_JSON = HERE / "results" / "distributed.json"
CONFIG = "mnist-seed-128"


# -- the child: one process, or one rank of an mpirun job ----------------------------------------

def child(spec_path):
    import numpy as np

    import neuralnp as nn

    spec = json.loads(Path(spec_path).read_text())
    strategy = None
    if spec["ranks"]:
        from neuralnp.distributed import MPIStrategy
        strategy = MPIStrategy()
    with np.load(spec["data"]) as f:
        x, y = f["x_train"], f["y_train"]
    with np.load(spec["weights"]) as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    units = spec["units"]
    model = nn.Sequential([*(nn.Dense(u, activation="relu") for u in units[:-1]),
                           nn.Dense(units[-1], activation="softmax")], seed=0, dtype="float32")
    model.build((x.shape[1],))
    model.set_weights(weights)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(spec["learning_rate"]),
                  metrics=["accuracy"])
    epochs = []

    def begin(epoch, logs):
        epochs.append({"start": time.perf_counter(),
                       "comm": strategy.comm_seconds if strategy else 0.0,
                       "steps": strategy.steps if strategy else 0})

    def end(epoch, logs):
        e = epochs[-1]
        e["seconds"] = time.perf_counter() - e.pop("start")
        if strategy is not None:
            e["comm_seconds"] = strategy.comm_seconds - e.pop("comm")
            e["steps"] = strategy.steps - e["steps"]
        else:
            e.pop("comm")
            e.pop("steps")
        e["loss"] = logs["loss"]

    callback = nn.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)
    model.fit(x, y, epochs=spec["epochs"], batch_size=spec["batch_size"], verbose=0,
              callbacks=[callback], distributed=strategy)
    if strategy is not None:  # each rank waits a different time in the collectives
        by_rank = strategy.comm.allgather([e["comm_seconds"] for e in epochs])
        for i, e in enumerate(epochs):
            e["comm_seconds_by_rank"] = [ranks[i] for ranks in by_rank]
            e["comm_seconds"] = sum(e["comm_seconds_by_rank"]) / len(by_rank)
    if strategy is None or strategy.is_chief:
        Path(spec["result"]).write_text(json.dumps({"epochs": epochs,
                                                    "n_train": int(len(x))}))


# -- the parent ------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                   help="mpirun -n K for each K (default: 1 2)")
    p.add_argument("--epochs", type=int, default=4,
                   help="epochs per run, the first being warm-up (default 4)")
    p.add_argument("--repeats", type=int, default=2,
                   help="interleaved runs of each setting; the best median is kept (default 2)")
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N MNIST training samples")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help="where to write every number (default: benchmarks/results/"
                        "distributed.json)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for other processes to leave the "
                        "CPUs idle (default 0: don't wait)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run (default 1800)")
    p.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first is warm-up")
    if any(k < 1 for k in args.ranks):
        p.error("--ranks takes positive integers")
    return args


def find_mpirun():
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.is_file() else shutil.which("mpirun")


def run(setting, spec, workdir, mpirun, args):
    """One run of ``setting`` (``{"ranks": 0}`` for the plain process); its result dict."""
    from bench_mlp import child_environment, wait_until_quiet
    busy = wait_until_quiet(args.wait_quiet, print) if args.wait_quiet else None
    ranks = setting["ranks"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, cores // max(ranks, 1))
    tag = f"{setting['name']}-{setting['run']}"
    spec = {**spec, "ranks": ranks, "result": str(Path(workdir) / f"result-{tag}.json")}
    spec_path = Path(workdir) / f"spec-{tag}.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]
    if ranks:
        command = [mpirun, "-n", str(ranks), *command]
    load = os.getloadavg()[0]
    proc = subprocess.run(command, env=child_environment(False, threads), capture_output=True,
                          text=True, timeout=args.timeout)
    if proc.returncode != 0 or not Path(spec["result"]).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"status": "failed", "error": f"exit {proc.returncode}: {' '.join(tail)}"}
    result = json.loads(Path(spec["result"]).read_text())
    timed = result["epochs"][1:]
    median = statistics.median(e["seconds"] for e in timed)
    summary = {"status": "ok", "threads_per_process": threads, "load_average_before": load,
               "other_runnable_before": busy,
               "median_epoch_s": median, "samples_per_s": result["n_train"] / median,
               "epochs": result["epochs"]}
    if ranks:
        steps = sum(e["steps"] for e in timed)
        summary["comm_ms_per_step"] = 1e3 * sum(e["comm_seconds"] for e in timed) / steps
        summary["step_ms"] = 1e3 * sum(e["seconds"] for e in timed) / steps
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    from _configs import CONFIGS, write_inputs
    from bench_mlp import cpu_details, git_state
    mpirun = find_mpirun()
    if mpirun is None:
        print('bench_distributed: no mpirun found; pip install "neuralnp[mpi]"', file=sys.stderr)
        return 2
    cfg = CONFIGS[CONFIG]
    settings = [{"name": "1 process, no MPI", "ranks": 0}] + [
        {"name": f"{k} rank{'s' if k > 1 else ''}", "ranks": k} for k in args.ranks]
    with tempfile.TemporaryDirectory(prefix="neuralnp-bench-distributed-") as workdir:
        inputs = write_inputs([cfg], workdir, args.samples)[cfg.name]
        spec = {"units": list(cfg.units), "learning_rate": cfg.learning_rate,
                "batch_size": cfg.batch_size, "epochs": args.epochs,
                "data": inputs["data"], "weights": inputs["weights"]}
        print(f"{cfg.description}; {inputs['data_note']}; {args.epochs} epochs per run "
              f"(first = warm-up), best of {args.repeats}", flush=True)
        runs = {s["name"]: [] for s in settings}
        for repeat in range(args.repeats):
            for setting in settings:
                result = run({**setting, "run": repeat}, spec, workdir, mpirun, args)
                runs[setting["name"]].append(result)
                state = (f"{result['median_epoch_s']:.3f} s/epoch" if result["status"] == "ok"
                         else f"FAILED: {result['error']}")
                print(f"  [{repeat + 1}/{args.repeats}] {setting['name']:<18} {state}  (load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
    best = {}
    for name, results in runs.items():
        ok = [r for r in results if r["status"] == "ok"]
        best[name] = min(ok, key=lambda r: r["median_epoch_s"]) if ok else results[0]
    one = best.get("1 rank")
    rows = []
    for setting in settings:
        r = best[setting["name"]]
        if r["status"] != "ok":
            rows.append((setting["name"], "failed", "", "", "", "", r["error"]))
            continue
        speedup = (f"{one['median_epoch_s'] / r['median_epoch_s']:.2f}×"
                   if one and one["status"] == "ok" else "")
        comm = f"{r['comm_ms_per_step']:.3f}" if "comm_ms_per_step" in r else "–"
        step = f"{r['step_ms']:.2f}" if "step_ms" in r else "–"
        rows.append((setting["name"], str(r["threads_per_process"]),
                     f"{r['median_epoch_s']:.3f}", f"{r['samples_per_s']:,.0f}", speedup, step,
                     comm))
    header = ("setting", "threads/process", "s/epoch", "samples/s", "vs 1 rank", "ms/step",
              "collectives ms/step")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    print()
    for row in (header, *rows):
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    report = {"config": cfg.to_dict(), "data_note": inputs["data_note"],
              "settings": {"ranks": args.ranks, "epochs": args.epochs, "repeats": args.repeats,
                           "samples": args.samples},
              "environment": {"cpu": cpu_details(), "cpu_count": os.cpu_count(),
                              "git": git_state(), "mpirun": mpirun},
              "best": best, "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
