"""scikit-learn estimators that train with neuralnp: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's hyperparameters with its defaults and follow its training rules (the
L2 penalty ``alpha``, the stop on ``tol`` and ``n_iter_no_change``, early stopping on a held-out
fraction scored by accuracy or R², the ``sgd`` learning-rate schedules), so they drop into a
``Pipeline``, ``GridSearchCV`` or code written for ``sklearn.neural_network``. The network is a
:class:`neuralnp.Sequential`, kept as ``model_`` after ``fit``, trained in float32 by default.

>>> from sklearn.datasets import load_iris
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from neuralnp.sklearn import MLPClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), tol=1e-3,
...                                                     learning_rate_init=0.01, random_state=0))
>>> clf.fit(X, y).predict_proba(X[:2]).shape
(2, 3)

Where they differ from scikit-learn, on purpose:

- ``solver="lbfgs"`` is not offered (neuralnp trains in mini-batches); every neuralnp optimizer
  is (``solver="rmsprop"``, ``"adagrad"``, ``"adamw"``, ``"nadam"``), or ``optimizer=`` an
  optimizer object, used as given.
- ``warm_start`` and repeated ``partial_fit`` continue the optimizer's state (Adam's moments and
  step count) instead of starting a new optimizer at each ``fit``.
- The penalty of a smaller last batch is that of a full one (scikit-learn divides it by each
  batch's own size), and Adam adds ``epsilon`` after the bias correction, as PyTorch does.
- With ``sgd`` and a changing learning rate (``invscaling``, ``adaptive``) the momentum buffer
  holds gradients, not steps, so a new rate applies at once to the whole momentum (PyTorch's SGD).
- scikit-learn's multi-output regression reports the mean of its outputs' squared errors while
  its gradient follows their sum; ``loss_curve_`` here reports the objective actually minimised.
"""

import copy
import importlib.util
import math
import numbers
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError:
    raise ImportError('neuralnp.sklearn needs scikit-learn (1.6 or newer): '
                      'pip install "neuralnp[sklearn]"') from None

from . import optimizers
from ._registry import serialize
from .backend import resolve_dtype
from .callbacks import Callback, RichProgress
from .layers import Activation, BatchNormalization, Dense, Dropout
from .layers import activations as _activations
from .initializers import RandomUniform
from .model import Sequential
from .regularizers import L2
from ._checks import is_int, is_real

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names; every neuralnp activation but softmax is accepted too.
_SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh",
                        "relu": "relu"}
_OUT_ACTIVATION_NAMES = {"softmax": "softmax", "sigmoid": "logistic", None: "identity"}
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_PREDICT_BATCH = 4096


