"""Data-parallel training over MPI: ``mpirun -n 2`` against one process on the same global batch.

Each test writes a script to a temporary folder and runs it under ``mpirun -n 2`` in a
subprocess; the single-process reference runs here, from the same script. 50 float64 steps must
give the same weights to 1e-6 (rounding differs: the sums run in another order).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.cli import main

RANKS = 2
TIMEOUT = 60


def _mpirun():
    """mpirun beside this interpreter (a virtual environment with the mpich wheel), else on
    PATH; None when there is none or mpi4py is missing."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    beside = Path(sys.executable).parent / "mpirun"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpirun")


MPIRUN = _mpirun()
pytestmark = pytest.mark.skipif(MPIRUN is None, reason='needs mpi4py and mpirun: '
                                                       'pip install "neuralnp[mpi]"')


def run_ranks(*args, cwd, ranks=RANKS):
    """``mpirun -n ranks python args...``; the finished process (output captured)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(nn.__file__).parents[1]), os.environ.get("PYTHONPATH")])))
    # One BLAS thread per rank: two ranks on two cores, and nothing to oversubscribe.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([MPIRUN, "-n", str(ranks), sys.executable, *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)


# -- the same training in one process and on two ranks -------------------------------------------

CASES_SCRIPT = '''
"""Every case builds a float64 model and trains it for 50 steps; run under mpirun it trains
each case distributed and rank 0 writes the results."""

import json
import sys

import numpy as np

import neuralnp as nn


def classes(n, seed, features=6, k=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)), rng.integers(0, k, n)


def adam_classifier(layers):
    model = nn.Sequential(layers, seed=3, dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(1e-2),
                  metrics=["accuracy", "auc", "f1"])
    return model


def dense():
    model = adam_classifier([nn.Dense(16, activation="relu"), nn.Dense(8, activation="tanh"),
                             nn.Dense(3, activation="softmax")])
    x, y = classes(160, 1)
    return model, dict(x=x, y=y, epochs=10, batch_size=32, validation_data=classes(41, 2))


def dropout():
    # One mask from the model's generator, one from the layer's own seeded generator.
    model = adam_classifier([nn.Dense(16, activation="relu"), nn.Dropout(0.3),
                             nn.Dense(8, activation="relu"), nn.Dropout(0.2, seed=5),
                             nn.Dense(3, activation="softmax")])
    x, y = classes(160, 1)
    return model, dict(x=x, y=y, epochs=10, batch_size=32, validation_data=classes(41, 2))


def batchnorm():
    model = adam_classifier([nn.Dense(16), nn.BatchNormalization(momentum=0.9), nn.ReLU(),
                             nn.Dense(3, activation="softmax")])
    x, y = classes(160, 1)
    return model, dict(x=x, y=y, epochs=10, batch_size=32, validation_data=classes(41, 2))


def uneven():
    # 101 rows in batches of 25: shards of 13 and 12 rows, then a last batch of one row, which
    # leaves rank 1 an empty shard; with BatchNormalization and Dropout on top.
    model = adam_classifier([nn.Dense(16), nn.BatchNormalization(momentum=0.9), nn.ReLU(),
                             nn.Dropout(0.25), nn.Dense(3, activation="softmax")])
    x, y = classes(101, 1)
    return model, dict(x=x, y=y, epochs=10, batch_size=25, validation_data=classes(41, 2))


def images():
    # Statistics over batch and positions; a dropout mask shared by the whole batch.
    model = adam_classifier([nn.Conv2D(3, 3), nn.BatchNormalization(), nn.ReLU(),
                             nn.MaxPooling2D(2), nn.Flatten(),
                             nn.Dropout(0.3, noise_shape=(1, None)),
                             nn.Dense(3, activation="softmax")])
    rng = np.random.default_rng(6)
    x = rng.normal(size=(41, 6, 6, 2))
    return model, dict(x=x, y=rng.integers(0, 3, 41), epochs=10, batch_size=10)


def sample_weight():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(float)
    model = nn.Sequential([nn.Dense(12, activation="tanh"), nn.Dense(1, activation="sigmoid")],
                          seed=3, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=nn.Adam(1e-2),
                  metrics=["accuracy", "auc", "precision", "recall"])
    # 160 training rows after the split: 5 steps of 32 per epoch.
    return model, dict(x=x, y=y, epochs=10, batch_size=32, validation_split=0.2,
                       sample_weight=rng.uniform(0.2, 3.0, 200), class_weight={0: 1.0, 1: 2.5})


def clipnorm():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(150, 4))
    y = np.stack([x @ [1.0, -2.0, 0.5, 3.0], np.sin(x[:, 0])], axis=1)
    l2 = nn.regularizers.L2(1e-3)
    model = nn.Sequential([nn.Dense(16, activation="relu", kernel_regularizer=l2), nn.Dense(2)],
                          seed=3, dtype="float64")
    model.compile(loss="mse", optimizer=nn.SGD(0.05, momentum=0.9, clipnorm=0.5),
                  metrics=["mae", "r2"])
    return model, dict(x=x, y=y, epochs=10, batch_size=30, shuffle=False,
                       validation_data=(x[:37], y[:37]))


CASES = {f.__name__: f for f in (dense, dropout, batchnorm, uneven, images, sample_weight,
                                  clipnorm)}


def train(name, distributed=None):
    """The model after training, its history and the number of optimizer steps."""
    model, kwargs = CASES[name]()
    history = model.fit(verbose=0, distributed=distributed, **kwargs)
    return model, history.history


def result(model, history, extra=None):
    return {"weights": model.buffer.values.tolist(),
            "states": [s.value.tolist() for layer in model.layers for s in layer.states()],
            "history": history, "iterations": model.optimizer.iterations, **(extra or {})}


if __name__ == "__main__":
    from neuralnp.distributed import MPIStrategy
    strategy = MPIStrategy()
    results = {}
    for name in CASES:
        model, history = train(name, strategy)
        results[name] = result(model, history, {"steps": strategy.steps,
                                                "comm_seconds": strategy.comm_seconds})
        # What another rank saw must be the same: every rank logs the reduced numbers.
        assert strategy.comm.allgather(history) == [history] * strategy.size, name
        weights = strategy.comm.allgather(model.buffer.values.tobytes())
        assert weights == [weights[0]] * strategy.size, name
    if strategy.is_chief:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
'''


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every case trained once under ``mpirun -n 2`` (one launch for all of them), and the
    script's module for the single-process runs."""
    folder = tmp_path_factory.mktemp("distributed")
    script = folder / "cases.py"
    script.write_text(CASES_SCRIPT)
    proc = run_ranks(script, folder / "results.json", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "results.json").read_text()), _load(script, "distributed_cases")


