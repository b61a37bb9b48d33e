"""Sequential: determinism, fusion, weights exchange, evaluate/predict, and the error messages."""

import io
import warnings

import numpy as np
import pytest

import neuralnp as nn


def _data(n=64, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


def _mlp(seed=0, dtype="float32", out="softmax", units=3):
    return nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(units, activation=out)],
                         seed=seed, dtype=dtype)


def _train(seed, epochs=3):
    x, y = _data()
    model = _mlp(seed)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=10, validation_split=0.25, verbose=0)
    return model, history


def test_same_seed_gives_bit_identical_weights_and_history():
    (m1, h1), (m2, h2) = _train(7), _train(7)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        assert np.array_equal(a, b)
    assert h1.history == h2.history
    m3, h3 = _train(8)
    assert not np.array_equal(m1.get_weights()[0], m3.get_weights()[0])


def test_history_has_loss_metrics_and_val_twins_per_epoch():
    _, history = _train(0, epochs=4)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in history.history.values())


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses():
    x, y = _data(n=25)
    model = _mlp(dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.SGD(1e-9))
    # With a negligible step the weights barely move: the epoch loss is the loss of the data.
    history = model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    assert history.history["loss"][0] == pytest.approx(model.evaluate(x, y), rel=1e-6)


def test_fused_softmax_crossentropy_matches_explicit_logits_path():
    """Dense(softmax) + CE (fused) must train exactly like Dense(linear) + CE(from_logits)."""
    x, y = _data()
    fused = _mlp(seed=1, dtype="float64", out="softmax")
    logits = _mlp(seed=1, dtype="float64", out=None)
    fused.compile(loss="categorical_crossentropy", optimizer=nn.SGD(0.1))
    logits.compile(loss=nn.losses.CategoricalCrossentropy(from_logits=True), optimizer=nn.SGD(0.1))
    fused.fit(x, y, epochs=2, batch_size=16, verbose=0)
    logits.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(fused.get_weights(), logits.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    probs = fused.predict(x)
    z = logits.predict(x)
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)


def test_fused_path_also_applies_to_a_trailing_softmax_layer_and_sigmoid():
    x, y = _data(classes=2)
    a = nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(1), nn.Activation("sigmoid")],
                      seed=2, dtype="float64")
    b = nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(1, activation="sigmoid")],
                      seed=2, dtype="float64")
    for m in (a, b):
        m.compile(loss="binary_crossentropy", optimizer=nn.SGD(0.5))
        m.fit(x, y, epochs=3, batch_size=8, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)
    p = a.predict(x)
    assert p.min() > 0 and p.max() < 1


def test_predict_is_independent_of_batch_size_and_returns_a_fresh_array():
    x, y = _data(n=50)
    model, _ = _train(0)
    full = model.predict(x, batch_size=50)
    np.testing.assert_allclose(model.predict(x, batch_size=7), full, rtol=1e-6)
    again = model.predict(x[:5])
    assert np.array_equal(full[:5], again) and full.sum() != 0
    np.testing.assert_allclose(full.sum(1), 1, rtol=1e-5)


def test_get_and_set_weights_use_keras_order_and_shapes():
    model = nn.Sequential([nn.Dense(4, input_dim=3), nn.Dense(2, use_bias=False)], seed=0)
    model.build((None, 3))
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 4), (4,), (4, 2)]
    new = [np.full(s, i + 1.0, dtype="float32") for i, s in enumerate(shapes)]
    model.set_weights(new)
    x = np.ones((1, 3), dtype="float32")
    # hand computation: each hidden unit is 3·1 + 2 = 5; each output sums 4 hidden units × 3
    np.testing.assert_array_equal(model.predict(x), [[60.0, 60.0]])
    assert model.count_params() == 3 * 4 + 4 + 4 * 2
    # set_weights writes into the flat buffer: the parameters are views of it
    assert model.buffer.values[:12].reshape(3, 4).tolist() == new[0].tolist()


