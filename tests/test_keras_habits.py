"""Keras habits (issue 15, point 7): ``nn.Input(shape)``, ``input_shape=`` and ``input_dim=``
build the model when it is made, so ``summary()`` works before ``compile``/``fit``; ``save``
to ``m.keras`` writes the .zip form, and ``.h5`` is refused with what to use instead."""

import io
import json
import zipfile

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.layers import REGISTRY


def _summary(model):
    out = io.StringIO()
    model.summary(print_fn=lambda line: out.write(line + "\n"))
    return out.getvalue()


def _weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def _data(n=40, features=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


# -- nn.Input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, expected", [
    ((30,), (30,)), (30, (30,)), ([28, 28, 1], (28, 28, 1)), (np.int64(4), (4,)),
    ((np.int32(5), 2), (5, 2)),
])
def test_input_takes_a_shape_without_the_batch_axis(shape, expected):
    assert nn.Input(shape).shape == expected
    assert nn.Input(shape=shape).shape == expected


@pytest.mark.parametrize("shape, error, pattern", [
    (0, ValueError, "positive"), ((30, 0), ValueError, "positive"),
    ((-1,), ValueError, "positive"), ((), ValueError, "at least one"),
    ((None, 30), ValueError, "batch axis"), (None, TypeError, "shape"),
    ("30", TypeError, "shape"), (True, TypeError, "shape"), (2.5, TypeError, "shape"),
    ((3, 1.5), TypeError, "shape"),
])
def test_input_refuses_shapes_that_are_not_positive_integers(shape, error, pattern):
    with pytest.raises(error, match=pattern):
        nn.Input(shape)


def test_input_as_first_element_builds_the_model_and_is_not_a_layer():
    model = nn.Sequential([nn.Input((30,)), nn.Dense(8, activation="relu"), nn.Dense(1)])
    assert model.built and model.input_shape == (30,) and model.output_shape == (1,)
    # as in Keras, model.layers holds the layers that compute, and summary has no input row
    assert [type(layer) for layer in model.layers] == [nn.Dense, nn.Dense]
    text = _summary(model)
    assert "Input" not in text and "input" not in text.lower().replace("inputs", "")
    assert "(None, 8)" in text and f"{30 * 8 + 8 + 8 + 1:,}" in text
    assert model.count_params() == 30 * 8 + 8 + 8 + 1
    assert not isinstance(nn.Input((3,)), nn.Layer)
    assert repr(nn.Input((28, 28, 1))) == "Input(shape=(28, 28, 1))"


def test_input_builds_a_convolutional_model():
    model = nn.Sequential([
        nn.Input(shape=(28, 28, 1)),
        nn.Conv2D(4, 3, activation="relu"),
        nn.MaxPooling2D(),
        nn.Flatten(),
        nn.Dense(10, activation="softmax"),
    ], seed=0)
    assert model.built and isinstance(model.layers[0], nn.Conv2D)
    assert model.layers[0].output_shape == (26, 26, 4) and model.output_shape == (10,)
    assert "(None, 26, 26, 4)" in _summary(model)
    model.compile(loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(6, 28, 28, 1)).astype("float32")
    model.fit(x, np.arange(6) % 10, epochs=1, batch_size=3, verbose=0)
    assert model.predict(x).shape == (6, 10)


def test_input_must_come_first_and_once():
    with pytest.raises(ValueError, match="first"):
        nn.Sequential([nn.Dense(3), nn.Input((4,))])
    with pytest.raises(ValueError, match="first"):
        nn.Sequential([nn.Input((4,)), nn.Input((4,)), nn.Dense(3)])


def test_a_shape_the_first_layer_cannot_take_fails_when_the_model_is_made():
    with pytest.raises(ValueError, match="Flatten"):
        nn.Sequential([nn.Input((28, 28, 1)), nn.Dense(3)])


def test_every_way_of_declaring_the_input_draws_the_same_weights():
    """A seed gives the weights it gave before: building at construction draws what building
    at compile (or at the first fit) drew."""
    layers = lambda **first: [nn.Dense(8, activation="relu", **first), nn.Dense(2)]  # noqa: E731
    by_input = nn.Sequential([nn.Input((30,)), *layers()], seed=3)
    by_shape = nn.Sequential(layers(input_shape=(30,)), seed=3)
    by_dim = nn.Sequential(layers(input_dim=30), seed=3)
    by_build = nn.Sequential(layers(), seed=3)
    by_build.build((None, 30))
    added = nn.Sequential(seed=3)
    for layer in [nn.Input(30), *layers()]:
        added.add(layer)
    for model in (by_shape, by_dim, by_build, added):
        assert _weights_equal(by_input, model)


