"""Saving and loading models: ``config.json`` + ``weights.safetensors``, never pickle.

A model is written to a folder, or to a ``.zip`` holding the same two files. Writes go to a
temporary name beside the target and are renamed into place, so a crash never leaves half a
model. The weights file holds every parameter (``layers.<i>/<param name>``), the optimizer's state
(``optimizer/<slot>``), and the config holds the architecture, the compile settings and the state
of the model's random generator, so that ``fit`` after ``load_model`` continues exactly.
"""

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ._files import atomic_write

FORMAT = "neuralnp-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"


def _tensors(model):
    tensors = {}
    for i, layer in enumerate(model.layers):
        for p in layer.variables():
            tensors[f"layers.{i}/{p.name}"] = np.ascontiguousarray(p.value)
    if model.optimizer is not None:
        state = model.optimizer.state_dict()
        state.pop("iterations")
        for slot, arr in state.items():
            tensors[f"optimizer/{slot}"] = np.ascontiguousarray(arr)
    return tensors


def _config(model):
    from . import __version__
    from ._registry import serialize
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
              "model": model.get_config(), "rng_state": model.rng.bit_generator.state,
              "compile": None, "metadata": model.metadata}
    if model.optimizer is not None:
        config["compile"] = {"loss": serialize(model.loss),
                             "optimizer": serialize(model.optimizer),
                             "optimizer_iterations": model.optimizer.iterations,
                             "metrics": [m if isinstance(m, str) else serialize(m)
                                         for m in model.metric_names]}
    return config


def save_model(model, path):
    """Write ``model`` to ``path`` (a folder, or a file when the name ends in ``.zip``)."""
    from safetensors.numpy import save as save_tensors

    if not model.built:
        raise RuntimeError("the model has no weights yet; fit it (or call build) before saving")
    path = Path(path)
    config = json.dumps(_config(model), indent=2).encode()
    weights = save_tensors(_tensors(model), metadata={"format": FORMAT})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CONFIG_NAME, config)
            zf.writestr(WEIGHTS_NAME, weights)
        return
    if path.exists() and not (path / CONFIG_NAME).is_file() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not a neuralnp model folder; choose another "
                              "path or remove it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        for name, data in ((WEIGHTS_NAME, weights), (CONFIG_NAME, config)):
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "model")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read(path):
    """``(config dict, weights bytes)`` from a model folder or zip, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}; pass the folder (or .zip) that "
                                "model.save() wrote")
    try:
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                raise ValueError(f"{path} is not a neuralnp model folder: it has no {CONFIG_NAME}")
            raw_config = (path / CONFIG_NAME).read_bytes()
            if not (path / WEIGHTS_NAME).is_file():
                raise ValueError(f"{path} is incomplete: {WEIGHTS_NAME} is missing")
            weights = (path / WEIGHTS_NAME).read_bytes()
        else:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                missing = {CONFIG_NAME, WEIGHTS_NAME} - names
                if missing:
                    raise ValueError(f"{path} is not a neuralnp model archive: it lacks "
                                     f"{', '.join(sorted(missing))}")
                raw_config, weights = zf.read(CONFIG_NAME), zf.read(WEIGHTS_NAME)
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is neither a model folder nor a valid .zip archive") from None
    try:
        config = json.loads(raw_config)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {CONFIG_NAME} is corrupt ({exc}); re-save the model") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by neuralnp ({CONFIG_NAME} does not say "
                         f"format={FORMAT!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} uses model format {config['format_version']}; this neuralnp "
                         f"reads up to {FORMAT_VERSION}: upgrade neuralnp")
    return config, weights


def load_model(path, compile=True):
    """Load a model written by :meth:`Sequential.save`; with ``compile=True`` (default) its loss,
    metrics and optimizer state come back too, so ``fit`` resumes exactly."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_tensors

    from .model import Sequential

    config, weights = _read(path)
    try:
        tensors = load_tensors(weights)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: {WEIGHTS_NAME} is truncated or corrupt ({exc})") from None
    try:
        model = Sequential.from_config(config["model"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the model config is incomplete or malformed ({exc!r})") from None
    if not model.built:
        raise ValueError(f"{path}: the config has no input_shape, so the weights cannot be placed")
    for i, layer in enumerate(model.layers):
        for p in layer.variables():
            key = f"layers.{i}/{p.name}"
            if key not in tensors:
                raise ValueError(f"{path}: {WEIGHTS_NAME} lacks {key!r}; the file is incomplete "
                                 "or belongs to another model")
            if tensors[key].shape != p.shape:
                raise ValueError(f"{path}: {key} has shape {tensors[key].shape}, the config says "
                                 f"{p.shape}")
            p.value[...] = tensors[key]
    compiled = config.get("compile")
    if compile and compiled:
        model.compile(loss=compiled["loss"], optimizer=compiled["optimizer"],
                      metrics=compiled.get("metrics"))
        state = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("optimizer/")}
        state["iterations"] = compiled.get("optimizer_iterations", 0)
        model.optimizer.load_state_dict(state)
    model.metadata = config.get("metadata") or {}
    if config.get("rng_state"):
        model.rng.bit_generator.state = config["rng_state"]
    return model
