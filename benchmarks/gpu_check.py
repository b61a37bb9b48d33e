"""Everything the GPU path must show, in one run on the GPU machine (at most ~8 minutes).

    python benchmarks/gpu_check.py --mnist DIR [--out DIR]     # on a machine with a GPU
    python benchmarks/gpu_check.py --fake [--out DIR]          # on any CPU: the CuPy stand-in

Sections, each recorded as passed / failed / skipped with its numbers, so that one failure does
not hide the rest:

1. ``environment``: Python, NumPy, CuPy, the CUDA runtime and driver, the GPU; PyTorch and JAX
   when installed.
2. ``kernels``: every operation the CUDA Ops overrides, on the cases of tests/test_ops.py
   (float32 and float64, contiguous and strided), against the reference ``Ops`` on the CPU.
3. ``trajectories``: an MLP and a CNN trained 50 steps on the GPU (replayed CUDA graphs) and on
   the CPU from the same weights and batches, float64 (to 1e-9 relative) and float32 (to 1e-4);
   the GPU run twice with the same seed, bit for bit; and whether the eager steps
   (``graphs=False``) give the graphs' weights bit for bit.
4. ``speed`` (real GPU only): the mnist-seed MLP (784-512-128-64-10, ReLU, softmax, Adam 1e-3,
   float32), 10 epochs after a warm-up epoch, data already on the GPU, at batch 1000 and 128:
   neuralnp, PyTorch eager, PyTorch with CUDA graphs and JAX (jit, the epoch in lax.scan).

Results go to ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``. With ``--fake`` the stand-in
(tests/fakecupy.py, kernels run through tests/cuda_twins.py) takes CuPy's place and section 4 is
skipped: CI runs it, so the script itself is tested before it meets a GPU.
"""

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

import neuralnp as nn  # noqa: E402
from neuralnp import devices  # noqa: E402
from neuralnp.backends import Ops  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake", action="store_true",
                        help="run on the NumPy stand-in of CuPy (no GPU needed)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu",
                        help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="folder holding the four MNIST .gz files (real GPU: the speed table)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds the whole run may take; later sections are skipped past it")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cp, ops_class = _cupy(args.fake)
    report = {"fake": args.fake, "sections": {}}
    sections = [("environment", lambda: environment(cp, args.fake)),
                ("kernels", lambda: check_kernels(cp, ops_class)),
                ("trajectories", lambda: check_trajectories(cp, ops_class)),
                ("speed", lambda: speed(cp, ops_class, args.mnist, args.fake))]
    for name, run in sections:
        if time.perf_counter() - start > args.budget:
            report["sections"][name] = {"status": "skipped", "why": "over the time budget"}
            continue
        began = time.perf_counter()
        try:
            result = run()
        except Exception as exc:  # recorded, and the next section still runs
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()}
        result["seconds"] = round(time.perf_counter() - began, 2)
        report["sections"][name] = result
        print(f"{name}: {result['status']} ({result['seconds']} s)", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    failed = [n for n, r in report["sections"].items() if r["status"] == "failed"]
    return 1 if failed else 0


def _cupy(fake):
    """The CuPy module (or the stand-in) and the Ops class that runs on it."""
    from neuralnp.backends.cupy_ops import CupyOps
    if fake:
        import fakecupy
        return fakecupy, CupyOps
    import cupy
    return cupy, CupyOps


# -- 1. environment --------------------------------------------------------------------------------

def environment(cp, fake):
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "neuralnp": nn.__version__, "platform": platform.platform()}
    if not fake:
        info["cupy"] = cp.__version__
        info["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
        info["cuda_driver"] = cp.cuda.runtime.driverGetVersion()
        props = cp.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2 ** 30, 1)
    for name in ("torch", "jax"):
        try:
            module = __import__(name)
            info[name] = module.__version__
        except ImportError:
            info[name] = None
    return {"status": "passed", "info": info}


# -- 2. kernels ------------------------------------------------------------------------------------