# -- input_shape= and input_dim= on layers ------------------------------------------------------

_REQUIRED = {"Dense": (3,), "Activation": ("relu",), "Dropout": (0.5,), "Conv2D": (2, 1),
             "Reshape": ((-1,),)}


# the library's own layers (tests elsewhere may register layers of their own)
@pytest.mark.parametrize("name", sorted(n for n, cls in REGISTRY.items()
                                        if cls.__module__.startswith("neuralnp.")))
def test_every_layer_takes_input_shape_and_keeps_it_in_its_config(name):
    cls = REGISTRY[name]
    args = _REQUIRED.get(name, ())
    layer = cls(*args, input_shape=(4, 4, 2))
    config = layer.get_config()
    assert config["input_shape"] == [4, 4, 2]
    json.dumps(config)
    assert cls.from_config(config).get_config() == config
    # given only when given: configs of layers without it are unchanged
    assert "input_shape" not in cls(*args).get_config()


def test_input_dim_keeps_its_config_and_input_shape_accepts_an_int():
    assert "input_shape" not in nn.Dense(3, input_dim=4).get_config()
    assert nn.Dense(3, input_dim=4).get_config()["input_dim"] == 4
    assert nn.Dense(3, input_shape=4).get_config()["input_shape"] == [4]


@pytest.mark.parametrize("shape", [(0,), (4, -2), (None, 4), (), "4"])
def test_layers_refuse_a_bad_input_shape(shape):
    with pytest.raises((ValueError, TypeError), match="input_shape (must|needs|excludes|dim)"):
        nn.Dense(3, input_shape=shape)


def test_input_shape_on_the_first_layer_builds_the_model():
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(8, 8, 1)), nn.Flatten(), nn.Dense(1)])
    assert model.built and model.input_shape == (8, 8, 1) and model.output_shape == (1,)
    assert "(None, 6, 6, 2)" in _summary(model)


def test_input_shape_on_a_later_layer_is_ignored_as_in_keras():
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3), nn.Dense(2, input_shape=(99,))])
    assert model.built and model.layers[1].input_shape == (3,)


def test_a_first_layer_that_disagrees_with_input_is_refused():
    with pytest.raises(ValueError, match=r"\(5,\)"):
        nn.Sequential([nn.Input((4,)), nn.Dense(3, input_shape=(5,))])
    with pytest.raises(ValueError, match="input_dim"):
        nn.Sequential([nn.Input((4,)), nn.Dense(3, input_dim=5)])


def test_build_with_another_shape_than_declared_is_refused():
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3)])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        model.build((None, 5))
    model.build((None, 4))  # the declared shape is fine
    assert model.input_shape == (4,)


# -- add() ----------------------------------------------------------------------------------------

def test_add_with_input_dim_builds_and_later_adds_keep_the_weights():
    model = nn.Sequential(seed=0)
    model.add(nn.Dense(8, input_dim=4, activation="relu"))
    assert model.built and "(None, 8)" in _summary(model)
    first = model.get_weights()
    model.add(nn.Dense(1))
    assert model.built and model.output_shape == (1,)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, after[:2]))
    assert "(None, 1)" in _summary(model)
    # the weights live in one flat buffer that covers every layer
    assert model.buffer.size == model.count_params() == 4 * 8 + 8 + 8 + 1
    assert np.shares_memory(model.layers[1].kernel.value, model.buffer.values)


def test_add_input_then_layers():
    model = nn.Sequential()
    model.add(nn.Input((6,)))
    assert not model.built and model.layers == []
    model.add(nn.Dense(2))
    assert model.built and model.input_shape == (6,)
    with pytest.raises(ValueError, match="first"):
        model.add(nn.Input((6,)))


def test_a_layer_that_cannot_be_built_is_not_added():
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3)])
    with pytest.raises(ValueError, match="Flatten|Conv2D|4"):
        model.add(nn.Conv2D(2, 3))
    assert len(model.layers) == 1 and model.output_shape == (3,)
    model.add(nn.Dense(2))
    assert model.output_shape == (2,)


