"""The neuralnp command, run as a user would: real files, real training, exit codes."""

import csv
import importlib.util
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
    assert header == ["id", "predicted_diagnosis", "p_B", "p_M"]  # the identifier train dropped


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
        # text in a number column is a missing value with a notice (test_tabular.py)
        "bad hyperparameter": ["train", good, "--target", "label", "--epochs", "0"],
        "unknown optimizer": ["train", good, "--target", "label", "--optimizer", "adamx"],
    }


EXPECTED = {
    "missing file": "does not exist", "empty file": "is empty", "unknown target": "no target "
    "column 'lable'", "ragged rows": "row 3 has 2 fields", "single class": "single class",
    "not a model": "not a neuralnp model folder", "missing column": "lacks the column 'b'",
    "bad hyperparameter": "--epochs",
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


# -- issue 14 -------------------------------------------------------------------------------------

NEURALNP = [sys.executable, "-m", "neuralnp"]


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _noisy_labels(path, n=200, header=True, seed=0):
    """An id column, a weak signal and mostly noise: a 64-32 network overfits it within a few
    epochs, so the last epoch validates worse than the best one."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).round(4)
    label = np.where(x[:, 0] + 2.0 * rng.normal(size=n) > 0, "M", "B")
    rows = [[1000 + i, label[i], *x[i]] for i in range(n)]
    return _write(path, ["id", "label", *"abcdefgh"] if header else None, rows)


def _regression(path, n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = 50.0 + 100.0 * x[:, 0] - 30.0 * x[:, 1] + 5.0 * rng.normal(size=n)  # std ~ 105
    return _write(path, ["a", "b", "c", "price"], np.column_stack([x, y]).round(4).tolist()), y


def _meta(model):
    return json.loads((Path(model) / "config.json").read_text())["metadata"]["cli"]


def _scores(out, names):
    """{name: value} from the score table lines that start with one of ``names``."""
    found = {}
    for line in out.splitlines():
        cells = line.replace("│", " ").replace("┃", " ").split()
        if cells and cells[0] in names:
            found[cells[0]] = [float(c) for c in cells[1:]]
    return found


def test_regression_scores_are_in_the_target_units(tmp_path, capsys):
    path, y = _regression(tmp_path / "prices.csv")
    code, out, err = run(capsys, "train", path, "--target", "price", "--epochs", "40", "--quiet",
                         "--out", tmp_path / "m")
    assert code == 0, err
    meta = _meta(tmp_path / "m")
    for part in ("train", "validation"):
        assert set(meta["scores"][part]) >= {"mae", "rmse", "r2"}
    train_table = _scores(out, {"mae", "rmse", "r2"})
    assert train_table["mae"][1] == pytest.approx(meta["scores"]["validation"]["mae"], abs=1e-3)
    # the curves carry the same units: the kept epoch's validation MAE is the final score
    kept = meta["kept_epoch"]
    assert meta["history"]["val_mae"][kept - 1] == pytest.approx(
        meta["scores"]["validation"]["mae"], rel=1e-3)
    assert {"val_rmse", "val_r2"} <= set(meta["history"])

    code, out, err = run(capsys, "predict", tmp_path / "m", path, "--out", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        predicted = np.array([float(r["predicted_price"]) for r in csv.DictReader(f)])
    with open(path) as f:
        truth = np.array([float(r["price"]) for r in csv.DictReader(f)])
    mae = np.abs(predicted - truth).mean()
    rmse = np.sqrt(((predicted - truth) ** 2).mean())
    r2 = 1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert mae > 1.0  # a true MAE in the target's units, not the standardised ~0.05
    printed = _scores(out, {"mae", "rmse", "r2"})
    assert printed["mae"][0] == pytest.approx(mae, rel=1e-3, abs=1e-3)
    assert printed["rmse"][0] == pytest.approx(rmse, rel=1e-3, abs=1e-3)
    assert printed["r2"][0] == pytest.approx(r2, abs=1e-3)
    code, out, err = run(capsys, "evaluate", tmp_path / "m", path)
    assert code == 0, err
    assert _scores(out, {"mae"})["mae"][0] == pytest.approx(mae, rel=1e-3, abs=1e-3)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions save (to read what they drew)."""
    plotting = pytest.importorskip("neuralnp.plotting")
    pytest.importorskip("matplotlib")
    saved = []
    real = plotting._save_png

    def capture(fig, path, dpi):
        saved.append((Path(path).name, fig))
        return real(fig, path, dpi)

    monkeypatch.setattr(plotting, "_save_png", capture)
    return saved


def _fig_texts(fig):
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts]
    return texts


