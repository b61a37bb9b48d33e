"""SGD and Adam against torch.optim: on the flat buffer directly and over a whole training run."""

import math

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.optimizers import SGD, Adagrad, Adam, AdamW, Nadam, RMSprop
from neuralnp.parameters import FlatBuffer, Parameter

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

# (optimizer class, keyword arguments); torch gets the same hyperparameters under its own names
CONFIGS = [
    pytest.param(SGD, dict(learning_rate=0.1), id="sgd"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9), id="sgd-momentum"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9, dampening=0.3),
                 id="sgd-momentum-dampening"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True), id="sgd-nesterov"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.5, weight_decay=0.1), id="sgd-wd"),
    pytest.param(Adam, dict(learning_rate=0.01), id="adam"),
    pytest.param(Adam, dict(learning_rate=0.005, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
                 id="adam-custom"),
    pytest.param(Adam, dict(learning_rate=0.01, amsgrad=True), id="amsgrad"),
    pytest.param(Adam, dict(learning_rate=0.01, weight_decay=0.05), id="adam-wd"),
    pytest.param(AdamW, dict(learning_rate=0.01), id="adamw"),
    pytest.param(AdamW, dict(learning_rate=0.01, weight_decay=0.3, amsgrad=True),
                 id="adamw-amsgrad"),
    # RMSprop's steps are about η/√(1-ρ) whatever the gradient, so a large η makes the 100-step
    # trajectory chaotic: rounding differences between any two implementations then grow.
    pytest.param(RMSprop, dict(learning_rate=0.002), id="rmsprop"),
    pytest.param(RMSprop, dict(learning_rate=0.002, rho=0.8, momentum=0.7, centered=True,
                               weight_decay=0.02), id="rmsprop-centered-momentum-wd"),
    pytest.param(RMSprop, dict(learning_rate=0.001, momentum=0.5), id="rmsprop-momentum"),
    pytest.param(Adagrad, dict(learning_rate=0.1), id="adagrad"),
    pytest.param(Adagrad, dict(learning_rate=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                               weight_decay=0.01), id="adagrad-decay-wd"),
    pytest.param(Nadam, dict(learning_rate=0.01), id="nadam"),
    pytest.param(Nadam, dict(learning_rate=0.01, momentum_decay=0.01, weight_decay=0.02),
                 id="nadam-wd"),
    pytest.param(Adam, dict(learning_rate=0.01, clipnorm=0.05), id="adam-clipnorm"),
    pytest.param(SGD, dict(learning_rate=0.1, momentum=0.9, clipvalue=0.02), id="sgd-clipvalue"),
    pytest.param(RMSprop, dict(learning_rate=0.01, clipvalue=0.05, clipnorm=0.04),
                 id="rmsprop-clip-both"),
]

_COMMON = {"learning_rate": "lr", "weight_decay": "weight_decay"}
_TORCH = {
    SGD: ("SGD", {"momentum": "momentum", "dampening": "dampening", "nesterov": "nesterov"}),
    Adam: ("Adam", {"epsilon": "eps", "amsgrad": "amsgrad"}),
    AdamW: ("AdamW", {"epsilon": "eps", "amsgrad": "amsgrad"}),
    RMSprop: ("RMSprop", {"rho": "alpha", "momentum": "momentum", "epsilon": "eps",
                          "centered": "centered"}),
    Adagrad: ("Adagrad", {"lr_decay": "lr_decay", "initial_accumulator_value":
                          "initial_accumulator_value", "epsilon": "eps"}),
    Nadam: ("NAdam", {"epsilon": "eps", "momentum_decay": "momentum_decay"}),
}


@pytest.fixture(autouse=True)
def _torch_scalars_in_float64():
    """torch keeps NAdam's running product of μ in the default dtype; float64, like ours."""
    if torch is None:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _torch_optimizer(cls, kwargs, params):
    name, names = _TORCH[cls]
    args = {names.get(k, _COMMON.get(k)): v for k, v in kwargs.items()
            if k in names or k in _COMMON}
    if "beta_1" in kwargs or "beta_2" in kwargs:
        args["betas"] = (kwargs.get("beta_1", 0.9), kwargs.get("beta_2", 0.999))
    if cls is AdamW and "weight_decay" not in kwargs:
        args["weight_decay"] = 0.01  # torch's AdamW default equals ours; say so explicitly
    if cls is RMSprop:
        args.setdefault("alpha", 0.9)  # our default rho (Keras's); torch's alpha default is 0.99
    return getattr(torch.optim, name)(params, **args)


