"""benchmarks/gpu_check.py --fake: the GPU machine's one script runs end to end on the CuPy
stand-in, so that its first run on a GPU is not its first run."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_fake_passes_and_writes_its_report(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--fake",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sections["environment"]["status"] == "passed"
    assert sections["kernels"]["status"] == "passed" and sections["kernels"]["cases"] > 50
    assert sections["trajectories"]["status"] == "passed"
    assert set(sections["trajectories"]["results"]) == {"mlp-float64", "mlp-float32",
                                                        "cnn-float64", "cnn-float32"}
    assert sections["speed"]["status"] == "skipped"
    assert "| trajectory (graphs vs CPU) |" in (tmp_path / "gpu_check.md").read_text()
    assert all(r["graphs_equal_eager"] for r in sections["trajectories"]["results"].values())


def test_the_neuralnp_timing_of_the_speed_table_runs_on_the_stand_in(monkeypatch):
    """The speed section needs a GPU, but its neuralnp run (the mnist-seed MLP, moved to the
    device, warm-up epoch, timed epochs with CUDA graphs) is checked here at a tiny size."""
    import sys
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fakecupy
    import gpu_check
    import numpy as np
    from neuralnp.backends.cupy_ops import CupyOps
    monkeypatch.setattr(gpu_check, "EPOCHS", 1)
    fakecupy.reset_counters()
    rng = np.random.default_rng(0)
    seconds = gpu_check._neuralnp_seconds(fakecupy, CupyOps, rng.random((96, 784), np.float32),
                                          rng.integers(0, 10, 96), 32)
    assert seconds > 0 and fakecupy.counters()["replays"] == 5  # all but the first step


def test_a_failing_capture_still_reports_the_eager_trajectories(monkeypatch):
    """On the GPU the check has one run to say what it can: a capture that fails is a failure
    of the graphs, not of the whole section."""
    import sys
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fakecupy
    import gpu_check
    from neuralnp import graphs
    from neuralnp.backends.cupy_ops import CupyOps

    def refuse(self, *args):
        raise RuntimeError("capture refused (simulated)")
    monkeypatch.setattr(graphs.StepGraphs, "_capture", refuse)
    report = gpu_check.check_trajectories(fakecupy, CupyOps)
    assert report["status"] == "failed" and len(report["failures"]) == 4
    assert all("capture refused" in failure for failure in report["failures"])
    for result in report["results"].values():
        assert result["max_relative_eager"] <= result["tolerance"] and result["repeatable_eager"]
    assert "failed (eager:" in gpu_check.markdown({"fake": True, "sections": {
        "trajectories": report}})
