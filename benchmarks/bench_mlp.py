"""Train the same MLPs with neuralnp, PyTorch, Keras and scikit-learn on the CPU and compare.

    python benchmarks/bench_mlp.py [--configs NAME ...] [--frameworks NAME ...] [--epochs N]
                                   [--repeats R] [--json OUT.json] [--quick]

Every (framework, configuration) trains in its own fresh subprocess (benchmarks/_frameworks.py)
on the same data, with the same batch size, epochs, optimizer and initial weights. Seconds per
epoch is the median of the epochs after the first (warm-up); each pair runs ``--repeats`` times,
interleaved across frameworks (A B C A B C), and the best median is kept. ``matmul`` is the floor:
the matrix products of training alone, through NumPy. See benchmarks/README.md.
"""

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _configs import CONFIGS, REPO, flops_per_sample, write_inputs  # noqa: E402

FRAMEWORKS = ("neuralnp", "torch", "keras", "sklearn", "matmul")
REFERENCE = "torch"          # the ratio column is PyTorch's time / this framework's time
FLOOR = "matmul"
# OpenBLAS reads these at load time; a leftover setting would change the kernel or blocking
# NumPy uses, so the children run without them unless --keep-openblas-env.
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DEFAULT_JSON = HERE / "results" / "latest.json"
QUICK = {"epochs": 2, "samples": 2000, "repeats": 1}


