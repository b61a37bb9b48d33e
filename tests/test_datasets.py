"""Dataset loaders checked against published statistics of the source files."""

import csv
import functools
import gzip
import hashlib
import http.server
import os
import struct
import threading
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from neuralnp import datasets
from neuralnp.datasets import _mnist

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: nothing listens, the connection is refused


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    """Keep every test off the internet and out of the real cache folder.

    The default mirrors point at a closed local port, the cache lives in tmp_path, and urlopen
    refuses any host but 127.0.0.1 (file:// URLs have no host).
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setitem(_mnist.MIRRORS, "mnist", UNREACHABLE)
    monkeypatch.setitem(_mnist.MIRRORS, "fashion_mnist", UNREACHABLE)
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        host = urllib.parse.urlsplit(url).hostname
        assert host in (None, "127.0.0.1"), f"test tried to reach {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def _bundled_bytes(filename):
    return (resources.files("neuralnp.datasets") / "files" / filename).read_bytes()

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


def test_digits_shape_classes_and_range():
    x, y = datasets.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 16 and np.array_equal(x, np.round(x))
    np.testing.assert_array_equal(
        np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )
    np.testing.assert_array_equal(y[:10], np.arange(10))
    assert len(datasets.feature_names("digits")) == 64
    assert datasets.feature_names("digits")[9] == "pixel_9"
    assert datasets.CLASS_NAMES["digits"] == tuple("0123456789")


def test_digits_equals_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    x, y = datasets.digits()
    np.testing.assert_array_equal(x[0], bunch.data[0])
    np.testing.assert_array_equal(
        x[0].reshape(8, 8)[:2], [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0]]
    )
    np.testing.assert_array_equal(x, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


# --- CSV export -------------------------------------------------------------------------


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def test_names_and_list_datasets_agree():
    assert datasets.names() == ("xor", "iris", "breast_cancer", "titanic", "digits")
    rows = datasets.list_datasets()
    assert [name for name, _, _ in rows] == list(datasets.names())
    assert all(isinstance(desc, str) and desc for _, desc, _ in rows)
    assert set(datasets.TARGET_COLUMNS) == set(datasets.names())


@pytest.mark.parametrize("name", ["xor", "iris", "breast_cancer", "titanic", "digits"])
def test_export_shape_header_and_target_column(tmp_path, name):
    written = datasets.export(name, tmp_path / f"{name}.csv")
    assert written == tmp_path / f"{name}.csv"
    header, rows = _read_csv(written)
    info = {row.name: row for row in datasets.list_datasets()}[name]
    assert (len(rows), len(header)) == info.shape
    assert all(len(row) == len(header) for row in rows)
    assert datasets.TARGET_COLUMNS[name] in header
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.csv"]  # no temp file left


def test_export_xor_round_trips(tmp_path):
    header, rows = _read_csv(datasets.export("xor", tmp_path / "xor.csv"))
    assert header == ["x1", "x2", "y"]
    x, y = datasets.xor()
    np.testing.assert_array_equal(np.array(rows, dtype=float), np.hstack([x, y]))


def test_export_iris_is_the_raw_file(tmp_path):
    path = datasets.export("iris", tmp_path / "iris.csv")
    assert path.read_bytes() == _bundled_bytes("iris.csv")
    header, rows = _read_csv(path)
    assert header[0] == "Id" and header[-1] == "Species"
    x, y = datasets.iris()
    np.testing.assert_array_equal(np.array([r[1:5] for r in rows], dtype=np.float32), x)
    assert [r[5] for r in rows][::50] == ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]


def test_export_breast_cancer_is_raw_uci_rows_with_header(tmp_path):
    header, rows = _read_csv(datasets.export("breast_cancer", tmp_path / "wdbc.csv"))
    assert header[:4] == ["id", "diagnosis", "radius_mean", "texture_mean"]
    assert header[12] == "radius_se" and header[22] == "radius_worst"
    assert header[9] == "concave_points_mean" and header[-1] == "fractal_dimension_worst"
    assert len(set(header)) == 32
    bundled = list(csv.reader(_bundled_bytes("wdbc.csv").decode().splitlines()))
    assert rows == bundled
    assert rows[0][:3] == ["842302", "M", "17.99"]
    assert {r[1] for r in rows} == {"M", "B"}
    x, y = datasets.breast_cancer()
    np.testing.assert_array_equal(np.array([r[2:] for r in rows], dtype=np.float32), x)
    np.testing.assert_array_equal([r[1] == "M" for r in rows], y == 1)


def test_export_titanic_is_byte_identical(tmp_path):
    path = datasets.export("titanic", tmp_path / "titanic.csv")
    assert path.read_bytes() == _bundled_bytes("titanic_train.csv")
    header, rows = _read_csv(path)
    assert header[:3] == ["PassengerId", "Survived", "Pclass"]
    assert rows[0][3] == "Braund, Mr. Owen Harris"
    assert sum(r[header.index("Age")] == "" for r in rows) == 177  # missing values kept


def test_export_digits_round_trips(tmp_path):
    header, rows = _read_csv(datasets.export("digits", tmp_path / "digits.csv"))
    assert header[0] == "pixel_0" and header[63] == "pixel_63" and header[64] == "digit"
    values = np.array(rows, dtype=np.int64)
    x, y = datasets.digits()
    np.testing.assert_array_equal(values[:, :64], x)
    np.testing.assert_array_equal(values[:, 64], y)


def test_export_refuses_to_overwrite(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("mine\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        datasets.export("iris", path)
    assert path.read_text() == "mine\n"
    datasets.export("iris", path, overwrite=True)
    assert path.read_bytes() == _bundled_bytes("iris.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.csv"]


def test_export_into_folder_uses_dataset_name(tmp_path):
    assert datasets.export("xor", tmp_path) == tmp_path / "xor.csv"
    assert (tmp_path / "xor.csv").read_text().startswith("x1,x2,y\n")


def test_export_bad_name_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*xor, iris, breast_cancer"):
        datasets.export("mnist", tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.export("xor", tmp_path / "nope" / "xor.csv")


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
    with pytest.raises(FileNotFoundError, match="NEURALNP_DATA") as err:
        datasets.mnist(download=False)
    assert str(datasets.cache_folder("mnist")) in str(err.value)
    assert "download=True" in str(err.value)


def test_mnist_missing_file_is_named(tmp_path):
    _write_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        datasets.mnist(path=tmp_path, download=False)
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


# --- MNIST / Fashion-MNIST download, from local mirrors only -----------------------------


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder of tiny gzipped IDX files, with the MD5 tables patched to their MD5s."""
    folder = tmp_path / "mirror"
    _write_fake_mnist(folder)
    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in MNIST_FILES}
    monkeypatch.setitem(_mnist.MD5, "mnist", md5)
    monkeypatch.setitem(_mnist.MD5, "fashion_mnist", dict(md5))
    monkeypatch.delenv("NEURALNP_DATA", raising=False)
    return folder


