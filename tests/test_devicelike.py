"""The device stand-in in tests/devicelike.py: each host read and write is counted and refused."""

import math

import numpy as np
import pytest

from devicelike import DeviceArray, HostRead, counting, counts, no_reads, reset_counts, to_host, xp


@pytest.fixture(autouse=True)
def _fresh_counts():
    reset_counts()


def dev(values, dtype=np.float32):
    return xp.asarray(np.asarray(values, dtype=dtype))


READS = {
    "float": lambda a: float(a[0]),
    "int": lambda a: int(a[0]),
    "bool": lambda a: bool(a[0]),
    "complex": lambda a: complex(a[0]),
    "index": lambda a: range(10)[a.astype(np.int64)[1]],
    "item": lambda a: a.item(0),
    "tolist": lambda a: a.tolist(),
    "get": lambda a: a.get(),
    "to_host": to_host,
    "format": lambda a: f"{a[0]:.3f}",
    "in": lambda a: 1.0 in a,
    "isfinite": lambda a: math.isfinite(a[0]),
    "if": lambda a: 1 if a[0] > 0 else 0,
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_each_host_read_is_counted_then_refused_under_no_reads(read):
    a = dev([1.0, 2.0, 3.0])
    with counting() as c:
        read(a)
    assert (c.reads, c.writes) == (1, 0)
    with no_reads(), pytest.raises(HostRead):
        read(a)
    read(a)  # allowed again after the block
    assert counts()["reads"] == 3  # the refused one is counted too


def test_get_and_to_host_give_plain_host_copies():
    a = dev([1.0, 2.0])
    h = a.get()
    assert type(h) is np.ndarray and type(to_host(a)) is np.ndarray
    h[0] = 9.0
    assert float(a[0]) == 1.0
    assert type(to_host(np.ones(2))) is np.ndarray


def test_indexing_gives_0d_device_arrays_and_iteration_too():
    a = dev([1.0, 2.0, 3.0])
    for x in (a[0], a[-1], a[1:][0], dev(5.0)[()], next(iter(a))):
        assert type(x) is DeviceArray and x.ndim == 0
    assert counts() == {"reads": 0, "writes": 0}


@pytest.mark.parametrize("reduce", [np.sum, xp.sum, np.mean, xp.max, DeviceArray.sum, DeviceArray.max,
                                    DeviceArray.mean, DeviceArray.all, xp.linalg.norm],
                         ids=lambda f: f.__qualname__)
def test_full_reductions_stay_on_the_device(reduce):
    a = dev([1.0, -2.0, 3.0])
    with no_reads():
        r = reduce(a)
    assert type(r) is DeviceArray and r.ndim == 0


def test_functions_hand_back_device_arrays_of_the_dtype():
    with no_reads():
        e = xp.empty(3, np.float32)
        z = xp.zeros_like(e)
        parts = xp.split(xp.arange(4), 2)
    values, n = xp.unique(dev([1.0, 1.0, 2.0]), return_counts=True)  # its size is data: it reads
    assert type(e) is DeviceArray and e.dtype == np.float32 and e.shape == (3,)
    assert type(z) is DeviceArray and z.dtype == np.float32
    assert all(type(p) is DeviceArray for p in (*parts, values, n))


def test_out_arrays_are_written_in_place_and_returned():
    a, b = dev([[1.0, 2.0]]), dev([[1.0, 0.0], [0.0, 2.0]])
    o = xp.empty((1, 2), np.float32)
    with no_reads():
        assert xp.matmul(a, b, out=o) is o
        assert xp.exp(a, a) is a  # a ufunc's positional out
        assert np.exp(a, out=a) is a
    np.testing.assert_array_equal(o.get(), [[1.0, 4.0]])
    h = np.empty((1, 2), np.float32)
    assert xp.matmul(a, b, out=h) is h  # a host out is returned as given


def test_take_copyto_and_isfinite_all_stay_on_the_device():
    a = dev([1.0, 2.0, 3.0])
    idx, o = xp.asarray(np.array([0, 7])), xp.empty(2, np.float32)
    b, mask = dev([10.0, 20.0, 30.0]), a > 1.5
    with no_reads():
        assert xp.take(a, idx, out=o, mode="clip") is o
        xp.copyto(a, b, where=mask)
        ok = xp.isfinite(a).all()
        xp.add.at(a, xp.asarray(np.array([0, 0])), 1.0)
    assert type(ok) is DeviceArray and bool(ok)
    np.testing.assert_array_equal(o.get(), [1.0, 3.0])
    np.testing.assert_array_equal(a.get(), [3.0, 20.0, 30.0])


def test_arithmetic_with_constants_is_allowed():
    a = dev([1.0, 2.0])
    with no_reads():
        b = a + 1
        a *= 2
        c = xp.where(a > 2, a, 0.0) * 0.5
    assert type(b) is DeviceArray and type(c) is DeviceArray
    np.testing.assert_array_equal(a.get(), [2.0, 4.0])
    assert counts()["writes"] == 0


WRITES = {
    "python float": lambda a: a.__setitem__(Ellipsis, 1.0),
    "numpy scalar": lambda a: a.__setitem__(0, np.float32(2.0)),
    "host array": lambda a: a.__setitem__(slice(None), np.ones(3)),
    "list": lambda a: a.__setitem__(slice(None), [1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_host_writes_are_counted_then_refused_under_no_reads(write):
    a = dev([0.0, 0.0, 0.0])
    with counting() as c:
        write(a)
    assert (c.reads, c.writes) == (0, 1)
    with no_reads(), pytest.raises(HostRead, match="write"):
        write(a)
    assert counts() == {"reads": 0, "writes": 2}


def test_writing_a_device_array_is_allowed():
    a, b = dev([0.0, 0.0, 0.0]), dev([1.0, 2.0, 3.0])
    with no_reads():
        a[...] = b
        a[0] = b[2]
    np.testing.assert_array_equal(a.get(), [3.0, 2.0, 3.0])
    assert counts() == {"reads": 1, "writes": 0}  # the get()


def test_repr_and_str_are_free():
    a = dev([1.0, 2.0])
    with no_reads():
        text = repr(a) + str(a) + f"{a}" + repr(a[0])
    assert text.startswith("DeviceArray([1., 2.]")


def test_counting_freezes_at_the_end_of_its_block_and_nests():
    a = dev([1.0])
    with counting() as outer:
        float(a[0])
        with counting() as inner:
            a[0] = 2.0
    float(a[0])
    assert (outer.reads, outer.writes, inner.reads, inner.writes) == (1, 1, 0, 1)
    assert counts() == {"reads": 2, "writes": 1}
    reset_counts()
    assert counts() == {"reads": 0, "writes": 0}


def test_xp_passes_types_and_constants_through():
    assert xp.float32 is np.float32 and xp.dtype is np.dtype and xp.ndarray is np.ndarray
    assert xp.finfo is np.finfo and xp.iinfo is np.iinfo and xp.random is np.random
    assert xp.newaxis is None and xp.pi == np.pi and xp.inf == np.inf
    assert xp.finfo(xp.float32).eps == np.finfo(np.float32).eps
    assert isinstance(dev([1.0]), xp.ndarray)


def test_asarray_uploads_a_copy():
    h = np.array([1.0, 2.0], np.float32)
    a = xp.asarray(h)
    h[0] = 9.0
    assert type(a) is DeviceArray and a.get()[0] == 1.0
    assert xp.asarray(a) is a and xp.asarray(a, np.float64).dtype == np.float64
