"""Saving and loading models: ``config.json`` + ``weights.safetensors``, never pickle.

A model is written to a folder, or to one zip file holding the same two files when the name
ends in ``.zip`` or ``.keras`` (Keras's habit: ``model.save("m.keras")``). The weights file
holds every parameter (``layers.<i>/<param name>``) and the optimizer's state arrays
(``optimizer/<slot>``); the config holds the architecture, the compile settings, the optimizer's
step count and the state of every random generator, so that ``fit`` after ``load_model``
continues exactly.

What a file can and cannot do to the reader:

- Nothing in it is executed: JSON and raw tensor bytes only, classes resolved through the
  library's own registries.
- Reading is bounded: only regular files and folders are opened; config.json may hold at most
  ``MAX_CONFIG_BYTES``; the safetensors header is checked against the config (names, shapes,
  dtypes, byte counts) before any layer allocates, and the weights must be exactly the bytes
  the header declares. In a .zip, each member's declared size is checked before it is read.
- Integrity: the config carries the SHA-256 of the weights file and an id shared by both files
  of one save; weights that are NaN or infinite are refused.
- Every failure while reading raises :class:`~neuralnp.errors.ModelFileError`, naming the file.

Writes are atomic: a folder is written under a temporary name and swapped into place in one
step (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, undone by the next load or
save if a crash falls between them). Temporaries left by a killed save are removed by the next
save to the same path.
"""

import hashlib
import json
import math
import os
import shutil
import stat
import struct
import time
import uuid
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._checks import is_int
from ._files import (atomic_write, fsync_folder, recover_folder, remove_leftovers,
                     replace_folder, temp_name)
from ._registry import serialize
from ._version import __version__
from .errors import ModelFileError

FORMAT = "neuralnp-model"
FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
MAX_CONFIG_BYTES = 8 << 20
MAX_HEADER_BYTES = 16 << 20
# Deflated float weights shrink little; a member claiming to grow more than this from its
# compressed bytes (beyond a small allowance) is a decompression bomb, not weights.
MAX_ZIP_RATIO = 20
ZIP_RATIO_ALLOWANCE = 64 << 20
DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
ZIP_SUFFIXES = (".zip", ".keras")  # one file; any other name is a folder
HDF5_SUFFIXES = (".h5", ".hdf5")  # Keras's old format: refused, saying what to use


# -- saving ---------------------------------------------------------------------------------------

def _tensors_and_scalars(model):
    """Named arrays for the weights file, and the optimizer's scalar state for the config."""
    tensors, host = {}, model.ops.to_host  # a model on a GPU is read back here
    for i, layer in enumerate(model.layers):
        for p in layer.variables():
            tensors[f"layers.{i}/{p.name}"] = np.ascontiguousarray(host(p.value))
    scalars = {}
    if model.optimizer is not None:
        for slot, value in model.optimizer.state_dict().items():
            if isinstance(value, np.ndarray):
                tensors[f"optimizer/{slot}"] = np.ascontiguousarray(value)
            else:
                scalars[slot] = value
    return tensors, scalars


def _config(model, scalars, save_id, weights_sha256):
    generators = {str(i): layer.own_generator().bit_generator.state
                  for i, layer in enumerate(model.layers) if layer.own_generator() is not None}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
              "save_id": save_id, "weights_sha256": weights_sha256,
              "model": model.get_config(), "rng_state": model.rng.bit_generator.state,
              "layer_rng_states": generators, "compile": None, "metadata": model.metadata}
    if model.optimizer is not None:
        scalars = dict(scalars)
        config["compile"] = {"loss": serialize(model.loss),
                             "optimizer": serialize(model.optimizer),
                             "optimizer_iterations": scalars.pop("iterations"),
                             "optimizer_state": scalars,
                             "metrics": [m if isinstance(m, str) else serialize(m)
                                         for m in model.metric_names]}
    return config


