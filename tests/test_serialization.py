"""save / load_model: exact round trips, exact resumption, atomic writes, clear errors."""

import json
import zipfile

import numpy as np
import pytest

import neuralnp as nn


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(90, 6)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)


def _model(optimizer):
    model = nn.Sequential([nn.Dense(10, activation="relu"), nn.Dense(7, activation="prelu"),
                           nn.Dense(3, activation="softmax")], seed=5)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return model


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_save_load_predict_is_identical(tmp_path, name):
    x, y = _data()
    model = _model(nn.Adam(1e-2))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / name)
    loaded = nn.load_model(tmp_path / name)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


OPTIMIZERS = {
    "sgd": lambda: nn.SGD(0.05),
    "sgd-nesterov-wd": lambda: nn.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop-centered": lambda: nn.RMSprop(1e-3, momentum=0.5, centered=True, clipnorm=1.0),
    "adagrad": lambda: nn.Adagrad(0.05, lr_decay=1e-3, initial_accumulator_value=0.1),
    "adam": lambda: nn.Adam(1e-2),
    "amsgrad-clipvalue": lambda: nn.Adam(1e-2, amsgrad=True, clipvalue=0.5),
    "adamw": lambda: nn.AdamW(1e-2, weight_decay=0.05),
    "nadam": lambda: nn.Nadam(1e-2),
    "adam-cosine-schedule": lambda: nn.Adam(nn.schedules.CosineDecay(1e-2, decay_steps=20)),
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_resuming_after_load_continues_exactly(tmp_path, optimizer):
    x, y = _data()
    straight = _model(optimizer())
    straight.fit(x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0)

    first = _model(optimizer())
    first.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    first.save(tmp_path / "half")
    resumed = nn.load_model(tmp_path / "half")
    history = resumed.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)

    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        assert np.array_equal(a, b)
    assert history.history["loss"] == straight.history.history["loss"][2:]
    assert resumed.optimizer.iterations == straight.optimizer.iterations


def test_files_are_json_and_safetensors_only(tmp_path):
    x, y = _data()
    model = _model("adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json",
                                                                 "weights.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format"] == "neuralnp-model" and config["library_version"] == nn.__version__
    assert [l["class_name"] for l in config["model"]["layers"]] == ["Dense"] * 3
    from safetensors.numpy import load_file
    tensors = load_file(tmp_path / "m" / "weights.safetensors")
    assert {"optimizer/m", "optimizer/v"} <= set(tensors)
    assert sum(v.size for k, v in tensors.items() if k.startswith("layers.")) == model.count_params()


def test_overwriting_replaces_the_model_and_leaves_no_temporary_files(tmp_path):
    x, y = _data()
    model = _model("adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    model.save(tmp_path / "m.zip")
    model.save(tmp_path / "m.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.zip"]
    assert np.array_equal(nn.load_model(tmp_path / "m").predict(x), model.predict(x))


def test_a_crash_while_saving_keeps_the_previous_model(tmp_path, monkeypatch):
    x, y = _data()
    model = _model("adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    before = model.predict(x)
    model.fit(x, y, epochs=1, verbose=0)

    import os
    real_fsync = os.fsync
    calls = []

    def crash_on_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "m")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert np.array_equal(nn.load_model(tmp_path / "m").predict(x), before)


def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    model = _model("adam")
    model.build((None, 6))
    with pytest.raises(FileExistsError, match="not a neuralnp model"):
        model.save(tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def _saved(tmp_path):
    model = _model("adam")
    model.build((None, 6))
    model.save(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("damage, pattern", [
    (lambda p: (p / "weights.safetensors").write_bytes((p / "weights.safetensors").read_bytes()[:100]),
     "truncated or corrupt"),
    (lambda p: (p / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    (lambda p: (p / "config.json").unlink(), "no config.json"),
    (lambda p: (p / "config.json").write_text("{\"format\": \"neuralnp-mo"), "config.json is corrupt"),
    (lambda p: (p / "config.json").write_text(json.dumps({"format": "keras"})), "not written by neuralnp"),
    (lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"format_version": 1', '"format_version": 99')),
     "upgrade neuralnp"),
    (lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"units": 7', '"units": 8')), "has shape"),
    (lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"Dense"', '"os.system"', 1)), "unknown layer class"),
])
def test_damaged_or_foreign_models_get_a_clear_error(tmp_path, damage, pattern):
    path = _saved(tmp_path)
    damage(path)
    with pytest.raises(ValueError, match=pattern):
        nn.load_model(path)


def test_foreign_zip_and_missing_path(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("model.pkl", b"\x80\x04")
    with pytest.raises(ValueError, match="lacks config.json"):
        nn.load_model(tmp_path / "other.zip")
    (tmp_path / "plain.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="valid .zip"):
        nn.load_model(tmp_path / "plain.zip")
    with pytest.raises(FileNotFoundError, match="model.save"):
        nn.load_model(tmp_path / "nothing-here")


def test_saving_an_unbuilt_model_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="fit it"):
        _model("adam").save(tmp_path / "m")
