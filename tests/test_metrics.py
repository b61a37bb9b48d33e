"""Precision, recall, F1, ROC AUC, R² and the confusion matrix: hand-computed cases, streaming
over batches, scikit-learn as the oracle (skipped without it), and the metrics in fit/evaluate."""

import json
import math
import warnings

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import metrics
from neuralnp._registry import resolve, serialize

APPROX = dict(rel=1e-12, abs=1e-12)


def _rows(pred, k, p=0.7):
    """Probability rows whose argmax is ``pred``."""
    rows = np.full((len(pred), k), (1 - p) / (k - 1))
    rows[np.arange(len(pred)), pred] = p
    return rows


def _run(metric, y_true, y_pred, sample_weight=None):
    metric.reset()
    metric.update(y_true, y_pred, sample_weight)
    return metric.result()


# -- precision, recall, F1: hand-computed ---------------------------------------------------------

Y_BIN = np.array([[1], [0], [1], [1], [0], [0]], dtype=np.float32)
P_BIN = np.array([[0.9], [0.6], [0.4], [0.7], [0.2], [0.55]], dtype=np.float32)
# threshold 0.5 → predicted [1, 1, 0, 1, 0, 1]: TP = {0, 3}, FP = {1, 5}, FN = {2}


@pytest.mark.parametrize("cls, expected", [
    (metrics.Precision, 2 / 4), (metrics.Recall, 2 / 3), (metrics.F1Score, 4 / 7),
])
def test_binary_counts_by_hand(cls, expected):
    assert _run(cls(), Y_BIN, P_BIN) == pytest.approx(expected, **APPROX)
    # Flat vectors are read the same as (N, 1) columns.
    assert _run(cls(), Y_BIN.ravel(), P_BIN.ravel()) == pytest.approx(expected, **APPROX)


@pytest.mark.parametrize("cls, expected", [
    (metrics.Precision, 1.0), (metrics.Recall, 2 / 3), (metrics.F1Score, 4 / 5),
])
def test_binary_threshold_is_configurable(cls, expected):
    # threshold 0.65 → predicted [1, 0, 0, 1, 0, 0]: TP 2, FP 0, FN 1
    assert _run(cls(threshold=0.65), Y_BIN, P_BIN) == pytest.approx(expected, **APPROX)


def test_binary_threshold_is_strict():
    # A score equal to the threshold is not a positive prediction (as BinaryAccuracy's ``>``).
    assert _run(metrics.Precision(), [[1], [0]], [[0.9], [0.5]]) == 1.0


@pytest.mark.parametrize("cls, expected", [
    # TP weight 1 + 1 = 2, FP 2 + 0.5 = 2.5, FN 3
    (metrics.Precision, 2 / 4.5), (metrics.Recall, 2 / 5), (metrics.F1Score, 4 / 9.5),
])
def test_binary_counts_with_sample_weights(cls, expected):
    w = np.array([1, 2, 3, 1, 1, 0.5])
    assert _run(cls(), Y_BIN, P_BIN, w) == pytest.approx(expected, **APPROX)


Y_MC = np.array([0, 0, 1, 1, 2, 2])
PRED_MC = np.array([0, 1, 1, 1, 0, 1])
# class 0: TP 1, predicted 2, true 2 | class 1: TP 2, predicted 4, true 2 | class 2: 0, 0, 2


@pytest.mark.parametrize("cls, expected, weighted", [
    (metrics.Precision, (1 / 2 + 1 / 2 + 0) / 3, (2 / 3 + 1 / 2 + 0) / 3),
    (metrics.Recall, (1 / 2 + 1 + 0) / 3, (2 / 3 + 1 + 0) / 3),
    (metrics.F1Score, (1 / 2 + 2 / 3 + 0) / 3, (2 / 3 + 2 / 3 + 0) / 3),
])
def test_multiclass_macro_by_hand(cls, expected, weighted):
    probs = _rows(PRED_MC, 3)
    assert _run(cls(), Y_MC, probs) == pytest.approx(expected, **APPROX)
    onehot = np.eye(3, dtype=np.float32)[Y_MC]
    assert _run(cls(), onehot, probs) == pytest.approx(expected, **APPROX)
    assert _run(cls(), Y_MC.reshape(-1, 1).astype(float), probs) == pytest.approx(expected)
    # Weight 2 on sample 0: class 0 TP 2, predicted 3, true 3.
    w = np.array([2, 1, 1, 1, 1, 1])
    assert _run(cls(), Y_MC, probs, w) == pytest.approx(weighted, **APPROX)


