"""Atomic writes and tidying (``_files.py``), tried the way a crash and a second process would."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import _files

# A child process that saves a model whose every weight is ``value`` to ``path``, dying at the
# point ``stage`` names (os._exit: no cleanup, no finally, as a SIGKILL).
_SAVE_AND_DIE = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import neuralnp as nn
    import neuralnp._files as files

    path, value, stage = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    model = nn.Sequential([nn.Dense(64), nn.Dense(2)], seed=0)
    model.build((None, 32))
    model.set_weights([np.full(w.shape, value) for w in model.get_weights()])
    model.metadata = {"value": value}

    def die_after(owner, name, when=lambda result: True):
        real = getattr(owner, name)
        def wrapped(*args, **kwargs):
            result = real(*args, **kwargs)
            if when(result):
                os._exit(9)
            return result
        setattr(owner, name, wrapped)

    if stage == "mkdir":
        die_after(os, "mkdir")
    elif stage in ("first-file", "zip-written"):
        die_after(os, "fsync")
    elif stage == "exchange":
        die_after(files, "exchange", when=bool)
    elif stage == "first-rename":
        files._renameat2 = None  # as on an OS without RENAME_EXCHANGE
        die_after(os, "rename")
    model.save(path)
    print("saved")
""")


def _save_in_child(path, value, stage="none"):
    out = subprocess.run([sys.executable, "-c", _SAVE_AND_DIE, str(path), str(value), stage],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == (0 if stage == "none" else 9), out.stderr
    return out


def _value(path):
    model = nn.load_model(path)
    weights = np.concatenate([w.ravel() for w in model.get_weights()])
    assert np.all(weights == model.metadata["value"])
    return model.metadata["value"]


@pytest.mark.skipif(_files._renameat2 is None, reason="no renameat2 in this C library")
def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("b")
    assert _files.exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"


@pytest.mark.skipif(_files._renameat2 is None, reason="no renameat2 in this C library")
def test_a_save_killed_right_after_its_swap_leaves_the_new_model(tmp_path):
    _save_in_child(tmp_path / "m", 1.0)
    _save_in_child(tmp_path / "m", 2.0, stage="exchange")
    assert _value(tmp_path / "m") == 2.0
    _save_in_child(tmp_path / "m", 3.0)
    assert os.listdir(tmp_path) == ["m"]


def test_a_save_killed_between_two_renames_is_undone_by_the_next_load(tmp_path):
    _save_in_child(tmp_path / "m", 1.0)
    _save_in_child(tmp_path / "m", 2.0, stage="first-rename")
    assert not (tmp_path / "m").exists()  # the crash fell between the two renames
    assert _value(tmp_path / "m") == 1.0  # the load put the old model back


def test_a_save_killed_between_two_renames_is_undone_by_the_next_save(tmp_path):
    _save_in_child(tmp_path / "m", 1.0)
    _save_in_child(tmp_path / "m", 2.0, stage="first-rename")
    _save_in_child(tmp_path / "m.zip", 4.0)  # another path: leaves m's siblings alone
    assert not (tmp_path / "m").exists()
    _save_in_child(tmp_path / "m", 3.0)
    assert _value(tmp_path / "m") == 3.0
    assert sorted(os.listdir(tmp_path)) == ["m", "m.zip"]


def test_the_next_save_removes_what_killed_saves_left(tmp_path):
    _save_in_child(tmp_path / "m", 1.0)
    _save_in_child(tmp_path / "m.zip", 1.0)
    for stage in ("mkdir", "first-file", "exchange", "first-rename"):
        _save_in_child(tmp_path / "m", 2.0, stage=stage)
        _value(tmp_path / "m")  # a model is there after every kill
    _save_in_child(tmp_path / "m.zip", 2.0, stage="zip-written")
    assert len(os.listdir(tmp_path)) > 2  # the kills did leave temporaries
    _save_in_child(tmp_path / "m", 5.0)
    _save_in_child(tmp_path / "m.zip", 5.0)
    assert sorted(os.listdir(tmp_path)) == ["m", "m.zip"]
    assert _value(tmp_path / "m") == _value(tmp_path / "m.zip") == 5.0


def test_temporaries_of_a_running_writer_are_left_alone(tmp_path):
    mine = _files.temp_name(tmp_path / "m")
    os.mkdir(mine)
    _files.remove_leftovers(tmp_path / "m")
    assert os.path.isdir(mine)


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644),
                                                           (0o077, 0o700, 0o600)])
def test_saved_folders_and_files_follow_the_umask(tmp_path, umask, folder_mode, file_mode):
    model = nn.Sequential([nn.Dense(2)], seed=0)
    model.build((None, 3))
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m")
        model.save(tmp_path / "m")  # a replacement too
        model.save(tmp_path / "m.zip")
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == folder_mode
    for name in ("config.json", "weights.safetensors"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "m.zip").stat().st_mode & 0o777 == file_mode


# A child that saves the model ``rounds`` times, each time with every weight equal to the round.
_SAVE_LOOP = textwrap.dedent(r"""
    import sys
    import numpy as np
    import neuralnp as nn
    path, rounds = sys.argv[1], int(sys.argv[2])
    model = nn.Sequential([nn.Dense(32), nn.Dense(2)], seed=0)
    model.build((None, 16))
    print("ready", flush=True)
    for k in range(1, rounds + 1):
        model.set_weights([np.full(w.shape, float(k)) for w in model.get_weights()])
        model.metadata = {"value": float(k)}
        model.save(path)
""")


def test_a_reader_never_mixes_two_saves(tmp_path):
    path = tmp_path / "m"
    model = nn.Sequential([nn.Dense(32), nn.Dense(2)], seed=0)
    model.build((None, 16))
    model.set_weights([np.zeros(w.shape) for w in model.get_weights()])
    model.metadata = {"value": 0.0}
    model.save(path)
    saver = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(path), "600"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert saver.stdout.readline().strip() == "ready"
        loads, seen = 0, set()
        while saver.poll() is None and loads < 3000:
            seen.add(_value(path))  # config and weights from one save, or it fails
            loads += 1
    finally:
        saver.kill()
        saver.wait()
    assert len(seen) > 5, "the loads did not overlap the saves; the test proved nothing"


def test_config_and_weights_from_two_saves_are_refused(tmp_path):
    model = nn.Sequential([nn.Dense(2)], seed=0)
    model.build((None, 3))
    model.save(tmp_path / "a")
    model.save(tmp_path / "b")
    (tmp_path / "b" / "config.json").write_bytes((tmp_path / "a" / "config.json").read_bytes())
    with pytest.raises(nn.ModelFileError, match="different saves"):
        nn.load_model(tmp_path / "b")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert len(config["save_id"]) == 32 and len(config["weights_sha256"]) == 64