def save_model(model, path):
    """Write ``model`` to ``path``: a folder, or a zip file when the name ends in ``.zip`` or
    ``.keras``. A ``.h5`` name is refused: HDF5 is not written.

    An existing model at ``path`` is replaced atomically; any other existing file or folder
    there is refused.
    """
    from safetensors.numpy import save as save_tensors

    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save() takes a path (str or pathlib.Path), got {type(path).__name__}")
    if not model.built:
        raise RuntimeError("the model has no weights yet; fit it (or call build) before saving")
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        raise ValueError(f"{path}: HDF5 files (.h5) are not supported; save to a name ending in "
                         f".keras or .zip (one file), e.g. {path.with_suffix('.keras').name!r}, "
                         "or to a folder name")
    as_zip = path.suffix.lower() in ZIP_SUFFIXES
    if as_zip and path.is_dir():
        raise ValueError(f"{path} is a folder; a {path.suffix} name must be free or an existing "
                         "model archive. Remove it or choose another name")
    if not as_zip and path.exists() and not path.is_dir():
        raise ValueError(f"{path} is an existing file, not a model folder; choose a new path "
                         "(a name ending in .keras or .zip writes one file) or remove it first")
    if (not as_zip and path.is_dir() and not (path / CONFIG_NAME).is_file()
            and any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not a neuralnp model folder; choose another "
                              "path or empty it first")

    save_id = uuid.uuid4().hex
    tensors, scalars = _tensors_and_scalars(model)
    weights = save_tensors(tensors, metadata={"format": FORMAT, "save_id": save_id})
    config = _config(model, scalars, save_id, hashlib.sha256(weights).hexdigest())
    config = json.dumps(config, indent=2, allow_nan=False).encode()

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    if as_zip:
        with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CONFIG_NAME, config)
            zf.writestr(WEIGHTS_NAME, weights)
        fsync_folder(path.parent)
        return
    _write_folder(path, {WEIGHTS_NAME: weights, CONFIG_NAME: config})


