"""train_test_split, StandardScaler and one_hot against hand-computed expectations."""

import numpy as np
import pytest

from neuralnp.preprocessing import StandardScaler, one_hot, train_test_split

# --- train_test_split -----------------------------------------------------------------


def _data(n=100):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) % 4
    return x, y


def test_split_sizes_order_and_row_alignment():
    x, y = _data(100)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, seed=0)
    assert x_train.shape == (75, 3) and x_test.shape == (25, 3)
    assert y_train.shape == (75,) and y_test.shape == (25,)
    # Same rows chosen for x and y: row i of x is [3i, 3i+1, 3i+2] and y = i % 4.
    np.testing.assert_array_equal((x_train[:, 0] // 3).astype(int) % 4, y_train)
    np.testing.assert_array_equal((x_test[:, 0] // 3).astype(int) % 4, y_test)
    # Together the parts are a partition of the rows.
    rows = np.concatenate([x_train[:, 0], x_test[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), x[:, 0])


def test_split_fraction_rounds_test_size_up_and_accepts_counts():
    x, _ = _data(10)
    assert len(train_test_split(x, test_size=0.25, seed=0)[1]) == 3  # ceil(2.5)
    train, test = train_test_split(x, test_size=4, seed=0)
    assert len(train) == 6 and len(test) == 4


def test_same_seed_same_split_different_seed_different_split():
    x, y = _data(100)
    a = train_test_split(x, y, seed=123)
    b = train_test_split(x, y, seed=123)
    c = train_test_split(x, y, seed=124)
    for first, second in zip(a, b):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(a[1], c[1])


def test_split_does_not_touch_global_random_state():
    x, y = _data(50)
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    train_test_split(x, y, seed=None)
    assert np.random.random() == expected


def test_split_shuffles_by_default_and_not_when_disabled():
    x, _ = _data(40)
    train, test = train_test_split(x, seed=0)
    assert not np.array_equal(train[:, 0], np.sort(train[:, 0]))
    train, test = train_test_split(x, shuffle=False, test_size=10)
    np.testing.assert_array_equal(train, x[:30])
    np.testing.assert_array_equal(test, x[30:])


def test_stratified_split_keeps_class_proportions():
    # 60/30/10 classes; an unstratified 20-sample test set rarely matches exactly.
    y = np.repeat([0, 1, 2], [60, 30, 10])
    x = np.arange(100)[:, None]
    for seed in range(20):
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, seed=seed, stratify=y)
        np.testing.assert_array_equal(np.bincount(y_test, minlength=3), [12, 6, 2])
        np.testing.assert_array_equal(np.bincount(y_train, minlength=3), [48, 24, 8])
        np.testing.assert_array_equal(y[x_test[:, 0]], y_test)


def test_stratified_split_rounds_to_requested_size():
    # 3 classes of 7; 25% of 21 -> ceil(5.25) = 6 test samples: 2 from each class.
    y = np.repeat([0, 1, 2], 7)
    _, y_test = train_test_split(y, test_size=0.25, seed=1, stratify=y)
    assert len(y_test) == 6
    np.testing.assert_array_equal(np.bincount(y_test), [2, 2, 2])


def test_stratify_accepts_one_hot_rows():
    y = np.repeat([0, 1], [80, 20])
    _, y_test = train_test_split(y, test_size=0.25, seed=3, stratify=np.eye(2)[y])
    np.testing.assert_array_equal(np.bincount(y_test), [20, 5])


def test_stratified_split_is_not_grouped_by_class():
    y = np.repeat([0, 1], 50)
    y_train, y_test = train_test_split(y, test_size=0.5, seed=0, stratify=y)
    assert not np.array_equal(y_train, np.sort(y_train))
    assert not np.array_equal(y_test, np.sort(y_test))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(test_size=0.0), r"fraction in \(0, 1\)"),
        (dict(test_size=1.0), r"fraction in \(0, 1\)"),
        (dict(test_size=-0.2), r"fraction in \(0, 1\)"),
        (dict(test_size=10), "between 1 and 9"),
        (dict(test_size=0), "between 1 and 9"),
        (dict(test_size="half"), "test_size must be"),
        (dict(test_size=True), "test_size must be"),
        (dict(stratify=np.zeros(3)), "one label per sample"),
        (dict(stratify=np.arange(10) % 2, shuffle=False), "shuffle=True"),
    ],
)
def test_split_argument_errors(kwargs, message):
    x, _ = _data(10)
    with pytest.raises(ValueError, match=message):
        train_test_split(x, **kwargs)


def test_split_input_errors():
    with pytest.raises(ValueError, match="at least one array"):
        train_test_split()
    with pytest.raises(ValueError, match=r"same number of samples.*\[10, 9\]"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="scalar"):
        train_test_split(np.float32(3.0))
    with pytest.raises(ValueError, match="class 7 .* only 1 sample"):
        train_test_split(np.zeros(10), stratify=np.array([0] * 9 + [7]))


# --- StandardScaler -------------------------------------------------------------------


def test_scaler_matches_hand_computed_mean_and_std():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]], dtype=np.float32)
    scaler = StandardScaler().fit(x)
    # Column 0: mean 2, population std sqrt(2/3); column 1: mean 30, std sqrt(1400/3).
    np.testing.assert_allclose(scaler.mean_, [2.0, 30.0], rtol=1e-6)
    np.testing.assert_allclose(scaler.scale_, [np.sqrt(2 / 3), np.sqrt(1400 / 3)], rtol=1e-6)
    z = scaler.transform(x)
    np.testing.assert_allclose(z[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-6)


def test_scaler_keeps_float32_and_converts_ints_to_float64():
    x32 = np.random.default_rng(0).normal(5.0, 3.0, (50, 4)).astype(np.float32)
    scaler = StandardScaler()
    z = scaler.fit_transform(x32)
    assert z.dtype == np.float32 and scaler.mean_.dtype == np.float32
    assert scaler.inverse_transform(z).dtype == np.float32
    assert StandardScaler().fit_transform(np.array([[1, 2], [3, 5]])).dtype == np.float64


def test_scaler_round_trip():
    x = np.random.default_rng(1).normal([0.0, 100.0, -5.0], [1.0, 50.0, 0.01], (200, 3))
    scaler = StandardScaler()
    np.testing.assert_allclose(scaler.inverse_transform(scaler.fit_transform(x)), x, rtol=1e-12)


def test_scaler_constant_column_gets_scale_one():
    # 0.1 is not exactly representable, so a naive std comes out as ~1e-17, not 0.
    x = np.column_stack([np.full(7, 0.1), np.arange(7.0)])
    scaler = StandardScaler().fit(x)
    assert scaler.scale_[0] == 1.0
    z = scaler.transform(x)
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-12)
    assert np.isfinite(z).all()