def test_multiclass_class_never_seen_nor_predicted_counts_zero():
    # A fourth output that no sample has nor gets divides the sum by 4, not 3.
    probs = _rows(PRED_MC, 4)
    assert _run(metrics.Precision(), Y_MC, probs) == pytest.approx(1 / 4, **APPROX)
    assert _run(metrics.Recall(), Y_MC, probs) == pytest.approx(1.5 / 4, **APPROX)


def test_two_column_softmax_is_two_classes_and_ignores_the_threshold():
    y = np.array([1, 0, 1, 1, 0, 0])
    pred = np.array([1, 1, 0, 1, 0, 1])  # the binary example above
    # class 1: P 2/4, R 2/3; class 0: TP 1, predicted 2, true 3 → P 1/2, R 1/3
    probs = _rows(pred, 2, p=0.55)
    assert _run(metrics.Precision(threshold=0.9), y, probs) == pytest.approx(
        (2 / 4 + 1 / 2) / 2, **APPROX)
    assert _run(metrics.Recall(), y, probs) == pytest.approx((2 / 3 + 1 / 3) / 2, **APPROX)


def test_multi_label_is_macro_over_columns():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    p = np.array([[0.9, 0.2], [0.3, 0.6], [0.4, 0.7], [0.6, 0.8]], dtype=np.float32)
    # column 0: TP 1, predicted 2, true 2; column 1: TP 2, predicted 3, true 2
    assert _run(metrics.Precision(multi_label=True), y, p) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert _run(metrics.Recall(multi_label=True), y, p) == pytest.approx((1 / 2 + 1) / 2)
    # Without multi_label the same arrays are read as two classes (argmax).
    assert _run(metrics.Recall(), y, p) != pytest.approx(0.75)


def test_nothing_predicted_positive_gives_zero_not_nan():
    assert _run(metrics.Precision(), [[1], [0]], [[0.1], [0.2]]) == 0.0
    assert _run(metrics.F1Score(), [[0], [0]], [[0.1], [0.2]]) == 0.0


# -- AUC: hand-computed ---------------------------------------------------------------------------

def test_auc_binary_by_hand():
    y = np.array([[0], [0], [1], [1]], dtype=np.float32)
    s = np.array([[0.1], [0.4], [0.35], [0.8]], dtype=np.float32)
    assert _run(metrics.AUC(), y, s) == pytest.approx(0.75, **APPROX)
    # Pairs weighted w_pos * w_neg: (0.35 > 0.1) 1·1 + (0.8 > both) 1·(1 + 3) = 5 of 2·4.
    assert _run(metrics.AUC(), y, s, [1, 3, 1, 1]) == pytest.approx(5 / 8, **APPROX)


def test_auc_ties_count_half():
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9, 0.2])
    # positives 0.5, 0.9, 0.2 against negatives 0.5, 0.2: (½ + 1) + (1 + 1) + (0 + ½) = 4 of 6
    assert _run(metrics.AUC(), y, s) == pytest.approx(4 / 6, **APPROX)


def test_auc_multiclass_one_vs_rest_by_hand():
    y = np.array([0, 1, 2, 2])
    s = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.6, 0.1, 0.3]])
    # class 0: 0.5 beats 0.2, 0.3, not 0.6 → 2/3; class 1: 1; class 2: (2 + 1.5) / 4
    expected = (2 / 3 + 1 + 3.5 / 4) / 3
    assert _run(metrics.AUC(), y, s) == pytest.approx(expected, **APPROX)
    assert _run(metrics.AUC(), np.eye(3)[y], s) == pytest.approx(expected, **APPROX)


def test_auc_two_column_softmax_uses_column_one():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    probs = np.stack([1 - p1, p1], axis=1)
    assert _run(metrics.AUC(), y, probs) == pytest.approx(0.75, **APPROX)
    # Column 0 is ignored: scores that do not sum to one give the column-1 AUC all the same.
    probs[:, 0] = [0.9, 0.0, 0.0, 0.9]
    assert _run(metrics.AUC(), np.eye(2)[y], probs) == pytest.approx(0.75, **APPROX)