def _torch_clip(kwargs, params):
    """What a torch user writes between backward() and step() for our clip options."""
    params = list(params)
    if "clipvalue" in kwargs:
        torch.nn.utils.clip_grad_value_(params, kwargs["clipvalue"])
    if "clipnorm" in kwargs:
        torch.nn.utils.clip_grad_norm_(params, kwargs["clipnorm"])


# --- one step at a time on a flat buffer -----------------------------------------------------

SHAPES = [(2, 3), (4,)]


@pytest.mark.parametrize("cls, kwargs", CONFIGS)
def test_steps_on_flat_buffer_match_torch(cls, kwargs):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=s) for s in SHAPES]
    buffer = FlatBuffer([Parameter(f"p{i}", w.copy()) for i, w in enumerate(initial)], "float64")
    opt = cls(**kwargs)
    opt.build(buffer)

    tparams = [torch.tensor(w, requires_grad=True) for w in initial]
    topt = _torch_optimizer(cls, kwargs, tparams)
    for _ in range(30):
        grads = [rng.normal(size=s) for s in SHAPES]
        buffer.grads[...] = np.concatenate([g.ravel() for g in grads])
        opt.step()
        for t, g in zip(tparams, grads):
            t.grad = torch.tensor(g)
        _torch_clip(kwargs, tparams)
        topt.step()
    assert opt.iterations == 30
    for p, t in zip(buffer.parameters, tparams):  # the views see the update ...
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(  # ... and so does the flat array they live in
        buffer.values, np.concatenate([t.detach().numpy().ravel() for t in tparams]),
        rtol=0, atol=1e-12)


def test_plain_sgd_step_by_hand():
    buffer = FlatBuffer([Parameter("w", np.array([1.0, -2.0, 3.0]))], "float64")
    opt = SGD(learning_rate=0.5)
    opt.build(buffer)
    buffer.grads[...] = [2.0, 4.0, -1.0]
    opt.step()
    np.testing.assert_array_equal(buffer.values, [0.0, -4.0, 3.5])


def test_first_adam_step_moves_each_weight_by_the_learning_rate():
    # t = 1: m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g)
    buffer = FlatBuffer([Parameter("w", np.array([1.0, -2.0, 3.0]))], "float64")
    opt = Adam(learning_rate=0.1, epsilon=0.0)
    opt.build(buffer)
    buffer.grads[...] = [2.0, -4.0, 1e-3]
    opt.step()
    np.testing.assert_allclose(buffer.values, [0.9, -1.9, 2.9], rtol=1e-14)


def test_step_before_build_raises():
    with pytest.raises(RuntimeError, match="compile"):
        Adam().step()


# --- whole training runs: neuralnp.Sequential vs torch.nn ----------------------------------

X = np.random.default_rng(1).normal(size=(16, 4))
Y = np.random.default_rng(2).normal(size=(16, 3))


def _model():
    return nn.Sequential([nn.Dense(5, activation="tanh"), nn.Dense(3)], seed=0, dtype="float64")


def _fit(model, optimizer, epochs):
    if model.optimizer is None:
        model.compile(loss="mse", optimizer=optimizer)
    model.fit(X, Y, epochs=epochs, batch_size=len(X), shuffle=False, verbose=0)
    return model


def _torch_train(initial_weights, cls, kwargs, steps):
    w1, b1, w2, b2 = initial_weights
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    with torch.no_grad():
        for layer, (w, b) in zip((net[0], net[2]), ((w1, b1), (w2, b2))):
            layer.weight.copy_(torch.tensor(w.T))  # neuralnp kernel is (in, out)
            layer.bias.copy_(torch.tensor(b))
    opt = _torch_optimizer(cls, kwargs, net.parameters())
    x, y = torch.tensor(X), torch.tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        _torch_clip(kwargs, net.parameters())
        opt.step()
    return [net[0].weight.detach().numpy().T, net[0].bias.detach().numpy(),
            net[2].weight.detach().numpy().T, net[2].bias.detach().numpy()]


@pytest.mark.parametrize("cls, kwargs", CONFIGS)
def test_training_trajectory_matches_torch(cls, kwargs):
    pytest.importorskip("torch")
    model = _model()
    model.build((4,))
    initial = model.get_weights()
    _fit(model, cls(**kwargs), epochs=100)
    assert model.optimizer.iterations == 100
    expected = _torch_train(initial, cls, kwargs, steps=100)
    for got, want, start in zip(model.get_weights(), expected, initial):
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) < 1e-9
    # the run really trained: the weights moved well beyond the tolerance
    assert max(np.max(np.abs(g - s)) for g, s in zip(model.get_weights(), initial)) > 1e-2