def test_scaler_fits_train_and_applies_to_new_data():
    scaler = StandardScaler().fit(np.array([[0.0], [2.0]]))  # mean 1, std 1
    np.testing.assert_allclose(scaler.transform(np.array([[5.0]])), [[4.0]])
    state = scaler.state()
    np.testing.assert_allclose(state["mean"], [1.0])
    np.testing.assert_allclose(state["scale"], [1.0])
    state["mean"][0] = 99.0  # a copy: must not change the scaler
    assert scaler.mean_[0] == 1.0


def test_scaler_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        StandardScaler().transform(np.zeros((2, 2)))
    with pytest.raises(RuntimeError, match="call fit"):
        StandardScaler().state()
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        StandardScaler().fit(np.arange(5.0))
    with pytest.raises(ValueError, match="0 samples"):
        StandardScaler().fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        StandardScaler().fit(np.array([[1.0], [np.nan]]))
    scaler = StandardScaler().fit(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2 features but .* fitted on 3"):
        scaler.transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 features but .* fitted on 3"):
        scaler.inverse_transform(np.zeros((4, 2)))


# --- one_hot --------------------------------------------------------------------------


def test_one_hot_values_shape_and_dtype():
    out = one_hot([2, 0, 1, 2])
    expected = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32
    assert one_hot([1], num_classes=5).shape == (1, 5)
    assert one_hot(np.array([0, 1]), dtype="int64").dtype == np.int64
    np.testing.assert_array_equal(one_hot(np.array([1.0, 0.0])), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(one_hot(np.array([[0, 1]]), num_classes=2), [[[1, 0], [0, 1]]])
    assert one_hot(np.array([], dtype=int), num_classes=3).shape == (0, 3)


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ([0, -1, 2], {}, "must be >= 0, got -1"),
        ([0, 1.5], {}, "whole numbers, got 1.5"),
        ([0, np.nan], {}, "whole numbers"),
        ([0, 3], dict(num_classes=3), "label 3 does not fit num_classes=3"),
        (["cat", "dog"], {}, "must be integers"),
        ([], {}, "pass num_classes"),
        ([0], dict(num_classes=0), "positive integer"),
        ([0], dict(num_classes=2.0), "positive integer"),
        ([0], dict(dtype="nope"), "not a NumPy dtype"),
    ],
)
def test_one_hot_errors(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        one_hot(labels, **kwargs)