def test_auc_multi_label_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6], [0.4, 0.7], [0.6, 0.8]])
    assert _run(metrics.AUC(multi_label=True), y, p) == pytest.approx((3 / 4 + 2 / 4) / 2)


def test_auc_is_nan_when_undefined_and_skips_absent_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nan quietly, no exception and no warning
        assert math.isnan(_run(metrics.AUC(), [[1], [1], [1]], [[0.2], [0.5], [0.9]]))
        assert math.isnan(_run(metrics.AUC(), [0, 0], _rows(np.array([0, 1]), 3)))
        assert math.isnan(metrics.AUC().result())
        assert math.isnan(_run(metrics.AUC(), [[0], [1]], [[np.nan], [0.5]]))
    # Class 2 never occurs: the mean of the defined classes 0 and 1.
    y = np.array([0, 1, 0, 1])
    s = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.3, 0.3, 0.4]])
    # class 0: positives 0.5, 0.6 vs negatives 0.2, 0.3 → 1; class 1: 0.5, 0.3 vs 0.3, 0.1 → 3.5/4
    assert _run(metrics.AUC(), y, s) == pytest.approx((1 + 3.5 / 4) / 2, **APPROX)


def test_auc_copies_the_scores_it_keeps():
    m = metrics.AUC()
    y = np.array([[0], [1]])
    buf = np.array([[0.2], [0.8]])
    m.update(y, buf)
    buf[:] = [[0.9], [0.1]]  # the model may reuse its output buffer for the next batch
    m.update(y, buf)
    # positives 0.8, 0.1 against negatives 0.2, 0.9: one pair of four in order (0 if aliased)
    assert m.result() == pytest.approx(0.25, **APPROX)


# -- R²: hand-computed ----------------------------------------------------------------------------

def test_r2_by_hand():
    y = np.array([[1, 0], [2, 0], [3, 1], [4, 1]], dtype=np.float64)
    p = np.array([[1, 0], [2, 1], [3, 1], [5, 1]], dtype=np.float64)
    # column 0: SS_tot 5, SS_res 1 → 0.8; column 1: SS_tot 1, SS_res 1 → 0
    assert _run(metrics.R2Score(), y[:, :1], p[:, :1]) == pytest.approx(0.8, **APPROX)
    assert _run(metrics.R2Score(), y, p) == pytest.approx(0.4, **APPROX)
    # Weights 1, 1, 1, 3 on column 0: mean 3, SS_tot 4 + 1 + 0 + 3 = 8, SS_res 3 → 5/8.
    assert _run(metrics.R2Score(), y[:, 0], p[:, :1], [1, 1, 1, 3]) == pytest.approx(0.625)


def test_r2_constant_targets_and_too_few_samples():
    y = np.full((3, 1), 2.0)
    assert _run(metrics.R2Score(), y, y.copy()) == 1.0
    assert _run(metrics.R2Score(), y, np.array([[2.0], [2.0], [3.0]])) == 0.0
    assert math.isnan(_run(metrics.R2Score(), [[1.0]], [[2.0]]))
    assert math.isnan(metrics.R2Score().result())


def test_r2_streams_without_cancellation_on_large_offsets():
    # Σy² - (Σy)²/n would lose all ~16 digits here (y² ≈ 1e18); the merged centred sums do not.
    y = 1e9 + np.array([0.0, 1.0, 2.0, 3.0]).reshape(-1, 1)
    p = y + np.array([0.0, 0.0, 0.0, 1.0]).reshape(-1, 1)
    m = metrics.R2Score()
    for i in range(4):
        m.update(y[i:i + 1], p[i:i + 1])
    assert m.result() == pytest.approx(0.8, abs=1e-9)


# -- confusion matrix -----------------------------------------------------------------------------

