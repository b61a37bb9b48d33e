"""``load_model``: a model back from its files, checked against them before it allocates.

The files are read by :mod:`neuralnp.serialization`, which knows nothing of models; here the
config becomes a model built as shapes only, the weights file's header is held against it, and
only then are the layers given memory, filled straight from the file (never initialised first).
"""

from .errors import ModelFileError
from .layers.base import weight_creation
from .model import Sequential
from .serialization import CONFIG_NAME, WEIGHTS_NAME, model_file_errors, read_model
from ._checks import is_int


def load_model(path, compile=True):
    """Load a model written by :meth:`Sequential.save`; with ``compile=True`` (default) its loss,
    metrics and optimizer state come back too, so ``fit`` resumes exactly.

    Raises ``FileNotFoundError`` when nothing is at ``path`` and
    :class:`~neuralnp.errors.ModelFileError` (a ``ValueError``) for anything that is not an
    intact model file, whatever it holds (see :mod:`neuralnp.serialization`).
    """
    def inspect(config, entries):
        model = _skeleton(config, path)
        _match(model, entries, path)
        return model

    config, tensors, model = read_model(path, inspect)
    with model_file_errors(path):
        return _fill(model, config, tensors, path, compile)


def _skeleton(config, path):
    """The model the config describes, built as shapes only (no weight memory at all)."""
    spec = config.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise ModelFileError(path, f"{CONFIG_NAME} has no model description")
    shape = spec.get("input_shape")
    if (not isinstance(shape, list)
            or not all(is_int(d) and d > 0 for d in shape)):
        raise ModelFileError(path, f"{CONFIG_NAME}: input_shape must be a list of positive "
                                   f"integers, got {shape!r}")
    with weight_creation("shapes"):
        model = Sequential.from_config(spec, build=False)
        model.build_layers(shape)
    return model


def _expected_weights(model):
    return {f"layers.{i}/{p.name}": p for i, layer in enumerate(model.layers)
            for p in layer.variables()}


def _match(model, entries, path):
    """Check the header's names, shapes and dtypes against the model, before any allocation."""
    expected = _expected_weights(model)
    missing = [name for name in expected if name not in entries]
    if missing:
        raise ModelFileError(path, f"{WEIGHTS_NAME} lacks {', '.join(missing[:5])}; the file is "
                                   "incomplete or belongs to another model")
    n_params = sum(p.size for layer in model.layers for p in layer.parameters())
    unknown = []
    for name, (dtype, shape, _, _) in entries.items():
        if name in expected:
            want = expected[name].shape
        elif name.startswith("optimizer/"):
            want = (n_params,)
        else:
            unknown.append(name)
            continue
        if shape != want:
            raise ModelFileError(path, f"{name} has shape {shape} in {WEIGHTS_NAME}; the config "
                                       f"says {want}")
        if dtype != model.dtype:
            raise ModelFileError(path, f"{name} is {dtype.name} in {WEIGHTS_NAME}; the model is "
                                       f"{model.dtype.name}")
    if unknown:
        raise ModelFileError(path, f"{WEIGHTS_NAME} holds tensors the model does not have: "
                                   f"{', '.join(sorted(unknown)[:5])}")


def _set_generator(generator, state, what, path):
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(path, f"{what} is not a valid generator state ({exc})") from None


def _fill(model, config, views, path, compile):
    """Give the skeleton real weights, straight from the file, then its optimizer and RNGs."""
    with weight_creation("uninitialized"):
        model.build(model.input_shape)
    for name, p in _expected_weights(model).items():
        p.value[...] = views[name]
    compiled = config.get("compile")
    if compile and compiled:
        if not isinstance(compiled, dict):
            raise ModelFileError(path, f"{CONFIG_NAME}: 'compile' must be an object")
        metrics = compiled.get("metrics")
        if metrics is not None and not all(isinstance(m, (str, dict)) for m in metrics):
            raise ModelFileError(path, f"{CONFIG_NAME}: metrics must be names, got {metrics!r}")
        if "loss" not in compiled or "optimizer" not in compiled:
            raise ModelFileError(path, f"{CONFIG_NAME}: 'compile' needs a loss and an optimizer;"
                                       " load with compile=False to use the weights alone")
        model.compile(loss=compiled["loss"], optimizer=compiled["optimizer"], metrics=metrics)
        arrays = {k.split("/", 1)[1]: v for k, v in views.items() if k.startswith("optimizer/")}
        absent = set(model.optimizer.state) - set(arrays)
        if absent:
            raise ModelFileError(path, f"{WEIGHTS_NAME} lacks the optimizer state "
                                       f"{', '.join(sorted(absent))}")
        scalars = compiled.get("optimizer_state") or {}
        if not isinstance(scalars, dict):
            raise ModelFileError(path, f"{CONFIG_NAME}: optimizer_state must be an object")
        model.optimizer.load_state_dict({**arrays, **scalars,
                                         "iterations": compiled.get("optimizer_iterations", 0)})
    metadata = config.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ModelFileError(path, f"{CONFIG_NAME}: metadata must be an object")
    model.metadata = metadata or {}
    if config.get("rng_state"):
        _set_generator(model.rng, config["rng_state"], "rng_state", path)
    layer_states = config.get("layer_rng_states") or {}
    if not isinstance(layer_states, dict):
        raise ModelFileError(path, f"{CONFIG_NAME}: layer_rng_states must be an object")
    for index, state in layer_states.items():
        layer = model.layers[int(index)] if str(index).isdigit() and int(index) < len(
            model.layers) else None
        generator = layer.own_generator() if layer is not None else None
        if generator is None:
            raise ModelFileError(path, f"{CONFIG_NAME}: layer {index} keeps no generator of "
                                       "its own")
        _set_generator(generator, state, f"layer {index}'s generator state", path)
    return model
