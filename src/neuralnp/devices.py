"""Moving a model between the CPU and the GPU.

A model's arrays all live where its :class:`~neuralnp.backends.Ops` computes: the flat buffer,
the layers' states and workspaces, the optimizer's state. Moving rebuilds the layers for the new
Ops without initializing anything (no generator is drawn from), then copies every array across
through the host, so the model continues exactly: the same weights, optimizer state, step count
and generators.
"""

import numpy as np

from .backend import check_device
from .backends import ops_for_device
from .layers.base import weight_creation


def to(model, device):
    """``model`` on ``device`` (``"cpu"`` or ``"cuda"``); a GPU that cannot be used says what
    is missing, and the model stays where it was."""
    device = check_device(device)
    if device != model.device:
        move(model, ops_for_device(device))
        model.device = device
    return model


def move(model, ops):
    """Put ``model`` (built or not, compiled or not) on ``ops``'s device."""
    if not model.built:
        model.ops = ops
        return model
    old = model.ops
    values = old.to_host(model.buffer.values).copy()
    states = [old.to_host(p.value).copy() for layer in model.layers for p in layer.states()]
    optimizer = model.optimizer
    optimizer_state = optimizer.state_dict() if optimizer is not None and optimizer.buffer \
        is not None else None
    generators = [g.bit_generator.state for g in _generators(model)]
    model.ops = ops
    if optimizer is not None:
        optimizer.state = {}
    with weight_creation("uninitialized"):
        model.build(model.input_shape)  # new layer arrays, flat buffer and (compiled) optimizer
    model.buffer.values[...] = ops.to_device(values)
    for p, value in zip((p for layer in model.layers for p in layer.states()), states):
        p.value[...] = ops.to_device(value)
    for generator, state in zip(_generators(model), generators):
        generator.bit_generator.state = state
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    return model


def _generators(model):
    """Every generator a layer holds (its own dropout stream, say), in a fixed order."""
    return [value for layer in model.layers for _, value in sorted(vars(layer).items())
            if isinstance(value, np.random.Generator)]