def test_confusion_matrix_by_hand():
    y_true = np.array([0, 1, 2, 2, 1])
    y_pred = np.array([0, 2, 2, 2, 0])
    expected = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 2]])
    cm = metrics.confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)
    # One-hot rows and probabilities go through argmax; floats holding integers are labels.
    cm = metrics.confusion_matrix(np.eye(3)[y_true], _rows(y_pred, 3))
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true.astype(np.float32).reshape(-1, 1), y_pred), expected)
    padded = metrics.confusion_matrix(y_true, y_pred, num_classes=4)
    assert padded.shape == (4, 4)
    np.testing.assert_array_equal(padded[:3, :3], expected)
    assert padded[3].sum() == padded[:, 3].sum() == 0


def test_confusion_matrix_binary_probabilities():
    y_true = np.array([[0], [1], [1], [0]], dtype=np.float32)
    y_pred = np.array([[0.2], [0.7], [0.4], [0.3]], dtype=np.float32)
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), [[2, 0], [1, 1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, threshold=0.25),
                                  [[1, 1], [0, 2]])


@pytest.mark.parametrize("y_true, y_pred, kwargs, match", [
    ([0, 1, 1], [0, 1], {}, "3 samples but y_pred has 2"),
    ([0, -1, 1], [0, 1, 1], {}, "negative label"),
    ([0, 1], [0, -2], {}, "negative label"),
    ([0, 1, 3], [0, 1, 1], {"num_classes": 3}, "num_classes=3"),
    ([0, 1.5], [0, 1], {}, "non-integer"),
])
def test_confusion_matrix_errors(y_true, y_pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.confusion_matrix(np.array(y_true), np.array(y_pred), **kwargs)


# -- errors, registry, config ---------------------------------------------------------------------

def test_update_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="sample_weight has 2 entries for 3"):
        metrics.Precision().update([[1], [0], [1]], [[0.9], [0.1], [0.2]], [1, 2])
    with pytest.raises(ValueError, match="labels from 0 to 3"):
        metrics.Recall().update([0, 1, 3], _rows(np.array([0, 1, 2]), 3))
    with pytest.raises(ValueError, match="must match"):
        metrics.R2Score().update(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must match"):
        metrics.AUC().update(np.zeros((3, 1)), np.zeros((4, 1)))
    m = metrics.F1Score()
    m.update([0, 1], _rows(np.array([0, 1]), 3))
    with pytest.raises(ValueError, match="reset"):
        m.update([0, 1], _rows(np.array([0, 1]), 4))


EXPECTED_NAMES = {
    "precision": (metrics.Precision, "precision"),
    "recall": (metrics.Recall, "recall"),
    "f1": (metrics.F1Score, "f1"),
    "f1_score": (metrics.F1Score, "f1"),
    "auc": (metrics.AUC, "auc"),
    "roc_auc": (metrics.AUC, "auc"),
    "r2": (metrics.R2Score, "r2"),
    "r2_score": (metrics.R2Score, "r2"),
}


@pytest.mark.parametrize("key", sorted(EXPECTED_NAMES))
def test_registry_names_and_log_keys(key):
    cls, log_key = EXPECTED_NAMES[key]
    m = metrics.get(key)
    assert type(m) is cls and m.name == log_key
    assert type(metrics.get(key.upper())) is cls


def test_get_picks_multi_label_for_binary_crossentropy_with_several_outputs():
    for key in ("precision", "recall", "f1", "auc"):
        assert metrics.get(key, "binary_crossentropy", 3).multi_label is True
        assert metrics.get(key, "binary_crossentropy", 1).multi_label is False
        assert metrics.get(key, "sparse_categorical_crossentropy", 3).multi_label is False
    assert type(metrics.get("accuracy", "binary_crossentropy", 3)) is metrics.BinaryAccuracy
    assert type(metrics.get("accuracy", "categorical_crossentropy", 3)) is \
        metrics.CategoricalAccuracy
    assert type(metrics.get("acc", "sparse_categorical_crossentropy", 3)) is \
        metrics.SparseCategoricalAccuracy
    assert type(metrics.get("accuracy", "mse", 1)) is metrics.BinaryAccuracy
    with pytest.raises(ValueError, match="precision"):
        metrics.get("precission")


@pytest.mark.parametrize("metric", [
    metrics.Precision(threshold=0.3), metrics.Recall(multi_label=True),
    metrics.F1Score(threshold=0.7, multi_label=True), metrics.AUC(multi_label=True),
    metrics.AUC(), metrics.R2Score(),
], ids=lambda m: f"{type(m).__name__}{m.get_config()}")
def test_config_round_trips(metric):
    spec = serialize(metric)
    again = resolve(json.loads(json.dumps(spec)), metrics.REGISTRY, "metric")
    assert type(again) is type(metric) and again is not metric
    assert again.get_config() == metric.get_config()
    assert again.name == metric.name
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (40, 2)).astype(np.float64)
    p = rng.random((40, 2))
    assert _run(again, y, p) == _run(metric, y, p)