def check_kernels(cp, ops_class):
    """Each overridden operation on the cases of tests/test_ops.py, against the reference."""
    import test_ops
    ops = ops_class(cp)
    rows, failures = [], []
    overridden = [name for name in test_ops.CASES if name in vars(ops_class)]
    for name in overridden:
        for case, build in test_ops.CASES[name]:
            for dtype in ("float32", "float64"):
                for layout in ("contiguous", "strided"):
                    label = f"{name}[{case}-{dtype}-{layout}]"
                    try:
                        worst = _compare_operation(ops, name, build, dtype, layout)
                    except Exception as exc:
                        failures.append(f"{label}: {type(exc).__name__}: {exc}")
                        continue
                    rows.append((label, worst))
    return {"status": "failed" if failures else "passed", "operations": overridden,
            "cases": len(rows), "worst_relative": max((w for _, w in rows), default=0.0),
            "failures": failures}


def _compare_operation(ops, name, build, dtype, layout):
    """Run one case on the device and on the CPU reference; the largest relative difference
    of the outputs, or AssertionError past the tolerance."""
    import test_ops
    expected_args = build(test_ops.Maker(dtype, layout))
    host_args = build(test_ops.Maker(dtype, layout))
    getattr(Ops(), name)(*expected_args)
    args = [ops.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
            for a in host_args]
    getattr(ops, name)(*args)
    tol = 2e-6 if dtype == "float32" else 1e-12
    worst = 0.0
    names = _parameter_names(name)
    for arg, got, want in zip(names, args, expected_args):
        if not isinstance(want, np.ndarray) or arg in ("tmp", "check"):
            continue
        got = ops.to_host(got)
        scale = np.maximum(np.abs(want), 1.0)
        same_nan = np.array_equal(np.isnan(got), np.isnan(want))
        diff = np.where(np.isnan(want), 0.0, np.abs(got - want) / scale)
        worst = max(worst, float(np.max(diff, initial=0.0)))
        if not same_nan or worst > tol * 10:
            raise AssertionError(f"{arg} differs by {worst:.3g} (tolerance {tol * 10:g})")
    return worst


def _parameter_names(name):
    import inspect
    return list(inspect.signature(getattr(Ops, name)).parameters)[1:]


# -- 3. trajectories -------------------------------------------------------------------------------

def _mlp():
    return [nn.Dense(64, activation="relu"), nn.Dense(32, activation="tanh"),
            nn.Dense(10, activation="softmax")]


def _cnn():
    return [nn.Conv2D(8, 3, activation="relu"), nn.MaxPooling2D(), nn.Flatten(),
            nn.Dense(10, activation="softmax")]


def _data(kind, n=400, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, 20) if kind == "mlp" else (n, 10, 10, 1)
    x = rng.normal(size=shape).astype(np.float32)
    return x, rng.integers(0, 10, n)


def _train(kind, ops, dtype, graphs=True, steps=50, batch=16):
    """``steps`` Adam steps from seed 0 on ``ops`` (on a GPU as replayed CUDA graphs, or
    eagerly); the weights, on the host, and the losses."""
    layers = _mlp() if kind == "mlp" else _cnn()
    model = nn.Sequential(layers, seed=0, dtype=dtype)
    model.ops = ops
    x, y = _data(kind)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-2))
    epochs = steps * batch // len(x)
    history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, graphs=graphs)
    return np.array(ops.to_host(model.buffer.values)), history.history["loss"]


