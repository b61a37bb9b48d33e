"""MNIST and Fashion-MNIST: the four original IDX ``.gz`` files, found locally or downloaded.

Not bundled (11.6 MB and 30 MB). Looked for in the ``path`` argument, else in ``$NEURALNP_DATA``
and then the user cache folder; downloaded into the cache (or into ``path``) when missing, each
file checked against the MD5 that torchvision also hard-codes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path

import numpy as np

ENV_VAR = "NEURALNP_DATA"

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# Base URLs the four file names are appended to; read at call time, so they can be changed
# here or per call with ``mirror=``. The MNIST one is torchvision's mirror (yann.lecun.com no
# longer serves the files reliably); Fashion-MNIST's is Zalando's own bucket (plain HTTP; the
# MD5 check below is what guards the content).
MIRRORS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# MD5 of each original .gz file, as hard-coded in torchvision/datasets/mnist.py
# (MNIST.resources and FashionMNIST.resources). A download is kept only if it matches.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

TIMEOUT = 60.0  # seconds a connect or a single read may stall before the download fails

_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
# Subfolders of a data folder that may hold a set's files (both spellings are common).
_SUBFOLDERS = {"mnist": ("mnist",), "fashion_mnist": ("fashion_mnist", "fashion-mnist")}

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


class DownloadError(OSError):
    """A data file could not be downloaded (no network, HTTP error, interrupted transfer)."""


class ChecksumError(DownloadError):
    """A downloaded data file did not have the expected MD5; nothing was saved."""


def cache_folder(name: str) -> Path:
    """Where ``name`` ("mnist" or "fashion_mnist") is cached: ``$XDG_CACHE_HOME/neuralnp/<name>``,
    or ``~/.cache/neuralnp/<name>`` when XDG_CACHE_HOME is unset (or, per the XDG spec, relative).
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "neuralnp" / name


def _search_folders(name: str, path) -> tuple[list[Path], Path, str]:
    """Folders to look in, in order; the folder to download into; what they came from."""
    subfolders = _SUBFOLDERS[name]
    if path is not None:
        # An explicit path is the only place looked at: files elsewhere are not silently used.
        root = Path(path).expanduser()
        return [root, *(root / s for s in subfolders)], root, "path argument"
    folders: list[Path] = []
    if os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR]).expanduser()
        folders += [root, *(root / s for s in subfolders)]
    cache = cache_folder(name)
    where = f"${ENV_VAR} and the cache folder" if folders else f"cache folder (${ENV_VAR} is not set)"
    return folders + [cache], cache, where


def _complete_folder(folders: list[Path]) -> Path | None:
    for folder in folders:
        if all((folder / filename).is_file() for filename in FILES.values()):
            return folder
    return None


def _how_to_fix(name: str, target: Path, base_url: str) -> str:
    subfolders = " or ".join(repr(s) for s in _SUBFOLDERS[name])
    return (
        f"call {name}(download=True) to fetch them from {base_url} into {target}, or put the "
        f"four files ({', '.join(FILES.values())}) there yourself; or pass {name}(path=FOLDER) "
        f"or set {ENV_VAR} to a folder that holds them directly or in a subfolder {subfolders}"
    )


def _not_found(name: str, folders: list[Path], target: Path, where: str, base_url: str):
    # Name the first file that is missing, in the most plausible folder, to make it fixable.
    folder = next((f for f in folders if f.is_dir() and any(f.iterdir())), target)
    missing = next(n for n in FILES.values() if not (folder / n).is_file())
    others = ", ".join(str(f) for f in folders if f != folder)
    return FileNotFoundError(
        f"{_TITLES[name]} file {missing!r} not found in {folder} (from the {where}"
        f"{'; also looked in ' + others if others else ''}); {_how_to_fix(name, target, base_url)}"
    )


def _fetch(name: str, filename: str, base_url: str, folder: Path, missing: list[str]) -> None:
    """Download one file into ``folder``: to a temporary name, renamed once its MD5 matches."""
    url = base_url.rstrip("/") + "/" + filename
    title = _TITLES[name]
    by_hand = (
        f"or download the missing {title} files ({', '.join(missing)}) by hand from "
        f"{base_url} into {folder}"
    )

    def failed(reason, advice="Offline, or the mirror is unreachable? Check the connection "
               "and retry") -> DownloadError:
        return DownloadError(
            f"could not download {title} file {filename!r} from {url}: {reason}. {advice}, "
            f"{by_hand}"
        )

    expected_md5 = MD5[name][filename]
    tmp = folder / f".{filename}.{uuid.uuid4().hex[:8]}.part"
    try:
        try:
            response = urllib.request.urlopen(url, timeout=TIMEOUT)
        except urllib.error.HTTPError as err:
            raise failed(
                f"the server answered HTTP {err.code} {err.reason}",
                f"The files may have moved: pass {name}(mirror=BASE_URL) with a working mirror",
            ) from None
        except urllib.error.URLError as err:
            raise failed(err.reason) from None
        except (OSError, http.client.HTTPException) as err:  # timeouts, resets
            raise failed(err) from None
        with response:
            length = response.headers.get("Content-Length")
            size = f" ({int(length) / 1e6:.1f} MB)" if length and length.isdigit() else ""
            print(f"downloading {filename}{size} from {url}", file=sys.stderr)
            digest = hashlib.md5(usedforsecurity=False)
            received = 0
            try:
                out = open(tmp, "xb")
            except OSError as err:
                raise DownloadError(
                    f"cannot write into {folder} ({err}); pass {name}(path=FOLDER) with a "
                    "writable folder, or set XDG_CACHE_HOME"
                ) from None
            with out:
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (OSError, http.client.HTTPException) as err:
                        raise failed(f"transfer interrupted after {received} bytes ({err})") from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
        # http.client does not raise when a connection closes early; the length tells.
        if length and length.isdigit() and received != int(length):
            raise failed(f"transfer cut off after {received} of {length} bytes")
        if digest.hexdigest() != expected_md5:
            raise ChecksumError(
                f"{title} file {filename!r} downloaded from {url} has MD5 {digest.hexdigest()}, "
                f"expected {expected_md5}: the download is corrupted or the mirror serves a "
                f"different file, so it was not kept. Retry, {by_hand}"
            )
        os.replace(tmp, folder / filename)
    finally:
        if tmp.exists():
            tmp.unlink()