def test_results_are_plain_floats_and_reset_clears():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (30, 1)), rng.random((30, 1))
    for m in (metrics.Precision(), metrics.Recall(), metrics.F1Score(), metrics.AUC(),
              metrics.R2Score()):
        assert math.isnan(m.result())
        m.update(y, p)
        first = m.result()
        assert type(first) is float
        m.update(1 - y, p)  # a second, different batch changes the epoch's value
        assert m.result() != first
        m.reset()
        assert math.isnan(m.result())
        m.update(y, p)
        assert m.result() == first


# -- streaming: several batches equal one ---------------------------------------------------------

def _random_case(kind, rng, n=157):
    w = rng.random(n) * 3
    if kind == "binary":
        y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        p = np.round(rng.random((n, 1)), 2).astype(np.float32)  # rounded: many ties
    elif kind == "multiclass":
        y = rng.integers(0, 4, n)
        p = rng.dirichlet(np.ones(4), n)
    elif kind == "onehot":
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
        p = rng.dirichlet(np.ones(5), n).astype(np.float32)
    elif kind == "multilabel":
        y = rng.integers(0, 2, (n, 3)).astype(np.float32)
        p = rng.random((n, 3))
    else:  # regression
        y = rng.normal(size=(n, 3)) * [1, 10, 100] + [0, 5, -50]
        p = y + rng.normal(size=(n, 3))
    return y, p, w


STREAM_CASES = [
    (cls, kind)
    for kind in ("binary", "multiclass", "onehot", "multilabel")
    for cls in (metrics.Precision, metrics.Recall, metrics.F1Score, metrics.AUC)
] + [(metrics.R2Score, "regression")]


@pytest.mark.parametrize("cls, kind", STREAM_CASES,
                         ids=[f"{c.__name__}-{k}" for c, k in STREAM_CASES])
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_equals_one_batch(cls, kind, weighted):
    rng = np.random.default_rng(7)
    y, p, w = _random_case(kind, rng)
    w = w if weighted else None
    make = (lambda: cls(multi_label=True)) if kind == "multilabel" else cls
    whole = _run(make(), y, p, w)
    streamed = make()
    edges = [0, 1, 33, 33, 64, 100, 157]  # includes a 1-sample and an empty batch
    for a, b in zip(edges[:-1], edges[1:]):
        streamed.update(y[a:b], p[a:b], None if w is None else w[a:b])
    assert 0.0 < whole <= 1.0
    assert streamed.result() == pytest.approx(whole, rel=1e-12, abs=1e-12)


# -- scikit-learn as the oracle -------------------------------------------------------------------

@pytest.fixture
def sk():
    return pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weighted", [False, True])
def test_counts_match_sklearn(sk, seed, weighted):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    w = rng.random(n) * 2 if weighted else None
    funcs = {metrics.Precision: sk.precision_score, metrics.Recall: sk.recall_score,
             metrics.F1Score: sk.f1_score}
    # binary
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    p = rng.random((n, 1)).astype(np.float32)
    thr = float(rng.uniform(0.2, 0.8))
    for cls, f in funcs.items():
        ref = f(y.ravel(), (p.ravel() > thr).astype(int), average="binary", zero_division=0,
                sample_weight=w)
        assert _run(cls(threshold=thr), y, p, w) == pytest.approx(ref, **APPROX)
    # multi-class: macro over all K output classes (sklearn with labels=range(K))
    k = int(rng.integers(3, 8))
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    for cls, f in funcs.items():
        ref = f(labels, probs.argmax(1), average="macro", labels=range(k), zero_division=0,
                sample_weight=w)
        assert _run(cls(), labels, probs, w) == pytest.approx(ref, **APPROX)
    # When every class occurs, that is also sklearn's default label set.
    if len(np.unique(labels)) == k and len(np.unique(probs.argmax(1))) == k:
        ref = sk.f1_score(labels, probs.argmax(1), average="macro", sample_weight=w)
        assert _run(metrics.F1Score(), labels, probs, w) == pytest.approx(ref, **APPROX)
    # multi-label
    ym = rng.integers(0, 2, (n, 3))
    pm = rng.random((n, 3))
    for cls, f in funcs.items():
        ref = f(ym, (pm > 0.5).astype(int), average="macro", zero_division=0, sample_weight=w)
        assert _run(cls(multi_label=True), ym, pm, w) == pytest.approx(ref, **APPROX)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weighted", [False, True])
