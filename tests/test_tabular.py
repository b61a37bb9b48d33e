"""Reading CSV files and encoding their columns the way the command line does."""

import numpy as np
import pytest

from neuralnp.tabular import TableEncoder, TargetEncoder, read_csv


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_header_detection_and_column_lookup(tmp_path):
    headed = read_csv(_csv(tmp_path, "a,b,label\n1,2,x\n3,4,y\n"))
    assert headed.has_header and headed.names == ["a", "b", "label"] and len(headed) == 2
    plain = read_csv(_csv(tmp_path, "7,M,1.5\n8,B,2.5\n", "plain.csv"))
    assert not plain.has_header and plain.names == ["0", "1", "2"]
    assert plain.index("1") == 1 and headed.index("label") == 2 and headed.index("0") == 0
    with pytest.raises(ValueError, match="no column 'nope'; its columns are: a, b, label"):
        headed.index("nope")


@pytest.mark.parametrize("text, pattern", [
    ("", "is empty"), ("\n\n", "is empty"), ("a,b\n1,2\n3\n", "row 3 has 1 fields"),
    ("a,b\n", "no data rows"),
])
def test_bad_files_get_one_clear_message(tmp_path, text, pattern):
    with pytest.raises(ValueError, match=pattern):
        read_csv(_csv(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_csv(tmp_path / "nothing.csv")


def test_encoder_types_scales_encodes_imputes_and_drops(tmp_path):
    rows = ["id,age,city,name,const,label"]
    cities = ["paris"] * 5 + ["rome"] * 4 + ["oslo"]
    for i in range(10):
        age = "" if i in (2, 7) else str(20 + i)
        rows.append(f"{100 + i},{age},{cities[i]},person{i},k,{i % 2}")
    table = read_csv(_csv(tmp_path, "\n".join(rows) + "\n"))
    encoder = TableEncoder(min_frequency=2).fit(table, [0, 1, 2, 3, 4])
    text = "\n".join(encoder.notices)
    assert "id: dropped, it looks like an identifier" in text
    assert "name: dropped, it looks like an identifier" in text
    assert "const: dropped, it holds the same value (k)" in text
    assert "age: 2 missing values filled with the median 24.5, plus a column marking them" in text
    assert "city: 1 values seen fewer than 2 times share one 'other' column" in text
    assert encoder.feature_names == ["age", "age missing", "city=paris", "city=rome",
                                     "city=other"]
    x = encoder.transform(table)
    ages = np.array([20, 21, 24.5, 23, 24, 25, 26, 24.5, 28, 29])
    np.testing.assert_allclose(x[:, 0], (ages - ages.mean()) / ages.std(), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 1], [0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(x[:, 2:].argmax(1), [0] * 5 + [1] * 4 + [2])
    # the encoder is JSON-serialisable and rebuilds to the same transform
    import json
    again = TableEncoder.from_config(json.loads(json.dumps(encoder.get_config())))
    np.testing.assert_array_equal(again.transform(table), x)


def test_transform_needs_the_training_columns_and_counts_text_in_numbers_as_missing(tmp_path):
    train = read_csv(_csv(tmp_path, "a,b,y\n1.5,u,0\n2,v,1\n1.5,u,0\n"))
    encoder = TableEncoder(min_frequency=1).fit(train, [0, 1])
    with pytest.raises(ValueError, match="lacks the column 'b'"):
        encoder.transform(read_csv(_csv(tmp_path, "a,y\n1,0\n", "other.csv")))
    heard = []
    x = encoder.transform(read_csv(_csv(tmp_path, "a,b\n1,u\noops,v\n", "bad.csv")),
                          notify=heard.append)
    assert heard == ["a: 1 cell is not a number (row 3: 'oops'); it counts as missing (correct "
                     "the file if it is a typo)"]
    spec = encoder.columns[0]
    assert x[1, 0] == pytest.approx((1.5 - spec["mean"]) / spec["scale"])  # filled: the median
    unseen = encoder.transform(read_csv(_csv(tmp_path, "a,b\n1,w\n", "unseen.csv")))
    assert unseen[0, 1:].sum() == 0  # an unseen category with no 'other' column: all zeros


@pytest.mark.parametrize("cells, task, classes", [
    (["B", "M", "B"], "binary", ["B", "M"]),
    (["0", "1", "1"], "binary", ["0", "1"]),
    (["setosa", "virginica", "versicolor"], "multiclass", ["setosa", "versicolor", "virginica"]),
    (["3", "10", "2", "3"], "multiclass", ["2", "3", "10"]),
    (["1.5", "2.25", "3"], "regression", []),
])
def test_target_task_detection(cells, task, classes):
    encoder = TargetEncoder().fit("y", cells)
    assert encoder.task == task and encoder.classes == classes


def test_target_round_trips_and_errors():
    encoder = TargetEncoder().fit("y", ["B", "M", "M"])
    np.testing.assert_array_equal(encoder.transform(["M", "B"]), [1, 0])
    predicted, probs = encoder.decode(np.array([[0.9], [0.2]]))
    assert predicted == ["M", "B"]
    np.testing.assert_allclose(probs, [[0.1, 0.9], [0.8, 0.2]])
    with pytest.raises(ValueError, match="'X', which the model never saw"):
        encoder.transform(["X"])
    with pytest.raises(ValueError, match="single class"):
        TargetEncoder().fit("y", ["A", "A"])
    regression = TargetEncoder().fit("y", ["1", "2", "3.5"])
    values, _ = regression.decode(regression.transform(["2", "3.5"]).reshape(-1, 1))
    assert values == ["2", "3.5"]


# -- real-world files through the command line ------------------------------------------------

def _run(capsys, *argv):
    from neuralnp.cli import main
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(path, header, rows, delimiter=","):
    import csv
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _meta(model):
    import json
    from pathlib import Path
    return json.loads((Path(model) / "config.json").read_text())["metadata"]["cli"]


def _kinds(meta):
    return {c["name"]: c["kind"] for c in meta["encoder"]["columns"]}


def _income_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    income = rng.permutation(np.arange(n) * 137 + 20_000)  # a different value in every row
    ids = rng.permutation(n) + 5_000
    return [[int(ids[i]), i + 1, int(income[i]), int(rng.integers(0, 3)),
             "rich" if income[i] > 20_000 + 137 * n / 2 else "poor"] for i in range(n)]


def test_a_numeric_column_with_distinct_values_is_a_feature_not_an_identifier(tmp_path, capsys):
    data = _write(tmp_path / "income.csv", ["customer_id", "row", "income", "noise", "label"],
                  _income_rows())
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "60",
                          "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    assert "income: dropped" not in out
    assert "customer_id: dropped" in out and "row: dropped" in out  # name / 1..n counter
    meta = _meta(tmp_path / "m")
    assert _kinds(meta)["income"] == "number"
    assert meta["scores"]["validation"]["accuracy"] >= 0.95
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "1", "--quiet",
                          "--keep", "customer_id", "--drop", "noise", "--out", tmp_path / "m2")
    assert code == 0, err
    kinds = _kinds(_meta(tmp_path / "m2"))
    assert kinds["customer_id"] == "number" and kinds["noise"] == "drop"
    code, _, err = _run(capsys, "train", data, "--target", "label", "--drop", "nope")
    assert code == 2 and "no --drop column 'nope'" in err


def test_text_with_a_value_per_row_is_still_an_identifier(tmp_path, capsys):
    rows = [[f"ticket-{i:04d}", i % 7, "a" if i % 2 else "b"] for i in range(60)]
    data = _write(tmp_path / "t.csv", ["ticket", "x", "label"], rows)
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "1", "--quiet",
                          "--out", tmp_path / "m")
    assert code == 0, err
    assert "ticket: dropped, it looks like an identifier" in out and "--keep ticket" in out


def _people(n=200, seed=1):
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=n)
    income = rng.integers(20_000, 90_000, size=n)
    label = np.where(age + rng.normal(0, 3, n) > 48, "yes", "no")
    return [[str(a), str(i), f"{rng.normal():.3f}", y] for a, i, y in zip(age, income, label)]


