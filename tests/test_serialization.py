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
        (p / "config.json").read_text().replace('"format_version": 2', '"format_version": 99')),
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


# -- hostile and damaged files --------------------------------------------------------------------

import os
import subprocess
import sys

from neuralnp.errors import ModelFileError


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def _weights_parts(path):
    raw = (path / "weights.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_weights(path, header, data, rehash=True):
    """Write a weights file from ``header`` and ``data``; with ``rehash`` the config's checksum
    follows, so that only the point under test makes the file bad."""
    import hashlib
    raw = json.dumps(header).encode()
    blob = len(raw).to_bytes(8, "little") + raw + data
    (path / "weights.safetensors").write_bytes(blob)
    if rehash:
        _edit_config(path, lambda c: c.update(weights_sha256=hashlib.sha256(blob).hexdigest()))


# The peak memory a load adds, measured in a child process: the bound the issue sets is 100 MB.
_PEAK = r"""
import resource, sys
import neuralnp as nn
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    nn.load_model(sys.argv[1])
    print("loaded")
except nn.ModelFileError as exc:
    print("ModelFileError", exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


def _load_in_child(path, timeout=60):
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    *message, extra_mb = out.stdout.strip().splitlines()
    return "\n".join(message), int(extra_mb)


def test_a_small_config_cannot_allocate_memory(tmp_path):
    path = _saved(tmp_path)
    _edit_config(path, lambda c: c["model"]["layers"][0]["config"].update(units=50_000_000))
    assert (path / "config.json").stat().st_size < 4096
    message, extra_mb = _load_in_child(path)
    assert message.startswith("ModelFileError") and "has shape" in message
    assert extra_mb < 100


def _forbid_initializers(monkeypatch):
    """Make every initializer fail if it is ever called."""
    from neuralnp.initializers import Initializer
    pending, seen = [Initializer], set()
    while pending:
        cls = pending.pop()
        seen.add(cls)
        pending.extend(c for c in cls.__subclasses__() if c not in seen)
    for cls in seen:
        monkeypatch.setattr(cls, "__call__", lambda *a: pytest.fail("an initializer ran"))


def test_the_header_is_checked_before_any_layer_is_initialised(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    _edit_config(path, lambda c: c["model"]["layers"][1]["config"].update(units=8))
    _forbid_initializers(monkeypatch)
    with pytest.raises(ModelFileError, match="has shape"):
        nn.load_model(path)


def test_a_loaded_model_is_filled_from_the_file_without_initialising(tmp_path, monkeypatch):
    x, _ = _data()
    path = _saved(tmp_path)
    expected = nn.load_model(path).predict(x)
    _forbid_initializers(monkeypatch)
    assert np.array_equal(nn.load_model(path).predict(x), expected)


def _zip_of(path, out, config=None, weights=None, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(out, "w", method) as zf:
        zf.writestr("config.json", config if config is not None
                    else (path / "config.json").read_bytes())
        zf.writestr("weights.safetensors", weights if weights is not None
                    else (path / "weights.safetensors").read_bytes())
    return out


def test_archive_members_are_read_with_limits(tmp_path):
    path = _saved(tmp_path)
    header, data = _weights_parts(path)
    # 256 MiB of zeros declared as an extra tensor, deflated into a quarter of a megabyte.
    big = tmp_path / "bomb.zip"
    extra = 1 << 28
    header["extra"] = {"dtype": "F32", "shape": [extra // 4],
                       "data_offsets": [len(data), len(data) + extra]}
    raw = json.dumps(header).encode()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(path / "config.json", "config.json")
        with zf.open("weights.safetensors", "w", force_zip64=True) as f:
            f.write(len(raw).to_bytes(8, "little") + raw + data)
            for _ in range(extra >> 24):
                f.write(bytes(1 << 24))
    assert big.stat().st_size < 2 << 20
    message, extra_mb = _load_in_child(big)
    assert message.startswith("ModelFileError") and extra_mb < 100

    padded = tmp_path / "padded.zip"
    with zipfile.ZipFile(padded, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("config.json", "w", force_zip64=True) as f:
            text = (path / "config.json").read_bytes()
            f.write(text[:-1])
            for _ in range(extra >> 24):
                f.write(b" " * (1 << 24))
            f.write(text[-1:])
        zf.write(path / "weights.safetensors", "weights.safetensors")
    message, extra_mb = _load_in_child(padded)
    assert "config.json declares" in message and extra_mb < 100


def test_tensors_the_model_does_not_have_are_refused_by_name(tmp_path):
    path = _saved(tmp_path)
    header, data = _weights_parts(path)
    header["sneaky/extra"] = {"dtype": "F32", "shape": [4],
                              "data_offsets": [len(data), len(data) + 16]}
    _write_weights(path, header, data + bytes(16))
    with pytest.raises(ModelFileError, match="does not have: sneaky/extra"):
        nn.load_model(path)
    archive = _zip_of(path, tmp_path / "m.zip")
    with pytest.raises(ModelFileError, match="does not have: sneaky/extra"):
        nn.load_model(archive)


def test_weights_must_be_exactly_the_bytes_the_header_declares(tmp_path):
    path = _saved(tmp_path)
    header, data = _weights_parts(path)
    _write_weights(path, header, data + bytes(1 << 20))
    with pytest.raises(ModelFileError, match="do not fill"):
        nn.load_model(path)


def test_nadam_loads_in_constant_time_whatever_its_step_count(tmp_path, monkeypatch):
    x, y = _data()
    model = _model(nn.Nadam(1e-2))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.optimizer.iterations = 10 ** 12
    model.save(tmp_path / "m")
    calls = []
    real_mu = nn.Nadam._mu
    monkeypatch.setattr(nn.Nadam, "_mu", lambda self, t: calls.append(t) or real_mu(self, t))
    loaded = nn.load_model(tmp_path / "m")
    assert loaded.optimizer.iterations == 10 ** 12 and calls == []
    assert loaded.optimizer._mu_product == model.optimizer._mu_product

    # A file from before Π_t was saved: rebuilt with a bounded loop (it underflows to 0).
    _edit_config(tmp_path / "m", lambda c: c["compile"]["optimizer_state"].pop("mu_product"))
    loaded = nn.load_model(tmp_path / "m")
    assert len(calls) < 20_000
    assert loaded.optimizer._mu_product == nn.Nadam(1e-2)._rebuild_mu_product(30_000) < 1e-300


def test_nadam_rebuilt_product_matches_the_steps_bit_for_bit():
    opt = nn.Nadam(1e-2)
    product = 1.0
    for t in range(1, 20_001):  # reaches the subnormal fixed point on the way
        product *= opt._mu(t)
        if t in (3000, 20_000):
            assert opt._rebuild_mu_product(t) == product
    slow = nn.Nadam(1e-2, beta_1=0.999999, momentum_decay=0.0)
    assert slow._rebuild_mu_product(10 ** 12) == pytest.approx(
        slow._rebuild_mu_product(10 ** 6) * 0.999999 ** (10 ** 12 - 10 ** 6), rel=1e-12)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "fifo", "fifo-inside"])
def test_only_regular_files_and_folders_are_read(tmp_path, device):
    if device == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif device == "fifo-inside":
        target = _saved(tmp_path)
        (target / "weights.safetensors").unlink()
        os.mkfifo(target / "weights.safetensors")
    else:
        if not os.path.exists(device):
            pytest.skip(f"{device} does not exist here")
        target = device
    # In a child, so that a FIFO that blocks or a device that fills memory fails the test
    # instead of hanging it.
    message, extra_mb = _load_in_child(target, timeout=60)
    assert "not a regular file" in message and extra_mb < 100


def _bit_flips(path, count, seed):
    rng = np.random.default_rng(seed)
    blob = bytearray((path / "weights.safetensors").read_bytes())
    for _ in range(count):
        position = int(rng.integers(len(blob)))
        damaged = bytearray(blob)
        damaged[position] ^= 1 << int(rng.integers(8))
        yield bytes(damaged)


def test_a_flipped_bit_in_the_weights_is_always_caught(tmp_path):
    x, y = _data()
    model = _model(nn.Adam(1e-2))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    for damaged in _bit_flips(tmp_path / "m", 40, seed=0):
        (tmp_path / "m" / "weights.safetensors").write_bytes(damaged)
        with pytest.raises(ModelFileError):
            nn.load_model(tmp_path / "m")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_in_a_file_are_refused(tmp_path, value):
    path = _saved(tmp_path)
    header, data = _weights_parts(path)
    begin = header["layers.0/" + next(k.split("/")[1] for k in header
                                       if k.startswith("layers.0/"))]["data_offsets"][0]
    data = bytearray(data)
    data[begin:begin + 4] = np.float32(value).tobytes()
    _write_weights(path, header, bytes(data))
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        nn.load_model(path)


class _Boom:
    def __reduce__(self):
        return (open, (os.environ["NEURALNP_MARKER"], "w"))


def test_pickles_and_torch_archives_are_never_unpickled(tmp_path, monkeypatch):
    import pickle
    marker = tmp_path / "executed"
    monkeypatch.setenv("NEURALNP_MARKER", str(marker))
    path = _saved(tmp_path)
    (path / "weights.safetensors").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ModelFileError):
        nn.load_model(path)
    torch = pytest.importorskip("torch")
    torch.save({"boom": _Boom()}, tmp_path / "model.zip")
    with pytest.raises(ModelFileError):
        nn.load_model(tmp_path / "model.zip")
    torch.save({"boom": _Boom()}, tmp_path / "model.pt")
    with pytest.raises(ModelFileError):
        nn.load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_path_traversal_in_an_archive_writes_nothing(tmp_path):
    path = _saved(tmp_path)
    archive = tmp_path / "deep" / "m.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path / "config.json", "config.json")
        zf.write(path / "weights.safetensors", "weights.safetensors")
        zf.writestr("../escaped.txt", "gotcha")
        zf.writestr("/tmp/absolute.txt", "gotcha")
    with pytest.raises(ModelFileError, match="holds more than"):
        nn.load_model(archive)
    assert not (tmp_path / "escaped.txt").exists()


def _deflate_flip(path, tmp_path):
    archive = _zip_of(path, tmp_path / "m.zip")
    blob = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("weights.safetensors")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    blob[start + info.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    return archive


def _zip_with_method(path, tmp_path, method_or_flag):
    archive = _zip_of(path, tmp_path / "m.zip", method=zipfile.ZIP_STORED)
    blob = bytearray(archive.read_bytes())
    for signature, field in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = blob.find(signature)
        while at != -1:
            if method_or_flag == "encrypted":
                blob[at + field] |= 1
            else:
                blob[at + field + 2:at + field + 4] = (99).to_bytes(2, "little")
            at = blob.find(signature, at + 4)
    archive.write_bytes(bytes(blob))
    return archive


def _config_edit(edit):
    def damage(path, tmp_path):
        _edit_config(path, edit)
        return path
    return damage


def _raw_config(text):
    def damage(path, tmp_path):
        (path / "config.json").write_text(text)
        return path
    return damage


def _other_generator(c):
    state = np.random.MT19937(0).state
    state["state"]["key"] = state["state"]["key"].tolist()
    c["rng_state"] = state


HOSTILE = {
    "deflate-stream": _deflate_flip,
    "compression-99": lambda p, t: _zip_with_method(p, t, 99),
    "encrypted-flag": lambda p, t: _zip_with_method(p, t, "encrypted"),
    "metrics-null": _config_edit(lambda c: c["compile"].update(metrics=[None])),
    "no-loss": _config_edit(lambda c: c["compile"].pop("loss")),
    "format-version-text": _config_edit(lambda c: c.update(format_version="1")),
    "negative-input": _config_edit(lambda c: c["model"].update(input_shape=[-3])),
    "units-10**12": _config_edit(lambda c: c["model"]["layers"][0]["config"].update(
        units=10 ** 12)),
    "nested-json": _raw_config("[" * 100_000 + "]" * 100_000),
    "other-generator": _config_edit(_other_generator),
    "iterations-text": _config_edit(lambda c: c["compile"].update(optimizer_iterations="9")),
    "layer-generator": _config_edit(lambda c: c.update(layer_rng_states={"0": {}})),
}


@pytest.mark.parametrize("damage", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_damaged_file_raises_the_library_error(tmp_path, damage):
    target = damage(_saved(tmp_path), tmp_path)
    with pytest.raises(ModelFileError, match=str(target).replace("\\", "\\\\")[-20:]):
        nn.load_model(target)


def test_load_model_and_save_refuse_what_is_not_a_path(tmp_path):
    with pytest.raises(TypeError, match="path"):
        nn.load_model(None)
    model = _model("adam")
    model.build((None, 6))
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="existing file"):
        model.save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_seeded_dropout_resumes_exactly(tmp_path):
    x, y = _data()

    def make():
        model = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dropout(0.5, seed=3),
                               nn.Dense(3, activation="softmax")], seed=5)
        model.compile(loss="categorical_crossentropy", optimizer=nn.Adam(1e-2))
        return model

    straight = make()
    straight.fit(x, y, epochs=4, batch_size=16, verbose=0)
    first = make()
    first.fit(x, y, epochs=2, batch_size=16, verbose=0)
    first.save(tmp_path / "half")
    resumed = nn.load_model(tmp_path / "half")
    resumed.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        assert np.array_equal(a, b)