def test_auc_matches_sklearn(sk, seed, weighted):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(30, 400))
    w = rng.random(n) * 2 if weighted else None
    y = rng.integers(0, 2, n)
    for decimals in (1, 3, 8):  # coarse rounding makes many ties
        s = np.round(rng.random(n), decimals)
        ref = sk.roc_auc_score(y, s, sample_weight=w)
        assert _run(metrics.AUC(), y.reshape(-1, 1), s.reshape(-1, 1), w) == \
            pytest.approx(ref, **APPROX)
    k = int(rng.integers(3, 7))
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every class occurs
    probs = np.round(rng.dirichlet(np.ones(k), n), 2)
    probs /= probs.sum(axis=1, keepdims=True)
    ref = sk.roc_auc_score(labels, probs, multi_class="ovr", average="macro", sample_weight=w)
    assert _run(metrics.AUC(), labels, probs, w) == pytest.approx(ref, **APPROX)
    ym = rng.integers(0, 2, (n, 3))
    pm = np.round(rng.random((n, 3)), 2)
    ref = sk.roc_auc_score(ym, pm, average="macro", sample_weight=w)
    assert _run(metrics.AUC(multi_label=True), ym, pm, w) == pytest.approx(ref, **APPROX)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weighted", [False, True])
def test_r2_matches_sklearn(sk, seed, weighted):
    rng = np.random.default_rng(200 + seed)
    n, d = int(rng.integers(5, 300)), int(rng.integers(1, 4))
    w = rng.random(n) * 2 if weighted else None
    y = rng.normal(size=(n, d)) * rng.uniform(0.1, 100, d) + rng.uniform(-1e3, 1e3, d)
    p = y + rng.normal(size=(n, d)) * rng.uniform(0.1, 100, d)
    m = metrics.R2Score()
    for start in range(0, n, 32):
        m.update(y[start:start + 32], p[start:start + 32],
                 None if w is None else w[start:start + 32])
    ref = sk.r2_score(y, p, sample_weight=w)
    assert m.result() == pytest.approx(ref, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_sklearn(sk, seed):
    rng = np.random.default_rng(300 + seed)
    n, k = int(rng.integers(1, 200)), int(rng.integers(2, 7))
    y = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    ref = sk.confusion_matrix(y, probs.argmax(1), labels=range(k))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, probs, num_classes=k), ref)
    np.testing.assert_array_equal(metrics.confusion_matrix(np.eye(k)[y], probs), ref)


# -- inside fit and evaluate ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def breast_cancer_run():
    x, y = nn.datasets.breast_cancer()
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")],
                          seed=0)
    model.compile(loss="binary_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1", "auc"])
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, validation_split=0.2)
    return model, history, x, y


def test_breast_cancer_fit_logs_every_metric(breast_cancer_run):
    model, history, x, y = breast_cancer_run
    for key in ("accuracy", "precision", "recall", "f1", "auc"):
        for name in (key, "val_" + key):
            values = history.history[name]
            assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values), (name, values)
    assert history.history["val_auc"][-1] > 0.9
    # evaluate's numbers are the metric objects' on predict's output (the final weights).
    logs = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)
    column = y.reshape(-1, 1)
    for m in (metrics.Precision(), metrics.Recall(), metrics.F1Score(), metrics.AUC()):
        assert logs[m.name] == pytest.approx(_run(m, column, p), abs=1e-12), m.name
    assert logs["precision"] != logs["recall"]


