"""Initializers: fans, shapes and dtypes, seeding, and the statistics of large draws."""

import math

import numpy as np
import pytest

from neuralnp import initializers as init


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)),
    ((7,), (7, 7)),  # a bias: Keras uses its length for both fans
    ((4, 5), (4, 5)),  # Dense kernel (inputs, units)
    ((3, 3, 8, 16), (3 * 3 * 8, 3 * 3 * 16)),  # conv kernel (kh, kw, in, out)
    ((5, 2, 3), (5 * 2, 5 * 3)),  # 1-D conv kernel (k, in, out)
])
def test_compute_fans(shape, fans):
    assert init.compute_fans(shape) == fans


RANDOM = ["random_normal", "random_uniform", "glorot_uniform", "glorot_normal", "he_uniform",
          "he_normal", "lecun_uniform", "lecun_normal"]
ALL = ["zeros", "ones", "constant"] + RANDOM


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 3, 4, 5)])
def test_shape_and_dtype(name, dtype, shape):
    w = init.get(name)(shape, np.dtype(dtype), np.random.default_rng(0))
    assert isinstance(w, np.ndarray) and w.shape == shape and w.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(w))


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_draw_other_seed_other_draw(name):
    def draw(seed):
        return init.get(name)((6, 7), np.float64, np.random.default_rng(seed))
    np.testing.assert_array_equal(draw(42), draw(42))
    assert not np.array_equal(draw(42), draw(43))
    # the generator advances: two draws in a row differ
    rng = np.random.default_rng(42)
    assert not np.array_equal(init.get(name)((6, 7), np.float64, rng),
                              init.get(name)((6, 7), np.float64, rng))


@pytest.mark.parametrize("initializer, value", [
    (init.Zeros(), 0.0), (init.get("zeros"), 0.0), (init.Ones(), 1.0), (init.get("ones"), 1.0),
    (init.Constant(3.5), 3.5), (init.Constant(-0.25), -0.25), (init.get("constant"), 0.0),
])
def test_constant_initializers_are_exact(initializer, value):
    w = initializer((3, 4), np.float64, np.random.default_rng(0))
    np.testing.assert_array_equal(w, np.full((3, 4), value))


# --- statistics ----------------------------------------------------------------------------
# 60 000 draws: the sample variance is within ~1.2 % (3σ) of the true one, for both families.

DENSE = (200, 300)  # fan_in 200, fan_out 300
CONV = (5, 5, 20, 30)  # fan_in 500, fan_out 750 (15 000 draws: ~2.5 % at 3σ)


def _limits(fan_in, fan_out):
    """(distribution, hand-written bound or std) for every variance-scaling initializer."""
    return {
        "glorot_uniform": ("uniform", math.sqrt(6 / (fan_in + fan_out))),
        "glorot_normal": ("normal", math.sqrt(2 / (fan_in + fan_out))),
        "he_uniform": ("uniform", math.sqrt(6 / fan_in)),
        "he_normal": ("normal", math.sqrt(2 / fan_in)),
        "lecun_uniform": ("uniform", math.sqrt(3 / fan_in)),
        "lecun_normal": ("normal", math.sqrt(1 / fan_in)),
    }


CASES = [pytest.param(name, shape, *spec, id=f"{name}-{len(shape)}d")
         for shape, (fi, fo) in [(DENSE, (200, 300)), (CONV, (500, 750))]
         for name, spec in _limits(fi, fo).items()]


@pytest.mark.parametrize("name, shape, distribution, scale", CASES)
def test_variance_scaling_statistics(name, shape, distribution, scale):
    w = init.get(name)(shape, np.float64, np.random.default_rng(0)).ravel()
    n = w.size
    tol = 0.03 if n >= 60000 else 0.05
    if distribution == "uniform":
        bound = scale
        assert np.max(np.abs(w)) <= bound
        assert np.min(w) < -0.99 * bound and np.max(w) > 0.99 * bound  # fills the whole range
        expected_var = bound ** 2 / 3
    else:
        std = scale
        expected_var = std ** 2
        # untruncated (as torch.nn.init): about 4.55 % of the draws lie beyond 2σ
        beyond = np.mean(np.abs(w) > 2 * std)
        assert 0.038 < beyond < 0.053
    assert abs(np.mean(w)) < 5 * math.sqrt(expected_var / n)
    assert np.var(w) == pytest.approx(expected_var, rel=tol)


def test_random_normal_and_uniform_use_their_arguments():
    rng = np.random.default_rng(0)
    w = init.RandomNormal(mean=1.5, stddev=0.2)((300, 200), np.float64, rng)
    assert np.mean(w) == pytest.approx(1.5, abs=5 * 0.2 / math.sqrt(w.size))
    assert np.std(w) == pytest.approx(0.2, rel=0.02)

    u = init.RandomUniform(minval=-0.5, maxval=2.0)((300, 200), np.float64, rng)
    assert u.min() >= -0.5 and u.max() <= 2.0
    assert u.min() < -0.49 and u.max() > 1.99
    assert np.mean(u) == pytest.approx(0.75, abs=0.01)
    assert np.var(u) == pytest.approx(2.5 ** 2 / 12, rel=0.02)


def test_defaults_of_random_initializers():
    rng = np.random.default_rng(0)
    w = init.RandomNormal()((300, 200), np.float64, rng)
    assert np.std(w) == pytest.approx(0.05, rel=0.02)
    u = init.RandomUniform()((300, 200), np.float64, rng)
    assert u.min() >= -0.05 and u.max() <= 0.05 and u.max() > 0.0499


# --- registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("zeros", init.Zeros), ("ones", init.Ones), ("constant", init.Constant),
    ("glorot_uniform", init.GlorotUniform), ("xavier_uniform", init.GlorotUniform),
    ("glorot_normal", init.GlorotNormal), ("xavier_normal", init.GlorotNormal),
    ("he_uniform", init.HeUniform), ("He_Normal", init.HeNormal),
    ("lecun_uniform", init.LecunUniform), ("lecun_normal", init.LecunNormal),
])
def test_get_by_name(name, cls):
    assert type(init.get(name)) is cls


def test_get_from_config_and_instance():
    c = init.Constant(2.0)
    assert init.get(c) is c
    restored = init.get({"class_name": "Constant", "config": {"value": 2.0}})
    np.testing.assert_array_equal(restored((2,), np.float64, None), [2.0, 2.0])


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        init.get("glorot_uniformm")
    message = str(info.value)
    assert "glorot_uniformm" in message
    for name in ("zeros", "ones", "glorot_uniform", "he_normal", "lecun_normal", "random_normal"):
        assert name in message