# -- command line ------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), metavar="NAME",
                   help=f"configurations to run (default: all of {', '.join(CONFIGS)})")
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), metavar="NAME",
                   help=f"frameworks to run (default: all of {', '.join(FRAMEWORKS)})")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run for every configuration, the first being warm-up "
                        "(default: 6 for the MNIST ones, 200 for tabular-tiny)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved runs of each (framework, configuration); the best median "
                        "is kept (default 2)")
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N MNIST training samples (and N/2 test samples)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['epochs']} epochs, {QUICK['samples']} MNIST "
                        f"samples, {QUICK['repeats']} run each (under a minute)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"where to write every number (default: {DEFAULT_JSON.relative_to(REPO)})")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help=f"pass {' and '.join(OPENBLAS_VARIABLES)} on to the children (by default "
                        "they are removed, as a benchmark run requires)")
    p.add_argument("--threads", type=int, default=None,
                   help="compute threads for every framework (OMP/OpenBLAS/MKL/numba variables, "
                        "torch.set_num_threads, TensorFlow's intra-op pool); default: all CPUs. "
                        "--threads 1 is far less disturbed by other jobs on a shared machine")
    p.add_argument("--retries", type=int, default=None,
                   help="extra runs, at most, of a pair whose runs were all disturbed by other "
                        "processes (default 2; 0 with --quick)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for other processes to leave the "
                        "CPUs idle (default 0: don't wait)")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds before a child run is abandoned (default 3600)")
    args = p.parse_args(argv)
    args.configs = _split_commas(args.configs)
    args.frameworks = _split_commas(args.frameworks)
    for name in args.configs:
        if name not in CONFIGS:
            p.error(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
    for name in args.frameworks:
        if name not in FRAMEWORKS:
            p.error(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
    if args.quick:
        args.epochs = args.epochs or QUICK["epochs"]
        args.samples = args.samples or QUICK["samples"]
        args.repeats = args.repeats or QUICK["repeats"]
    args.repeats = args.repeats or 2
    if args.retries is None:
        args.retries = 0 if args.quick else 2
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1 (2 or more, so that one is not warm-up)")
    return args


def _split_commas(names):
    """Accept ``--configs a b`` as well as ``--configs a,b``."""
    return [n for name in names for n in name.split(",") if n]


# -- environment -------------------------------------------------------------------------------

def cpu_details():
    """The CPU's name, family/model numbers (a VM often shows only "AMD EPYC"; family 25 model 1
    is then Zen 3) and the vector extensions that decide which BLAS kernels can run."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first CPU is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or "unknown",
            "family": fields.get("cpu family"), "model_number": fields.get("model"),
            "simd": [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16",
                                 "amx_tile") if f in flags]}


def package_version(*names):
    """The installed version of the first distribution found, without importing it (importing
    torch or TensorFlow here would load their thread pools into the parent)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def git_state():
    """The commit measured, and whether src/ differs from it (others may be editing it)."""
    def git(*cmd):
        out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    commit = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "src")
    return {"commit": commit, "src_modified": bool(changed) if changed is not None else None}


def environment(args):
    """Everything that decides the numbers, recorded before the runs."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpu = cpu_details()
    return {
        "cpu": cpu["model"],
        "cpu_details": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "neuralnp": package_version("neuralnp"),
            "numpy": package_version("numpy"),
            "torch": package_version("torch"),
            "scikit-learn": package_version("scikit-learn"),
            "keras": package_version("keras"),
            "tensorflow": package_version("tensorflow-cpu", "tensorflow"),
            "threadpoolctl": package_version("threadpoolctl"),
        },
        "openblas_env_parent": {v: os.environ.get(v) for v in OPENBLAS_VARIABLES},
        "openblas_env_children": ("kept" if args.keep_openblas_env else "unset"),
        "load_average_start": os.getloadavg(),
        "git": git_state(),
    }


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def child_environment(keep_openblas, threads=None):
    env = dict(os.environ)
    if not keep_openblas:
        for variable in OPENBLAS_VARIABLES:
            env.pop(variable, None)
    if threads:
        env.update({variable: str(threads) for variable in THREAD_VARIABLES})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    # Measure the working tree's neuralnp, whatever the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


# -- running the children ----------------------------------------------------------------------

def other_runnable(seconds=0.5, samples=10):
    """Mean number of other runnable tasks over ``seconds`` (/proc/loadavg's instantaneous
    count, less this process), or None where there is no /proc."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        time.sleep(seconds / samples)
    return sum(counts) / len(counts)


QUIET = 0.25  # other runnable tasks, on average


def wait_until_quiet(max_seconds, log):
    """Wait (up to ``max_seconds``) until the other processes use less than a quarter of a CPU
    on average; a benchmark on a busy machine measures the other jobs."""
    deadline = time.monotonic() + max_seconds
    busy = other_runnable()
    if busy is None or busy < QUIET:
        return busy
    log(f"  waiting for the machine to quiet down ({busy:.1f} other runnable tasks) ...")
    while time.monotonic() < deadline:
        time.sleep(5)
        busy = other_runnable(1.0)
        if busy < QUIET:
            break
    return busy


def source_digest():
    """A hash of neuralnp's source files: others may be editing src/ while this runs."""
    h = hashlib.sha1()
    for path in sorted((REPO / "src").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def run_child(spec, workdir, env, timeout):
    """Run one framework on one configuration in a fresh interpreter; its result dict."""
    tag = f"{spec['framework']}-{spec.get('config', 'peak')}-{spec.get('run', 0)}"
    spec = {**spec, "result": str(Path(workdir) / f"result-{tag}.json")}
    spec_path = Path(workdir) / f"spec-{tag}.json"
    spec_path.write_text(json.dumps(spec))
    load = os.getloadavg()[0]  # a busy machine is the usual reason for odd numbers
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / "_frameworks.py"), str(spec_path)],
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": spec["framework"], "status": "failed",
                "error": f"timed out after {timeout:g} s"}
    wall = time.perf_counter() - start
    try:
        result = json.loads(Path(spec["result"]).read_text())
    except (OSError, ValueError):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:]
        result = {"framework": spec["framework"], "status": "failed",
                  "error": f"exit status {proc.returncode}: {' '.join(tail) or 'no output'}"}
    result.update(process_seconds=wall, load_average_before=load)
    return result


def summarise_run(result, cfg, n_train):
    """Add the per-epoch median (first epoch dropped as warm-up) and the spread."""
    times = result.get("epoch_times") or []
    if result["status"] != "ok" or not times:
        return result
    timed = times[1:] if len(times) > 1 else times  # one epoch: nothing to drop, say so later
    median = statistics.median(timed)
    steps = math.ceil(n_train / cfg.batch_size)
    result.update(median_s=median, min_s=min(timed), max_s=max(timed), warmup_s=times[0],
                  epochs_timed=len(timed), steps_per_epoch=steps,
                  us_per_step=median / steps * 1e6, samples_per_s=n_train / median,
                  others_cpu_median_epoch=others_share(times, result.get("epoch_others_cpu_s")))
    return result


TICK_SAFE_EPOCH_S = 0.2  # /proc/stat counts in 10 ms ticks: ±5% on an epoch this long
TICK_SAFE_TOTAL_S = 0.5  # and ±2% on all the timed epochs together


