"""scikit-learn's MLPClassifier / MLPRegressor against neuralnp.sklearn's, as a user calls them.

    python benchmarks/bench_sklearn.py [--datasets NAME ...] [--seeds 0 1 2] [--repeats 2]
                                       [--threads N] [--input-dtype float64|float32]
                                       [--wait-quiet SECONDS] [--json OUT]

Both libraries get the same data, the same fixed train/test split (75/25, stratified for
classification, ``random_state=0``), ``make_pipeline(StandardScaler(), estimator)`` (for
regression inside a ``TransformedTargetRegressor`` that standardises ``y``) and the same
hyperparameters (``SETTINGS``: one hidden layer of 100 ReLU units, Adam 1e-3, ``alpha=1e-4``,
batches of 200, at most 200 epochs, ``tol=1e-4`` with ``n_iter_no_change=10``, no early
stopping), once per ``random_state`` in ``--seeds``. The score is accuracy (classifiers) or R²
(regressors) on the test part, averaged over the seeds; the time is ``pipeline.fit``.

Each (library, dataset) runs in a fresh interpreter, which first fits once untimed (Numba's
cached kernels, BLAS start-up: ``first_fit_s`` records that one-time cost), then times one fit
per seed; every pair runs ``--repeats`` times, interleaved (A B, A B), and the fastest time of
each seed is kept. Speed-up is scikit-learn's time / neuralnp's. The children run without
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, and record which BLAS they loaded
(threadpoolctl).

Data: breast cancer, digits and diabetes ship with scikit-learn; California housing is
downloaded by ``fetch_california_housing`` into ``~/scikit_learn_data`` (or ``--data-home``)
and skipped, saying so, when it is not there and cannot be downloaded. ``friedman1`` is
scikit-learn's generated regression problem at California housing's size (20,640 rows, 8
features), for the speed at that size.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
# The machine checks and the child environment are bench_mlp's, so both benchmarks agree.
from bench_mlp import (  # noqa: E402
    OPENBLAS_VARIABLES, THREAD_VARIABLES, child_environment, cpu_details, wait_until_quiet,
)
DEFAULT_JSON = HERE / "results" / "sklearn.json"
LIBRARIES = ("sklearn", "neuralnp")
# name: task; the child loads the data (load() below).
DATASETS = {"breast_cancer": "classification", "digits": "classification",
            "california_housing": "regression", "diabetes": "regression",
            "friedman1": "regression"}
SETTINGS = {"hidden_layer_sizes": [100], "activation": "relu", "solver": "adam", "alpha": 1e-4,
            "batch_size": 200, "learning_rate_init": 1e-3, "max_iter": 200, "tol": 1e-4,
            "n_iter_no_change": 10, "early_stopping": False, "shuffle": True}


# -- the child: one library on one data set ------------------------------------------------------

def load(name, data_home=None):
    """``(X, y, task)``, or raise FileNotFoundError saying how to get the data."""
    from sklearn import datasets
    if name == "california_housing":
        try:
            bunch = datasets.fetch_california_housing(data_home=data_home)
        except OSError as exc:  # no copy and no network: URLError is an OSError
            home = datasets.get_data_home(data_home)
            raise FileNotFoundError(
                f"California housing is not in {home} and could not be downloaded ({exc}); "
                "run fetch_california_housing() once on a machine with network access and "
                "copy the folder, or pass --data-home") from None
        return bunch.data, bunch.target, DATASETS[name]
    if name == "friedman1":
        # California housing's size (20,640 rows, 8 features), generated: a stand-in for the
        # speed at that size where the real data cannot be fetched
        X, y = datasets.make_friedman1(n_samples=20640, n_features=8, noise=1.0, random_state=0)
        return X, y, DATASETS[name]
    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
              "diabetes": datasets.load_diabetes}[name]
    X, y = loader(return_X_y=True)
    return X, y, DATASETS[name]


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed: pip install threadpoolctl"}]
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


def run_child(spec):
    import warnings

    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    if spec["library"] == "sklearn":
        from sklearn import neural_network as lib
    else:
        from neuralnp import sklearn as lib
    import_s = time.perf_counter() - start
    X, y, task = load(spec["dataset"], spec.get("data_home"))
    X = X.astype(spec["input_dtype"])
    estimator = getattr(lib, "MLPClassifier" if task == "classification" else "MLPRegressor")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y if task == "classification" else None)
    settings = {**spec["settings"], "hidden_layer_sizes": tuple(spec["settings"]
                                                                ["hidden_layer_sizes"])}

    def fit(seed, **override):
        pipe = make_pipeline(StandardScaler(), estimator(**{**settings, **override},
                                                         random_state=seed))
        if task == "regression":  # targets in the hundreds: standardise them too
            pipe = TransformedTargetRegressor(regressor=pipe, transformer=StandardScaler())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            t0 = time.perf_counter()
            pipe.fit(X_train, y_train)
            seconds = time.perf_counter() - t0
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return pipe, seconds, converged

    _, first_fit_s, _ = fit(spec["seeds"][0], max_iter=2)
    runs = []
    for seed in spec["seeds"]:
        pipe, seconds, converged = fit(seed)
        mlp = pipe.regressor_[-1] if task == "regression" else pipe[-1]
        runs.append({"seed": seed, "fit_s": seconds, "score": float(pipe.score(X_test, y_test)),
                     "n_iter": int(mlp.n_iter_), "converged": converged,
                     "s_per_epoch": seconds / mlp.n_iter_, "final_loss": float(mlp.loss_)})
    return {"status": "ok", "library": spec["library"], "dataset": spec["dataset"],
            "task": task, "n_train": len(X_train), "n_test": len(X_test),
            "n_features": X.shape[1], "import_s": import_s, "first_fit_s": first_fit_s,
            "runs": runs, "blas": blas_info(), "dtype_trained": str(X_train.dtype)
            if spec["library"] == "sklearn" else "float32"}


# -- the parent -----------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS),
                   metavar="NAME", help=f"data sets (default: all of {', '.join(DATASETS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="random_state of each timed fit (default: 0 1 2)")
    p.add_argument("--repeats", type=int, default=2,
                   help="interleaved runs of each (library, data set); the fastest time of each "
                        "seed is kept (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="compute threads for both libraries (OMP/OpenBLAS/MKL/Numba variables); "
                        "default: the environment's")
    p.add_argument("--input-dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of X given to the pipelines (default float64, what most data "
                        "is; scikit-learn then trains in float64, neuralnp in float32)")
    p.add_argument("--data-home", default=None, help="scikit-learn's data folder")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for other processes to leave the "
                        "CPUs idle (default 0: don't wait)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"where to write every number (default {DEFAULT_JSON.relative_to(REPO)})")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)




def versions():
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("neuralnp", "scikit-learn", "numpy", "numba", "threadpoolctl"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found








def spawn(spec, workdir, env):
    spec_path = Path(workdir) / f"{spec['library']}-{spec['dataset']}-{spec['run']}.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, __file__, "--child", str(spec_path)], env=env,
                          capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"status": "failed", "error": f"exit status {proc.returncode}: {tail[0]}"}


def run_data_set(name, args, workdir, env):
    """Every repeat of both libraries on one data set, interleaved; stops at the first run
    that fails or is skipped (missing data), since the others would too."""
    raw = {lib: [] for lib in LIBRARIES}
    for run in range(args.repeats):
        for lib in LIBRARIES:
            spec = {"library": lib, "dataset": name, "run": run, "seeds": args.seeds,
                    "settings": SETTINGS, "input_dtype": args.input_dtype,
                    "data_home": args.data_home}
            busy = (wait_until_quiet(args.wait_quiet, print) if args.wait_quiet
                    else None)
            result = spawn(spec, workdir, env)
            result["other_runnable_before"] = busy
            raw[lib].append(result)
            if result["status"] != "ok":
                print(f"{name:<19} {lib:<9} {result['status']}: {result.get('error')}",
                      flush=True)
                return raw
            times = " ".join(f"{r['fit_s']:.3f}" for r in result["runs"])
            scores = " ".join(f"{r['score']:.4f}" for r in result["runs"])
            print(f"{name:<19} {lib:<9} run {run + 1}/{args.repeats}  fit s: {times}  "
                  f"scores: {scores}", flush=True)
    return raw


def summarise(runs_by_repeat):
    """Per seed the fastest repeat (the scores agree: each fit is seeded); then the means."""
    ok = [r for r in runs_by_repeat if r["status"] == "ok"]
    if not ok:
        return runs_by_repeat[0]
    seeds = {}
    for result in ok:
        for run in result["runs"]:
            best = seeds.get(run["seed"])
            if best is None or run["fit_s"] < best["fit_s"]:
                seeds[run["seed"]] = run
    runs = [seeds[s] for s in sorted(seeds)]
    scores = [r["score"] for r in runs]
    repeat_scores = {tuple(r["score"] for r in result["runs"]) for result in ok}
    return {"status": "ok", "score": statistics.mean(scores),
            "score_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "fit_s": statistics.mean(r["fit_s"] for r in runs),
            "n_iter": statistics.mean(r["n_iter"] for r in runs),
            "s_per_epoch": statistics.mean(r["s_per_epoch"] for r in runs),
            "converged": sum(r["converged"] for r in runs), "seeds": len(runs),
            "first_fit_s": min(r["first_fit_s"] for r in ok),
            "repeats_agree": len(repeat_scores) == 1, "runs": runs}


def table(summary, datasets):
    head = ("| data set (train rows) | metric | scikit-learn | neuralnp | epochs sk / nnp "
            "| fit s sk | fit s nnp | speed-up | per epoch |")
    lines = [head, "|" + "---|" * 9]
    for name in datasets:
        sk, ours = summary[name].get("sklearn"), summary[name].get("neuralnp")
        if not sk or sk["status"] != "ok" or not ours or ours["status"] != "ok":
            status = next((r["status"] for r in (sk, ours) if r and r["status"] != "ok"), "")
            lines.append(f"| {name} | {status} (see above) |" + " |" * 7)
            continue
        metric = "accuracy" if DATASETS[name] == "classification" else "R²"
        lines.append(
            f"| {name} ({summary[name]['n_train']}) | {metric} "
            f"| {sk['score']:.4f} ± {sk['score_sd']:.4f} "
            f"| {ours['score']:.4f} ± {ours['score_sd']:.4f} "
            f"| {sk['n_iter']:.0f} / {ours['n_iter']:.0f} | {sk['fit_s']:.3f} "
            f"| {ours['fit_s']:.3f} | **{sk['fit_s'] / ours['fit_s']:.1f}×** "
            f"| {sk['s_per_epoch'] / ours['s_per_epoch']:.1f}× |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child.read_text())
        try:
            result = run_child(spec)
        except FileNotFoundError as exc:
            result = {"status": "skipped", "error": str(exc)}
        print(json.dumps(result))
        return 0
    env = child_environment(keep_openblas=False, threads=args.threads)
    raw = {}
    started, load_start = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.datasets:
            raw[name] = run_data_set(name, args, workdir, env)
    summary = {}
    for name in args.datasets:
        summary[name] = {lib: summarise(raw[name][lib]) for lib in LIBRARIES if raw[name][lib]}
        ok = [r for lib in LIBRARIES for r in raw[name][lib] if r["status"] == "ok"]
        summary[name]["n_train"] = ok[0]["n_train"] if ok else None
    text = table(summary, args.datasets)
    print()
    print(text)
    first = {lib: [summary[n][lib]["first_fit_s"] for n in args.datasets
                   if summary[n].get(lib, {}).get("status") == "ok"] for lib in LIBRARIES}
    print("\nfirst fit in a fresh process (max_iter=2, untimed above): "
          + ", ".join(f"{lib} {min(v):.2f}–{max(v):.2f} s" for lib, v in first.items() if v))
    blas = next((r["blas"] for n in args.datasets for lib in LIBRARIES for r in raw[n][lib]
                 if r["status"] == "ok"), None)
    report = {"settings": SETTINGS, "seeds": args.seeds, "repeats": args.repeats,
              "threads": args.threads, "input_dtype": args.input_dtype,
              "environment": {"python": platform.python_version(), "machine": platform.machine(),
                              "cpu": cpu_details(), "cpu_count": os.cpu_count(),
                              "load_average_start": load_start,
                              "load_average_end": os.getloadavg(),
                              "versions": versions(),
                              "openblas_env_parent": {v: os.environ.get(v)
                                                      for v in OPENBLAS_VARIABLES},
                              "thread_env_parent": {v: os.environ.get(v)
                                                    for v in THREAD_VARIABLES},
                              "blas_child": blas},
              "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
              "seconds": time.time() - started, "summary": summary, "raw": raw,
              "table": text}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