def test_one_bad_cell_does_not_change_a_columns_type(tmp_path, capsys):
    rows = _people()
    rows[4][0] = "unknown"
    rows[9][1] = "41,200"  # a thousands separator: a number, not a bad cell
    rows[11][2] = "inf"
    data = _write(tmp_path / "people.csv", ["age", "income", "score", "label"], rows)
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "5",
                          "--quiet", "--validation-split", "0.1", "--out", tmp_path / "m")
    assert code == 0, err
    kinds = _kinds(_meta(tmp_path / "m"))
    assert kinds == {"age": "number", "income": "number", "score": "number"}, out
    assert "age: 1 cell is not a number (row 6: 'unknown')" in out
    assert "score: 1 cell is not a number (row 13: 'inf')" in out
    assert "income: " not in out.replace("income: dropped", "")
    # at predict time an unparseable cell is missing, with a notice
    bad = _write(tmp_path / "new.csv", ["age", "income", "score"],
                 [["40", "50000", "0.1"], ["n/k", "1,250,000", "x"], ["70", "60000", "0.2"]])
    code, out, err = _run(capsys, "predict", tmp_path / "m", bad, "--out", tmp_path / "p.csv")
    assert code == 0, err
    assert "age: 1 cell is not a number (row 3: 'n/k'); it counts as missing" in out + err
    assert "score: 1 cell is not a number (row 3: 'x')" in out + err