def others_share(times, others_s):
    """The share of the CPUs other processes used in the timed epochs (warm-up dropped).

    With long epochs: the median epoch's share, to go with the median time (a neighbour that
    ran during one epoch of five disturbs neither). With epochs too short for 10 ms ticks: the
    share over all the timed epochs together; None when even that is too short to tell."""
    if not others_s or len(others_s) != len(times):
        return None
    if len(times) > 1:
        times, others_s = times[1:], others_s[1:]
    cpus = os.cpu_count() or 1
    if statistics.median(times) >= TICK_SAFE_EPOCH_S:
        return statistics.median(max(0.0, o) / (t * cpus) for o, t in zip(others_s, times))
    if sum(times) < TICK_SAFE_TOTAL_S:
        return None
    return max(0.0, sum(others_s)) / (sum(times) * cpus)


DISTURBED = 0.05  # other processes' share of the CPUs above which a run counts as disturbed


def run_all(args, configs, inputs, workdir, env, log):
    """Interleave: for each configuration, run every framework once, then all again (A B C,
    A B C); then run again, up to ``--retries`` times, any pair whose runs were all disturbed
    by other processes."""
    results = {(cfg.name, fw): [] for cfg in configs for fw in args.frameworks}
    skip = set()  # frameworks found not installed: no use asking again
    total = len(configs) * args.repeats * len(args.frameworks)
    done = 0
    for cfg in configs:
        for run in range(args.repeats):
            for fw in args.frameworks:
                done += 1
                if fw in skip:
                    continue
                result = run_once(cfg, fw, run, args, inputs, workdir, env, log)
                results[(cfg.name, fw)].append(result)
                if result["status"] == "not installed":
                    skip.add(fw)
                log(progress_line(f"{done}/{total}", cfg, fw, f"run {run + 1}/{args.repeats}",
                                  result))
        for fw in args.frameworks:
            runs = results[(cfg.name, fw)]
            for retry in range(args.retries):
                if not all_disturbed(runs):
                    break
                result = run_once(cfg, fw, len(runs), args, inputs, workdir, env, log)
                runs.append(result)
                log(progress_line("retry", cfg, fw, f"{retry + 1}/{args.retries}", result))
    return results


def all_disturbed(runs):
    """True when every successful run shared the machine with other jobs."""
    ok = [r for r in runs if r["status"] == "ok"]
    return bool(ok) and all((r.get("others_cpu_median_epoch") or 0) > DISTURBED for r in ok)


def run_once(cfg, fw, run, args, inputs, workdir, env, log):
    """One child run of ``fw`` on ``cfg``, after waiting for a quiet machine if asked to."""
    spec = {"framework": fw, "config": cfg.name, "run": run,
            "units": list(cfg.units), "hidden_activation": cfg.hidden_activation,
            "optimizer": cfg.optimizer, "learning_rate": cfg.learning_rate,
            "batch_size": cfg.batch_size, "epochs": epochs_for(cfg, args),
            "threads": args.threads,
            "data": inputs[cfg.name]["data"], "weights": inputs[cfg.name]["weights"]}
    busy = wait_until_quiet(args.wait_quiet, log) if args.wait_quiet else None
    digest = source_digest() if fw == "neuralnp" else None
    result = run_child(spec, workdir, env, args.timeout)
    result.update(other_runnable_before=busy, src_digest=digest)
    return summarise_run(result, cfg, inputs[cfg.name]["n_train"])


def epochs_for(cfg, args):
    return args.epochs if args.epochs is not None else cfg.epochs


def progress_line(count, cfg, fw, which, r):
    head = f"[{count:>5}] {cfg.name:<16} {fw:<9} {which}"
    if r["status"] != "ok":
        return f"{head}  {r['status']}: {r.get('error', '')}"
    acc = "" if r.get("accuracy") is None else f"  acc {r['accuracy']:.4f}"
    others = r.get("others_cpu_median_epoch")
    wait = "" if others is None else f", others took {100 * others:.0f}% of the CPUs"
    return (f"{head}  {format_time(r, cfg)}{acc}  {r['peak_mb']:.0f} MB"
            f"  ({r['process_seconds']:.1f} s in all, load {r['load_average_before']:.1f}{wait})")


# -- aggregation -------------------------------------------------------------------------------