@pytest.fixture
def http_mirror(mirror):
    """The mirror folder served over HTTP on 127.0.0.1 from a background thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name not in MNIST_FILES)


def test_mnist_downloads_into_cache_from_file_mirror(tmp_path, mirror, capsys):
    (x_train, y_train), (x_test, y_test) = datasets.mnist(mirror=mirror.as_uri())
    assert x_train.shape == (3, 28, 28) and x_test.shape == (2, 28, 28)
    np.testing.assert_array_equal(y_test, [9, 8])
    cache = tmp_path / "xdg-cache" / "neuralnp" / "mnist"
    assert datasets.cache_folder("mnist") == cache
    for name in MNIST_FILES:
        assert (cache / name).read_bytes() == (mirror / name).read_bytes()
    assert _leftovers(cache) == []
    err = capsys.readouterr().err
    assert err.count("downloading ") == 4 and mirror.as_uri() in err
    # A second call reads the cache and does not touch the (now unreachable) mirror.
    (x_again, _), _ = datasets.mnist()
    np.testing.assert_array_equal(x_again, x_train)
    assert "downloading" not in capsys.readouterr().err


def test_fashion_mnist_downloads_over_http(tmp_path, http_mirror, capsys):
    (x_train, _), (_, y_test) = datasets.fashion_mnist(mirror=http_mirror)
    assert x_train.shape == (3, 28, 28)
    np.testing.assert_array_equal(y_test, [9, 8])
    cache = tmp_path / "xdg-cache" / "neuralnp" / "fashion_mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(MNIST_FILES)
    assert "MB) from http://127.0.0.1:" in capsys.readouterr().err
    assert datasets.CLASS_NAMES["fashion_mnist"][9] == "Ankle boot"


def test_module_mirror_constant_is_used(tmp_path, mirror, monkeypatch):
    monkeypatch.setitem(_mnist.MIRRORS, "fashion_mnist", mirror.as_uri() + "/")
    datasets.fashion_mnist()
    assert (tmp_path / "xdg-cache" / "neuralnp" / "fashion_mnist" / MNIST_FILES[0]).is_file()


def test_download_into_path_fetches_only_missing_files(tmp_path, mirror):
    target = tmp_path / "mine"
    _write_fake_mnist(target)
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    # The mirror holds only the missing file: the other three must not be requested.
    for name in MNIST_FILES[:3]:
        (mirror / name).unlink()
    (_, _), (_, y_test) = datasets.mnist(path=target, mirror=mirror.as_uri())
    np.testing.assert_array_equal(y_test, [9, 8])
    assert _leftovers(target) == []
    assert not (tmp_path / "xdg-cache").exists()  # an explicit path is where files go


def test_env_var_subfolder_found_before_cache(tmp_path, mirror, monkeypatch):
    _write_fake_mnist(tmp_path / "data" / "fashion-mnist", n_train=4)
    monkeypatch.setenv("NEURALNP_DATA", str(tmp_path / "data"))
    (x_train, _), _ = datasets.fashion_mnist()  # default mirror is unreachable: no download
    assert len(x_train) == 4


def test_env_var_without_files_downloads_into_cache(tmp_path, mirror, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("NEURALNP_DATA", str(tmp_path / "data"))
    datasets.mnist(mirror=mirror.as_uri())
    assert list((tmp_path / "data").iterdir()) == []  # the data folder may be read-only
    assert (tmp_path / "xdg-cache" / "neuralnp" / "mnist" / MNIST_FILES[0]).is_file()


def test_corrupted_download_fails_checksum_and_keeps_nothing(tmp_path, http_mirror, mirror):
    name = "train-images-idx3-ubyte.gz"
    data = bytearray((mirror / name).read_bytes())
    data[-1] ^= 0xFF
    (mirror / name).write_bytes(bytes(data))
    with pytest.raises(datasets.ChecksumError) as err:
        datasets.mnist(mirror=http_mirror)
    assert isinstance(err.value, OSError)
    cache = tmp_path / "xdg-cache" / "neuralnp" / "mnist"
    message = str(err.value)
    assert name in message and "MD5" in message and str(cache) in message
    assert http_mirror + name in message
    assert list(cache.iterdir()) == []  # neither the bad file nor a temporary one


def test_unreachable_mirror_says_offline(tmp_path, mirror):
    with pytest.raises(datasets.DownloadError) as err:
        datasets.mnist()  # MIRRORS["mnist"] is the closed port
    message = str(err.value)
    cache = tmp_path / "xdg-cache" / "neuralnp" / "mnist"
    assert "Offline" in message and UNREACHABLE in message and str(cache) in message
    assert all(name in message for name in MNIST_FILES)
    assert list(cache.iterdir()) == []
    assert isinstance(err.value, OSError)


def test_missing_file_on_http_mirror_reports_status(http_mirror, mirror):
    (mirror / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(datasets.DownloadError, match=r"t10k-images.*HTTP 404.*mirror="):
        datasets.fashion_mnist(mirror=http_mirror)


def test_download_false_names_cache_folder(tmp_path, mirror):
    with pytest.raises(FileNotFoundError) as err:
        datasets.fashion_mnist(download=False)
    message = str(err.value)
    assert str(tmp_path / "xdg-cache" / "neuralnp" / "fashion_mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and "NEURALNP_DATA" in message
    assert not (tmp_path / "xdg-cache").exists()


def test_bad_mirror_is_rejected(mirror):
    with pytest.raises(ValueError, match="mirror must be a base URL"):
        datasets.mnist(mirror=str(mirror))