def test_thousands_separators_decimal_commas_and_delimiters(tmp_path, capsys):
    rows = _people()
    euro = [[a, i, s.replace(".", ","), y] for a, i, s, y in rows]
    euro[0][1] = "45.123"  # a thousands point in a ;-file
    euro[1][1] = "45.123,50"
    data = _write(tmp_path / "euro.csv", ["age", "income", "score", "label"], euro, ";")
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "1",
                          "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    assert _kinds(_meta(tmp_path / "m")) == {"age": "number", "income": "number",
                                             "score": "number"}, out
    from neuralnp.tabular import read_csv as read
    table = read(data)
    values = table.column_data(table.index("income")).numbers()[0]
    assert values[0] == 45123 and values[1] == 45123.5
    assert table.column_data(2).numbers()[0][0] == float(rows[0][2])
    for delimiter in ("\t", "|"):
        other = _write(tmp_path / "other.csv", ["age", "income", "score", "label"], rows,
                       delimiter)
        code, out, err = _run(capsys, "train", other, "--target", "label", "--epochs", "1",
                              "--quiet", "--out", tmp_path / "m2")
        assert code == 0, (delimiter, err)
    code, out, err = _run(capsys, "train", other, "--target", "label", "--epochs", "1",
                          "--quiet", "--delimiter", ",", "--out", tmp_path / "m3")
    assert code == 2 and "no target column 'label'" in err


def test_targets_numbers_are_classes_by_value_and_bad_rows_are_left_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    classes = [("1.0" if i % 3 else "1") if v > 0 else ("0" if i % 2 else "0.0")
               for i, v in enumerate(x)]
    data = _write(tmp_path / "c.csv", ["x", "y"], [[f"{v:.3f}", c] for v, c in zip(x, classes)])
    code, out, err = _run(capsys, "train", data, "--target", "y", "--epochs", "1", "--quiet",
                          "--out", tmp_path / "m")
    assert code == 0, err
    meta = _meta(tmp_path / "m")
    assert meta["target_encoder"]["task"] == "binary"
    assert meta["target_encoder"]["classes"] == ["0", "1"]
    y = [f"{2 * v:.3f}" for v in x]
    y[3], y[7], y[8] = "inf", "NaN", "-inf"
    data = _write(tmp_path / "r.csv", ["x", "y"], [[f"{v:.3f}", t] for v, t in zip(x, y)])
    code, out, err = _run(capsys, "train", data, "--target", "y", "--epochs", "1", "--quiet",
                          "--out", tmp_path / "m")
    assert code == 0, err
    assert _meta(tmp_path / "m")["target_encoder"]["task"] == "regression"
    assert "3 rows without a usable target value are left out" in out
    data = _write(tmp_path / "one.csv", ["x", "y"], [[f"{v:.3f}", c] for v, c in
                                                      zip(x, ["1", "1.0", "1.00"] * 70)])
    code, out, err = _run(capsys, "train", data, "--target", "y", "--quiet")
    assert code == 2 and "single class" in err and len(err.strip().splitlines()) == 1