def best_runs(results):
    """Per (config, framework): the successful run with the lowest median, or the first
    failure; plus the relative spread between the runs' medians."""
    best = {}
    for key, runs in results.items():
        ok = [r for r in runs if r["status"] == "ok" and "median_s" in r]
        if not ok:
            best[key] = runs[0] if runs else None
            continue
        chosen = dict(min(ok, key=lambda r: r["median_s"]))
        medians = [r["median_s"] for r in ok]
        chosen["repeat_spread"] = max(medians) / min(medians) - 1 if len(ok) > 1 else None
        best[key] = chosen
    return best


def derived_columns(best, cfg, frameworks, peak_gflops, n_inputs):
    """Ratio to PyTorch, multiple of the floor and fraction of the sgemm rate, per framework."""
    approx_flops, exact_flops = flops_per_sample(cfg.layer_sizes(n_inputs))
    reference = best.get((cfg.name, REFERENCE))
    floor = best.get((cfg.name, FLOOR))
    ref_time = reference.get("median_s") if reference else None
    floor_time = floor.get("median_s") if floor else None
    rows = {}
    for fw in frameworks:
        r = best.get((cfg.name, fw))
        if not r or "median_s" not in r:
            rows[fw] = None
            continue
        t = r["median_s"]
        # The exact count of the products, not 6 × weights: on MNIST the approximation
        # counts 39% more work than is done and would put the floor above 100% of sgemm.
        gflops = r["samples_per_s"] * exact_flops / 1e9
        rows[fw] = {
            "vs_torch": ref_time / t if ref_time else None,
            "x_floor": t / floor_time if floor_time else None,
            "gflops": gflops,
            "fraction_of_peak": gflops / peak_gflops if peak_gflops else None,
        }
    return rows, approx_flops, exact_flops


# -- report ------------------------------------------------------------------------------------

def format_time(r, cfg):
    if cfg.per_step:
        return f"{r['us_per_step']:.1f} µs/step"
    return f"{r['median_s']:.3f} s/epoch"


def markdown_table(header, rows):
    """A pipe table, columns padded so it reads in a terminal and pastes into Markdown."""
    cells = [header] + rows
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


def config_header(cfg, info, epochs, approx_flops, exact_flops):
    """The lines above a configuration's table: what was trained, on what, how it was timed."""
    timed = f"median of {epochs - 1}" if epochs > 1 else "ONE epoch, warm-up included"
    steps = math.ceil(info["n_train"] / cfg.batch_size)
    return [f"## {cfg.name}: {cfg.description}",
            f"{info['data_note']}; {info['n_train']} training samples, {epochs} epochs ({timed}), "
            f"{steps} steps per epoch; {exact_flops / 1e6:.3g} MFLOP per sample in the matrix "
            f"products (6 × weights would say {approx_flops / 1e6:.3g})",
            *cfg.notes]


def config_table(cfg, frameworks, best, derived):
    unit = "µs/step" if cfg.per_step else "s/epoch"
    header = ["framework", unit, "samples/s", "vs PyTorch", "× floor", "test acc", "peak MB",
              "% of sgemm", "run spread", "others' CPU"]
    rows = []
    for fw in frameworks:
        r = best.get((cfg.name, fw))
        d = derived.get(fw)
        if r is None:
            continue
        if d is None:
            rows.append([fw, r["status"] + (f" ({r['error'][:60]})" if r.get("error") else ""),
                         *[""] * (len(header) - 2)])
            continue
        time_cell = f"{r['us_per_step']:.1f}" if cfg.per_step else f"{r['median_s']:.3f}"
        rows.append([
            fw, time_cell, f"{r['samples_per_s']:,.0f}", _fmt(d["vs_torch"], ".2f"),
            _fmt(d["x_floor"], ".2f"), _fmt(r.get("accuracy"), ".4f"), f"{r['peak_mb']:.0f}",
            _fmt(None if d["fraction_of_peak"] is None else 100 * d["fraction_of_peak"], ".1f"),
            _percent(r.get("repeat_spread")), _percent(r.get("others_cpu_median_epoch")),
        ])
    return markdown_table(header, rows)


def summary_table(configs, frameworks, best, derived_by_config):
    """One line per framework: its time on every configuration and the ratio to PyTorch."""
    header = ["framework"] + [c.name for c in configs]
    rows = []
    for fw in frameworks:
        row = [fw]
        for cfg in configs:
            r, d = best.get((cfg.name, fw)), derived_by_config[cfg.name].get(fw)
            if d is None:
                row.append(r["status"] if r else "-")
                continue
            ratio = "" if d["vs_torch"] is None else f" ({d['vs_torch']:.2f}×)"
            row.append(format_time(r, cfg).split()[0] + ratio)
        rows.append(row)
    return markdown_table(header, rows)