@pytest.mark.parametrize("cls, kwargs", [c for c in CONFIGS if c.id != "sgd"])
@pytest.mark.parametrize("load_before_compile", [False, True],
                         ids=["load_after_compile", "load_before_compile"])
def test_state_dict_round_trip_resumes_exactly(cls, kwargs, load_before_compile):
    reference = _fit(_model(), cls(**kwargs), epochs=100).get_weights()

    first = _fit(_model(), cls(**kwargs), epochs=50)
    state, weights = first.optimizer.state_dict(), first.get_weights()
    assert state["iterations"] == 50

    resumed = _model()
    resumed.build((4,))
    resumed.set_weights(weights)
    opt = cls(**kwargs)
    if load_before_compile:
        opt.load_state_dict(state)
        resumed.compile(loss="mse", optimizer=opt)
    else:
        resumed.compile(loss="mse", optimizer=opt)
        opt.load_state_dict(state)
    _fit(resumed, None, epochs=50)
    assert opt.iterations == 100
    for got, want in zip(resumed.get_weights(), reference):
        np.testing.assert_array_equal(got, want)

    # control: without the state (fresh moments, step count 0) the run does not match
    fresh = _model()
    fresh.build((4,))
    fresh.set_weights(weights)
    _fit(fresh, cls(**kwargs), epochs=50)
    assert any(not np.array_equal(g, w) for g, w in zip(fresh.get_weights(), reference))


def test_state_dict_is_a_copy():
    model = _fit(_model(), Adam(0.01), epochs=3)
    state = model.optimizer.state_dict()
    m = state["m"].copy()
    _fit(model, None, epochs=2)
    np.testing.assert_array_equal(state["m"], m)
    assert state["iterations"] == 3


def test_load_state_dict_rejects_unknown_names_and_wrong_sizes():
    model = _fit(_model(), Adam(0.01), epochs=1)
    opt = model.optimizer
    with pytest.raises(ValueError, match="momentum"):
        opt.load_state_dict({"iterations": 1, "momentum": np.zeros(model.count_params())})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"iterations": 1, "m": np.zeros(3), "v": np.zeros(3)})


# --- hyperparameter validation ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSprop, Adagrad, Nadam])
@pytest.mark.parametrize("lr", [-0.1, 0.0, math.nan, math.inf])
def test_learning_rate_must_be_positive_and_finite(cls, lr):
    with pytest.raises(ValueError, match="learning_rate"):
        cls(learning_rate=lr)


@pytest.mark.parametrize("kwargs", [
    dict(momentum=-0.1), dict(momentum=1.0), dict(momentum=0.5, dampening=-0.1),
    dict(momentum=0.5, dampening=1.5),
    dict(nesterov=True),  # needs momentum
    dict(momentum=0.9, dampening=0.1, nesterov=True),  # needs dampening 0
])
def test_sgd_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        SGD(learning_rate=0.1, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(beta_1=1.0), dict(beta_1=-0.1), dict(beta_2=1.0), dict(beta_2=-0.5), dict(epsilon=-1e-8),
])
def test_adam_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        Adam(learning_rate=0.1, **kwargs)


@pytest.mark.parametrize("name, cls", [("sgd", SGD), ("Adam", Adam), ("rmsprop", RMSprop),
                                       ("adagrad", Adagrad), ("adamw", AdamW), ("nadam", Nadam)])
def test_get_by_name(name, cls):
    assert type(nn.optimizers.get(name)) is cls


def test_unknown_optimizer_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        nn.optimizers.get("adamax")
    assert "sgd" in str(info.value) and "adam" in str(info.value)


@pytest.mark.parametrize("cls, kwargs, name", [
    (RMSprop, dict(rho=1.0), "rho"), (RMSprop, dict(momentum=-0.5), "momentum"),
    (Adagrad, dict(initial_accumulator_value=-1), "initial_accumulator_value"),
    (Adagrad, dict(lr_decay=-0.1), "lr_decay"), (Nadam, dict(momentum_decay=-1), "momentum_decay"),
    (Adam, dict(weight_decay=-0.1), "weight_decay"), (SGD, dict(clipnorm=0.0), "clipnorm"),
    (SGD, dict(clipvalue=-1.0), "clipvalue"), (AdamW, dict(weight_decay=math.nan), "weight_decay"),
])
def test_bad_hyperparameters_name_the_parameter_and_its_range(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"{name} must be in [\[(]"):
        cls(**kwargs)