def test_the_run_says_which_epoch_it_kept_and_the_curves_mark_it(tmp_path, capsys, figures):
    data = _noisy_labels(tmp_path / "noisy.csv")
    code, out, err = run(capsys, "train", data, "--target", "label", "--epochs", "40",
                         "--early-stopping", "5", "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    meta = _meta(tmp_path / "m")
    kept = meta["kept_epoch"]
    epochs = len(meta["history"]["loss"])
    assert kept < epochs
    assert f"kept the weights of epoch {kept} of {epochs}" in out
    name, fig = [f for f in figures if f[0] == "learning_curves.png"][-1]
    notes = [t for t in _fig_texts(fig) if t.startswith("kept")]
    assert len(notes) == 2 and all(t.startswith(f"kept: epoch {kept}\n") for t in notes)
    title = fig._suptitle.get_text()
    assert "noisy.csv" in title

    figures.clear()
    code, out, err = run(capsys, "plot", tmp_path / "m", "--out", tmp_path / "figs")
    assert code == 0, err
    fig = dict(figures)["learning_curves.png"]
    assert fig._suptitle.get_text() == title
    assert sum(t.startswith(f"kept: epoch {kept}\n") for t in _fig_texts(fig)) == 2


def test_train_keeps_the_best_validation_epoch_by_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _noisy_labels(tmp_path / "data.csv", header=False)
    code, out, err = run(capsys, "split", "data.csv")
    assert code == 0, err
    code, out, err = run(capsys, "train", "train.csv", "--target", "1", "--quiet")
    assert code == 0, err
    meta = _meta("model")
    val_loss = meta["history"]["val_loss"]
    assert meta["training"]["early_stopping"] == 10
    assert len(val_loss) < 50  # stopped: ten epochs without a better validation loss
    assert meta["scores"]["validation"]["loss"] == pytest.approx(min(val_loss), rel=1e-4)
    assert min(val_loss) < val_loss[-1]

    code, out, err = run(capsys, "train", "train.csv", "--target", "1", "--quiet", "--epochs",
                         "15", "--no-early-stopping", "--out", "last")
    assert code == 0, err
    meta = _meta("last")
    assert len(meta["history"]["loss"]) == 15 and meta["kept_epoch"] == 15
    assert meta["scores"]["validation"]["loss"] == pytest.approx(meta["history"]["val_loss"][-1],
                                                                 rel=1e-4)


def test_predict_writes_the_identifier_columns_first(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = [[800 + i, f"Name {i}", "male" if i % 2 else "female", round(rng.uniform(1, 70), 1),
             int(i % 2 == 0)] for i in range(120)]
    train = _write(tmp_path / "train.csv", ["PassengerId", "Name", "Sex", "Age", "Survived"],
                   rows)
    test = _write(tmp_path / "test.csv", ["PassengerId", "Name", "Sex", "Age"],
                  [[1000 + i, f"Other {i}", "male", 30.0] for i in range(5)])
    code, out, err = run(capsys, "train", train, "--target", "Survived", "--epochs", "2",
                         "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = run(capsys, "predict", tmp_path / "m", test, "--out", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        table = list(csv.reader(f))
    assert table[0][:2] == ["PassengerId", "predicted_Survived"]  # not Name: free text
    assert [r[0] for r in table[1:]] == [str(1000 + i) for i in range(5)]
    code, out, err = run(capsys, "predict", tmp_path / "m", test, "--id", "Name", "--id",
                         "PassengerId", "--out", tmp_path / "q.csv")
    assert code == 0, err
    with open(tmp_path / "q.csv") as f:
        assert next(csv.reader(f))[:3] == ["Name", "PassengerId", "predicted_Survived"]
    code, out, err = run(capsys, "predict", tmp_path / "m", test, "--id", "Ticket",
                         "--out", tmp_path / "r.csv")
    assert code == 2 and "--id" in err and "Ticket" in err


def test_identifiers_and_cells_are_copied_as_written_a_chunk_at_a_time(tmp_path, capsys,
                                                                        monkeypatch):
    # numbers are parsed as numbers for the network, but an identifier written 0042 stays 0042
    # in the predictions, and split writes every cell back byte for byte (1.50 stays 1.50)
    import neuralnp.cli as cli
    rng = np.random.default_rng(2)
    lines = ["PassengerId,x,z,Survived"]
    for i in range(150):
        x = rng.normal()
        lines.append(f"{i + 1:04d},{x:.2f}0,{rng.normal():.3f},{int(x > 0)}")
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "split", data, "--out", tmp_path / "parts")
    assert code == 0, err
    written = []
    for part in ("train.csv", "valid.csv"):
        written += (tmp_path / "parts" / part).read_text().splitlines()[1:]
    assert sorted(written) == sorted(lines[1:])
    code, out, err = run(capsys, "train", data, "--target", "Survived", "--epochs", "2",
                         "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    assert _meta(tmp_path / "m")["id_columns"] == ["PassengerId"]
    outputs = []
    for at_a_time in (10_000, 7):
        monkeypatch.setattr(cli, "ROWS_AT_A_TIME", at_a_time)
        code, out, err = run(capsys, "predict", tmp_path / "m", data, "--out",
                             tmp_path / f"p{at_a_time}.csv")
        assert code == 0, err
        assert "150 predictions" in out
        outputs.append((tmp_path / f"p{at_a_time}.csv").read_text())
    assert outputs[0] == outputs[1]
    rows = list(csv.reader(outputs[0].splitlines()))
    assert rows[0] == ["PassengerId", "predicted_Survived", "p_0", "p_1"]
    assert [r[0] for r in rows[1:]] == [line.split(",")[0] for line in lines[1:]]
    code, out, err = run(capsys, "predict", tmp_path / "m", data, "--id", "1", "--out",
                         tmp_path / "q.csv")
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "q.csv").read_text().splitlines()))
    assert [r[0] for r in rows[1:]] == [line.split(",")[1] for line in lines[1:]]  # 0.120