def environment_lines(env, peak):
    v = env["versions"]
    lines = [
        f"CPU: {env['cpu']} (family {env['cpu_details']['family']} model "
        f"{env['cpu_details']['model_number']}, {' '.join(env['cpu_details']['simd'])}), "
        f"{env['cpu_count']} logical CPUs, {env['cpus_usable']} usable; {env['os']}, "
        f"Python {env['python']}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) +
        "".join(f"; {k} not installed" for k, val in v.items() if not val),
        "OpenBLAS variables: " + ", ".join(
            f"{k}={val if val is not None else '(unset)'}"
            for k, val in env["openblas_env_parent"].items())
        + f" in this shell; {env['openblas_env_children']} in the benchmark processes",
        f"load average at start: {', '.join(f'{x:.2f}' for x in env['load_average_start'])}",
    ]
    git = env["git"]
    if git.get("commit"):
        lines.append(f"neuralnp at commit {git['commit']}"
                     + (" with uncommitted changes in src/" if git.get("src_modified") else ""))
    if peak:
        lines.append(f"float32 matrix product (NumPy, {peak['size']}² sgemm): "
                     f"{peak['gflops_best']:.1f} GFLOP/s best, "
                     f"{peak['gflops_median']:.1f} median")
        lines += [f"  BLAS: {blas_line(peak['libraries'])}"]
    return lines


def blas_line(libraries):
    """``openblas 0.3.31 (Haswell kernel, pthreads, 2 threads)`` for each library loaded."""
    parts = []
    for lib in libraries:
        if "error" in lib:
            parts.append(lib["error"])
            continue
        details = [x for x in (lib.get("architecture") and f"{lib['architecture']} kernel",
                               lib.get("threading_layer"),
                               f"{lib.get('num_threads')} threads") if x]
        parts.append(f"{lib.get('internal_api')} {lib.get('version') or ''}".strip()
                     + f" ({', '.join(details)})")
    return "; ".join(parts) or "none found"


def framework_lines(best, frameworks):
    """What each framework ran on: its BLAS and thread settings, from its first good run."""
    lines = []
    for fw in frameworks:
        info = next((r.get("info") for (c, f), r in best.items()
                     if f == fw and r and r.get("info")), None)
        if not info:
            continue
        extra = {k: val for k, val in info.items() if k != "libraries"}
        lines.append(f"  {fw}: {blas_line(info.get('libraries', []))}"
                     + (f"; {', '.join(f'{k}={val}' for k, val in extra.items())}"
                        if extra else ""))
    return lines


def noise_warnings(env, best, results, peaks):
    """Plain reasons to distrust the numbers: a busy machine, runs that disagree."""
    notes = []
    cores = env["cpu_count"] or 1
    load = env["load_average_start"][0]
    if load > 0.5 * cores:
        notes.append(f"the load average was {load:.2f} on {cores} CPUs at the start: other jobs "
                     "were running (see the others' CPU column for each run)")
    if len(peaks) == 2 and peaks[0] and peaks[1]:
        a, b = peaks[0]["gflops_best"], peaks[1]["gflops_best"]
        if abs(a - b) / max(a, b) > 0.1:
            notes.append(f"the sgemm rate moved from {a:.1f} to {b:.1f} GFLOP/s between the start "
                         "and the end: the machine's speed changed during the run")
    spread = [(k, r["repeat_spread"]) for k, r in best.items()
              if r and r.get("repeat_spread") is not None and r["repeat_spread"] > 0.10]
    for (cfg, fw), s in spread:
        notes.append(f"{fw} on {cfg}: its runs differ by {100 * s:.0f}% (best kept)")
    busy = [(k, r["others_cpu_median_epoch"]) for k, r in best.items()
            if r and (r.get("others_cpu_median_epoch") or 0) > DISTURBED]
    for (cfg, fw), share in busy:
        notes.append(f"{fw} on {cfg}: other processes used {100 * share:.0f}% of the CPUs in the "
                     "median epoch of its best run: that time is disturbed")
    used = max((p for p in peaks if p), key=lambda p: p["gflops_best"], default=None)
    if used and (used.get("others_cpu_fraction") or 0) > DISTURBED:
        notes.append(f"other processes used {100 * used['others_cpu_fraction']:.0f}% of the CPUs "
                     "while the sgemm rate was measured: the % of sgemm column is too high")
    changed = [fw for fw, digests in source_changes(best, results).items() if len(digests) > 1]
    if changed:
        notes.append("src/ changed between the runs of neuralnp (someone edited it): its runs "
                     "measured different code")
    return notes