def _write_folder(path, files):
    tmp = temp_name(path)
    os.mkdir(tmp)  # the usual umask permissions, unlike mkdtemp's 0700
    try:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        fsync_folder(tmp)
        replace_folder(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- reading the files, with limits ---------------------------------------------------------------

class _Retry(Exception):
    """The folder changed while it was read (a save replaced it): read it again."""


def _open_regular(name, what, path, dir_fd=None):
    """``(file, size)`` for a regular file; anything else (a device, a FIFO) is refused before
    a byte is read. O_NONBLOCK keeps a FIFO from blocking the open itself."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(path, f"{what} is not a regular file; a model is a folder or a "
                                       ".zip file that model.save() wrote")
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_exactly(stream, n, what, path):
    data = stream.read(n)
    if len(data) != n:
        raise ModelFileError(path, f"{what} is truncated: {len(data)} of {n} bytes")
    return data


@contextmanager
def _open_folder(path):
    """Yields ``(config bytes, weights stream, weights size)``. Both files are opened through one
    handle on the folder, so a save that swaps in a new folder meanwhile cannot mix them."""
    try:
        dir_fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise ModelFileError(path, f"the folder cannot be opened ({exc.strerror})") from None
    try:
        try:
            config_file, size = _open_regular(CONFIG_NAME, CONFIG_NAME, path, dir_fd)
        except FileNotFoundError:
            raise _Retry(f"it is not a neuralnp model folder: it has no {CONFIG_NAME}") from None
        with config_file:
            if size > MAX_CONFIG_BYTES:
                raise ModelFileError(path, f"{CONFIG_NAME} is {size:,} bytes; a model config "
                                           f"holds at most {MAX_CONFIG_BYTES:,}")
            config = config_file.read(MAX_CONFIG_BYTES + 1)
            if len(config) > MAX_CONFIG_BYTES:
                raise ModelFileError(path, f"{CONFIG_NAME} grew past {MAX_CONFIG_BYTES:,} bytes")
        try:
            weights, size = _open_regular(WEIGHTS_NAME, WEIGHTS_NAME, path, dir_fd)
        except FileNotFoundError:
            raise _Retry(f"it is incomplete: {WEIGHTS_NAME} is missing") from None
        with weights:
            yield config, weights, size
    finally:
        os.close(dir_fd)


@contextmanager
def _open_zip(path, file):
    """Yields ``(config bytes, weights stream, weights size)`` from a model archive, checking
    each member's declared size before reading it."""
    with zipfile.ZipFile(file) as zf:
        infos = zf.infolist()
        names = [info.filename for info in infos]
        if sorted(names) != sorted([CONFIG_NAME, WEIGHTS_NAME]):
            missing = {CONFIG_NAME, WEIGHTS_NAME} - set(names)
            if missing:
                problem = f"it is not a neuralnp model archive: it lacks {', '.join(sorted(missing))}"
            else:
                extra = sorted(set(n for n in names if names.count(n) > 1)
                               | (set(names) - {CONFIG_NAME, WEIGHTS_NAME}))
                problem = (f"the archive holds more than {CONFIG_NAME} and {WEIGHTS_NAME} "
                           f"({', '.join(repr(n) for n in extra[:5])}); re-save the model")
            raise ModelFileError(path, problem)
        by_name = {info.filename: info for info in infos}
        config_info, weights_info = by_name[CONFIG_NAME], by_name[WEIGHTS_NAME]
        if config_info.file_size > MAX_CONFIG_BYTES:
            raise ModelFileError(path, f"{CONFIG_NAME} declares {config_info.file_size:,} "
                                       f"bytes; a model config holds at most {MAX_CONFIG_BYTES:,}")
        size = weights_info.file_size
        if size > ZIP_RATIO_ALLOWANCE and size > MAX_ZIP_RATIO * weights_info.compress_size:
            raise ModelFileError(path, f"{WEIGHTS_NAME} claims {size:,} bytes from "
                                       f"{weights_info.compress_size:,} compressed: not weights")
        with zf.open(config_info) as f:
            config = f.read(MAX_CONFIG_BYTES + 1)
        if len(config) != config_info.file_size:
            raise ModelFileError(path, f"{CONFIG_NAME} is not the size the archive declares")
        with zf.open(weights_info) as weights:
            yield config, weights, size


@contextmanager
def _open_model(path):
    """The two files of the model at ``path`` (folder or zip), refused unless regular."""
    if os.path.isdir(path):
        with _open_folder(path) as opened:
            yield opened
        return
    file, _ = _open_regular(path, "it", path)
    with file:
        with _open_zip(path, file) as opened:
            yield opened


def _parse_config(raw, path):
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ModelFileError(path, f"{CONFIG_NAME} is corrupt ({exc}); re-save the model"
                             if not isinstance(exc, RecursionError) else
                             f"{CONFIG_NAME} is nested too deeply to be a model config") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(path, f"it was not written by neuralnp ({CONFIG_NAME} does not say "
                                   f"format={FORMAT!r})")
    version = config.get("format_version")
    if not is_int(version) or version < 1:
        raise ModelFileError(path, f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(path, f"it uses model format {version}; this neuralnp reads up to "
                                   f"{FORMAT_VERSION}: upgrade neuralnp")
    if version >= 2:
        for key in ("save_id", "weights_sha256"):
            if not isinstance(config.get(key), str):
                raise ModelFileError(path, f"{CONFIG_NAME} lacks its {key}; re-save the model")
    return config


def _read_header(stream, size, path):
    """``(raw bytes, {name: (dtype, shape, begin, end)}, metadata)`` of a safetensors file of
    ``size`` bytes, checked to tile the data that follows exactly."""
    if size < 8:
        raise ModelFileError(path, f"{WEIGHTS_NAME} is truncated ({size} bytes)")
    prefix = _read_exactly(stream, 8, WEIGHTS_NAME, path)
    (length,) = struct.unpack("<Q", prefix)
    if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
        raise ModelFileError(path, f"{WEIGHTS_NAME} declares a {length:,}-byte header in a "
                                   f"{size:,}-byte file: it is truncated or corrupt")
    raw = _read_exactly(stream, length, WEIGHTS_NAME, path)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise ModelFileError(path, f"{WEIGHTS_NAME} has a corrupt header") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, f"{WEIGHTS_NAME} has a corrupt header")
    metadata = header.pop("__metadata__", None) or {}
    entries, spans = {}, []
    for name, entry in header.items():
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            ints = (*shape, begin, end)
            if not all(is_int(v) and v >= 0 for v in ints):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(path, f"{WEIGHTS_NAME}: tensor {name!r} has a malformed or "
                                       "unsupported entry (float32 and float64 only)") from None
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise ModelFileError(path, f"{WEIGHTS_NAME}: tensor {name!r} of shape {shape} does "
                                       f"not fill its {end - begin:,} bytes")
        entries[name] = (dtype, shape, begin, end)
        spans.append((begin, end))
    data_size = size - 8 - length
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            break
        position = end
    if position != data_size:
        raise ModelFileError(path, f"{WEIGHTS_NAME} is truncated or corrupt: its tensors do not "
                                   f"fill its {data_size:,} data bytes exactly")
    return prefix + raw, entries, metadata if isinstance(metadata, dict) else {}


# -- the tensors ----------------------------------------------------------------------------------

def _tensor_views(data, entries, path):
    """Read-only arrays over ``data``, refused if any holds NaN or infinity."""
    views = {}
    for name, (dtype, shape, begin, end) in entries.items():
        array = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                              offset=begin).reshape(shape)
        if not np.isfinite(array).all():
            raise ModelFileError(path, f"{name} holds NaN or infinite values; the model that "
                                       "was saved had diverged, or the file is damaged")
        views[name] = array
    return views