def check_trajectories(cp, ops_class):
    """Each case on its own, eager steps first, so that one GPU run says as much as it can:
    a failing capture still leaves the eager trajectory's numbers."""
    results, failures = {}, []
    for kind in ("mlp", "cnn"):
        for dtype, tol in (("float64", 1e-9), ("float32", 1e-4)):
            label = f"{kind}-{dtype}"
            result = results[label] = {"tolerance": tol}
            try:
                cpu, cpu_loss = _train(kind, Ops(), dtype)
                result["loss_cpu"] = cpu_loss[-1]
                for mode, graphs in (("eager", False), ("graphs", True)):
                    gpu, gpu_loss = _train(kind, ops_class(cp), dtype, graphs=graphs)
                    again, _ = _train(kind, ops_class(cp), dtype, graphs=graphs)
                    relative = float(np.max(np.abs(gpu - cpu) / np.maximum(np.abs(cpu), 1e-3)))
                    result[mode] = gpu
                    result[f"max_relative_{mode}"] = relative
                    result[f"repeatable_{mode}"] = bool(np.array_equal(gpu, again))
                    result[f"loss_{mode}"] = gpu_loss[-1]
                    if not relative <= tol:
                        failures.append(f"{label} {mode}: weights differ from the CPU's by "
                                        f"{relative:.3g} (tolerance {tol:g})")
                    if not np.array_equal(gpu, again):
                        failures.append(f"{label} {mode}: two runs with the same seed differ")
                result["max_relative"] = result["max_relative_graphs"]
                result["repeatable"] = result["repeatable_graphs"]
                result["graphs_equal_eager"] = bool(np.array_equal(result.pop("graphs"),
                                                                   result.pop("eager")))
            except Exception as exc:  # recorded; the other cases still run
                result.pop("graphs", None), result.pop("eager", None)
                failures.append(f"{label}: {type(exc).__name__}: {exc}")
    return {"status": "failed" if failures else "passed", "results": results,
            "failures": failures}


# -- 4. speed --------------------------------------------------------------------------------------

BATCHES = (1000, 128)
EPOCHS = 10


def speed(cp, ops_class, mnist, fake):
    if fake:
        return {"status": "skipped", "why": "no GPU: the stand-in has no speed to measure"}
    if mnist is None:
        return {"status": "skipped", "why": "pass --mnist DIR (the four MNIST .gz files)"}
    (x, y), _ = nn.datasets.mnist(path=mnist)
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    table = {}
    for batch in BATCHES:
        row = table[batch] = {}
        for name, run in (("neuralnp", _neuralnp_seconds),
                          ("neuralnp, graphs=False", _neuralnp_eager_seconds),
                          ("torch eager", _torch_seconds),
                          ("torch + CUDA graphs", _torch_graph_seconds), ("jax", _jax_seconds)):
            try:
                row[name] = run(cp, ops_class, x, y, batch)
            except Exception as exc:
                row[name] = f"{type(exc).__name__}: {exc}"
    return {"status": "passed", "epochs": EPOCHS, "seconds": table}


def _neuralnp_eager_seconds(cp, ops_class, x, y, batch):
    return _neuralnp_seconds(cp, ops_class, x, y, batch, graphs=False)


def _neuralnp_seconds(cp, ops_class, x, y, batch, graphs=True):
    """One fit of 1 + EPOCHS epochs, timed from the end of the first (the warm-up: kernels
    compiled, each step shape captured as a graph) to the end of the last; the loop reads the
    device at each epoch's end, so the epochs are done when their callbacks run."""
    model = nn.Sequential([nn.Dense(512, activation="relu"), nn.Dense(128, activation="relu"),
                           nn.Dense(64, activation="relu"), nn.Dense(10, activation="softmax")],
                          seed=0)
    devices.move(model, ops_class(cp))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-3))
    marks = []
    clock = nn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: marks.append(
        (cp.cuda.Device().synchronize(), time.perf_counter())[1]))
    model.fit(x, y, batch_size=batch, epochs=1 + EPOCHS, verbose=0, callbacks=[clock],
              graphs=graphs)
    return marks[-1] - marks[0]


def _timed(epoch, synchronize):
    """Seconds for EPOCHS calls of ``epoch()`` after one warm-up call, the device drained
    before the clock starts and before it stops."""
    epoch()
    synchronize()
    began = time.perf_counter()
    for _ in range(EPOCHS):
        epoch()
    synchronize()
    return time.perf_counter() - began


def _torch_model(torch):
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).cuda()


def _torch_seconds(cp, ops_class, x, y, batch):
    import torch
    model = _torch_model(torch)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    xs, ys = torch.from_numpy(x).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        order = torch.randperm(len(xs), device="cuda")
        for start in range(0, len(xs), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xs[rows]), ys[rows]).backward()
            optimizer.step()
    return _timed(epoch, torch.cuda.synchronize)