def test_clipnorm_scales_the_global_gradient_norm_by_hand():
    buffer = FlatBuffer([Parameter("a", np.zeros(2)), Parameter("b", np.zeros(1))], "float64")
    opt = SGD(learning_rate=1.0, clipnorm=1.0)
    opt.build(buffer)
    buffer.grads[...] = [3.0, 0.0, 4.0]  # global norm 5 across both parameters
    opt.step()
    np.testing.assert_allclose(buffer.values, [-0.6, 0.0, -0.8], rtol=1e-6)


@pytest.mark.parametrize("cls, kwargs", CONFIGS)
def test_config_round_trip(cls, kwargs):
    opt = cls(**kwargs)
    again = nn.optimizers.get({"class_name": cls.__name__, "config": opt.get_config()})
    assert type(again) is cls and again.get_config() == opt.get_config()


# -- issue 13: a step never leaves non-finite weights ---------------------------------------------

ALL = [SGD, Adagrad, Adam, AdamW, Nadam, RMSprop]


@pytest.mark.parametrize("cls", ALL)
def test_a_learning_rate_not_finite_in_the_model_dtype_is_refused(cls):
    # 1e39 is a finite float64 but inf in float32: every update would be ±inf or NaN.
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    with pytest.raises(ValueError, match=r"learning_rate 1e\+39 .*float32.*such as 1e-3"):
        model.compile(loss="mse", optimizer=cls(1e39))
    lazy = nn.Sequential([nn.Dense(2)], seed=0)  # built by fit: refused there, before a step
    lazy.compile(loss="mse", optimizer=cls(1e39))
    with pytest.raises(ValueError, match="learning_rate"):
        lazy.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    wide = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0, dtype="float64")
    wide.compile(loss="mse", optimizer=cls(1e39))  # finite in float64


class _JumpTo(nn.schedules.LearningRateSchedule):
    """1e-3, then ``value`` from step 2 on."""

    def __init__(self, value):
        self.value = value

    def _learning_rate(self, step):
        return 1e-3 if step < 2 else self.value


@pytest.mark.parametrize("value", [1e39, math.inf, math.nan])
def test_a_schedule_value_not_finite_in_the_model_dtype_is_refused_before_the_step(value):
    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    model.compile(loss="mse", optimizer=Adam(_JumpTo(value)))
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"schedule gave .* for step 2.*float32") as info:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert "\n" not in str(info.value)
    assert model.optimizer.iterations == 2
    for got, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, old)
    # the same check covers a rate set by a callback
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    model.compile(loss="mse", optimizer=SGD(0.1))
    jump = nn.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(model.optimizer, "learning_rate", 1e39))
    with pytest.raises(ValueError, match="float32"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[jump])


@pytest.fixture(params=[pytest.param("numba", marks=pytest.mark.skipif(
    not nn.backends.numba_available(), reason="Numba is not installed")), "numpy"])
def kernel_path(request, monkeypatch):
    monkeypatch.setenv("NEURALNP_KERNELS", request.param)
    return request.param


@pytest.mark.parametrize("make, bad_grad", [
    (lambda: Adam(1e38), None), (lambda: AdamW(1e38), None), (lambda: Nadam(0.1), np.inf),
    (lambda: RMSprop(3e38), None), (lambda: SGD(3e38), None),
    (lambda: SGD(3e38, momentum=0.9), None), (lambda: Adagrad(0.1), np.inf),
    (lambda: Adam(0.1), np.nan),
], ids=["adam", "adamw", "nadam-inf-grad", "rmsprop", "sgd", "sgd-momentum", "adagrad-inf-grad",
        "adam-nan-grad"])
def test_a_step_that_would_write_non_finite_weights_restores_them_and_raises(make, bad_grad,
                                                                              kernel_path):
    # Finite learning rates whose updates overflow float32 (Adam's first step is 10·lr), or a
    # gradient that overflowed in backward while the loss stayed finite.
    param = Parameter("w", np.linspace(-1, 1, 10, dtype="float32"))
    buffer = FlatBuffer([param], "float32")
    buffer.grads[...] = np.linspace(2, 3, 10, dtype="float32")
    if bad_grad is not None:
        buffer.grads[4] = bad_grad
    optimizer = make()
    optimizer.build(buffer)
    before = buffer.values.copy()
    with pytest.raises(nn.TrainingDivergedError, match=r"update .* NaN or infinite") as info:
        optimizer.step()
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(buffer.values, before)
    np.testing.assert_array_equal(param.value, before)  # the view, not a copy, was restored
