"""Dataset loaders checked against published statistics of the source files."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from neuralnp import datasets

# --- bundled tabular sets --------------------------------------------------------------


def test_xor_points_and_dtype():
    x, y = datasets.xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))
    assert {tuple(row) for row in x.tolist()} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert datasets.xor(dtype="int64")[0].dtype == np.int64


@pytest.mark.parametrize("bad", ["not-a-dtype", "U5"])
def test_xor_rejects_bad_dtype(bad):
    with pytest.raises(ValueError, match="dtype"):
        datasets.xor(dtype=bad)


def test_iris_counts_and_values():
    x, y = datasets.iris()
    assert x.shape == (150, 4) and x.dtype == np.float32
    assert y.shape == (150,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [50, 50, 50])
    # File is sorted by species: setosa, versicolor, virginica.
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 50))
    np.testing.assert_allclose(x[0], [5.1, 3.5, 1.4, 0.2], rtol=1e-6)
    np.testing.assert_allclose(x[-1], [5.9, 3.0, 5.1, 1.8], rtol=1e-6)
    # Column means of the UCI iris.data values (sepal width 3.054, not sklearn's 3.057).
    np.testing.assert_allclose(x.mean(axis=0), [5.843333, 3.054, 3.758667, 1.198667], atol=1e-4)


def test_breast_cancer_counts_and_first_row():
    x, y = datasets.breast_cancer()
    assert x.shape == (569, 30) and x.dtype == np.float32
    assert y.shape == (569,) and y.dtype == np.int64
    assert int(y.sum()) == 212 and int((y == 0).sum()) == 357  # malignant = 1
    np.testing.assert_allclose(x[0, :4], [17.99, 10.38, 122.8, 1001], rtol=1e-6)
    assert y[0] == 1  # first row is 842302,M
    np.testing.assert_allclose(x[0, -1], 0.1189, rtol=1e-6)  # last field, id column dropped


def test_titanic_published_statistics():
    x, y = datasets.titanic()
    assert x.shape == (891, 7) and x.dtype == np.float32
    assert y.shape == (891,) and y.dtype == np.int64
    pclass, sex, age, sibsp, parch, fare, embarked = x.T
    assert int(y.sum()) == 342
    assert int((sex == 0).sum()) == 577 and int((sex == 1).sum()) == 314
    np.testing.assert_array_equal(np.unique(pclass, return_counts=True)[1], [216, 184, 491])
    assert abs(float(fare.mean()) - 32.2042) < 1e-3
    # 177 missing ages become the median 28; 25 passengers were already 28.
    assert not np.isnan(age).any()
    assert int((age == 28.0).sum()) == 177 + 25
    # Mean age 29.6991 over 714 known ages, after filling 177 with 28: (29.6991*714 + 28*177)/891.
    assert abs(float(age.mean()) - 29.3616) < 1e-3
    # Embarked S/C/Q = 644/168/77 plus the 2 missing filled with S.
    np.testing.assert_array_equal(np.bincount(embarked.astype(int)), [646, 168, 77])
    assert {int(v) for v in sibsp} <= set(range(9)) and int(parch.max()) == 6


def test_titanic_rows_with_quoted_names_and_missing_values():
    x, y = datasets.titanic()
    # PassengerId 1: "Braund, Mr. Owen Harris" (comma inside quotes must not shift columns).
    np.testing.assert_allclose(x[0], [3, 0, 22, 1, 0, 7.25, 0], rtol=1e-6)
    assert y[0] == 0
    # PassengerId 6: age missing -> 28, embarked Q -> 2.
    np.testing.assert_allclose(x[5], [3, 0, 28, 0, 0, 8.4583, 2], rtol=1e-6)
    # PassengerId 62 and 830: embarked missing -> S (0).
    assert x[61, 6] == 0 and x[829, 6] == 0
    assert x[61, 5] == 80.0 and x[829, 5] == 80.0


def test_feature_names_match_columns():
    assert len(datasets.feature_names("breast_cancer")) == 30
    assert datasets.feature_names("breast_cancer")[0] == "mean_radius"
    assert datasets.feature_names("titanic")[1] == "sex"
    assert len(datasets.feature_names("iris")) == datasets.iris()[0].shape[1]
    with pytest.raises(ValueError, match="unknown dataset 'mnistt'"):
        datasets.feature_names("mnistt")


# --- MNIST on the real files (skipped when they are not available) ----------------------

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _real_mnist_folder():
    candidates = []
    if os.environ.get("NEURALNP_DATA"):
        root = Path(os.environ["NEURALNP_DATA"])
        candidates += [root, root / "mnist"]
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")
    for folder in candidates:
        if all((folder / name).is_file() for name in MNIST_FILES):
            return folder
    return None


@pytest.fixture(scope="module")
def real_mnist():
    folder = _real_mnist_folder()
    if folder is None:
        pytest.skip("MNIST files not found; set NEURALNP_DATA or place them in ../shared/data/mnist")
    return datasets.mnist(path=folder)


def test_mnist_shapes_and_dtypes(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64
    assert x_train.min() == 0 and x_train.max() == 255


def test_mnist_class_counts(real_mnist):
    (_, y_train), (_, y_test) = real_mnist
    np.testing.assert_array_equal(
        np.bincount(y_train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    np.testing.assert_array_equal(y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(y_test[:5], [7, 2, 1, 0, 4])


# --- MNIST error paths on small synthetic IDX files -------------------------------------


def _idx_bytes(magic, data):
    data = np.asarray(data, dtype=np.uint8)
    return struct.pack(">I", magic) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()


def _write_fake_mnist(folder, n_train=3, n_test=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    contents = {
        "train-images-idx3-ubyte.gz": _idx_bytes(2051, rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx_bytes(2049, np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": _idx_bytes(2051, rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx_bytes(2049, [9, 8, 7, 6, 5][:n_test]),
    }
    for name, raw in contents.items():
        (folder / name).write_bytes(gzip.compress(raw))
    return contents


def test_mnist_reads_synthetic_files(tmp_path):
    contents = _write_fake_mnist(tmp_path)
    (x_train, y_train), (x_test, y_test) = datasets.mnist(path=tmp_path)
    assert x_train.shape == (3, 28, 28) and x_test.shape == (2, 28, 28)
    np.testing.assert_array_equal(y_train, [0, 1, 2])
    np.testing.assert_array_equal(y_test, [9, 8])
    raw = contents["train-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(x_train.reshape(-1), np.frombuffer(raw[16:], dtype=np.uint8))
    x_train[0, 0, 0] = 1  # returned arrays must be writable, not read-only buffer views


def test_mnist_finds_env_var_folder_and_mnist_subfolder(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "mnist")
    monkeypatch.setenv("NEURALNP_DATA", str(tmp_path))
    (x_train, _), _ = datasets.mnist()
    assert x_train.shape == (3, 28, 28)


def test_mnist_without_path_or_env_var_explains_fix(monkeypatch):
    monkeypatch.delenv("NEURALNP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="NEURALNP_DATA"):
        datasets.mnist()


def test_mnist_missing_file_is_named(tmp_path):
    _write_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        datasets.mnist(path=tmp_path)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path) in message
    assert "path=" in message and "NEURALNP_DATA" in message


def test_mnist_bad_magic_names_file(tmp_path):
    _write_fake_mnist(tmp_path)
    labels = _idx_bytes(2051, np.zeros(3))  # image magic on a label file
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz.*magic number 2051"):
        datasets.mnist(path=tmp_path)


def test_mnist_truncated_data_names_file(tmp_path):
    contents = _write_fake_mnist(tmp_path)
    name = "t10k-images-idx3-ubyte.gz"
    (tmp_path / name).write_bytes(gzip.compress(contents[name][:-100]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is truncated"):
        datasets.mnist(path=tmp_path)


def test_mnist_truncated_header_names_file(tmp_path):
    _write_fake_mnist(tmp_path)
    name = "train-images-idx3-ubyte.gz"
    (tmp_path / name).write_bytes(gzip.compress(struct.pack(">II", 2051, 3)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz is truncated"):
        datasets.mnist(path=tmp_path)


def test_mnist_truncated_gzip_stream_names_file(tmp_path):
    _write_fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
        datasets.mnist(path=tmp_path)


def test_mnist_not_gzip_names_file(tmp_path):
    contents = _write_fake_mnist(tmp_path)
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(contents[name])  # raw IDX, not compressed
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz is not a readable gzip"):
        datasets.mnist(path=tmp_path)


def test_mnist_image_label_count_mismatch(tmp_path):
    _write_fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(2049, [1, 2])))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        datasets.mnist(path=tmp_path)


def test_mnist_rejects_non_path_argument():
    with pytest.raises(ValueError, match="path must be a folder path"):
        datasets.mnist(path=42)
