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


def test_transform_needs_the_training_columns_and_numbers_where_numbers_were(tmp_path):
    train = read_csv(_csv(tmp_path, "a,b,y\n1.5,u,0\n2,v,1\n1.5,u,0\n"))
    encoder = TableEncoder(min_frequency=1).fit(train, [0, 1])
    with pytest.raises(ValueError, match="lacks the column 'b'"):
        encoder.transform(read_csv(_csv(tmp_path, "a,y\n1,0\n", "other.csv")))
    with pytest.raises(ValueError, match="column 'a' row 2 holds 'oops'"):
        encoder.transform(read_csv(_csv(tmp_path, "a,b\n1,u\noops,v\n", "bad.csv")))
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
