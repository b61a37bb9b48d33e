"""Weight initializers: ``init(shape, dtype, rng) -> array``.

Fans follow Keras: a Dense kernel ``(inputs, units)`` has ``fan_in = inputs``, ``fan_out = units``;
a convolution kernel ``(kh, kw, in, out)`` multiplies both by ``kh * kw``. The normal variants draw
from an untruncated normal distribution, as ``torch.nn.init`` does.
"""

import math

import numpy as np

from ._registry import Configurable, resolve


def compute_fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape``."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer(Configurable):
    def __call__(self, shape, dtype, rng):
        raise NotImplementedError


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype, rng):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype, rng):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every entry equal to ``value``."""

    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype, rng):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """``w ~ N(mean, stddev²)``."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype, rng):
        return rng.normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """``w ~ U(minval, maxval)``."""

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype, rng):
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class _VarianceScaling(Initializer):
    """``Var(w) = scale / fan``; uniform on ``±sqrt(3 · scale / fan)`` or normal."""

    scale = 1.0
    mode = "fan_in"
    distribution = "normal"

    def __call__(self, shape, dtype, rng):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, size=shape).astype(dtype)
        return rng.normal(0.0, math.sqrt(variance), size=shape).astype(dtype)


class GlorotUniform(_VarianceScaling):
    """Xavier: ``U(±sqrt(6 / (fan_in + fan_out)))``."""

    mode, distribution = "fan_avg", "uniform"


class GlorotNormal(_VarianceScaling):
    """Xavier: ``N(0, 2 / (fan_in + fan_out))``."""

    mode, distribution = "fan_avg", "normal"


class HeUniform(_VarianceScaling):
    """Kaiming: ``U(±sqrt(6 / fan_in))``."""

    scale, distribution = 2.0, "uniform"


class HeNormal(_VarianceScaling):
    """Kaiming: ``N(0, 2 / fan_in)``."""

    scale, distribution = 2.0, "normal"


class LecunUniform(_VarianceScaling):
    """``U(±sqrt(3 / fan_in))``."""

    distribution = "uniform"


class LecunNormal(_VarianceScaling):
    """``N(0, 1 / fan_in)`` (pairs with SELU)."""

    distribution = "normal"


REGISTRY = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform,
    "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
}


def get(identifier):
    """An initializer from a name (``"he_normal"``), a config dict, or an instance."""
    return resolve(identifier, REGISTRY, "initializer")