def test_add_after_compile_is_refused():
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3)])
    model.compile(loss="mse")
    with pytest.raises(ValueError, match="compile"):
        model.add(nn.Dense(1))


def test_add_to_a_model_built_without_a_declared_input_is_still_refused():
    model = nn.Sequential([nn.Dense(3)])
    model.build((None, 4))
    with pytest.raises(ValueError, match="already built"):
        model.add(nn.Dense(1))


# -- summary, compile, fit ------------------------------------------------------------------------

@pytest.mark.parametrize("first", [
    lambda: [nn.Input((30,)), nn.Dense(8, activation="relu")],
    lambda: [nn.Dense(8, activation="relu", input_shape=(30,))],
    lambda: [nn.Dense(8, activation="relu", input_dim=30)],
])
def test_summary_before_compile_then_compile_and_fit(first):
    model = nn.Sequential([*first(), nn.Dense(1, activation="sigmoid")], seed=0)
    assert "Total params: 257" in _summary(model)
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    x, y = _data()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match=r"expects samples of shape \(30,\)"):
        model.fit(x[:, :29], y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"expects samples of shape \(30,\)"):
        model.predict(x[:, :29])


def test_from_config_without_build_stays_unbuilt():
    """The loader builds a config's model as shapes only before it allocates: a declared
    input must not build it on the way."""
    config = nn.Sequential([nn.Dense(3, input_dim=4)]).get_config()
    assert not nn.Sequential.from_config(config, build=False).built
    assert nn.Sequential.from_config(config).built


# -- saving ---------------------------------------------------------------------------------------

def test_a_model_from_input_saves_and_loads_like_one_from_input_dim(tmp_path):
    by_input = nn.Sequential([nn.Input((30,)), nn.Dense(4, activation="relu"), nn.Dense(1)],
                             seed=1)
    by_dim = nn.Sequential([nn.Dense(4, activation="relu", input_dim=30), nn.Dense(1)], seed=1)
    for model, name in ((by_input, "a"), (by_dim, "b")):
        model.compile(loss="mse")
        model.save(tmp_path / name)
    a = json.loads((tmp_path / "a" / "config.json").read_text())["model"]
    b = json.loads((tmp_path / "b" / "config.json").read_text())["model"]
    assert a["input_shape"] == b["input_shape"] == [30]
    assert [spec["class_name"] for spec in a["layers"]] == ["Dense", "Dense"]
    del b["layers"][0]["config"]["input_dim"]
    for spec in a["layers"] + b["layers"]:
        spec["config"].pop("name")
    assert a == b
    x, _ = _data()
    loaded = nn.load_model(tmp_path / "a")
    np.testing.assert_array_equal(loaded.predict(x), by_input.predict(x))
    assert [type(layer) for layer in loaded.layers] == [nn.Dense, nn.Dense]


def test_input_shape_on_a_layer_round_trips(tmp_path):
    model = nn.Sequential([nn.Dense(3, input_shape=(5,)), nn.Dense(1)], seed=0)
    model.save(tmp_path / "m")
    loaded = nn.load_model(tmp_path / "m")
    assert loaded.layers[0].get_config()["input_shape"] == [5]
    assert _weights_equal(model, loaded)


@pytest.mark.parametrize("name", ["m.keras", "M.KERAS"])
def test_save_to_a_keras_name_writes_the_zip_form(tmp_path, name):
    model = nn.Sequential([nn.Input((30,)), nn.Dense(2, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy")
    path = tmp_path / name
    model.save(str(path))
    assert path.is_file() and zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "weights.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    x, _ = _data()
    loaded = nn.load_model(str(path))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.fit(x, np.zeros(len(x)), epochs=1, verbose=0)
    model.save(path)  # an existing .keras model is replaced
    np.testing.assert_array_equal(nn.load_model(path).predict(x), model.predict(x))


@pytest.mark.parametrize("name", ["m.h5", "m.hdf5", "m.H5"])
def test_save_to_an_hdf5_name_says_what_to_use(tmp_path, name):
    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)])
    with pytest.raises(ValueError, match=r"HDF5.*\.keras"):
        model.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_loading_an_hdf5_file_says_what_neuralnp_reads(tmp_path):
    path = tmp_path / "keras_model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))  # the HDF5 signature, as Keras writes
    with pytest.raises(nn.ModelFileError, match=r"HDF5.*\.keras"):
        nn.load_model(path)
