"""The neuralnp command, run as a user would: real files, real training, exit codes."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuralnp.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _accuracy(predictions, truth_file, target):
    with open(truth_file) as f:
        truth = [row[target] for row in csv.DictReader(f)]
    with open(predictions) as f:
        predicted = [row[f"predicted_{target}"] for row in csv.DictReader(f)]
    return np.mean([p == t for p, t in zip(predicted, truth)])


@pytest.fixture
def cancer(tmp_path, capsys):
    code, _, err = run(capsys, "datasets", "export", "breast_cancer", tmp_path / "cancer.csv")
    assert code == 0, err
    return tmp_path / "cancer.csv"


def test_breast_cancer_split_train_predict_with_defaults(tmp_path, capsys, monkeypatch, cancer):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "split", cancer, "--stratify", "diagnosis")
    assert code == 0, err
    assert "train.csv: 455 rows" in out and "valid.csv: 114 rows" in out
    code, out, err = run(capsys, "train", "train.csv", "--target", "diagnosis", "--quiet")
    assert code == 0, err
    assert "id: dropped" in out and "model: model" in out
    code, out, err = run(capsys, "predict", "model", "valid.csv")
    assert code == 0, err
    assert "confusion matrix" in out
    accuracy = _accuracy(tmp_path / "predictions.csv", tmp_path / "valid.csv", "diagnosis")
    assert accuracy >= 0.95
    with open(tmp_path / "predictions.csv") as f:
        header = next(csv.reader(f))
    assert header == ["row", "predicted_diagnosis", "p_B", "p_M"]


def test_headerless_file_with_a_numbered_target(tmp_path, capsys):
    source = SHARED / "wdbc" / "data.csv"
    if not source.exists():
        pytest.skip(f"{source} not found")
    code, out, err = run(capsys, "train", source, "--target", "1", "--epochs", "20", "--quiet",
                         "--out", tmp_path / "m")
    assert code == 0, err
    assert "0: dropped, it looks like an identifier" in out
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["metadata"]["cli"]
    assert meta["header"] is False and meta["target_encoder"]["classes"] == ["B", "M"]
    assert meta["scores"]["validation"]["accuracy"] >= 0.95
    code, out, err = run(capsys, "evaluate", tmp_path / "m", source)
    assert code == 0 and "accuracy" in out, err


def test_raw_titanic_reaches_0_78_validation_accuracy_with_defaults(tmp_path, capsys):
    source = SHARED / "titanic" / "train.csv"
    if not source.exists():
        pytest.skip(f"{source} not found")
    code, out, err = run(capsys, "train", source, "--target", "Survived", "--quiet",
                         "--out", tmp_path / "titanic")
    assert code == 0, err
    assert "Age: 177 missing values" not in out  # imputed on the training part only
    assert "Name: dropped" in out and "missing values filled with the median" in out
    meta = json.loads((tmp_path / "titanic" / "config.json").read_text())["metadata"]["cli"]
    assert meta["scores"]["validation"]["accuracy"] >= 0.78


def test_early_stopping_info_and_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = 2 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=300)
    path = tmp_path / "reg.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c", "target"])
        writer.writerows(np.column_stack([x, y]).round(5).tolist())
    code, out, err = run(capsys, "train", path, "--target", "target", "--epochs", "300",
                         "--early-stopping", "5", "--quiet", "--out", tmp_path / "reg")
    assert code == 0, err
    assert "regression, mse" in out
    meta = json.loads((tmp_path / "reg" / "config.json").read_text())["metadata"]["cli"]
    assert len(meta["history"]["loss"]) < 300  # stopped early
    code, out, err = run(capsys, "info", tmp_path / "reg")
    assert code == 0 and "task: regression" in out and "early stopping patience 5" in out
    code, out, err = run(capsys, "predict", tmp_path / "reg", path, "--out", tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as f:
        predicted = np.array([float(r["predicted_target"]) for r in csv.DictReader(f)])
    assert np.corrcoef(predicted, y)[0, 1] > 0.99  # standardized targets are mapped back


def test_datasets_list_and_export(tmp_path, capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name in ("xor", "iris", "breast_cancer", "titanic", "digits"):
        assert name in out
    code, _, err = run(capsys, "datasets", "export", "iris", tmp_path / "iris.csv")
    assert code == 0, err
    code, _, err = run(capsys, "datasets", "export", "iris", tmp_path / "iris.csv")
    assert code == 2 and "exists" in err


def _file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _bad_inputs(tmp_path):
    good = _file(tmp_path, "good.csv", "a,b,label\n" + "".join(
        f"{i * 0.1:.1f},{(i * 7) % 5},{'yes' if i % 3 else 'no'}\n" for i in range(40)))
    model = tmp_path / "model"
    assert main(["train", str(good), "--target", "label", "--epochs", "2", "--quiet",
                 "--out", str(model)]) == 0
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("hello")
    return {
        "missing file": ["train", tmp_path / "nope.csv", "--target", "label"],
        "empty file": ["train", _file(tmp_path, "empty.csv", ""), "--target", "label"],
        "unknown target": ["train", good, "--target", "lable"],
        "ragged rows": ["train", _file(tmp_path, "ragged.csv", "a,b,label\n1,2,x\n3,y\n"),
                        "--target", "label"],
        "single class": ["train", _file(tmp_path, "one.csv", "a,label\n1,x\n2,x\n3,x\n"),
                         "--target", "label"],
        "not a model": ["predict", notes, good],
        "missing column": ["predict", model, _file(tmp_path, "partial.csv", "a,label\n1,yes\n")],
        "text in a number column": ["predict", model,
                                    _file(tmp_path, "text.csv", "a,b,label\n1,x,yes\n")],
        "bad hyperparameter": ["train", good, "--target", "label", "--epochs", "0"],
        "unknown optimizer": ["train", good, "--target", "label", "--optimizer", "adamx"],
    }


EXPECTED = {
    "missing file": "does not exist", "empty file": "is empty", "unknown target": "no target "
    "column 'lable'", "ragged rows": "row 3 has 2 fields", "single class": "single class",
    "not a model": "not a neuralnp model folder", "missing column": "lacks the column 'b'",
    "text in a number column": "holds 'x'", "bad hyperparameter": "--epochs",
    "unknown optimizer": "unknown optimizer 'adamx'",
}


def test_bad_input_ends_with_one_line_on_stderr_and_status_2(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    capsys.readouterr()
    for name, argv in cases.items():
        code, _, err = run(capsys, *argv)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("neuralnp: error: "), (name, err)
        assert EXPECTED[name] in lines[0], (name, lines[0])
        assert "Traceback" not in err


def test_console_script_and_module_run_without_tracebacks(tmp_path):
    for cmd in ([sys.executable, "-m", "neuralnp"],
                [str(Path(sys.executable).with_name("neuralnp"))]):
        if not Path(cmd[0]).exists():
            continue
        done = subprocess.run(cmd + ["train", str(tmp_path / "none.csv"), "--target", "y"],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip() == f"neuralnp: error: {tmp_path / 'none.csv'} does not exist; " \
                                      "check the path"


def _subcommands():
    from neuralnp.cli import build_parser
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"neuralnp {command}" in out