def _check_real(name, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float inside the given interval, or a ValueError naming the interval."""
    ok = is_real(value) and not math.isnan(value)
    if ok:
        value = float(value)
        ok = ((low is None or (value > low if low_open else value >= low))
              and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be a number in {'(' if low_open else '['}{lo}, {hi}"
                         f"{')' if high_open else ']'}, got {value!r}")
    return value


def _check_int(name, value, what="an integer >= 1"):
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _model_to_bytes(model):
    """The model as the bytes of a saved ``.zip`` (weights, optimizer state and random state):
    the flat buffer's views would not survive pickle itself, and loading never unpickles."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.zip"
        model.save(path)
        return path.read_bytes()


def _model_from_bytes(data):
    from .loading import load_model
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.zip"
        path.write_bytes(data)
        return load_model(path)


def _r2(y, pred, weights):
    """R² averaged uniformly over the outputs, as ``sklearn.metrics.r2_score`` computes it
    (a constant target scores 1 when predicted exactly, else 0)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    pred = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w[:, None]
    mean = np.sum(w * y, axis=0) / np.sum(w)
    residual = np.sum(w * (y - pred) ** 2, axis=0)
    total = np.sum(w * (y - mean) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1.0 - residual / total, np.where(residual == 0, 1.0, 0.0))
    return float(np.mean(scores))


class _ScikitLearnRule(Callback):
    """scikit-learn's end-of-epoch bookkeeping, run by ``Sequential.fit`` after every epoch: the
    loss curve on scikit-learn's scale, the validation score, the count of epochs without
    improvement that ends training, and the ``sgd`` learning-rate schedules."""

    def __init__(self, estimator, n_train, validation, schedule, incremental):
        self.estimator = estimator
        self.n_train = n_train
        self.validation = validation
        self.schedule = schedule
        self.incremental = incremental
        self.converged = False
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        est, model = self.estimator, self.estimator.model_
        loss = logs["loss"] * est._loss_scale
        # The progress display runs after this callback: it shows scikit-learn's number too.
        logs["loss"] = loss
        est.n_iter_ += 1
        est.t_ += self.n_train
        est.loss_ = loss
        est.loss_curve_.append(loss)
        if self.validation is not None:
            score = est._validation_score(*self.validation)
            logs["val_score"] = score
            est.validation_scores_.append(score)
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_weights = model.snapshot()
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)

        optimizer = model.optimizer
        if self.schedule == "invscaling":
            optimizer.learning_rate = (est._lr_scale * est.learning_rate_init
                                       / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            message = (f"{what} did not improve more than tol={est.tol:g} for "
                       f"{est.n_iter_no_change} consecutive epochs.")
            if self.schedule == "adaptive" and optimizer.learning_rate / est._lr_scale > 1e-6:
                optimizer.learning_rate /= 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"{message} Learning rate now "
                          f"{optimizer.learning_rate / est._lr_scale:g}.")
            else:
                self.converged = True
                model.stop_training = True
                if est.verbose and not self.incremental:
                    print(f"{message} Stopping.")


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: hyperparameters, the network, training."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0,
                 batch_norm=False, optimizer=None, device="cpu", dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.optimizer = optimizer
        self.device = device
        self.dtype = dtype

    # -- hyperparameters ------------------------------------------------------------------------

    def _hyperparameters(self):
        """Check every hyperparameter (scikit-learn checks them at fit, not in __init__) and
        return the ones that need resolving: hidden sizes, activation name, optimizer name."""
        sizes = self.hidden_layer_sizes
        if is_int(sizes):
            sizes = [sizes]
        try:
            sizes = [_check_int("hidden_layer_sizes entries", s) for s in sizes]
        except (TypeError, ValueError):
            raise ValueError(f"hidden_layer_sizes must be a positive integer or a sequence of "
                             f"them, one per hidden layer, e.g. (100,) or (64, 32); got "
                             f"{self.hidden_layer_sizes!r}") from None

        act = self.activation.lower() if isinstance(self.activation, str) else None
        act = _SKLEARN_ACTIVATIONS.get(act, act)
        if act not in _activations.REGISTRY or act == "softmax":
            ours = sorted(set(_activations.REGISTRY) - {"softmax"} - set(_SKLEARN_ACTIVATIONS))
            raise ValueError(f"activation={self.activation!r} is unknown; use one of "
                             f"scikit-learn's 'identity', 'logistic', 'tanh', 'relu' or a "
                             f"neuralnp activation: {', '.join(ours)}")

        solver = self.solver
        if isinstance(solver, str) and solver.lower() == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported: neuralnp trains in mini-batches. "
                             "Use solver='adam' (the default) or 'sgd', or scikit-learn's own "
                             "sklearn.neural_network estimators for L-BFGS")
        if not (isinstance(solver, str) and solver.lower() in optimizers.REGISTRY):
            raise ValueError(f"solver={solver!r} is unknown; use one of "
                             f"{', '.join(sorted(optimizers.REGISTRY))}")
        name = solver.lower()
        if self.optimizer is not None:
            if isinstance(self.optimizer, str):
                if self.optimizer.lower() not in optimizers.REGISTRY:
                    raise ValueError(f"optimizer={self.optimizer!r} is unknown; use one of "
                                     f"{', '.join(sorted(optimizers.REGISTRY))} or an "
                                     "optimizer object such as neuralnp.optimizers.Adam(1e-3)")
                name = self.optimizer.lower()
            elif isinstance(self.optimizer, optimizers.Optimizer):
                name = None  # an object: used as given
            else:
                raise ValueError(f"optimizer must be None, an optimizer name or a "
                                 f"neuralnp.optimizers object, got {self.optimizer!r}")

        _check_real("alpha", self.alpha, 0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int("batch_size", self.batch_size, "'auto' or an integer >= 1")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {', '.join(_LEARNING_RATES)} (the "
                             f"schedule for solver='sgd'), got {self.learning_rate!r}; the "
                             "initial rate is learning_rate_init")
        _check_real("learning_rate_init", self.learning_rate_init, 0, low_open=True)
        _check_real("power_t", self.power_t, 0)
        _check_int("max_iter", self.max_iter)
        _check_bool("shuffle", self.shuffle)
        _check_real("tol", self.tol, 0)
        _check_bool("warm_start", self.warm_start)
        _check_real("momentum", self.momentum, 0, 1, high_open=True)
        _check_bool("nesterovs_momentum", self.nesterovs_momentum)
        _check_bool("early_stopping", self.early_stopping)
        if self.early_stopping:
            _check_real("validation_fraction", self.validation_fraction, 0, 1, low_open=True,
                        high_open=True)
        _check_real("beta_1", self.beta_1, 0, 1, high_open=True)
        _check_real("beta_2", self.beta_2, 0, 1, high_open=True)
        _check_real("epsilon", self.epsilon, 0, low_open=True)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == math.inf):
            _check_int("n_iter_no_change", self.n_iter_no_change,
                       "an integer >= 1 or numpy.inf")
        _check_real("dropout", self.dropout, 0, 1, high_open=True)
        _check_bool("batch_norm", self.batch_norm)
        try:
            dtype = resolve_dtype(self.dtype)
        except (TypeError, ValueError):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}") from None
        return sizes, act, name, dtype

    # -- the network ----------------------------------------------------------------------------

    def _build_model(self, sizes, act, n_features, n_outputs, out_act, dtype):
        """Dense layers initialised as scikit-learn does (weights and biases uniform in
        ``±sqrt(6 / (fan_in + fan_out))``, 2 instead of 6 for logistic), each followed by
        batch normalisation and dropout when asked."""
        rs = self.random_state
        if rs is None or isinstance(rs, numbers.Integral):
            seed = None if rs is None else int(rs)
        else:  # a RandomState: draw the generator's seed from it, as scikit-learn draws
            seed = int(check_random_state(rs).randint(np.iinfo(np.int32).max))
        factor = 2.0 if act == "sigmoid" else 6.0
        layers, fan_in = [], n_features
        for units in sizes:
            init = RandomUniform(-math.sqrt(factor / (fan_in + units)),
                                 math.sqrt(factor / (fan_in + units)))
            if self.batch_norm:
                # Normalise before the activation; the bias stays so that coefs_ and
                # intercepts_ keep one entry per layer, as in scikit-learn. Momentum 0.9
                # (PyTorch's 0.1): with a few batches per epoch, Keras's 0.99 leaves the
                # running statistics far from the data's for dozens of epochs.
                layers += [Dense(units, kernel_initializer=init, bias_initializer=init),
                           BatchNormalization(momentum=0.9), Activation(act)]
            else:
                layers.append(Dense(units, activation=act, kernel_initializer=init,
                                    bias_initializer=init))
            if self.dropout:
                layers.append(Dropout(self.dropout))
            fan_in = units
        bound = math.sqrt(factor / (fan_in + n_outputs))
        layers.append(Dense(n_outputs, activation=out_act,
                            kernel_initializer=RandomUniform(-bound, bound),
                            bias_initializer=RandomUniform(-bound, bound)))
        return Sequential(layers, seed=seed, dtype=dtype, device=self.device)

    def _make_optimizer(self, name, previous):
        """A new optimizer from the hyperparameters, scaled to the model's loss (see
        ``_loss_scale``); it takes over ``previous``'s state (moments, step count) when it has
        the same kind of state, so a warm start continues where the last fit stopped."""
        if name is None:
            # A fresh copy: the parameter itself must stay as the user set it.
            try:
                optimizer = optimizers.get(serialize(self.optimizer))
            except ValueError:  # a plain-function learning rate has no config
                optimizer = copy.deepcopy(self.optimizer)
        else:
            lr, eps = self.learning_rate_init, self.epsilon / self._loss_scale
            if name == "sgd":
                optimizer = optimizers.SGD(lr * self._lr_scale, momentum=self.momentum,
                                           nesterov=self.nesterovs_momentum and self.momentum > 0)
            elif name in ("adam", "adamw", "nadam"):
                optimizer = optimizers.REGISTRY[name](lr, beta_1=self.beta_1, beta_2=self.beta_2,
                                                      epsilon=eps)
            else:
                optimizer = optimizers.REGISTRY[name](lr, epsilon=eps)
        if previous is not None and type(previous) is type(optimizer) \
                and set(previous.state) == set(optimizer.slots):
            optimizer.load_state_dict(previous.state_dict())
        return optimizer

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train on ``X`` (n_samples, n_features) and ``y``; returns ``self``.

        A new network each time, unless ``warm_start=True`` and one was fitted: then training
        continues from its weights and optimizer state.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        sizes, act, name, dtype = self._hyperparameters()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True: it sees one "
                             "batch of data at a time; set early_stopping=False")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y, sample_weight, n_outputs, out_act, target_attributes = self._validate_fit_data(
            X, y, sample_weight, dtype, first_pass, incremental, classes)
        architecture = {"n_features_in_": X.shape[1], "hidden_layer_sizes": tuple(sizes),
                        "activation": act, "dropout": float(self.dropout),
                        "batch_norm": bool(self.batch_norm), "dtype": dtype.name,
                        "outputs": n_outputs, "out_activation_": out_act}
        if not first_pass:
            changed = [k for k, v in architecture.items() if self._fitted_architecture[k] != v]
            if changed:
                how = "partial_fit" if incremental else "warm_start=True"
                raise ValueError(f"{how} continues the fitted network, but {', '.join(changed)} "
                                 f"differ from the last fit ({self._fitted_architecture}); fit "
                                 "again with warm_start=False to train a new network")
        validation = None
        if self.early_stopping:
            X, X_val, y, y_val, sample_weight, w_val = self._split(X, y, sample_weight)
            validation = (X_val, y_val, w_val)
        batch_size = self._batch_size(X.shape[0])
        weights, mean_weight = self._normalized_weights(sample_weight)
        # Everything is checked: only now does the estimator change.
        if first_pass:
            for key, value in target_attributes.items():
                setattr(self, key, value)
            self._start(sizes, act, X.shape[1], n_outputs, out_act, dtype)
            self._fitted_architecture = architecture
        self._prepare_model(name, batch_size, mean_weight, incremental)

        schedule = self.learning_rate if name == "sgd" else "constant"
        rule = _ScikitLearnRule(self, X.shape[0], validation, schedule, incremental)
        model = self.model_
        if validation is not None and np.isfinite(self.best_validation_score_):
            rule.best_weights = model.snapshot()  # the best so far: this warm start's start
        callbacks, verbose = [rule], 0
        if self.verbose:
            if sys.stdout.isatty() and importlib.util.find_spec("rich") is not None:
                callbacks.append(RichProgress())  # a live bar in a terminal
            else:
                verbose = 1  # one line per epoch: logs and notebooks
        self.n_iter_ = 0
        model.fit(X, y, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                  verbose=verbose, callbacks=callbacks, shuffle=self.shuffle,
                  sample_weight=weights)
        if validation is not None and rule.best_weights is not None:
            model.restore(rule.best_weights)
        if not (incremental or rule.converged) and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet. Raise max_iter, or scale "
                          "the inputs (StandardScaler) so that it converges sooner",
                          ConvergenceWarning)
        return self

    def _start(self, sizes, act, n_features, n_outputs, out_act, dtype):
        """A new network, and the fitted attributes of one that has not trained yet."""
        self.model_ = self._build_model(sizes, act, n_features, n_outputs, out_act, dtype)
        self.n_layers_ = len(sizes) + 2
        self.n_outputs_ = n_outputs
        self.out_activation_ = _OUT_ACTIVATION_NAMES[out_act]
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.validation_scores_ = self.best_validation_score_ = self.best_loss_ = None
        # scikit-learn minimises the mean log-loss summed over outputs, or half the squared
        # error summed over outputs; neuralnp's losses average over outputs (and MSE has no
        # half), so the model's loss is scikit-learn's divided by this.
        self._loss_scale = self._objective_scale(n_outputs)

    def _prepare_model(self, name, batch_size, mean_weight, incremental):
        """Set the penalty for this fit's batch size and weights, and compile the model with
        the optimizer this fit uses."""
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        elif not self.early_stopping and self.best_loss_ is None:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_, default=np.inf)
        # A new rate applies to SGD's step directly but cancels out of Adam-like updates,
        # which divide by the gradient's own size; those take a scaled epsilon instead.
        self._lr_scale = self._loss_scale if name == "sgd" else 1.0
        # scikit-learn adds alpha/2 · ||W||² / (batch weight) to each batch's loss, on every
        # kernel but no bias; on the model's scale that is neuralnp's L2 with this factor.
        l2 = self.alpha / (2.0 * batch_size * mean_weight * self._loss_scale)
        model = self.model_
        for layer in model.layers:
            if isinstance(layer, Dense):
                layer.kernel_regularizer = L2(l2) if l2 > 0 else None
        if incremental and model.optimizer is not None:
            optimizer = model.optimizer  # partial_fit keeps the optimizer, as scikit-learn does
        else:
            optimizer = self._make_optimizer(name, model.optimizer)
        model.compile(loss=self._model_loss(), optimizer=optimizer)

    def _batch_size(self, n):
        if isinstance(self.batch_size, str):
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} training "
                          f"samples; using {n}. Pass a smaller batch_size to silence this")
        return min(self.batch_size, n)

    def _split(self, X, y, sample_weight):
        """scikit-learn's early-stopping split: ``validation_fraction`` held out at random,
        stratified for single-output classification."""
        stratify = self._stratify_labels(y)
        arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(*arrays, random_state=check_random_state(self.random_state),
                                 test_size=self.validation_fraction, stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves "
                             f"{parts[1].shape[0]} sample for early stopping; raise "
                             "validation_fraction or pass more data")
        if sample_weight is None:
            return (*parts, None, None)
        return tuple(parts)

    def _normalized_weights(self, sample_weight):
        """Weights with mean 1 (None when all equal, the faster unweighted path) and their
        mean: scikit-learn divides each batch's loss and penalty by the batch's total weight,
        neuralnp's loss by the batch size."""
        if sample_weight is None:
            return None, 1.0
        mean = float(np.mean(sample_weight))
        if not mean > 0:
            raise ValueError("sample_weight (times class_weight) is zero for every training "
                             "sample; give some samples a positive weight")
        if np.all(sample_weight == sample_weight[0]):
            return None, mean
        return sample_weight / mean, mean

    def _check_sample_weight(self, sample_weight, X):
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)

    # -- prediction -----------------------------------------------------------------------------

    def _forward(self, X):
        """The network's outputs for ``X`` in ``X``'s float dtype (float64 for integers), as
        scikit-learn returns them, whatever dtype the network computes in."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), order="C")
        out = self.model_.predict(X.astype(self.model_.dtype, copy=False),
                                  batch_size=_PREDICT_BATCH)
        return out.astype(X.dtype, copy=False)

    @property
    def coefs_(self):
        """The weight matrices, ``coefs_[i]`` of shape (units of layer i, units of layer i+1),
        as scikit-learn names them (views of ``model_``'s weights)."""
        check_is_fitted(self)
        return [layer.kernel.value for layer in self.model_.layers if isinstance(layer, Dense)]

    @property
    def intercepts_(self):
        """The bias vectors, ``intercepts_[i]`` of shape (units of layer i+1,)."""
        check_is_fitted(self)
        return [layer.bias.value for layer in self.model_.layers if isinstance(layer, Dense)]

    # -- pickling -------------------------------------------------------------------------------

    def __getstate__(self):
        state = dict(super().__getstate__())
        if isinstance(state.get("model_"), Sequential):
            state["model_"] = _model_to_bytes(state["model_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            state = {**state, "model_": _model_from_bytes(state["model_"])}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's interface, trained by neuralnp.

    ``X`` is (n_samples, n_features); ``y`` holds labels of any type (n_samples,), or a 0/1
    indicator matrix (n_samples, n_labels) for multi-label. The output is softmax with
    cross-entropy for more than two classes, one sigmoid unit with binary cross-entropy for two,
    one sigmoid per label for multi-label. Hyperparameters are scikit-learn's
    (``sklearn.neural_network.MLPClassifier``, with the same defaults; see this module's
    docstring for where the training differs), plus:

    - ``dropout``: the rate of a Dropout layer after each hidden layer (0: none);
    - ``batch_norm``: batch normalisation between each hidden layer and its activation;
    - ``optimizer``: a neuralnp optimizer name or object, in place of ``solver``;
    - ``class_weight``: ``{label: weight}`` or ``"balanced"``, multiplying each sample's loss;
    - ``device`` (``"cpu"``) and ``dtype`` (``"float32"`` or ``"float64"``, the network's).

    Fitted attributes: ``classes_``, ``model_`` (the :class:`neuralnp.Sequential`),
    ``loss_curve_``, ``loss_``, ``best_loss_``, ``validation_scores_`` and
    ``best_validation_score_`` (with early stopping, accuracy on the held-out part),
    ``n_iter_``, ``t_``, ``n_features_in_``, ``feature_names_in_`` (for a DataFrame),
    ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``coefs_``, ``intercepts_``.

    >>> import numpy as np
    >>> from neuralnp.sklearn import MLPClassifier
    >>> X = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]] * 25)
    >>> y = np.array(["no", "yes", "yes", "no"] * 25)
    >>> clf = MLPClassifier(hidden_layer_sizes=(8,), activation="tanh",
    ...                     learning_rate_init=0.05, random_state=0).fit(X, y)
    >>> clf.predict([[0., 1.], [1., 1.]]).tolist()
    ['yes', 'no']
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0,
                 batch_norm=False, optimizer=None, class_weight=None, device="cpu",
                 dtype="float32"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            dropout=dropout, batch_norm=batch_norm, optimizer=optimizer, device=device,
            dtype=dtype)
        self.class_weight = class_weight

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing from the current network; ``classes`` (every
        label ``y`` may ever hold) is required on the first call. Returns ``self``."""
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit: every "
                             "label the data may hold, e.g. classes=np.unique(y_all)")
        if not first and classes is not None and not np.array_equal(
                self.classes_, unique_labels(classes)):
            raise ValueError(f"classes={classes!r} differs from the classes of the first "
                             f"partial_fit call, {self.classes_!r}; pass the same ones (or none)")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _validate_fit_data(self, X, y, sample_weight, dtype, first_pass, incremental, classes):
        X, y = validate_data(self, X, y, reset=first_pass, dtype=dtype, order="C",
                             multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError("y has several columns of class labels (multiclass-multioutput); "
                             "MLPClassifier takes one label per sample or a 0/1 indicator "
                             "matrix (multi-label). Wrap it in "
                             "sklearn.multioutput.MultiOutputClassifier")
        multilabel = kind == "multilabel-indicator"
        if first_pass:
            if multilabel:
                classes = np.arange(y.shape[1])
            else:
                classes = unique_labels(classes if incremental else y)
        else:
            classes = self.classes_
            if multilabel != self._multilabel:
                raise ValueError("y is " + ("a multi-label indicator matrix" if multilabel else
                                            "one label per sample") + " but the network was "
                                 "fitted on the other kind; fit again with warm_start=False")
        if multilabel:
            if y.shape[1] != len(classes):
                raise ValueError(f"y has {y.shape[1]} label columns, the network was fitted "
                                 f"on {len(classes)}")
            targets = y.astype(dtype, copy=False)
            n_outputs, out_act = len(classes), "sigmoid"
        else:
            seen = unique_labels(y)
            unknown = np.setdiff1d(seen, classes)
            if self.warm_start and not incremental and not first_pass \
                    and not np.array_equal(seen, classes):
                raise ValueError(f"warm_start can only be used where y has the same classes "
                                 f"as in the previous fit: {classes!r}, y has {seen!r}; "
                                 "set warm_start=False to train a new network")
            if len(unknown):
                raise ValueError(f"y has classes {unknown!r} not in classes_ {classes!r}; pass "
                                 "every class in partial_fit's classes= on the first call")
            index = np.searchsorted(classes, y)
            if len(classes) > 2:
                targets, n_outputs, out_act = index.astype(np.intp), len(classes), "softmax"
            else:
                targets, n_outputs, out_act = index.astype(dtype).reshape(-1, 1), 1, "sigmoid"
        sample_weight = self._check_sample_weight(sample_weight, X)
        if self.class_weight is not None:
            if multilabel:
                raise ValueError("class_weight is not supported for multi-label y; pass "
                                 "per-sample weights as sample_weight")
            if incremental and isinstance(self.class_weight, str):
                raise ValueError("class_weight='balanced' needs the whole data, which "
                                 "partial_fit does not see; pass a dict, e.g. from "
                                 "sklearn.utils.class_weight.compute_class_weight")
            if not (self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
                raise ValueError(f"class_weight must be None, 'balanced' or a dict "
                                 f"{{label: weight}}, got {self.class_weight!r}")
            # "balanced" counts the classes present; a dict may name any of classes_.
            known = unique_labels(y) if self.class_weight == "balanced" else classes
            table = compute_class_weight(self.class_weight, classes=known, y=y)
            per_sample = table[np.searchsorted(known, y)].astype(dtype)
            sample_weight = per_sample if sample_weight is None else sample_weight * per_sample
        return (X, targets, sample_weight, n_outputs, out_act,
                {"classes_": classes, "_multilabel": multilabel})

    def _objective_scale(self, n_outputs):
        return float(n_outputs) if self._multilabel else 1.0

    def _model_loss(self):
        if len(self.classes_) > 2 and not self._multilabel:
            return "sparse_categorical_crossentropy"
        return "binary_crossentropy"

    def _stratify_labels(self, y):
        if y.ndim == 2 and y.shape[1] > 1:
            return None  # multi-label: not stratified, as in scikit-learn
        return y.reshape(len(y))

    def _encoded_predictions(self, out):
        """Class indices (n_samples,) for one label per sample, 0/1 (n, labels) for
        multi-label."""
        if self._multilabel:
            return (out > 0.5).astype(int)
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.intp)
        return np.argmax(out, axis=1)

    def _validation_score(self, X, y, weights):
        out = self.model_.predict(X, batch_size=_PREDICT_BATCH)
        if not np.isfinite(out).all():
            return np.nan
        pred = self._encoded_predictions(out)
        if self._multilabel:
            correct = np.all(pred == y, axis=1)
        elif y.ndim == 2:
            correct = pred == y[:, 0]
        else:
            correct = pred == y
        return float(np.average(correct, weights=weights))

    def predict(self, X):
        """The predicted labels (n_samples,), or a 0/1 matrix (n_samples, n_labels) for
        multi-label."""
        pred = self._encoded_predictions(self._forward(X))
        return pred if self._multilabel else self.classes_[pred]

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in ``classes_`` order (for
        multi-label, each label's own probability)."""
        out = self._forward(X)
        if out.shape[1] == 1 and not self._multilabel:
            return np.hstack([1.0 - out, out])
        return out

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``; a probability that rounds to 0 gives ``-inf``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's interface, trained by neuralnp.

    ``X`` is (n_samples, n_features), ``y`` (n_samples,) or (n_samples, n_outputs); a linear
    output layer trained on the squared error (half of it, as scikit-learn counts). The
    hyperparameters are scikit-learn's (``sklearn.neural_network.MLPRegressor``, same defaults;
    ``loss`` only ``"squared_error"``) plus ``dropout``, ``batch_norm``, ``optimizer``,
    ``device`` and ``dtype`` as in :class:`MLPClassifier`. ``validation_scores_`` hold R².
    ``predict`` returns (n_samples,) for a single output.

    >>> import numpy as np
    >>> from neuralnp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = np.sin(3 * X[:, 0])
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", batch_size=20,
    ...                    learning_rate_init=0.01, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.95
    True
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0,
                 batch_norm=False, optimizer=None, device="cpu", dtype="float32"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            dropout=dropout, batch_norm=batch_norm, optimizer=optimizer, device=device,
            dtype=dtype)
        self.loss = loss

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current network. Returns ``self``."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_fit_data(self, X, y, sample_weight, dtype, first_pass, incremental, classes):
        if self.loss != "squared_error":
            what = ("the Poisson loss is not in neuralnp yet" if self.loss == "poisson"
                    else f"{self.loss!r} is unknown")
            raise ValueError(f"loss={self.loss!r}: {what}; use loss='squared_error'")
        X, y = validate_data(self, X, y, reset=first_pass, dtype=dtype, order="C",
                             multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        targets = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
        return (X, targets, self._check_sample_weight(sample_weight, X), targets.shape[1], None,
                {})

    def _objective_scale(self, n_outputs):
        return n_outputs / 2.0

    def _model_loss(self):
        return "mse"

    def _stratify_labels(self, y):
        return None

    def _validation_score(self, X, y, weights):
        out = self.model_.predict(X, batch_size=_PREDICT_BATCH)
        if not np.isfinite(out).all():
            return np.nan
        return _r2(y, out, weights)

    def predict(self, X):
        """Predictions (n_samples,) for one output, (n_samples, n_outputs) for several."""
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