def _read_once(path, inspect):
    with _open_model(path) as (raw_config, weights, size):
        config = _parse_config(raw_config, path)
        head, entries, metadata = _read_header(weights, size, path)
        inspected = inspect(config, entries)
        data = _read_exactly(weights, size - len(head), WEIGHTS_NAME, path)
        if weights.read(1):  # also makes zipfile check the member's CRC
            raise ModelFileError(path, f"{WEIGHTS_NAME} is longer than its header declares")
    if config["format_version"] >= 2:
        if metadata.get("save_id") != config["save_id"]:
            raise _Retry(f"{CONFIG_NAME} and {WEIGHTS_NAME} come from different saves")
        digest = hashlib.sha256(head)
        digest.update(data)
        if digest.hexdigest() != config["weights_sha256"]:
            raise ModelFileError(path, f"{WEIGHTS_NAME} does not match the checksum saved with "
                                       "it: the file is damaged; use a backup or re-save")
    return config, _tensor_views(data, entries, path), inspected


# zipfile and zlib report damage in many ways; each of these means an unreadable archive.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
                   struct.error)


@contextmanager
def model_file_errors(path):
    """Turn whatever goes wrong while a file's contents become objects into ModelFileError.

    Configs are turned into layers, losses and optimizers by their constructors, whose own checks
    raise the ordinary Python errors, worded for the Python API."""
    try:
        yield
    except ModelFileError:
        raise
    except _ARCHIVE_ERRORS as exc:
        hint = ("; HDF5 files (Keras's .h5) are not read: load the folder, .keras or .zip file "
                "that neuralnp's model.save() wrote" if Path(path).suffix.lower() in HDF5_SUFFIXES
                else "")
        raise ModelFileError(path, f"it is neither a model folder nor a valid .zip "
                                   f"archive ({exc}){hint}") from None
    except OSError as exc:
        raise ModelFileError(path, f"it cannot be read ({exc})") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
            MemoryError, RecursionError) as exc:
        raise ModelFileError(path, f"the model config is invalid: {exc}") from None


def read_model(path, inspect, attempts=5):
    """``(config, tensors, inspect(config, header))`` from the model files at ``path``.

    ``inspect`` sees the config and the safetensors header (``{name: (dtype, shape, begin,
    end)}``) before a byte of tensor data is read, and raises to refuse the file. ``tensors`` are
    read-only arrays, checked to be finite and to match the checksum. A folder being replaced
    by a save in another process is read again, up to ``attempts`` times. Raises
    ``FileNotFoundError`` when nothing is at ``path`` and :class:`ModelFileError` otherwise.
    """
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model takes a path (str or pathlib.Path), got "
                        f"{type(path).__name__}")
    path = Path(path)
    recover_folder(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}; pass the folder (or .zip) that "
                                "model.save() wrote")
    for attempt in range(attempts):
        try:
            with model_file_errors(path):
                return _read_once(path, inspect)
        except _Retry as exc:
            if attempt == attempts - 1:
                raise ModelFileError(path, str(exc)) from None
            time.sleep(0.01 * (attempt + 1))
