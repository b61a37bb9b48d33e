"""SGD and Adam against torch.optim: on the flat buffer directly and over a whole training run."""

import math

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.optimizers import SGD, Adam
from neuralnp.parameters import FlatBuffer, Parameter

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

# (optimizer class, keyword arguments); torch gets the same hyperparameters
CONFIGS = [
    pytest.param(SGD, dict(learning_rate=0.1), id="sgd"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9), id="sgd-momentum"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9, dampening=0.3),
                 id="sgd-momentum-dampening"),
    pytest.param(SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True), id="sgd-nesterov"),
    pytest.param(Adam, dict(learning_rate=0.01), id="adam"),
    pytest.param(Adam, dict(learning_rate=0.005, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
                 id="adam-custom"),
]


def _torch_optimizer(cls, kwargs, params):
    if cls is SGD:
        return torch.optim.SGD(params, lr=kwargs["learning_rate"],
                               momentum=kwargs.get("momentum", 0.0),
                               dampening=kwargs.get("dampening", 0.0),
                               nesterov=kwargs.get("nesterov", False))
    return torch.optim.Adam(params, lr=kwargs["learning_rate"],
                            betas=(kwargs.get("beta_1", 0.9), kwargs.get("beta_2", 0.999)),
                            eps=kwargs.get("epsilon", 1e-8))


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


@pytest.mark.parametrize("cls", [SGD, Adam])
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


@pytest.mark.parametrize("name, cls", [("sgd", SGD), ("Adam", Adam)])
def test_get_by_name(name, cls):
    assert type(nn.optimizers.get(name)) is cls


def test_unknown_optimizer_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        nn.optimizers.get("rmsprop")
    assert "sgd" in str(info.value) and "adam" in str(info.value)