def test_split_never_writes_onto_its_input_and_refuses_existing_outputs(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    _noisy_labels(tmp_path / "train.csv", n=40)  # Kaggle's name for the whole labelled file
    before = (tmp_path / "train.csv").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, out, err = run(capsys, "split", "train.csv", *extra)
        assert code == 2 and "train.csv" in err and "--out" in err, err
        assert (tmp_path / "train.csv").read_bytes() == before
        assert not (tmp_path / "valid.csv").exists()
    code, out, err = run(capsys, "split", "train.csv", "--out", "parts")
    assert code == 0, err
    code, out, err = run(capsys, "split", "train.csv", "--out", "parts")
    assert code == 2 and "exists" in err and "--overwrite" in err
    code, out, err = run(capsys, "split", "train.csv", "--out", "parts", "--overwrite")
    assert code == 0, err


def test_output_paths_are_checked_before_reading_or_training(tmp_path, capsys):
    data = _noisy_labels(tmp_path / "data.csv", n=40)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    cases = {
        "a folder that is not a model": ["train", data, "--target", "label", "--out", notes],
        "a path under a file": ["train", data, "--target", "label", "--out", blocker / "m"],
        "a missing file but a bad --out": ["train", tmp_path / "nope.csv", "--target", "label",
                                           "--out", notes],
        "predictions onto the data": ["predict", "model-not-read", data, "--out", data],
        "pictures under a file": ["plot", "model-not-read", "--out", blocker / "figs"],
    }
    for name, argv in cases.items():
        code, out, err = run(capsys, *argv)
        assert code == 2, (name, err)
        assert "training" not in out and "--out" in err, (name, out, err)
        assert "does not exist" not in err, (name, err)
    assert (notes / "todo.txt").read_text() == "keep me"


def test_ctrl_c_saves_the_model_and_the_curves_and_exits_130(tmp_path):
    import signal
    data = _noisy_labels(tmp_path / "data.csv", n=120)
    proc = subprocess.Popen(NEURALNP + ["train", str(data), "--target", "label", "--epochs",
                                        "100000", "--no-early-stopping", "--out",
                                        str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # piped: one line per epoch once training has begun
        lines.append(line)
        if line.startswith("Epoch 3/"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and err.strip() == "", err
    stopped = [line for line in out.splitlines() if "interrupted" in line]
    assert len(stopped) == 1 and "saved" in stopped[0], out
    meta = _meta(tmp_path / "m")
    assert 3 <= len(meta["history"]["loss"]) < 100000
    assert (tmp_path / "m" / "learning_curves.png").exists()
    code = subprocess.run(NEURALNP + ["info", str(tmp_path / "m")], capture_output=True)
    assert code.returncode == 0


def _one_line_error(done):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("neuralnp: error: "), done.stderr
    return lines[0]


def test_every_mistake_is_one_line_with_status_2(tmp_path):
    prices, _ = _regression(tmp_path / "prices.csv", n=60)
    labels = _noisy_labels(tmp_path / "labels.csv", n=60)
    people = _write(tmp_path / "people.csv", ["Name", "Age", "Survived"],
                    [[f"Person {i}", 20 + i % 40, i % 2] for i in range(60)])
    go = lambda *argv: subprocess.run(NEURALNP + [str(a) for a in argv],  # noqa: E731
                                      capture_output=True, text=True, cwd=tmp_path)

    line = _one_line_error(go("train", prices, "--target", "price", "--optimizer", "sgd",
                              "--learning-rate", "1e6", "--epochs", "5", "--quiet"))
    assert "--learning-rate" in line and "diverge" in line
    line = _one_line_error(go("train", labels, "--target", "label", "--layers", "abc"))
    assert "--layers" in line and "abc" in line
    line = _one_line_error(go("train", labels, "--target", "label", "--learning-rate", "-1"))
    assert "--learning-rate" in line and "learning_rate" not in line
    line = _one_line_error(go("train", labels, "--target", "label", "--dropout", "1.5"))
    assert "--dropout" in line
    line = _one_line_error(go("train", people, "--target", "Name"))
    assert "stratify" not in line and "Name" in line and "--target" in line
    line = _one_line_error(go("train", labels, "--target", "label", "--loss", "mse"))
    assert "--loss mse" in line and "does not fit" in line
    try:
        import cupy  # noqa: F401
    except ImportError:  # no GPU library here: one line naming what to install, nothing written
        line = _one_line_error(go("train", labels, "--target", "label", "--device", "cuda"))
        assert "neuralnp[gpu]" in line and not (tmp_path / "model").exists()
    go("datasets", "export", "iris", "iris.csv")
    line = _one_line_error(go("datasets", "export", "iris", "iris.csv"))
    assert "--overwrite" in line and "overwrite=True" not in line

    # a reader that goes away (neuralnp datasets | head) is not an error worth a message
    proc = subprocess.Popen(NEURALNP + ["datasets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert err == "", err


def test_progress_bar_shows_the_epoch_and_the_whole_run(tmp_path):
    pty = pytest.importorskip("pty")
    pytest.importorskip("rich")
    import os
    import re
    data = _noisy_labels(tmp_path / "data.csv", n=200)
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS="150", LINES="40", TERM="xterm")
    proc = subprocess.Popen(NEURALNP + ["train", str(data), "--target", "label", "--epochs",
                                        "4", "--batch-size", "16", "--no-early-stopping",
                                        "--out", str(tmp_path / "m")],
                            stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    screen = screen.replace("\r", "\n")  # each redraw starts at the beginning of a line
    # two bars at once: this epoch's batches (10 of 160 rows / 16) and the whole run (40)
    assert re.search(r"epoch 2/4 .*\b\d+/10\b", screen), screen
    assert re.search(r"all 4 epochs .*\b\d+/40\b", screen), screen


def test_package_metadata_and_install_lines(tmp_path):
    import tomllib
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # an SPDX string (PEP 639)
    assert any(r.replace(" ", "").startswith("setuptools>=77")
               for r in project["build-system"]["requires"])
    readme = (root / "README.md").read_text()
    terminal = readme.split("## From a terminal", 1)[1].split("\n## ", 1)[0]
    assert 'pip install ".[cli,plot,fast]"' in terminal and "git clone" in terminal
    assert 'pip install "neuralnp[' not in terminal  # the package is not on PyPI
    demo = (root / "Makefile").read_text()
    assert '-e ".[cli,plot,fast]"' in demo
    # building the metadata from pyproject.toml warns about nothing (-W error); in a copy, so
    # that setuptools' egg-info lands there and not in the source tree
    (tmp_path / "src" / "neuralnp").mkdir(parents=True)
    (tmp_path / "src" / "neuralnp" / "__init__.py").write_text("")
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).write_text((root / name).read_text())
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, "-W", "error", "-c",
                           "import sys; from setuptools import build_meta as b; "
                           "b.prepare_metadata_for_build_wheel(sys.argv[1])", "out"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Deprecat" not in done.stderr


def _all_actions(parser, path=("neuralnp",)):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, path + (name,))
        else:
            yield path, action


def test_help_shows_every_default_and_describes_every_argument(capsys):
    import argparse
    from neuralnp.cli import build_parser
    for path, action in _all_actions(build_parser()):
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        assert action.help, (path, action.dest)
    for command in _subcommands():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        if command == "train":
            for default in ("(default: 0.2)", "(default: 64 32)", "(default: relu)",
                            "(default: 50)", "(default: 32)", "(default: adam)",
                            "(default: 10)", "(default: model)", "(default: 0)"):
                assert default in out, default
        if command == "split":
            assert "(default: 0.8)" in out and "(default: .)" in out


def test_version_and_bare_command(capsys):
    from neuralnp import __version__
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"neuralnp {__version__}"
    done = subprocess.run(NEURALNP, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert "usage: neuralnp" in done.stdout and "train" in done.stdout


def test_info_and_plot_on_a_model_saved_from_python(tmp_path, capsys, figures):
    import neuralnp as nn
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")],
                          seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "py-model")
    code, out, err = run(capsys, "info", tmp_path / "py-model")
    assert code == 0, err
    assert "Dense" in out and "binary_crossentropy" in out and "adam" in out.lower()
    assert "not trained by the neuralnp command" in out
    code, out, err = run(capsys, "plot", tmp_path / "py-model", "--out", tmp_path / "figs")
    assert code == 0, err
    assert (tmp_path / "figs" / "network.png").exists()
    assert "learning curves not drawn" in out
    if importlib.util.find_spec("onnx") is not None:  # the library's opset= said as the flag
        code, out, err = run(capsys, "export", tmp_path / "py-model", tmp_path / "m.onnx",
                             "--opset", "5")
        assert code == 2 and err.startswith("neuralnp: error: --opset "), err


def test_evaluate_a_zip_model_draws_its_confusion_matrix_beside_it(tmp_path, capsys):
    data = _noisy_labels(tmp_path / "data.csv", n=60)
    code, out, err = run(capsys, "train", data, "--target", "label", "--epochs", "2", "--quiet",
                         "--out", tmp_path / "models" / "m.zip")
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", tmp_path / "models" / "m.zip", data)
    assert code == 0, err
    assert (tmp_path / "models" / "confusion_matrix.png").exists() or "not drawn" in out


def test_train_on_the_gpu_with_the_cuda_device_flag(tmp_path, monkeypatch, capsys):
    """``--device cuda`` on the CuPy stand-in (tests/fakecupy.py): the run trains on the GPU
    path, saves, and the model predicts on the CPU."""
    import fakecupy
    from neuralnp import backends
    monkeypatch.setattr(backends, "_gpu_cupy", lambda: fakecupy)
    monkeypatch.delitem(backends._instances, "cuda", raising=False)
    data = _noisy_labels(tmp_path / "data.csv", n=120)
    fakecupy.reset_counters()
    assert main(["train", str(data), "--target", "label", "--device", "cuda", "--epochs", "3",
                 "--quiet", "--out", str(tmp_path / "m")]) == 0
    assert fakecupy.counters()["replays"] > 0  # its steps ran as replayed graphs
    assert main(["predict", str(tmp_path / "m"), str(data), "--out",
                 str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().count("\n") == 121
    backends._instances.pop("cuda", None)