def _download(name: str, folder: Path, base_url: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(
            f"cannot create {folder} to download {_TITLES[name]} into ({err}); pass "
            f"{name}(path=FOLDER) with a writable folder, or set XDG_CACHE_HOME"
        ) from None
    # Files already there (e.g. from an interrupted earlier call) are kept, not fetched again.
    missing = [n for n in FILES.values() if not (folder / n).is_file()]
    for filename in missing:
        _fetch(name, filename, base_url, folder, missing)


def _read_idx(file: Path, magic: int) -> np.ndarray:
    """Decode one gzipped IDX file: big-endian int32 magic, one int32 per dimension, uint8 data."""
    try:
        with gzip.open(file, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{file} is not a readable gzip file ({err}); re-download it") from None

    ndim = magic & 0xFF
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise ValueError(
            f"{file} is truncated: {len(raw)} bytes, shorter than its {header_size}-byte "
            "IDX header; re-download it"
        )
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if header[0] != magic:
        raise ValueError(
            f"{file} has IDX magic number {int(header[0])}, expected {magic} "
            f"({'images' if magic == _IMAGES_MAGIC else 'labels'}); is it the right file?"
        )
    shape = tuple(int(d) for d in header[1:])
    if min(shape) < 0:
        raise ValueError(f"{file} has a corrupted IDX header (shape {shape}); re-download it")
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"{file} is {problem}: header says shape {shape} ({expected} bytes in all), "
            f"file has {len(raw)} bytes; re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file = folder / FILES[f"{split}_images"]
    labels_file = folder / FILES[f"{split}_labels"]
    images = _read_idx(images_file, _IMAGES_MAGIC)
    labels = _read_idx(labels_file, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_file} holds {len(images)} images but {labels_file} holds "
            f"{len(labels)} labels; the files do not belong together"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_file} contains label {int(labels.max())}; labels are 0-9")
    # frombuffer views are read-only; callers expect ordinary writable arrays.
    return images.copy(), labels.astype(np.int64)


def _load(name: str, path, download: bool, mirror):
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
    base_url = MIRRORS[name] if mirror is None else mirror
    if not isinstance(base_url, str) or "://" not in base_url:
        raise ValueError(
            f"mirror must be a base URL such as 'https://host/folder/' or 'file:///folder/', "
            f"got {base_url!r}"
        )
    folders, target, where = _search_folders(name, path)
    folder = _complete_folder(folders)
    if folder is None:
        if not download:
            raise _not_found(name, folders, target, where, base_url)
        _download(name, target, base_url)
        folder = target
    return _load_split(folder, "train"), _load_split(folder, "test")


def mnist(
    path=None, download: bool = True, *, mirror: str | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Handwritten digits: ``((x_train, y_train), (x_test, y_test))``.

    ``x_train`` is uint8 of shape (60000, 28, 28) with pixel values 0-255, ``y_train`` int64
    of shape (60000,) with digits 0-9; the test pair has 10000 samples. Scale pixels
    yourself (e.g. ``x / 255.0``).

    Reads the four original files (``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``) from the first folder that has all four:

    1. ``path`` (or its subfolder ``mnist``) when given; then nothing else is looked at;
    2. otherwise ``$NEURALNP_DATA`` (or its subfolder ``mnist``), then the cache folder
       ``$XDG_CACHE_HOME/neuralnp/mnist`` (default ``~/.cache/neuralnp/mnist``).

    When none has them and ``download`` is true, the missing files are downloaded into
    ``path`` (when given) or the cache folder from ``mirror`` (default ``MIRRORS["mnist"]``,
    https://ossci-datasets.s3.amazonaws.com/mnist/); each is checked against ``MD5`` before
    it is kept. Prints one line per file to stderr.

    Raises FileNotFoundError naming the missing file and where it was looked for (when
    ``download`` is false), DownloadError (an OSError) naming the files, URL and folder when
    the download fails, ChecksumError (a DownloadError) when a downloaded file has the wrong
    MD5, and ValueError naming the file when it is not valid gzip/IDX data.

    Source: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits".
    No explicit license is stated; it is commonly cited as CC BY-SA 3.0.
    """
    return _load("mnist", path, download, mirror)


def fashion_mnist(
    path=None, download: bool = True, *, mirror: str | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Zalando's Fashion-MNIST clothing images: ``((x_train, y_train), (x_test, y_test))``.

    Same layout as :func:`mnist`: ``x_train`` uint8 (60000, 28, 28), pixel values 0-255,
    ``y_train`` int64 (60000,); 10000 test samples. Labels 0-9 are ``CLASS_NAMES
    ["fashion_mnist"]``: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker,
    Bag, Ankle boot (6000 per class in train, 1000 in test).

    Same file names, search order and download as :func:`mnist`, with subfolders
    ``fashion_mnist`` or ``fashion-mnist``, cache folder ``.../neuralnp/fashion_mnist`` and
    default mirror ``MIRRORS["fashion_mnist"]``
    (http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/). Raises as :func:`mnist`.

    Source: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms", 2017 (github.com/zalandoresearch/fashion-mnist).
    License: MIT (Zalando SE).
    """
    return _load("fashion_mnist", path, download, mirror)
