"""MNIST reader for the four original IDX ``.gz`` files (not bundled, never downloaded)."""

from __future__ import annotations

import gzip
import os
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

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_HOW_TO_FIX = (
    f"pass mnist(path=FOLDER) or set the environment variable {ENV_VAR} to a folder "
    f"that contains the four MNIST files ({', '.join(FILES.values())}) directly or in "
    "a subfolder named 'mnist'"
)


def _candidate_folders(path) -> tuple[str, list[Path]]:
    if path is not None:
        where, root = "path argument", Path(path).expanduser()
    elif os.environ.get(ENV_VAR):
        where, root = f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()
    else:
        raise FileNotFoundError(f"no MNIST folder given and ${ENV_VAR} is not set; {_HOW_TO_FIX}")
    return where, [root, root / "mnist"]


def _find_folder(path) -> Path:
    where, folders = _candidate_folders(path)
    for folder in folders:
        if all((folder / name).is_file() for name in FILES.values()):
            return folder
    # Name the first file that is missing, in the most plausible folder, to make it fixable.
    folder = next((f for f in folders if f.is_dir() and any(f.iterdir())), folders[0])
    missing = next(name for name in FILES.values() if not (folder / name).is_file())
    raise FileNotFoundError(
        f"MNIST file {missing!r} not found in {folder} (from the {where}; also looked in "
        f"{', '.join(str(f) for f in folders if f != folder)}); {_HOW_TO_FIX}"
    )


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
        raise ValueError(f"{labels_file} contains label {int(labels.max())}; MNIST labels are 0-9")
    # frombuffer views are read-only; callers expect ordinary writable arrays.
    return images.copy(), labels.astype(np.int64)


def mnist(path=None) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Handwritten digits: ``((x_train, y_train), (x_test, y_test))``.

    ``x_train`` is uint8 of shape (60000, 28, 28) with pixel values 0-255, ``y_train`` int64
    of shape (60000,) with digits 0-9; the test pair has 10000 samples. Scale pixels
    yourself (e.g. ``x / 255.0``).

    Reads the four original files (``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``) from the folder ``path``, or, when ``path`` is None, from
    the folder named by the environment variable ``NEURALNP_DATA``; in both cases the files
    may also sit in a subfolder ``mnist``. Nothing is downloaded.

    Raises FileNotFoundError naming the missing file and where it was looked for, and
    ValueError naming the file when it is not valid gzip/IDX data.

    Source: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits".
    No explicit license is stated; it is commonly cited as CC BY-SA 3.0.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
    folder = _find_folder(path)
    return _load_split(folder, "train"), _load_split(folder, "test")
