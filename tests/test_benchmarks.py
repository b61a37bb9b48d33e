"""Smoke test of the benchmark harness (benchmarks/bench_mlp.py) at tiny sizes.

It checks that the harness runs end to end and that its arithmetic is right, not how fast
anything is: the timings of a few-second run on a shared machine mean nothing.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    """Import a module from benchmarks/ (a folder of scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


configs = _load("_configs")
bench = _load("bench_mlp")
frameworks = _load("_frameworks")


def test_initial_weights_are_glorot_uniform_and_reproducible():
    weights = configs.glorot_uniform_weights([784, 512, 10], seed=0)
    assert [w.shape for w in weights] == [(784, 512), (512,), (512, 10), (10,)]
    assert all(w.dtype == np.float32 for w in weights)
    assert np.abs(weights[0]).max() <= np.sqrt(6 / (784 + 512))
    assert not weights[1].any() and not weights[3].any()
    again = configs.glorot_uniform_weights([784, 512, 10], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, again))


def test_flops_count_every_product_but_the_first_input_gradient():
    approx, exact = configs.flops_per_sample([784, 100, 10])
    assert approx == 6 * (784 * 100 + 100 * 10)
    assert exact == approx - 2 * 784 * 100


def test_random_data_stands_in_for_missing_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("NEURALNP_DATA", raising=False)
    monkeypatch.setattr(configs, "DEFAULT_MNIST", tmp_path)
    arrays, note = configs.load_mnist(max_train=10, max_test=5)
    assert "RANDOM" in note and "first 10 training" in note
    assert arrays["x_train"].shape == (10, 784) and arrays["x_train"].dtype == np.float32
    assert arrays["y_test"].shape == (5,) and arrays["y_test"].dtype == np.int64


def test_median_drops_the_warm_up_epoch():
    cfg = configs.CONFIGS["nielsen"]
    run = bench.summarise_run({"status": "ok", "epoch_times": [9.0, 1.0, 3.0, 2.0, 4.0]},
                              cfg, n_train=1000)
    assert run["median_s"] == 2.5 and run["warmup_s"] == 9.0 and run["epochs_timed"] == 4
    assert run["steps_per_epoch"] == 10 and run["samples_per_s"] == 400


def test_others_share_uses_the_median_epoch_or_the_sum_of_short_ones():
    cpus = bench.os.cpu_count()
    # Long epochs: one disturbed epoch of five does not count, as for the median time.
    long = bench.others_share([9, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 5 * cpus])
    assert long == 0
    # Short epochs: 10 ms ticks make single epochs meaningless, so they are summed.
    epochs = [1] + [0.01] * 100
    assert bench.others_share(epochs, [0] + [0.01, -0.01] * 50) == 0
    assert bench.others_share(epochs, [0] + [0.01, 0.0] * 50) == pytest.approx(0.5 / cpus)
    # Too little time in all to count 10 ms ticks: no verdict.
    assert bench.others_share([1, 0.005, 0.005], [0, 0.01, 0.0]) is None


def test_matmul_floor_products_have_the_right_shapes():
    kernels = configs.glorot_uniform_weights([30, 24, 2])[0::2]
    buffers = frameworks._matmul_buffers(5, kernels, np.random.default_rng(0))
    frameworks._matmul_step(kernels, *buffers)
    x, outs, grads, kernel_grads, input_grads = buffers
    np.testing.assert_allclose(outs[0], x @ kernels[0], rtol=1e-5)
    np.testing.assert_allclose(kernel_grads[1], outs[0].T @ grads[1], rtol=1e-4, atol=1e-5)


def test_child_peak_memory_is_its_own_not_its_parents():
    peaks = frameworks.memory_peaks()
    assert peaks["peak_mb"] > 0
    if sys.platform.startswith("linux"):
        assert peaks["peak_source"] == "VmHWM"


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """Two configurations, the frameworks the test environment has, one tiny run each."""
    out = tmp_path / "bench.json"
    wanted = ["neuralnp", "matmul", "torch", "sklearn"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_mlp.py"), "--quick", "--samples", "300",
         "--configs", "nielsen", "tabular-tiny", "--frameworks", *wanted, "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## nielsen" in proc.stdout and "## tabular-tiny" in proc.stdout
    assert "µs/step" in proc.stdout
    report = json.loads(out.read_text())
    assert report["environment"]["cpu_count"] >= 1
    assert report["sgemm_peak"]["gflops_used"] > 0
    rows = {(r["config"], r["framework"]): r for r in report["results"]}
    for fw in ("neuralnp", "matmul"):
        for cfg in ("nielsen", "tabular-tiny"):
            best = rows[(cfg, fw)]["best"]
            assert best["status"] == "ok", best.get("error")
            assert best["median_s"] > 0 and best["peak_mb"] > 0
    assert rows[("tabular-tiny", "neuralnp")]["best"]["accuracy"] > 0.5
    # Where PyTorch ran, it is the reference: its own ratio is 1.
    torch_row = rows[("nielsen", "torch")]
    if torch_row["best"]["status"] == "ok":
        assert torch_row["derived"]["vs_torch"] == pytest.approx(1.0)
