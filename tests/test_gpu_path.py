"""The GPU path end to end on the CuPy stand-in (tests/fakecupy.py): ``device="cuda"``, fit,
predict, evaluate, save and load across devices, and the scikit-learn estimators.

``get_ops("cuda")`` is pointed at the stand-in, so these run the library's real CUDA code path
(CupyOps, its kernels through their NumPy twins, arrays that refuse implicit conversion to
NumPy); the oracle is the same model on the CPU.
"""

import numpy as np
import pytest

import fakecupy
import neuralnp as nn
from neuralnp import backends
from neuralnp.backends import Ops


@pytest.fixture(autouse=True)
def fake_gpu(monkeypatch):
    monkeypatch.setattr(backends, "_gpu_cupy", lambda: fakecupy)
    backends._instances.pop("cuda", None)  # a fresh CupyOps on the stand-in for each test
    yield
    backends._instances.pop("cuda", None)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)


def _model(device, dtype="float32", cpu_ops=None):
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")],
                          seed=0, dtype=dtype, device=device)
    if cpu_ops is not None:
        model.ops = cpu_ops
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Adam(0.02),
                  metrics=["accuracy"])
    return model


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_a_model_on_the_gpu_trains_as_on_the_cpu(dtype, tol):
    x, y = _data()
    gpu, cpu = _model("cuda", dtype), _model("cpu", dtype, Ops())
    assert type(gpu.ops).__name__ == "CupyOps" and gpu.ops.xp is fakecupy
    hg = gpu.fit(x, y, batch_size=16, epochs=4, verbose=0, validation_split=0.25)
    hc = cpu.fit(x, y, batch_size=16, epochs=4, verbose=0, validation_split=0.25)
    assert isinstance(gpu.buffer.values, fakecupy.ndarray)
    predicted = gpu.predict(x)
    assert type(predicted) is np.ndarray
    np.testing.assert_allclose(predicted, cpu.predict(x), rtol=tol, atol=tol)
    for key in hc.history:
        np.testing.assert_allclose(hg.history[key], hc.history[key], rtol=tol * 10, atol=tol)
    gpu_scores = gpu.evaluate(x, y, return_dict=True)
    cpu_scores = cpu.evaluate(x, y, return_dict=True)
    for key in cpu_scores:
        assert gpu_scores[key] == pytest.approx(cpu_scores[key], rel=tol * 10, abs=tol)


def test_a_gpu_model_saves_and_loads_on_either_device(tmp_path):
    x, y = _data()
    gpu = _model("cuda")
    gpu.fit(x, y, batch_size=16, epochs=2, verbose=0)
    gpu.save(tmp_path / "m")
    on_cpu = nn.load_model(tmp_path / "m")
    assert on_cpu.device == "cpu"
    np.testing.assert_allclose(on_cpu.predict(x), gpu.predict(x), rtol=1e-5, atol=1e-6)
    back = on_cpu.to("cuda")
    assert back.device == "cuda" and isinstance(back.buffer.values, fakecupy.ndarray)
    np.testing.assert_allclose(back.predict(x), gpu.predict(x), rtol=1e-5, atol=1e-6)
    assert back.optimizer.iterations == gpu.optimizer.iterations == 8
    back.fit(x, y, batch_size=16, epochs=1, verbose=0)
    gpu.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_allclose(back.predict(x), gpu.predict(x), rtol=1e-5, atol=1e-6)


def test_moving_to_the_cpu_and_back_keeps_the_weights_and_the_state():
    x, y = _data()
    model = _model("cuda")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    before = model.predict(x)
    model.to("cpu")
    assert model.device == "cpu" and type(model.buffer.values) is np.ndarray
    np.testing.assert_allclose(model.predict(x), before, rtol=1e-6, atol=1e-7)
    model.to("cuda")
    np.testing.assert_allclose(model.predict(x), before, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_the_scikit_learn_estimators_run_on_the_gpu(estimator):
    pytest.importorskip("sklearn")
    from neuralnp import sklearn as nsk
    x, y = _data(120)
    target = y if estimator == "MLPClassifier" else x[:, 0] * 2 + x[:, 1]
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    gpu = getattr(nsk, estimator)(device="cuda", **kwargs).fit(x, target)
    cpu = getattr(nsk, estimator)(**kwargs).fit(x, target)
    assert type(gpu.predict(x)) is np.ndarray
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-3, atol=1e-3)