def test_a_line_appears_before_a_large_file_is_read(tmp_path, capsys, monkeypatch):
    import neuralnp.tabular as tabular
    monkeypatch.setattr(tabular, "ANNOUNCE_BYTES", 0)
    data = _write(tmp_path / "big.csv", ["age", "income", "score", "label"], _people())
    code, out, err = _run(capsys, "train", data, "--target", "label", "--epochs", "1",
                          "--quiet", "--out", tmp_path / "m")
    assert code == 0, err
    assert err.startswith("reading big.csv (")


@pytest.fixture(params=["pyarrow", "csv module"])
def reader(request, monkeypatch):
    """Run a test with both readers: pyarrow's, and the csv module's when pyarrow is absent."""
    import neuralnp.tabular as tabular
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(tabular, "_arrow", lambda: None)
    return request.param


def test_both_readers_agree_on_messy_cells(tmp_path, reader):
    text = ("name;age;income;city;label\n"
            "ann;41;45.123,50; Paris;1\n"
            "bob; 38 ;1.200;paris;0\n"
            "cy;unknown;;NA;1\n"
            "di;52;3,5;rome;0\n"
            "ed;NaN;7;rome ;1\n")
    table = read_csv(_csv(tmp_path, text))
    assert table.delimiter == ";" and table.names[1] == "age" and len(table) == 5
    values, missing, bad, decimal_comma = table.column_data(2).numbers()
    np.testing.assert_array_equal(values[[0, 1, 3, 4]], [45123.5, 1200, 3.5, 7])
    assert missing.tolist() == [False, False, True, False, False] and decimal_comma
    values, missing, bad, _ = table.column_data(1).numbers()
    assert values[1] == 38 and bad.tolist() == [False, False, True, False, False]
    assert missing[4]
    codes, levels = table.column_data(3).codes()
    assert sorted(levels) == ["Paris", "paris", "rome"] and codes[2] == -1
    part = table.take([4, 1])
    assert part.column(0) == ["ed", "bob"] and part.row_numbers.tolist() == [6, 3]
    encoder = TableEncoder(min_frequency=1).fit(table, [1, 2, 3])
    # one 'unknown' among four ages is no longer "mostly numbers"
    assert [c["kind"] for c in encoder.columns] == ["text", "number", "text"]
    assert encoder.transform(part).shape == (2, (4 + 1) + (1 + 1) + (3 + 1))  # + missing flags


def test_ragged_rows_are_named_with_either_reader(tmp_path, reader):
    with pytest.raises(ValueError, match="row 4 has 2 fields but the first row has 3"):
        read_csv(_csv(tmp_path, "a,b,c\n1,2,3\n4,5,6\n7,8\n"))


def test_old_saved_encoders_still_transform(tmp_path):
    # a spec written before columns knew decimal commas, and classes kept as written
    config = {"min_frequency": None, "columns": [
        {"name": "a", "kind": "number", "fill": 2.0, "mean": 2.0, "scale": 1.0,
         "indicator": False},
        {"name": "b", "kind": "text", "fill": "u", "categories": ["u", "v"], "other": False,
         "indicator": True}]}
    encoder = TableEncoder.from_config(config)
    x = encoder.transform(read_csv(_csv(tmp_path, "a,b\n3,v\n,\n")))
    np.testing.assert_array_equal(x, [[1, 0, 1, 0], [0, 1, 0, 1]])
    target = TargetEncoder.from_config({"task": "binary", "classes": ["0", "1"], "mean": 0.0,
                                        "scale": 1.0})
    np.testing.assert_array_equal(target.transform(["1.0", "0", "1"]), [1, 0, 1])