@pytest.mark.parametrize("case", ["dense", "dropout", "batchnorm", "uneven", "images",
                                  "sample_weight", "clipnorm"])
def test_two_ranks_train_as_one_process_on_the_global_batch(two_ranks, case):
    results, cases = two_ranks
    got = results[case]
    model, history = cases.train(case)
    assert got["steps"] == got["iterations"] == model.optimizer.iterations == 50
    assert np.max(np.abs(np.array(got["weights"]) - model.buffer.values)) < 1e-6
    states = [s.value for layer in model.layers for s in layer.states()]
    for mine, theirs in zip(states, got["states"]):  # BatchNormalization's moving statistics
        assert np.max(np.abs(mine - np.array(theirs))) < 1e-6
    assert got["history"].keys() == history.keys()
    for key, values in history.items():
        np.testing.assert_allclose(got["history"][key], values, rtol=1e-7, atol=1e-9,
                                   err_msg=key)
    assert 0 < got["comm_seconds"] < 30


def test_clipping_is_active_in_the_clipnorm_case(two_ranks):
    # Otherwise the clipnorm case would not test that clipping follows the gradient sum.
    _, cases = two_ranks
    weights = []
    for clipnorm in (0.5, None):
        model, kwargs = cases.CASES["clipnorm"]()
        model.optimizer.clipnorm = clipnorm
        model.fit(kwargs["x"][:30], kwargs["y"][:30], epochs=1, batch_size=30, verbose=0)
        weights.append(model.buffer.values.copy())
    assert np.max(np.abs(weights[0] - weights[1])) > 1e-3


