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


# -- whole steps replayed as CUDA graphs -----------------------------------------------------------

def _graph_model(kind, optimizer, dtype="float32", metrics=()):
    layers = {"mlp": [nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")],
              "bn": [nn.Dense(8), nn.BatchNormalization(), nn.Activation("tanh"),
                     nn.Dense(3, activation="softmax")],
              "cnn": [nn.Reshape((5, 1, 1)), nn.Conv2D(4, (2, 1), activation="relu"),
                      nn.MaxPooling2D((2, 1)), nn.Flatten(), nn.Dense(3, activation="softmax")],
              "dropout": [nn.Dense(8, activation="relu"), nn.Dropout(0.2),
                          nn.Dense(3, activation="softmax")]}[kind]
    model = nn.Sequential(layers, seed=0, dtype=dtype, device="cuda")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer,
                  metrics=list(metrics))
    return model


def _fit_both(kind, make_optimizer, dtype="float32", metrics=(), **fit):
    x, y = fit.pop("data", _data())
    runs = []
    for graphs in (True, False):
        model = _graph_model(kind, make_optimizer(), dtype, metrics)
        fakecupy.reset_counters()
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, graphs=graphs, **fit)
        runs.append((model, history.history, fakecupy.counters()["replays"]))
    return runs


@pytest.mark.parametrize("kind, make_optimizer, dtype, metrics", [
    ("mlp", lambda: nn.Adam(0.02), "float32", ()),
    ("mlp", lambda: nn.SGD(nn.schedules.ExponentialDecay(0.1, 2, 0.5), momentum=0.9,
                           clipnorm=0.5), "float64", ["accuracy"]),
    ("mlp", lambda: nn.Nadam(0.02, weight_decay=0.01), "float32", ["accuracy"]),
    ("bn", lambda: nn.RMSprop(0.01, centered=True), "float32", ()),
    ("cnn", lambda: nn.AdamW(0.02), "float32", ()),
])
def test_graph_steps_train_bit_for_bit_as_eager_steps(kind, make_optimizer, dtype, metrics):
    """60 samples in batches of 16: three full batches and one of 12, so two graphs, each
    captured after its first (eager) step and replayed for every later one."""
    (graph, graph_history, replays), (eager, eager_history, none) = _fit_both(
        kind, make_optimizer, dtype, metrics, sample_weight=np.linspace(0.5, 2, 60))
    assert replays == 3 * 4 - 2 and none == 0
    assert graph_history == eager_history
    assert np.array_equal(graph.buffer.values.get(), eager.buffer.values.get())
    for key, value in eager.optimizer.state_dict().items():
        assert np.array_equal(graph.optimizer.state_dict()[key], value), key


def test_dropout_draws_its_masks_on_the_device_so_its_steps_are_captured_too():
    (graph, graph_history, replays), (eager, eager_history, _) = _fit_both(
        "dropout", lambda: nn.Adam(0.02))
    assert replays == 3 * 4 - 2 and np.isfinite(graph_history["loss"]).all()
    assert graph_history == eager_history  # each replay drew a new mask, as each eager step did
    assert np.array_equal(graph.buffer.values.get(), eager.buffer.values.get())
    dropout = graph.layers[1]
    assert dropout._key.get()[1] == 12  # one draw per step: 3 epochs of 4 batches


def test_device_dropout_masks_keep_the_rate_and_change_every_draw():
    from neuralnp.backends import get_ops
    ops = get_ops("cuda")
    key = fakecupy.asarray(np.array([2024, 0], np.int64))
    masks = [ops.dropout_mask(fakecupy.empty((300, 400), np.float32), key, 0.3).get()
             for _ in range(2)]
    for mask in masks:  # 120,000 draws: the kept fraction within 4 standard deviations of 0.7
        assert abs(mask.mean() - 0.7) < 4 * (0.7 * 0.3 / mask.size) ** 0.5
    assert 0.4 < (masks[0] != masks[1]).mean() < 0.44  # independent draws: 2·0.3·0.7 = 0.42
    again = ops.dropout_mask(fakecupy.empty((300, 400), np.float32),
                             fakecupy.asarray(np.array([2024, 0], np.int64)), 0.3).get()
    assert np.array_equal(again, masks[0])  # the same key, the same mask


def test_a_non_finite_loss_inside_a_graph_stops_as_the_eager_step_does():
    x, _ = _data()
    y = x[:, :3] * 2
    y[37] = 1e30  # the third batch of the second epoch (unshuffled): an inf squared error
    results = []
    for graphs in (True, False):
        model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3)], seed=0,
                              device="cuda")
        model.compile(loss="mse", optimizer=nn.Adam(0.01))
        model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0, graphs=graphs)
        with pytest.raises(nn.TrainingDivergedError) as error:
            model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, graphs=graphs)
        results.append((str(error.value), model.buffer.values.get(), model.optimizer.iterations))
    assert results[0][0] == results[1][0] and "optimizer step 5" in results[0][0]
    assert np.array_equal(results[0][1], results[1][1]) and results[0][2] == results[1][2] == 4


def test_early_stopping_and_a_rate_callback_act_the_same_with_graphs():
    def callbacks():
        return [nn.callbacks.EarlyStopping("val_loss", patience=1, restore_best_weights=True),
                nn.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)]
    (graph, graph_history, _), (eager, eager_history, _) = (
        (m, h, r) for m, h, r in [
            _run_with(callbacks(), graphs) for graphs in (True, False)])
    assert graph_history == eager_history
    assert np.array_equal(graph.buffer.values.get(), eager.buffer.values.get())


def _run_with(callbacks, graphs):
    x, y = _data()
    model = _graph_model("mlp", nn.Adam(0.05))
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0, graphs=graphs,
                        validation_split=0.3, callbacks=callbacks)
    return model, history.history, None


def test_graph_training_reads_back_once_per_epoch_whatever_the_number_of_steps():
    reads = []
    for n in (64, 640):
        x, y = _data(n)
        model = _graph_model("mlp", nn.Adam(0.02))
        fakecupy.reset_counters()
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        counts = fakecupy.counters()
        reads.append(counts["reads"])
        assert counts["replays"] == 3 * n // 16 - 1
    assert reads[0] == reads[1], reads