def _changing_columns(path, n=6000, seed=4):
    """A file longer than the first rows the reader looks at, whose columns change below them:
    'unknown' in the ages, a thousands comma in the incomes, 'inf' in a score, '1.0' among 0/1
    flags; plus missing spellings, a clean float column and text."""
    rng = np.random.default_rng(seed)
    lines = ["id,age,income,score,flag,clean,city,label"]
    for i in range(n):
        age = "" if i % 97 == 0 else ("NA" if i % 131 == 0 else str(rng.integers(18, 90)))
        income = str(rng.integers(20_000, 90_000))
        score = f"{rng.normal():.4f}"
        flag = str(i % 2)
        if i == 5000:
            age = "unknown"
        if i == 5200:
            income = '"41,200"'
        if i == 5400:
            score = "inf"
        if i == 5600:
            flag = "1.0"
        lines.append(f"{i + 1:05d},{age},{income},{score},{flag},{rng.normal() * 100:.3f},"
                     f"{'abc'[i % 3]},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("retries", [4, 1])
def test_columns_parsed_as_numbers_give_what_text_gives(tmp_path, monkeypatch, retries):
    pytest.importorskip("pyarrow")
    import neuralnp.tabular as tabular
    path = _changing_columns(tmp_path / "data.csv")
    monkeypatch.setattr(tabular, "RETRIES", retries)
    fast = read_csv(path)
    # the columns of numbers are held as numbers ('inf' and '1.0' are numbers), those with text
    # further down as text; after RETRIES such columns, every column is read as text
    held = [c._is_numbers for c in fast.columns]
    assert held == ([True, False, False, True, True, True, False, True] if retries == 4
                    else [False] * 8)
    with monkeypatch.context() as patch:
        patch.setattr(tabular, "_arrow", lambda: None)  # the csv module's reader
        slow = read_csv(path)
    features = list(range(7))
    a, b = TableEncoder().fit(fast, features), TableEncoder().fit(slow, features)
    assert a.get_config() == b.get_config() and a.notices == b.notices
    assert "age: 1 cell is not a number (row 5002: 'unknown')" in "\n".join(a.notices)
    np.testing.assert_array_equal(a.transform(fast), b.transform(slow))
    for column in range(8):
        fast_values, slow_values = fast.column_data(column).numbers(), \
            slow.column_data(column).numbers()
        for got, want in zip(fast_values[:3], slow_values[:3]):
            np.testing.assert_array_equal(got, want)
    part = [5000, 3, 5599]
    target = TargetEncoder().fit("label", fast.column_data(7))
    np.testing.assert_array_equal(target.transform(fast.take(part).column_data(7)),
                                  target.transform(slow.take(part).column_data(7)))


def test_a_column_of_numbers_gives_its_cells_back_as_numbers_unless_kept_as_text(tmp_path):
    pytest.importorskip("pyarrow")
    path = _csv(tmp_path, "id,x,y\n007,1.50,a\n008,,b\n010,2,a\n")
    table = read_csv(path)
    assert table.column(0) == ["7", "8", "10"] and table.column(1) == ["1.5", "", "2"]
    codes, levels = table.column_data(1).codes()
    assert list(levels) == ["1.5", "2"] and codes.tolist() == [0, -1, 1]
    assert table.column_data(1).missing().tolist() == [False, True, False]
    assert table.take([2, 0]).column(0) == ["10", "7"]
    for text in (["id"], ["0"], [0]):
        assert read_csv(path, text=text).column(0) == ["007", "008", "010"]
    kept = read_csv(path, numbers=False)
    assert kept.column(0) == ["007", "008", "010"] and kept.column(1) == ["1.50", "", "2"]
    assert kept.select(["y", "id"]).rows == [["a", "007"], ["b", "008"], ["a", "010"]]


def test_reading_and_encoding_never_imports_pandas(tmp_path):
    # pyarrow imports pandas, when it is installed, for its NumPy conversions: 45 MB of memory
    # and a quarter of a second that a CSV file does not need
    pytest.importorskip("pyarrow")
    import subprocess
    import sys
    path = _changing_columns(tmp_path / "data.csv", n=500)
    code = ("import sys; from neuralnp.tabular import TableEncoder, TargetEncoder, read_csv; "
            f"t = read_csv({str(path)!r}); e = TableEncoder().fit(t, range(7)); "
            "e.transform(t.take([1, 2])); TargetEncoder().fit('label', t.column_data(7)); "
            "t.column_data(6).codes(); t.column(0); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