def test_breast_cancer_metrics_match_sklearn(sk, breast_cancer_run):
    model, history, x, y = breast_cancer_run
    # The last epoch's validation numbers were computed with the final weights.
    cut = int(len(x) * 0.8)
    p_val = model.predict(x[cut:]).ravel()
    assert history.history["val_auc"][-1] == pytest.approx(
        sk.roc_auc_score(y[cut:], p_val), abs=1e-6)
    assert history.history["val_f1"][-1] == pytest.approx(
        sk.f1_score(y[cut:], (p_val > 0.5).astype(int), zero_division=0), abs=1e-6)

    logs = model.evaluate(x, y, return_dict=True)
    p = model.predict(x).ravel()
    hard = (p > 0.5).astype(int)
    assert logs["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-6)
    assert logs["precision"] == pytest.approx(sk.precision_score(y, hard), abs=1e-6)
    assert logs["recall"] == pytest.approx(sk.recall_score(y, hard), abs=1e-6)
    assert logs["f1"] == pytest.approx(sk.f1_score(y, hard), abs=1e-6)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p.reshape(-1, 1)),
                                  sk.confusion_matrix(y, hard))


def test_fit_with_softmax_and_r2_regression():
    # Without sklearn: the evaluated metrics equal the metric objects run on predict's output.
    x, y = nn.datasets.iris()
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")],
                          seed=1)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["f1", "auc", "precision"])
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    logs = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)
    assert logs["f1"] == pytest.approx(_run(metrics.F1Score(), y, p), abs=1e-12)
    assert logs["auc"] == pytest.approx(_run(metrics.AUC(), y, p), abs=1e-12)
    assert 0.5 < logs["auc"] <= 1.0

    rng = np.random.default_rng(0)
    xr = rng.normal(size=(200, 3))
    yr = xr @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(200, 1))
    reg = nn.Sequential([nn.Dense(1)], seed=0)
    reg.compile(loss="mse", optimizer=nn.Adam(0.05), metrics=["r2"])
    hist = reg.fit(xr, yr, epochs=30, batch_size=32, verbose=0)
    assert hist.history["r2"][-1] > 0.9
    pr = reg.predict(xr)
    ss_res = np.sum((yr - pr) ** 2)
    ss_tot = np.sum((yr - yr.mean()) ** 2)
    assert reg.evaluate(xr, yr, return_dict=True)["r2"] == pytest.approx(1 - ss_res / ss_tot,
                                                                          rel=1e-5)


# -- merging accumulators (what a distributed fit does with every rank's) ------------------------

@pytest.mark.parametrize("make, kind", [
    (metrics.SparseCategoricalAccuracy, "classes"), (metrics.BinaryAccuracy, "binary"),
    (metrics.MeanAbsoluteError, "regression"), (metrics.Precision, "classes"),
    (metrics.Recall, "binary"), (metrics.F1Score, "classes"), (metrics.AUC, "classes"),
    (metrics.AUC, "binary"), (metrics.R2Score, "regression"),
])
@pytest.mark.parametrize("weighted", [False, True])
def test_merged_states_equal_one_metric_fed_every_batch(make, kind, weighted):
    rng = np.random.default_rng(0)
    n = 60
    if kind == "classes":
        y, p = rng.integers(0, 3, n), rng.dirichlet(np.ones(3), n)
    elif kind == "binary":
        y, p = rng.integers(0, 2, (n, 1)).astype(float), rng.random((n, 1))
    else:
        y = rng.normal(size=(n, 2))
        p = y + rng.normal(scale=0.5, size=(n, 2))
    w = rng.uniform(0.1, 2.0, n) if weighted else None
    whole, parts = make(), [make(), make(), make()]
    # Two copies take the 6 batches in turn; the third sees none, like a rank's empty shard.
    for b, rows in enumerate(np.array_split(np.arange(n), 6)):
        wb = None if w is None else w[rows]
        whole.update(y[rows], p[rows], wb)
        parts[b % 2].update(y[rows], p[rows], wb)
    merged = make()
    for part in parts:
        merged.merge_state(part.state())
    assert merged.result() == pytest.approx(whole.result(), **APPROX)