def source_changes(best, results):
    """``{framework: {digest of src/ when each of its runs started}}``."""
    digests = {}
    for (cfg, fw), runs in results.items():
        for r in runs:
            if r.get("src_digest"):
                digests.setdefault(fw, set()).add(r["src_digest"])
    return digests


# -- main --------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    configs = [CONFIGS[name] for name in args.configs]
    log = lambda line: print(line, file=sys.stderr, flush=True)
    env = environment(args)
    child_env = child_environment(args.keep_openblas_env, args.threads)

    with tempfile.TemporaryDirectory(prefix="neuralnp-bench-") as workdir:
        log("preparing data and initial weights ...")
        inputs = write_inputs(configs, workdir, max_mnist=args.samples)
        log("measuring the float32 matrix-product rate ...")
        if args.wait_quiet:
            wait_until_quiet(args.wait_quiet, log)
        peak_start = run_child({"framework": "sgemm-peak"}, workdir, child_env, args.timeout)
        results = run_all(args, configs, inputs, workdir, child_env, log)
        if args.wait_quiet:
            wait_until_quiet(args.wait_quiet, log)
        peak_end = run_child({"framework": "sgemm-peak", "run": 1}, workdir, child_env,
                             args.timeout)
    env["load_average_end"] = os.getloadavg()

    peaks = [p if p.get("status") == "ok" else None for p in (peak_start, peak_end)]
    # The faster of the two measurements: the rate the machine reached when not disturbed.
    peak = max((p for p in peaks if p), key=lambda p: p["gflops_best"], default=None)
    peak_gflops = peak["gflops_best"] if peak else None
    best = best_runs(results)

    out = [f"neuralnp CPU benchmark ({'quick smoke test' if args.quick else 'full'}, "
           f"best of {args.repeats} interleaved run{'s' if args.repeats > 1 else ''}; "
           "time = median of the epochs after the first)", ""]
    out += environment_lines(env, peak)
    out += framework_lines(best, args.frameworks)
    derived_by_config = {}
    for cfg in configs:
        derived, approx, exact = derived_columns(best, cfg, args.frameworks, peak_gflops,
                                                 inputs[cfg.name]["n_inputs"])
        derived_by_config[cfg.name] = derived
        out += ["", *config_header(cfg, inputs[cfg.name], epochs_for(cfg, args), approx, exact),
                "", config_table(cfg, args.frameworks, best, derived)]
    if len(configs) > 1:
        out += ["", "## summary (time, and PyTorch's time / this one)", "",
                summary_table(configs, args.frameworks, best, derived_by_config)]
    notes = noise_warnings(env, best, results, peaks)
    if args.quick:
        notes.insert(0, "--quick: one or two short epochs timed on a few samples, so these "
                        "numbers test the harness; they are not measurements")
    if notes:
        out += ["", "noise:"] + [f"  - {n}" for n in notes]
    print("\n".join(out))

    report = {
        "settings": {"quick": args.quick, "repeats": args.repeats, "retries": args.retries,
                     "samples": args.samples,
                     "epochs": {c.name: epochs_for(c, args) for c in configs},
                     "frameworks": args.frameworks, "keep_openblas_env": args.keep_openblas_env,
                     "threads": args.threads or "all CPUs", "wait_quiet": args.wait_quiet},
        "environment": env,
        "sgemm_peak": {"start": peak_start, "end": peak_end, "gflops_used": peak_gflops},
        "configs": {c.name: {**c.to_dict(), **inputs[c.name],
                             "flops_per_sample": flops_per_sample(
                                 c.layer_sizes(inputs[c.name]["n_inputs"]))[0],
                             "matmul_flops_per_sample": flops_per_sample(
                                 c.layer_sizes(inputs[c.name]["n_inputs"]))[1]}
                    for c in configs},
        "results": [{"config": cfg.name, "framework": fw,
                     "best": best.get((cfg.name, fw)),
                     "derived": derived_by_config[cfg.name].get(fw),
                     "runs": results[(cfg.name, fw)]}
                    for cfg in configs for fw in args.frameworks],
        "noise": notes,
    }
    for c in report["configs"].values():  # temporary paths mean nothing once the run is over
        c.pop("data", None)
        c.pop("weights", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