def test_flat_buffer_holds_every_parameter_and_gradient():
    x, y = _data()
    model = nn.Sequential([nn.Dense(6, activation="prelu"), nn.Dense(3, activation="softmax")],
                          seed=0)
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    params = [p for layer in model.layers for p in layer.parameters()]
    assert [p.name.split(".")[-1] for p in params] == ["kernel", "bias", "alpha", "kernel", "bias"]
    assert sum(p.size for p in params) == model.buffer.size
    for p in params:
        assert np.shares_memory(p.value, model.buffer.values)
        assert np.shares_memory(p.grad, model.buffer.grads)
    assert np.abs(model.buffer.grads).sum() > 0


def test_summary_lists_layers_output_shapes_and_totals():
    lines = []
    model = _mlp()
    model.build((None, 5))
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 8)" in text and "(None, 3)" in text
    assert f"Total params: {5 * 8 + 8 + 8 * 3 + 3:,}" in text


def test_float64_models_compute_in_float64():
    x, y = _data()
    model = _mlp(dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x).dtype == np.float64
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert _mlp().predict(x).dtype == np.float32


def test_training_reduces_the_loss_on_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = nn.Sequential([nn.Dense(1)], seed=0)
    model.compile(loss="mse", optimizer=nn.SGD(0.1), metrics=["mae"])
    history = model.fit(x, y, epochs=30, batch_size=20, verbose=0)
    assert history.history["loss"][-1] < 1e-4 < history.history["loss"][0]
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel.ravel(), [1.0, -2.0, 0.5], atol=1e-2)
    np.testing.assert_allclose(bias, [0.3], atol=1e-2)


def test_verbose_prints_one_line_per_epoch(capsys):
    x, y = _data()
    model = _mlp()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=1)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].startswith("Epoch 2/2") and "accuracy" in out[1]


