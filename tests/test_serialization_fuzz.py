"""Seeded fuzzing of saved models: every damaged file loads or raises ModelFileError.

Hundreds of mutations of a saved folder and of a .zip (bit flips, truncations, safetensors header
edits, config edits); each load must either give a model or raise the library's one error type,
and must not hang: a watchdog fails the test if a single load runs for more than WATCHDOG
seconds (loads take milliseconds; this catches loops and blocking reads, not slowness).
"""

import copy
import hashlib
import json
import shutil
import signal
import time
import zipfile

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.errors import ModelFileError

WATCHDOG = 10
SEED = 20261202
ROUNDS = 300  # per container: 300 folder and 300 zip mutations

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    folder = tmp_path_factory.mktemp("original")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype(int)
    model = nn.Sequential([nn.Dense(6, activation="relu"), nn.Dropout(0.2, seed=1),
                           nn.BatchNormalization(), nn.Dense(2, activation="softmax")], seed=3)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Nadam(1e-2),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(folder / "m")
    return folder / "m"


def _split(weights):
    n = int.from_bytes(weights[:8], "little")
    return json.loads(weights[8:8 + n]), weights[8 + n:]


def _join(header, data):
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


JUNK = [None, -1, 0, 1, 10 ** 12, -(10 ** 12), 1e308, float("nan"), True, "", "x", "float16",
        [], [1], [-3], [[[]]], {}, {"class_name": "os.system"}, "F16", [0, 10 ** 15]]


def _nodes(value, path=()):
    """Every (path, value) inside a JSON value."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, path + (i,))


def _edit_json(value, rng):
    value = copy.deepcopy(value)
    nodes = [p for p, _ in _nodes(value) if p]
    path = nodes[int(rng.integers(len(nodes)))]
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.25:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(JUNK[int(rng.integers(len(JUNK)))])
    return value


def _mutate(config, weights, rng):
    """``(description, config bytes, weights bytes)`` with one mutation applied."""
    kind = int(rng.integers(7))
    if kind == 0:
        blob = bytearray(weights)
        at = int(rng.integers(len(blob)))
        blob[at] ^= 1 << int(rng.integers(8))
        return f"weights bit flip at {at}", config, bytes(blob)
    if kind == 1:
        blob = bytearray(config)
        at = int(rng.integers(len(blob)))
        blob[at] ^= 1 << int(rng.integers(8))
        return f"config bit flip at {at}", bytes(blob), weights
    if kind == 2:
        cut = int(rng.integers(len(weights)))
        return f"weights cut at {cut}", config, weights[:cut]
    if kind == 3:
        cut = int(rng.integers(len(config)))
        return f"config cut at {cut}", config[:cut], weights
    if kind == 4:  # a header edit; half the time the checksum is made to match
        header, data = _split(weights)
        edited = _join(_edit_json(header, rng), data)
        if rng.random() < 0.5:
            parsed = json.loads(config)
            parsed["weights_sha256"] = hashlib.sha256(edited).hexdigest()
            config = json.dumps(parsed).encode()
        return "header edit", config, edited
    if kind == 5:
        return "config edit", json.dumps(_edit_json(json.loads(config), rng)).encode(), weights
    # Several config edits at once.
    parsed = json.loads(config)
    for _ in range(int(rng.integers(2, 6))):
        parsed = _edit_json(parsed, rng)
    return "config edits", json.dumps(parsed).encode(), weights


def _zip_mutations(archive, rng):
    """Byte-level damage to the archive itself (central directory, local headers, stream)."""
    blob = bytearray(archive)
    if rng.random() < 0.3:
        return "zip cut", bytes(blob[:int(rng.integers(len(blob)))])
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(len(blob)))
        blob[at] = int(rng.integers(256))
    return "zip bytes", bytes(blob)


class _Hung(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hung


def _load(target, what):
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG)
    start = time.perf_counter()
    try:
        nn.load_model(target)
    except ModelFileError:
        pass
    except _Hung:
        pytest.fail(f"{what}: the load was still running after {WATCHDOG} s")
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{what}: {type(exc).__name__} instead of ModelFileError: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return time.perf_counter() - start


@pytest.mark.parametrize("container", ["folder", "zip"])
def test_fuzzed_model_files_load_or_raise_the_library_error(original, tmp_path, container):
    rng = np.random.default_rng(SEED + (container == "zip"))
    config = (original / "config.json").read_bytes()
    weights = (original / "weights.safetensors").read_bytes()
    slowest = 0.0
    for round_ in range(ROUNDS):
        what, new_config, new_weights = _mutate(config, weights, rng)
        what = f"round {round_} ({what})"
        if container == "folder":
            target = tmp_path / f"m{round_}"
            target.mkdir()
            (target / "config.json").write_bytes(new_config)
            (target / "weights.safetensors").write_bytes(new_weights)
        else:
            target = tmp_path / f"m{round_}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("config.json", new_config)
                zf.writestr("weights.safetensors", new_weights)
            if rng.random() < 0.3:
                damage, blob = _zip_mutations(target.read_bytes(), rng)
                target.write_bytes(blob)
                what += f" + {damage}"
        slowest = max(slowest, _load(target, what))
        if container == "folder":
            shutil.rmtree(target)
        else:
            target.unlink()
    print(f"{container}: {ROUNDS} mutations, slowest load {slowest:.3f} s")
