"""neuralnp.sklearn: the scikit-learn contract (check_estimator), scikit-learn's training rules
(alpha, the loss scale, stopping, early stopping), continuation, pickling and the error messages."""

import doctest
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_breast_cancer, load_iris, make_multilabel_classification,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import neuralnp as nn  # noqa: E402
from neuralnp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Most fits here are short on purpose; the tests that are about the warning ask for it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# -- the scikit-learn contract -----------------------------------------------------------------

# The float32 networks compute in float32, where one rounding is 6e-8 to 1.2e-7 relative; these
# checks ask for 1e-7. The float64 instances pass them all.
FLOAT32_WEIGHTS = ("float32: fitting with integer sample weights and fitting on the repeated "
                   "rows agree to about 4e-7 relative (the rows are summed in another order)")
FLOAT32_BLAS_ROWS = ("float32: OpenBLAS's sgemm rounds a row's product differently with the "
                     "number of rows and the row's position in the matrix (a single row, a "
                     "permutation), so a prediction can move by one rounding; passes or fails "
                     "with the data and the random weights")


def _expected_failures(estimator):
    if estimator.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data": FLOAT32_WEIGHTS,
                "check_methods_subset_invariance": FLOAT32_BLAS_ROWS,
                "check_methods_sample_order_invariance": FLOAT32_BLAS_ROWS}
    return {}


@parametrize_with_checks([MLPClassifier(), MLPRegressor(), MLPClassifier(dtype="float64"),
                          MLPRegressor(dtype="float64")],
                         expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _cancer(dtype=np.float64):
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X.astype(dtype), y, test_size=0.25,
                                                        stratify=y, random_state=0)
    return X_train, X_test, y_train, y_test


def _scaled_cancer(dtype=np.float64):
    X_train, X_test, y_train, y_test = _cancer(dtype)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def test_in_a_pipeline_with_a_scaler():
    X_train, X_test, y_train, y_test = _cancer()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,),
                                                         max_iter=50, random_state=0))
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.93 and pipe[-1].out_activation_ == "logistic"


def test_grid_search_with_two_processes():
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(MLPClassifier(learning_rate_init=0.01, max_iter=300, random_state=0),
                        {"hidden_layer_sizes": [(4,), (16,)]}, cv=3, n_jobs=2)
    grid.fit(StandardScaler().fit_transform(X), y)
    assert grid.best_params_["hidden_layer_sizes"] in [(4,), (16,)]
    assert grid.best_score_ > 0.85
    assert isinstance(grid.best_estimator_.model_, nn.Sequential)


def test_pickle_round_trip_predicts_identically_and_resumes_exactly():
    X_train, X_test, y_train, _ = _scaled_cancer()
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    clf.fit(X_train, y_train)
    copy = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))
    assert copy.get_params() == clf.get_params() and copy.loss_curve_ == clf.loss_curve_
    # The optimizer's moments and the shuffling generator came along: one more epoch agrees.
    clf.partial_fit(X_train, y_train)
    copy.partial_fit(X_train, y_train)
    assert np.array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))


def test_clone_copies_hyperparameters_not_the_fit():
    X_train, _, y_train, _ = _scaled_cancer()
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), dropout=0.1, optimizer="rmsprop",
                        class_weight="balanced", max_iter=5, random_state=3)
    clf.fit(X_train, y_train)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "classes_")
    with pytest.raises(NotFittedError):
        twin.predict(X_train)


def test_an_optimizer_object_is_copied_not_changed():
    X_train, _, y_train, _ = _scaled_cancer()
    adam = nn.optimizers.Adam(0.01)
    clf = MLPClassifier(hidden_layer_sizes=(8,), optimizer=adam, max_iter=3)
    clf.fit(X_train, y_train)
    assert clf.model_.optimizer is not adam and adam.iterations == 0 and adam.buffer is None
    assert clf.model_.optimizer.iterations > 0


# -- scikit-learn's training rules -------------------------------------------------------------

def _one_sgd_epoch(ours, theirs, X, y, sample_weight=None):
    """Both estimators take one full-batch plain-SGD epoch from the same weights."""
    settings = dict(solver="sgd", momentum=0.0, batch_size=len(X), shuffle=False, max_iter=1,
                    alpha=0.3, learning_rate_init=0.05, random_state=0, warm_start=True)
    ours.set_params(**settings, dtype="float64")
    theirs.set_params(**settings)
    theirs.fit(X, y)
    ours.fit(X, y)
    start = [w.copy() for w in theirs.coefs_], [b.copy() for b in theirs.intercepts_]
    for mine, w in zip(ours.coefs_ + ours.intercepts_, start[0] + start[1]):
        mine[...] = w
    theirs.fit(X, y, sample_weight=sample_weight)
    ours.fit(X, y, sample_weight=sample_weight)
    for mine, w in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, w, rtol=1e-9, atol=1e-12)
    return ours, theirs


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression",
                                  "regression-2-outputs", "weighted"])