def test_divergence_stops_with_a_clear_error_and_keeps_finite_weights():
    x = np.array([[1.0], [2.0]], dtype="float32")
    y = np.array([1.0, 2.0], dtype="float32")
    model = nn.Sequential([nn.Dense(1)], seed=0)
    model.compile(loss="mse", optimizer=nn.SGD(1e3))
    with pytest.raises(nn.TrainingDivergedError, match="learning rate"):
        model.fit(x, y, epochs=200, batch_size=2, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


# -- bad input ------------------------------------------------------------------------------------

def _compiled(units=3, out="softmax", loss="categorical_crossentropy"):
    model = _mlp(units=units, out=out)
    model.compile(loss=loss, optimizer="adam")
    return model


@pytest.mark.parametrize("make_call, error, pattern", [
    (lambda m, x, y: (m.fit(x[:, :4], y, verbose=0), m.predict(x)), ValueError, "expects samples of shape"),
    (lambda m, x, y: m.fit(x, y[:-1], verbose=0), ValueError, "64 samples but y has 63"),
    (lambda m, x, y: m.fit(x, y + 3, verbose=0), ValueError, r"label [3-5]\b.* 3 units \(classes 0\.\.2\)"),
    (lambda m, x, y: m.fit(x, -y - 1, verbose=0), ValueError, r"label -\d"),
    (lambda m, x, y: m.fit(x, np.eye(4)[y], verbose=0), ValueError, "shape"),
    (lambda m, x, y: m.fit(np.where(x > 1, np.nan, x), y, verbose=0), ValueError, "NaN or infinite"),
    (lambda m, x, y: m.fit(x, np.where(y > 1, np.inf, y), verbose=0), ValueError, "NaN or infinite"),
    (lambda m, x, y: m.fit(x[:0], y[:0], verbose=0), ValueError, "empty"),
    (lambda m, x, y: m.fit(x[:, 0], y, verbose=0), ValueError, "1-D"),
    (lambda m, x, y: m.fit(x.astype(str), y, verbose=0), TypeError, "numbers"),
    (lambda m, x, y: m.fit(None, y, verbose=0), TypeError, "None"),
    (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size"),
    (lambda m, x, y: m.fit(x, y, validation_split=1.5, verbose=0), ValueError, "validation_split"),
    (lambda m, x, y: (m.fit(x, y, verbose=0), m.predict(x[:, :2])), ValueError, "5 features"),
])
def test_bad_input_gets_a_one_line_message(make_call, error, pattern):
    x, y = _data()
    model = _compiled()
    with pytest.raises(error, match=pattern) as info:
        make_call(model, x, y)
    assert "\n" not in str(info.value)


def test_binary_labels_outside_0_1_are_rejected():
    x, y = _data(classes=2)
    model = _compiled(units=1, out="sigmoid", loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.fit(x, y * 2, verbose=0)


def test_fit_and_evaluate_before_compile_say_what_to_do():
    x, y = _data()
    model = _mlp()
    with pytest.raises(RuntimeError, match=r"compile\(.*\) before fit"):
        model.fit(x, y)
    with pytest.raises(RuntimeError, match="before evaluate"):
        model.evaluate(x, y)


@pytest.mark.parametrize("build, pattern", [
    (lambda: nn.Dense(4, activation="relux"), "unknown activation 'relux'; valid names are: .*relu"),
    (lambda: nn.Dense(4, kernel_initializer="glorot"), "unknown initializer .*glorot_uniform"),
    (lambda: _mlp().compile(loss="crossentropy"), "unknown loss .*binary_crossentropy"),
    (lambda: _mlp().compile(loss="mse", optimizer="adamw2"), "unknown optimizer .*adam"),
    (lambda: _mlp().compile(loss="mse", metrics=["acuracy"]), "unknown metric .*accuracy"),
    (lambda: nn.Dense(0), "positive integer"),
    (lambda: nn.Adam(-1.0), r"learning_rate must be in \(0, inf\)"),
])
def test_unknown_names_and_bad_hyperparameters_list_the_valid_choices(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="takes layers"):
        nn.Sequential([nn.Dense(3), "relu"])


def test_unbuilt_model_explains_how_to_build():
    with pytest.raises(RuntimeError, match="input_dim"):
        _mlp().summary(print_fn=io.StringIO().write)


# -- class and sample weights ---------------------------------------------------------------------

def _imbalanced():
    """Breast-cancer data with most malignant cases dropped: 357 benign, 60 malignant."""
    from neuralnp.preprocessing import StandardScaler
    x, y = nn.datasets.breast_cancer()
    keep = np.flatnonzero(y == 0).tolist() + np.flatnonzero(y == 1)[:60].tolist()
    x, y = x[keep], y[keep]
    return StandardScaler().fit_transform(x), y


def _recall(model, x, y):
    predicted = model.predict(x).ravel() > 0.5
    return predicted[y == 1].mean()


def _weighted_run(**weights):
    x, y = _imbalanced()
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")],
                          seed=0, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=nn.SGD(0.01))
    model.fit(x, y, epochs=5, batch_size=32, verbose=0, **weights)
    return model, x, y


def test_class_weight_raises_minority_recall_and_equals_sample_weight():
    plain, x, y = _weighted_run()
    weighted, _, _ = _weighted_run(class_weight={0: 1.0, 1: 6.0})
    by_sample, _, _ = _weighted_run(sample_weight=np.where(y == 1, 6.0, 1.0))
    assert _recall(weighted, x, y) > _recall(plain, x, y) + 0.05
    for a, b in zip(weighted.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_class_weight_must_cover_every_class():
    x, y = _imbalanced()
    model = _compiled(units=1, out="sigmoid", loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"no weight for classes \[1\]"):
        model.fit(x[:, :5], y, class_weight={0: 1.0}, verbose=0)


def test_metrics_see_probabilities_when_the_loss_reads_logits():
    x, y = _data(classes=2)
    logits = nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(1)], seed=4)
    logits.compile(loss=nn.losses.BinaryCrossentropy(from_logits=True), optimizer="sgd",
                   metrics=["accuracy"])
    _, accuracy = logits.evaluate(x, y)
    z = logits.predict(x).ravel()  # logits: the network has no final sigmoid
    assert accuracy == pytest.approx(np.mean((z > 0) == (y == 1)))


def test_two_metrics_with_the_same_log_name_are_rejected():
    with pytest.raises(ValueError, match="same name twice"):
        model = _mlp()
        model.build((None, 5))
        model.compile(loss="categorical_crossentropy", metrics=["f1", "f1_score"])


def test_metric_objects_survive_save_and_load(tmp_path):
    x, y = _data(classes=2)
    model = nn.Sequential([nn.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", metrics=[nn.metrics.Precision(threshold=0.3)])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    loaded = nn.load_model(tmp_path / "m")
    assert loaded.evaluate(x, y, return_dict=True) == model.evaluate(x, y, return_dict=True)


def test_evaluate_checks_the_sample_weight_length():
    x, y = _data()
    model = _compiled()
    with pytest.raises(ValueError, match="one weight per sample"):
        model.evaluate(x, y, sample_weight=np.ones(3))


def test_devices_cpu_works_and_a_gpu_request_says_what_is_missing():
    model = _mlp()
    assert model.to("cpu") is model and model.device == "cpu"
    with pytest.raises(ValueError, match="valid devices are: cpu, cuda"):
        model.to("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install 'neuralnp\[gpu\]'.*gpu13"):
            model.to("cuda")
        assert model.device == "cpu" and model.ops.reads_are_free  # nothing moved
        with pytest.raises(RuntimeError, match="CuPy"):
            nn.Sequential([nn.Dense(2)], device="cuda")


# -- issue 13: no bad weights, and clear errors from the Python API -------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_set_weights_refuses_values_that_are_not_finite_in_the_model_dtype(bad):
    model = _mlp()
    model.build((5,))
    before = model.get_weights()
    new = [w + 1 for w in before]
    new[0] = new[0].astype("float64")
    new[0][2, 3] = bad
    with pytest.raises(ValueError, match=r"weight 'dense.*kernel'.*float32|NaN or infinite") as info:
        model.set_weights(new)
    assert "\n" not in str(info.value)
    for got, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, old)


@pytest.mark.parametrize("second", [np.array(["a", "b", "c", "d", "e", "f", "g", "h"]),
                                    np.full(8, np.nan), np.full(8, 1e39)])
def test_set_weights_checks_every_array_before_changing_any(second):
    model = _mlp()
    model.build((5,))
    before = model.get_weights()
    new = [w + 1 for w in before]
    new[1] = second  # the first layer's bias, after its kernel
    with pytest.raises((ValueError, TypeError), match="bias"):
        model.set_weights(new)
    for got, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, old)


def test_a_value_that_overflows_the_model_dtype_is_named_with_its_column():
    x, y = _data()
    x = x.astype("float64")
    x[7, 2] = 1e39  # finite in float64, infinite in float32
    model = _compiled()
    with pytest.raises(ValueError, match=r"column 2.*1e\+39.*float32") as info:
        model.fit(x, y, verbose=0)
    assert "\n" not in str(info.value)
    regression = _compiled(units=1, out="linear", loss="mse")
    with pytest.raises(ValueError, match=r"y .*1e\+39.*float32"):
        regression.fit(_data()[0], np.where(np.arange(64) == 3, 1e39, 1.0), verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight .*1e\+39"):
        _compiled().fit(_data()[0], y, sample_weight=np.full(64, 1e39), verbose=0)
    assert _mlp(dtype="float64").predict(x).shape == (64, 3)  # float64 holds 1e39


@pytest.mark.parametrize("call, error, pattern", [
    (lambda m, x, y: m.compile(loss=None), TypeError, r"loss .*'mse'"),
    (lambda m, x, y: m.compile(loss=5), TypeError, r"loss .*'mse'.*got int"),
    (lambda m, x, y: m.compile(loss="mse", optimizer=5), TypeError, r"optimizer .*'adam'.*got int"),
    (lambda m, x, y: m.compile(loss="mse", optimizer=None), TypeError, r"optimizer .*'adam'"),
    (lambda m, x, y: m.compile(loss="categorical_crossentropy", optimizer=nn.losses.MeanSquaredError()),
     TypeError, "optimizer"),
    (lambda m, x, y: _fit(m, x, y, epochs=float("nan")), ValueError, "epochs must be a positive integer"),
    (lambda m, x, y: _fit(m, x, y, epochs=-1), ValueError, "epochs must be a positive integer"),
    (lambda m, x, y: _fit(m, x, y, epochs=2.9), ValueError, "epochs must be a positive integer"),
    (lambda m, x, y: _fit(m, x, y, validation_split="0.2"), ValueError, r"validation_split must be a number"),
    (lambda m, x, y: _fit(m, x, y, class_weight={0.0: 1, 1.0: 2, 2.0: 1}), ValueError,
     r"class_weight keys must be class indices.*0\.0"),
    (lambda m, x, y: _fit(m, x, y, class_weight={0: 1, 1: 2, 2: 1, 7: 1}), ValueError,
     r"class_weight names class 7, which y does not hold"),
    (lambda m, x, y: _fit(m, x, y, class_weight={0: 1, 1: -2, 2: 1}), ValueError,
     r"class_weight.*>= 0"),
    (lambda m, x, y: _fit(m, x, y, sample_weight=np.full(64, -1.0)), ValueError,
     r"sample_weight .*negative"),
    (lambda m, x, y: _fit(m, x, y, sample_weight=np.zeros(64)), ValueError, r"all zero"),
    (lambda m, x, y: _fit(m, x, y, class_weight={0: 0, 1: 0, 2: 0}), ValueError, r"all zero"),
    (lambda m, x, y: _fit(m, np.zeros((64, 0)), y), ValueError, r"x has shape \(64, 0\).*feature"),
    (lambda m, x, y: _fit(m, x + 1j, y), TypeError, r"x holds complex numbers"),
    (lambda m, x, y: _fit(m, x.astype("timedelta64[s]"), y), TypeError, r"x holds timedelta64"),
    (lambda m, x, y: _fit(m, x.astype("datetime64[s]"), y), TypeError, r"x holds datetime64"),
])
def test_bad_api_arguments_say_what_to_pass(call, error, pattern):
    x, y = _data()
    model = _compiled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning is not an answer
        with pytest.raises(error, match=pattern) as info:
            call(model, x, y)
    assert "\n" not in str(info.value)


def _fit(model, x, y, **kwargs):
    return model.fit(x, y, verbose=0, **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_seed_must_be_none_or_a_non_negative_integer(seed):
    with pytest.raises((ValueError, TypeError), match=r"seed must be None or an integer >= 0"):
        nn.Sequential([nn.Dense(1)], seed=seed)
    nn.Sequential([nn.Dense(1)], seed=np.int64(3))


@pytest.mark.parametrize("optimizer", [lambda: nn.Adam(1e38), lambda: nn.RMSprop(3e38)],
                         ids=["adam", "rmsprop"])
@pytest.mark.parametrize("path", ["auto", "numpy"])
def test_training_diverged_error_leaves_the_last_finite_weights(optimizer, path, monkeypatch):
    # The README's promise: the loss is finite, but the update itself overflows float32.
    monkeypatch.setenv("NEURALNP_KERNELS", path)
    x, y = _data()
    model = _mlp()
    model.compile(loss="categorical_crossentropy", optimizer=optimizer())
    model.build((5,))
    before = model.get_weights()
    with pytest.raises(nn.TrainingDivergedError, match=r"optimizer step 1.*last finite weights"):
        model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    for got, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, old)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer())
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0,
                        callbacks=[nn.callbacks.TerminateOnNaN()])
    assert history.history == {} and all(np.isfinite(w).all() for w in model.get_weights())


def test_the_readme_first_model_runs(tmp_path, monkeypatch, capsys):
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("\n## A first model\n", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "nn.Input((30,))" in block and "model.summary()" in block
    block = block.replace("validation_split=0.1)", "validation_split=0.1, verbose=0)")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert "Total params: 1,369" in capsys.readouterr().out  # summary before compile
    assert namespace["accuracy"] > 0.9
    assert (tmp_path / "bc-model" / "config.json").is_file()
