"""Parameter and the flat buffer: every parameter a view of one array, gradients of a second."""

import numpy as np
import pytest

from neuralnp.backends import NumpyOps
from neuralnp.parameters import FlatBuffer, Parameter


def _params():
    rng = np.random.default_rng(0)
    return [Parameter("a.kernel", rng.normal(size=(3, 4))),
            Parameter("a.bias", rng.normal(size=4)),
            Parameter("b.kernel", rng.normal(size=(4, 2, 2)))]


def test_a_parameter_starts_with_a_zero_gradient_of_its_shape():
    p = Parameter("w", np.ones((2, 3), dtype="float32"))
    assert p.shape == (2, 3) and p.size == 6 and p.grad.dtype == np.float32
    assert not p.grad.any() and "w" in repr(p)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_buffer_holds_every_parameter_in_order_as_views(dtype):
    params = _params()
    originals = [p.value.copy() for p in params]
    buffer = FlatBuffer(params, dtype)
    assert buffer.size == 12 + 4 + 16 and len(buffer) == 3 and buffer.offsets == [0, 12, 16]
    assert buffer.values.dtype == buffer.grads.dtype == np.dtype(dtype)
    assert buffer.values.flags.c_contiguous and not buffer.grads.any()
    np.testing.assert_allclose(buffer.values, np.concatenate([o.ravel() for o in originals]),
                               rtol=1e-6)
    for p, original in zip(params, originals):
        assert p.value.shape == original.shape == p.grad.shape
        assert np.shares_memory(p.value, buffer.values)
        assert np.shares_memory(p.grad, buffer.grads)
    # one write to the buffer is a write to every parameter, and the other way round
    buffer.values *= 0
    assert not any(p.value.any() for p in params)
    params[1].grad[...] = 7
    np.testing.assert_array_equal(buffer.grads[12:16], 7)


def test_strided_and_broadcast_values_are_copied_in_without_a_temporary():
    base = np.arange(20.0).reshape(4, 5)
    params = [Parameter("s", base[:, ::2]), Parameter("b", np.broadcast_to(np.float64(3), (2, 2)))]
    buffer = FlatBuffer(params, "float64", ops=NumpyOps())
    np.testing.assert_array_equal(params[0].value, base[:, ::2])
    np.testing.assert_array_equal(buffer.values[-4:], 3.0)
    params[1].value[0, 0] = 5  # a view now, writable, no longer a broadcast
    assert buffer.values[-4] == 5 and base[0, 0] == 0


def test_an_empty_model_has_an_empty_buffer():
    buffer = FlatBuffer([], "float32")
    assert buffer.size == 0 and len(buffer) == 0 and buffer.offsets == []