def _torch_graph_seconds(cp, ops_class, x, y, batch):
    """PyTorch's own recipe: static input buffers, a capturable Adam, one graph per batch shape
    (the last, partial batch is dropped here, as graph users usually do)."""
    import torch
    model = _torch_model(torch)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, capturable=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()
    static_x, static_y = xs[:batch].clone(), ys[:batch].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(static_x), static_y).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = loss_fn(model(static_x), static_y)
        static_loss.backward()
        optimizer.step()
    steps = len(xs) // batch

    def epoch():
        order = torch.randperm(len(xs), device="cuda")
        for k in range(steps):
            rows = order[k * batch:(k + 1) * batch]
            static_x.copy_(xs[rows])
            static_y.copy_(ys[rows])
            graph.replay()
    return _timed(epoch, torch.cuda.synchronize)


def _jax_seconds(cp, ops_class, x, y, batch):
    import jax
    import jax.numpy as jnp
    sizes = [784, 512, 128, 64, 10]
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
    params = [(jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
              for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    moments = jax.tree_util.tree_map(jnp.zeros_like, (params, params))

    def loss(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(yb)), yb])

    def step(state, batch_rows):
        params, (m, v), t = state
        xb, yb = batch_rows
        grads = jax.grad(loss)(params, xb, yb)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        size = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - size * m / (jnp.sqrt(v) + 1e-8),
                                        params, m, v)
        return (params, (m, v), t), None

    steps = len(x) // batch
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def epoch(state, key):
        order = jax.random.permutation(key, len(xs))[:steps * batch].reshape(steps, batch)
        state, _ = jax.lax.scan(step, state, (xs[order], ys[order]))
        return state
    state = (params, moments, 0.0)
    key = jax.random.PRNGKey(1)
    state = epoch(state, key)
    jax.block_until_ready(state)
    began = time.perf_counter()
    for k in range(EPOCHS):
        state = epoch(state, jax.random.fold_in(key, k))
    jax.block_until_ready(state)
    return time.perf_counter() - began


# -- report ----------------------------------------------------------------------------------------

def markdown(report):
    lines = [f"# gpu_check{' --fake' if report['fake'] else ''}", ""]
    for name, result in report["sections"].items():
        lines.append(f"- **{name}**: {result['status']}"
                     + (f" ({result.get('seconds')} s)" if "seconds" in result else "")
                     + (f" — {result['why']}" if "why" in result else ""))
        for failure in result.get("failures", [])[:20]:
            lines.append(f"  - {failure}")
        if "error" in result:
            lines.append(f"  - {result['error']}")
    speed_result = report["sections"].get("speed", {})
    if speed_result.get("status") == "passed":
        lines += ["", f"{speed_result['epochs']} epochs of MNIST after a warm-up, seconds:", "",
                  "| | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
                  "|---|" + "---:|" * len(BATCHES)]
        names = next(iter(speed_result["seconds"].values())).keys()
        for name in names:
            cells = [speed_result["seconds"][b][name] for b in BATCHES]
            lines.append(f"| {name} | " + " | ".join(
                f"{c:.3f}" if isinstance(c, float) else str(c)[:60] for c in cells) + " |")
    trajectories = report["sections"].get("trajectories", {}).get("results", {})
    if trajectories:
        lines += ["", "| trajectory (graphs vs CPU) | max relative | tolerance | repeatable | "
                  "graphs = eager |", "|---|---:|---:|---|---|"]
        for label, r in trajectories.items():
            if "max_relative" not in r:
                lines.append(f"| {label} | failed (eager: "
                             f"{r.get('max_relative_eager', float('nan')):.2e}) | "
                             f"{r['tolerance']:g} | | |")
                continue
            lines.append(f"| {label} | {r['max_relative']:.2e} | {r['tolerance']:g} | "
                         f"{r['repeatable']} | {r['graphs_equal_eager']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