# -- failures --------------------------------------------------------------------------------------

FAILING_SCRIPT = '''
import numpy as np
import neuralnp as nn
from neuralnp.distributed import MPIStrategy

strategy = MPIStrategy()


def on_batch_end(batch, logs):
    if strategy.rank == 1 and batch == 5:
        raise RuntimeError("rank 1 broke on purpose")


rng = np.random.default_rng(0)
x, y = rng.normal(size=(2000, 8)), rng.integers(0, 2, 2000)
model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")], seed=0)
model.compile(loss="binary_crossentropy", optimizer="adam")
model.fit(x, y, epochs=100, batch_size=16, verbose=0, distributed=strategy,
          callbacks=[nn.callbacks.LambdaCallback(on_batch_end=on_batch_end)])
print("finished")
'''


def test_a_failing_rank_stops_the_job_with_a_clear_error(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING_SCRIPT)
    proc = run_ranks(script, cwd=tmp_path)  # raises TimeoutExpired if the job hangs
    assert proc.returncode != 0
    assert "neuralnp: rank 1 failed: RuntimeError: rank 1 broke on purpose" in proc.stderr
    assert "finished" not in proc.stdout


MISMATCH_SCRIPT = '''
import numpy as np
import neuralnp as nn
from neuralnp.distributed import MPIStrategy

strategy = MPIStrategy()
rng = np.random.default_rng(0)
x, y = rng.normal(size=(100 - strategy.rank, 3)), rng.normal(size=(100 - strategy.rank, 1))
model = nn.Sequential([nn.Dense(1)], seed=0)
model.compile(loss="mse", optimizer="sgd")
model.fit(x, y, epochs=1, verbose=0, distributed=strategy)
'''


def test_ranks_that_load_different_data_are_told_so(tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH_SCRIPT)
    proc = run_ranks(script, cwd=tmp_path)
    assert proc.returncode != 0
    assert "DistributedMismatchError" in proc.stderr
    assert "disagree on x (rank 0: 100 rows of (3,) float32" in proc.stderr
    assert "rank 1: 99 rows of (3,) float32" in proc.stderr


# -- the command line ------------------------------------------------------------------------------

def test_cli_train_distributed_saves_and_prints_once(tmp_path, capsys, monkeypatch):
    assert main(["datasets", "export", "breast_cancer", str(tmp_path / "cancer.csv")]) == 0
    common = ["train", "cancer.csv", "--target", "diagnosis", "--epochs", "3", "--layers", "16"]
    proc = run_ranks("-m", "neuralnp", *common, "--distributed", "--out", "model", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("training 30-16-1") == 1
    assert out.count("Epoch 3/3") == 1
    assert out.count("model: model") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cancer.csv", "model"]
    distributed = nn.load_model(tmp_path / "model")
    assert distributed.metadata["cli"]["training"]["distributed"] is True

    monkeypatch.chdir(tmp_path)
    assert main([*common, "--out", "single", "--quiet"]) == 0
    single = nn.load_model(tmp_path / "single")
    # float32: equal up to float32 rounding of differently ordered sums
    np.testing.assert_allclose(distributed.buffer.values, single.buffer.values, atol=1e-4)
    assert distributed.metadata["cli"]["history"]["loss"] == pytest.approx(
        single.metadata["cli"]["history"]["loss"], rel=1e-4)