def test_one_sgd_epoch_matches_scikit_learns_update(task):
    """alpha, the loss scale and sample weights mean what they mean in scikit-learn: from the
    same weights, one epoch of plain SGD lands on the same weights (float64)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    weights = None
    if task == "multilabel":
        X, y = make_multilabel_classification(n_samples=40, n_features=5, n_classes=3,
                                              random_state=0)
    elif task.startswith("regression"):
        y = X @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(40, 2))
        y = y if task.endswith("outputs") else y[:, 0]
    else:
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5) * (task == "multiclass")
        weights = rng.integers(0, 4, size=40) if task == "weighted" else None
    pair = ((MLPRegressor, sk_nn.MLPRegressor) if task.startswith("regression")
            else (MLPClassifier, sk_nn.MLPClassifier))
    ours, theirs = _one_sgd_epoch(pair[0](hidden_layer_sizes=(7, 3)),
                                  pair[1](hidden_layer_sizes=(7, 3)), X, y, weights)
    if task != "regression-2-outputs":  # there scikit-learn reports the outputs' mean
        assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=1e-9)


def test_training_stops_when_the_loss_stops_improving_by_tol():
    X_train, _, y_train, _ = _scaled_cancer()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16,), tol=1e-2, n_iter_no_change=3,
                            random_state=0).fit(X_train, y_train)
    curve = clf.loss_curve_
    assert len(curve) == clf.n_iter_ < 200 and clf.best_loss_ == min(curve)
    # Each of the last 4 epochs (n_iter_no_change + 1) missed the best before it by tol.
    assert all(curve[i] > min(curve[:i]) - 1e-2 for i in range(len(curve) - 4, len(curve)))
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=3).fit(X_train, y_train)


def test_early_stopping_restores_the_best_epochs_weights():
    X_train, _, y_train, _ = _scaled_cancer()
    settings = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, early_stopping=True,
                    n_iter_no_change=4, random_state=0)
    clf = MLPClassifier(**settings).fit(X_train, y_train)
    scores = clf.validation_scores_
    best = int(np.argmax(scores))
    assert clf.n_iter_ == len(scores) == best + 1 + 5 and clf.best_loss_ is None
    assert clf.best_validation_score_ == scores[best]
    # The same run cut at the best epoch (same split, same shuffles) ends on the same weights.
    at_best = MLPClassifier(**settings, max_iter=best + 1).fit(X_train, y_train)
    for got, expected in zip(clf.coefs_ + clf.intercepts_, at_best.coefs_ + at_best.intercepts_):
        assert np.array_equal(got, expected)
    # ...and scoring the held-out part again gives the best score, not the last one.
    _, X_val, _, y_val = train_test_split(X_train, y_train, test_size=0.1, stratify=y_train,
                                          random_state=check_random_state(0))
    assert clf.score(X_val, y_val) == scores[best]


def test_early_stopping_regressor_scores_r2():
    X, y = _regression_data()
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, early_stopping=True,
                       max_iter=400, random_state=0).fit(X, y)
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.1,
                                          random_state=check_random_state(0))
    assert reg.score(X_val, y_val) == pytest.approx(reg.best_validation_score_, rel=1e-6)
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.7


def _regression_data(n=300, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], X[:, 3] - X[:, 0]])[:, :outputs]
    return X, (y[:, 0] if outputs == 1 else y)


def test_sgd_learning_rate_schedules():
    X, y = _regression_data()
    inv = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                       learning_rate_init=0.05, power_t=0.5, max_iter=5).fit(X, y)
    assert inv.t_ == 5 * len(X)
    lr = inv.model_.optimizer.learning_rate / inv._lr_scale
    assert lr == pytest.approx(0.05 / (inv.t_ + 1) ** 0.5)
    # tol=10: no epoch improves enough. Every third epoch without improvement divides the rate
    # by 5, until it is below 1e-6: then training stops, after the same epochs as scikit-learn.
    settings = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive", tol=10.0,
                    n_iter_no_change=2, random_state=0)
    adaptive = MLPRegressor(**settings).fit(X, y)
    lr = adaptive.model_.optimizer.learning_rate / adaptive._lr_scale
    assert lr == pytest.approx(1e-3 / 5 ** 5) and adaptive.n_iter_ == 1 + 3 * 6
    assert sk_nn.MLPRegressor(**settings).fit(X, y).n_iter_ == adaptive.n_iter_
    settings["solver"] = "adam"  # which ignores the schedule, as in scikit-learn
    assert MLPRegressor(**settings).fit(X, y).n_iter_ == 4
    assert sk_nn.MLPRegressor(**settings).fit(X, y).n_iter_ == 4


# -- continuing training -----------------------------------------------------------------------

def test_partial_fit_epochs_equal_one_fit():
    X_train, X_test, y_train, _ = _scaled_cancer()
    whole = MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0,
                          tol=0, n_iter_no_change=100).fit(X_train, y_train)
    step = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(4):
        step.partial_fit(X_train, y_train, classes=[0, 1])
    assert np.array_equal(step.predict_proba(X_test), whole.predict_proba(X_test))
    assert step.loss_curve_ == whole.loss_curve_ and step.n_iter_ == 1 and step.t_ == whole.t_


def test_partial_fit_needs_classes_first_and_keeps_them():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # class 2 not seen yet
    assert clf.classes_.tolist() == [0, 1, 2] and clf.model_.output_shape == (3,)
    clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="differs from the classes of the first"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_continues_weights_and_optimizer_state():
    X, y = _regression_data()
    settings = dict(hidden_layer_sizes=(16,), tol=0, n_iter_no_change=100, random_state=0)
    whole = MLPRegressor(**settings, max_iter=10).fit(X, y)
    warm = MLPRegressor(**settings, max_iter=5, warm_start=True).fit(X, y).fit(X, y)
    cold = MLPRegressor(**settings, max_iter=5).fit(X, y).fit(X, y)
    assert np.array_equal(warm.predict(X), whole.predict(X))
    assert warm.loss_curve_ == whole.loss_curve_ and warm.n_iter_ == 5
    assert len(cold.loss_curve_) == 5 and not np.array_equal(cold.predict(X), whole.predict(X))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        warm.set_params(hidden_layer_sizes=(8,)).fit(X, y)


def test_warm_start_needs_the_same_classes():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, warm_start=True)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])


# -- targets, weights and dtypes ---------------------------------------------------------------

def test_string_labels_binary_and_multiclass():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    X = StandardScaler().fit_transform(X)
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    clf.fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.9
    assert clf.predict_proba(X).shape == (150, 3) and clf.out_activation_ == "softmax"
    binary = np.where(y == 0, "yes", "no")
    clf.fit(X, binary)
    assert clf.classes_.tolist() == ["no", "yes"] and clf.model_.output_shape == (1,)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.predict(X), clf.classes_[np.argmax(proba, axis=1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-6)


def test_multilabel_and_multioutput():
    X, Y = make_multilabel_classification(n_samples=120, n_features=6, n_classes=4,
                                          random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == (120, 4) and set(np.unique(clf.predict(X))) <= {0, 1}
    assert clf.predict_proba(X).shape == (120, 4) and clf.out_activation_ == "logistic"
    X, Y = _regression_data(outputs=2)
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    assert reg.fit(X, Y).predict(X).shape == (300, 2) and reg.score(X, Y) > 0.9


def test_class_weight_dict_equals_sample_weight_and_balanced_helps_the_rare_class():
    X_train, X_test, y_train, y_test = _scaled_cancer()
    settings = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    by_class = MLPClassifier(**settings, class_weight={0: 3.0}).fit(X_train, y_train)
    by_sample = MLPClassifier(**settings).fit(X_train, y_train,
                                              sample_weight=np.where(y_train == 0, 3.0, 1.0))
    assert np.array_equal(by_class.predict_proba(X_test), by_sample.predict_proba(X_test))
    # Keep 10 of the 212 malignant tumours: unweighted, the network mostly says benign.
    rare = np.flatnonzero(y_train == 0)[:10]
    keep = np.concatenate([rare, np.flatnonzero(y_train == 1)])
    recall = []
    for weight in (None, "balanced"):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, learning_rate_init=3e-3,
                            class_weight=weight, random_state=0)
        clf.fit(X_train[keep], y_train[keep])
        recall.append(np.mean(clf.predict(X_test[y_test == 0]) == 0))
    assert recall[1] > recall[0]


def test_float32_inputs_are_used_without_a_copy(monkeypatch):
    X_train, X_test, y_train, _ = _scaled_cancer(np.float32)
    X_train = np.ascontiguousarray(X_train, dtype=np.float32)
    seen = []
    fit = nn.Sequential.fit
    monkeypatch.setattr(nn.Sequential, "fit", lambda self, x, *a, **k: (seen.append(x),
                                                                        fit(self, x, *a, **k))[1])
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5)
    clf.fit(X_train, y_train)
    assert seen[0] is X_train and clf.model_.dtype == np.float32
    assert clf.predict_proba(X_test.astype(np.float32)).dtype == np.float32
    # float64 in: the float32 network, float64 probabilities back, as scikit-learn gives them.
    assert clf.predict_proba(X_test.astype(np.float64)).dtype == np.float64
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, dtype="float64")
    reg.fit(X_train, y_train.astype(float))
    assert reg.model_.dtype == np.float64 and reg.predict(X_test).dtype == np.float32


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3)
    clf.fit(X, y)
    assert list(clf.feature_names_in_) == list(X.columns) and clf.n_features_in_ == 4
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X.to_numpy())
    assert isinstance(X, pd.DataFrame)


def test_fitted_attributes_and_extras():
    X_train, X_test, y_train, _ = _scaled_cancer()
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), batch_norm=True, dropout=0.2,
                        solver="nadam", learning_rate_init=0.01, max_iter=30, random_state=0)
    clf.fit(X_train, y_train)
    assert [w.shape for w in clf.coefs_] == [(30, 16), (16, 8), (8, 1)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (1,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 1 and clf.n_features_in_ == 30
    kinds = [type(layer).__name__ for layer in clf.model_.layers]
    assert kinds.count("BatchNormalization") == 2 and kinds.count("Dropout") == 2
    assert isinstance(clf.model_.optimizer, nn.optimizers.Nadam)
    assert clf.score(X_train, y_train) > 0.9
    assert np.array_equal(clf.predict_proba(X_test), clf.predict_proba(X_test))  # inference


def test_verbose_prints_one_line_per_epoch(capsys):
    X_train, _, y_train, _ = _scaled_cancer()
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=True).fit(X_train, y_train)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Epoch 1/3") and "loss" in lines[0]


# -- documentation and errors ------------------------------------------------------------------

def test_docstring_examples_run():
    import neuralnp.sklearn
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the examples converge
        assert doctest.testmod(neuralnp.sklearn).failed == 0


@pytest.mark.parametrize("params, message", [
    ({"solver": "lbfgs"}, "solver='lbfgs' is not supported.*solver='adam'"),
    ({"solver": "newton"}, "solver='newton' is unknown; use one of"),
    ({"optimizer": "adamax"}, "optimizer='adamax' is unknown"),
    ({"optimizer": 3}, "optimizer must be None, an optimizer name or"),
    ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes must be a positive integer"),
    ({"hidden_layer_sizes": "big"}, "hidden_layer_sizes must be a positive integer"),
    ({"activation": "softmax"}, "activation='softmax' is unknown.*'logistic'"),
    ({"alpha": -1.0}, "alpha must be a number in \\[0, inf\\]"),
    ({"batch_size": 0}, "batch_size must be 'auto' or an integer >= 1"),
    ({"learning_rate": "cosine"}, "learning_rate must be one of constant, invscaling"),
    ({"learning_rate_init": 0}, "learning_rate_init must be a number in \\(0, inf\\]"),
    ({"momentum": 1.5}, "momentum must be a number in \\[0, 1\\)"),
    ({"early_stopping": True, "validation_fraction": 1.0}, "validation_fraction must be"),
    ({"max_iter": 0}, "max_iter must be an integer >= 1"),
    ({"n_iter_no_change": 0}, "n_iter_no_change must be an integer >= 1 or numpy.inf"),
    ({"dropout": 1.0}, "dropout must be a number in \\[0, 1\\)"),
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ({"class_weight": "even"}, "class_weight must be None, 'balanced' or a dict"),
    ({"shuffle": "yes"}, "shuffle must be True or False"),
])
def test_bad_hyperparameters_fail_at_fit_with_a_clear_message(params, message):
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(**params)  # scikit-learn's contract: __init__ accepts anything
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)


def test_other_fit_errors():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="Poisson loss is not in neuralnp"):
        MLPRegressor(loss="poisson").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="zero for every training sample"):
        MLPClassifier(class_weight={0: 0, 1: 0, 2: 0}).fit(X, y)
    with pytest.raises(ValueError, match="MultiOutputClassifier"):
        MLPClassifier().fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="'balanced' needs the whole data"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.warns(UserWarning, match="batch_size=500 is larger than the 150"):
        MLPClassifier(batch_size=500, max_iter=1).fit(X, y)


def test_a_refit_that_fails_its_checks_leaves_the_fitted_estimator_as_it_was():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="class_weight must be"):
        clf.set_params(class_weight="even").fit(X[y < 2], y[y < 2])
    assert clf.classes_.tolist() == [0, 1, 2] and np.array_equal(clf.predict_proba(X), before)


def test_without_scikit_learn_the_import_says_what_to_install(monkeypatch):
    import importlib
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.base", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "neuralnp.sklearn")
    with pytest.raises(ImportError, match='pip install "neuralnp\\[sklearn\\]"'):
        importlib.import_module("neuralnp.sklearn")
