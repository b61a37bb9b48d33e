"""Learning-rate schedules: step by step against torch.optim.lr_scheduler, hand-computed values,
config round trips, use inside an optimizer, and every validation error."""

import doctest
import json
import math

import numpy as np
import pytest

import neuralnp.schedules as schedules_module
from neuralnp._registry import serialize
from neuralnp.optimizers import SGD
from neuralnp.parameters import FlatBuffer, Parameter
from neuralnp.schedules import (
    REGISTRY, CosineDecay, ExponentialDecay, LearningRateSchedule, OneCycle,
    PiecewiseConstantDecay, StepDecay, get,
)

# torch's schedulers mostly multiply the previous rate step after step, which drifts by a few
# ulp over 200 steps (measured: up to 8e-15 relative, near the bottom of the cosine)
RTOL = 1e-12


def ours(schedule, n):
    return [schedule(k) for k in range(n)]


def torch_rates(make_scheduler, lr, n, closed_form=False):
    """The rate torch uses for each of ``n`` updates: ``get_last_lr()`` before each ``step()``.

    With ``closed_form=True`` also the scheduler's ``_get_closed_form_lr()`` at the same points.
    """
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
    rates, closed = [], []
    for _ in range(n):
        rates.append(float(scheduler.get_last_lr()[0]))
        if closed_form:
            closed.append(float(scheduler._get_closed_form_lr()[0]))
        opt.step()  # no gradient: nothing moves, but torch's order-of-calls check stays quiet
        scheduler.step()
    return (rates, closed) if closed_form else rates


# --- step by step against torch ----------------------------------------------------------------

TORCH_CASES = [
    pytest.param(ExponentialDecay(0.1, decay_steps=1, decay_rate=0.97), 0.1,
                 lambda s, o: s.ExponentialLR(o, gamma=0.97), 200, id="exponential-decay"),
    pytest.param(ExponentialDecay(0.1, decay_steps=7, decay_rate=0.5, staircase=True), 0.1,
                 lambda s, o: s.StepLR(o, step_size=7, gamma=0.5), 200, id="exponential-staircase"),
    pytest.param(StepDecay(0.05, step_size=30), 0.05,
                 lambda s, o: s.StepLR(o, step_size=30, gamma=0.1), 200, id="step-decay"),
    pytest.param(StepDecay(0.3, step_size=1, gamma=0.9), 0.3,
                 lambda s, o: s.StepLR(o, step_size=1, gamma=0.9), 200, id="step-decay-every-step"),
    # Keras keeps values[i] AT boundary b_i and switches one step later; MultiStepLR switches AT
    # its milestone. So boundaries b <-> milestones b + 1, with values[i] = lr * gamma**i.
    pytest.param(PiecewiseConstantDecay([10, 50, 120], [0.1 * 0.3 ** i for i in range(4)]), 0.1,
                 lambda s, o: s.MultiStepLR(o, milestones=[11, 51, 121], gamma=0.3), 200,
                 id="piecewise-constant"),
    pytest.param(PiecewiseConstantDecay([0, 1, 5], [0.2 * 0.5 ** i for i in range(4)]), 0.2,
                 lambda s, o: s.MultiStepLR(o, milestones=[1, 2, 6], gamma=0.5), 20,
                 id="piecewise-constant-boundary-0"),
    # steps 0..decay_steps: after that torch's cosine rises again, Keras's stays at the minimum
    pytest.param(CosineDecay(0.1, decay_steps=150), 0.1,
                 lambda s, o: s.CosineAnnealingLR(o, T_max=150, eta_min=0.0), 151, id="cosine"),
    pytest.param(CosineDecay(0.1, decay_steps=150, alpha=0.1), 0.1,
                 lambda s, o: s.CosineAnnealingLR(o, T_max=150, eta_min=0.1 * 0.1), 151,
                 id="cosine-alpha"),
    # warm-up: the optimizer's lr is the warm-up target. LinearLR goes from target * (init/target)
    # at step 0 to the target at step warmup_steps, where SequentialLR hands over to the cosine at
    # its step 0 (= the target), as Keras's cosine starts at step warmup_steps. eta_min is
    # alpha * target since Keras decays from the target. Steps 0..warmup_steps + decay_steps.
    pytest.param(CosineDecay(0.01, decay_steps=120, alpha=0.05, warmup_target=0.1,
                             warmup_steps=30), 0.1,
                 lambda s, o: s.SequentialLR(o, [
                     s.LinearLR(o, start_factor=0.01 / 0.1, end_factor=1.0, total_iters=30),
                     s.CosineAnnealingLR(o, T_max=120, eta_min=0.05 * 0.1)], milestones=[30]),
                 151, id="cosine-warmup"),
    pytest.param(CosineDecay(0.002, decay_steps=64, warmup_target=0.02, warmup_steps=7), 0.02,
                 lambda s, o: s.SequentialLR(o, [
                     s.LinearLR(o, start_factor=0.002 / 0.02, end_factor=1.0, total_iters=7),
                     s.CosineAnnealingLR(o, T_max=64, eta_min=0.0)], milestones=[7]),
                 72, id="cosine-warmup-no-alpha"),
]

ONE_CYCLE_CASES = [
    dict(max_learning_rate=0.1, total_steps=200),
    dict(max_learning_rate=0.1, total_steps=200, anneal_strategy="linear"),
    dict(max_learning_rate=0.1, total_steps=200, three_phase=True),
    dict(max_learning_rate=0.1, total_steps=200, anneal_strategy="linear", three_phase=True),
    dict(max_learning_rate=0.7, total_steps=97, pct_start=0.33, div_factor=10.0,
         final_div_factor=300.0),
    dict(max_learning_rate=0.7, total_steps=97, pct_start=0.45, div_factor=10.0,
         final_div_factor=300.0, anneal_strategy="linear", three_phase=True),
    dict(max_learning_rate=0.7, total_steps=10, pct_start=0.05),  # warm-up shorter than a step
]
for _kw in ONE_CYCLE_CASES:
    TORCH_CASES.append(pytest.param(
        OneCycle(**_kw), 1.0,  # OneCycleLR sets its own rates, whatever the optimizer's lr
        lambda s, o, kw=_kw: s.OneCycleLR(
            o, max_lr=kw["max_learning_rate"], total_steps=kw["total_steps"],
            pct_start=kw.get("pct_start", 0.3), div_factor=kw.get("div_factor", 25.0),
            final_div_factor=kw.get("final_div_factor", 1e4),
            anneal_strategy=kw.get("anneal_strategy", "cos"),
            three_phase=kw.get("three_phase", False), cycle_momentum=False),
        _kw["total_steps"],
        id="one-cycle-" + "-".join(f"{k}={v}" for k, v in _kw.items() if k != "max_learning_rate")))


@pytest.mark.parametrize("schedule, lr, make_scheduler, n", TORCH_CASES)
def test_matches_torch_step_by_step(schedule, lr, make_scheduler, n):
    expected = torch_rates(make_scheduler, lr, n)
    if isinstance(schedule, OneCycle):
        # OneCycleLR computes each rate afresh with the same arithmetic: equal to the last bit
        assert ours(schedule, n) == expected
    else:
        np.testing.assert_allclose(ours(schedule, n), expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_cosine_matches_torch_closed_form(alpha):
    """Torch's closed form has no recursion drift: within 2 ulp of the initial rate.

    (Relatively more near the end, where the rate is small: Keras computes ``π · (step / T)`` and
    torch ``π · step / T``, and ``1 + cos`` cancels there.)
    """
    schedule = CosineDecay(0.1, decay_steps=150, alpha=alpha)
    _, closed = torch_rates(lambda s, o: s.CosineAnnealingLR(o, T_max=150, eta_min=alpha * 0.1),
                            0.1, 151, closed_form=True)
    np.testing.assert_allclose(ours(schedule, 151), closed, rtol=0, atol=2 * np.spacing(0.1))


# --- hand-computed values -------------------------------------------------------------------------

HAND = [
    (ExponentialDecay(0.1, 10, 0.5), {0: 0.1, 5: 0.1 * math.sqrt(0.5), 10: 0.05, 30: 0.0125}),
    (ExponentialDecay(0.1, 10, 0.5, staircase=True),
     {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025}),
    (ExponentialDecay(1.0, 4, 2.0), {2: math.sqrt(2.0), 8: 4.0}),  # rate > 1 grows, as in Keras
    (PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1]),
     {0: 1.0, 100: 1.0, 100.5: 0.5, 101: 0.5, 200: 0.5, 201: 0.1, 10 ** 9: 0.1}),
    (PiecewiseConstantDecay([], [0.3]), {0: 0.3, 1000: 0.3}),
    (CosineDecay(1.0, 100), {0: 1.0, 50: 0.5, 100: 0.0, 1000: 0.0}),
    (CosineDecay(1.0, 100, alpha=0.1), {0: 1.0, 50: 0.55, 100: 0.1, 1000: 0.1}),
    (CosineDecay(2.0, 90, alpha=0.5), {30: 2.0 * (0.5 * 0.5 * 1.5 + 0.5)}),  # cos(π/3) = ½
    # warming up from 0, Keras's documented use
    (CosineDecay(0.0, 100, warmup_target=1.0, warmup_steps=10),
     {0: 0.0, 5: 0.5, 9: 0.9, 10: 1.0, 60: 0.5, 110: 0.0, 500: 0.0}),
    (CosineDecay(0.5, 100, alpha=0.2, warmup_target=1.0, warmup_steps=10),
     {0: 0.5, 5: 0.75, 10: 1.0, 60: 0.6, 110: 0.2, 500: 0.2}),
    # a warm-up target without warm-up steps decays from the target at once (Keras)
    (CosineDecay(1.0, 100, warmup_target=2.0), {0: 2.0, 50: 1.0, 100: 0.0}),
    (StepDecay(0.1, 2, 0.5), {0: 0.1, 1: 0.1, 2: 0.05, 3: 0.05, 4: 0.025}),
    (StepDecay(1.0, 10), {9: 1.0, 10: 0.1, 25: 0.01}),
    # initial 1.0/10 = 0.1, final 0.1/100 = 0.001; phases end at steps 24 and 99
    (OneCycle(1.0, 100, pct_start=0.25, div_factor=10, final_div_factor=100,
              anneal_strategy="linear"),
     {0: 0.1, 12: 0.55, 24: 1.0, 99: 0.001, 100: 0.001, 10 ** 6: 0.001}),
    (OneCycle(1.0, 100, pct_start=0.25, div_factor=10, final_div_factor=100),
     {0: 0.1, 12: 0.55, 24: 1.0, 99: 0.001, 5000: 0.001}),
    # three phases end at steps 24, 48 and 99
    (OneCycle(1.0, 100, pct_start=0.25, div_factor=10, final_div_factor=100,
              anneal_strategy="linear", three_phase=True),
     {0: 0.1, 24: 1.0, 36: 0.55, 48: 0.1, 99: 0.001, 200: 0.001}),
    # pct_start · total_steps == 1: a zero-length warm-up (torch divides by zero) counts as done
    (OneCycle(1.0, 10, pct_start=0.1), {0: 1.0, 9: 1.0 / 25 / 1e4}),
]


@pytest.mark.parametrize("schedule, expected", HAND, ids=[repr(s) for s, _ in HAND])
def test_hand_computed_values(schedule, expected):
    for step, lr in expected.items():
        assert schedule(step) == pytest.approx(lr, rel=1e-12, abs=1e-15), step


ALL = [s for s, _ in HAND]


@pytest.mark.parametrize("schedule", ALL, ids=[repr(s) for s in ALL])
def test_pure_function_of_the_step(schedule):
    forward = ours(schedule, 300)
    backward = [schedule(k) for k in reversed(range(300))][::-1]
    assert forward == backward
    assert all(type(lr) is float for lr in forward)
    assert schedule(np.int64(17)) == schedule(17) == schedule(17.0)


def test_module_docstring_example_runs():
    assert doctest.testmod(schedules_module).failed == 0


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ALL, ids=[repr(s) for s in ALL])
def test_config_round_trip(schedule):
    spec = json.loads(json.dumps(serialize(schedule)))  # must survive JSON, as a saved model does
    rebuilt = get(spec)
    assert type(rebuilt) is type(schedule) and rebuilt is not schedule
    assert rebuilt.get_config() == schedule.get_config()
    assert ours(rebuilt, 300) == ours(schedule, 300)


def test_get_resolves_instances_and_rejects_unknown_names():
    schedule = StepDecay(0.1, 2)
    assert get(schedule) is schedule
    assert set(REGISTRY) == {"exponential_decay", "piecewise_constant_decay", "cosine_decay",
                             "step_decay", "one_cycle"}
    assert all(issubclass(cls, LearningRateSchedule) for cls in REGISTRY.values())
    with pytest.raises(ValueError, match="one_cycle.*step_decay"):
        get("cosine_annealing")
    with pytest.raises(ValueError, match="CosineDecay"):
        get({"class_name": "WarmupCosine", "config": {}})


def test_config_values_are_plain_python_numbers():
    schedule = PiecewiseConstantDecay(np.array([3, 7]), np.array([0.3, 0.2, 0.1]))
    assert schedule.get_config() == {"boundaries": [3, 7], "values": [0.3, 0.2, 0.1]}
    assert json.dumps(schedule.get_config())
    assert ExponentialDecay(np.float32(0.5), np.int64(10), 0.5).get_config()["decay_steps"] == 10


# --- inside an optimizer -----------------------------------------------------------------------


def _bound_sgd(schedule):
    buffer = FlatBuffer([Parameter("w", np.zeros(3))], "float64")
    opt = SGD(learning_rate=schedule)
    opt.build(buffer)
    return opt, buffer


def test_sgd_applies_the_scheduled_rate_at_each_step():
    opt, buffer = _bound_sgd(StepDecay(0.1, 2, 0.5))
    expected_rates = [0.1, 0.1, 0.05, 0.05]
    w = 0.0
    for rate in expected_rates:
        assert opt.current_learning_rate() == rate
        buffer.grads[:] = 1.0
        opt.step()
        w -= rate
        np.testing.assert_allclose(buffer.values, w, rtol=0, atol=1e-15)
    np.testing.assert_allclose(buffer.values, -0.3, rtol=0, atol=1e-15)


def test_resuming_from_a_saved_step_number_continues_the_schedule():
    opt, buffer = _bound_sgd(StepDecay(0.1, 2, 0.5))
    opt.load_state_dict({"iterations": 2})
    buffer.grads[:] = 1.0
    opt.step()
    np.testing.assert_allclose(buffer.values, -0.05, rtol=0, atol=1e-15)


# These two need Optimizer to take a {"class_name", "config"} learning rate and to serialize a
# schedule in get_config (see Optimizer.__init__ / get_config in optimizers.py).


def test_optimizer_config_round_trip_keeps_the_schedule():
    from neuralnp import optimizers

    opt = SGD(learning_rate=CosineDecay(0.01, 100, alpha=0.1, warmup_target=0.1, warmup_steps=10),
              momentum=0.9)
    rebuilt = optimizers.get(json.loads(json.dumps(serialize(opt))))
    assert isinstance(rebuilt.learning_rate, CosineDecay)
    assert rebuilt.learning_rate.get_config() == opt.learning_rate.get_config()
    assert rebuilt.get_config() == opt.get_config()


def test_saved_model_resumes_mid_schedule_exactly(tmp_path):
    import neuralnp as nn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = x.sum(axis=1, keepdims=True)

    def compiled():
        model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(1)], seed=0)
        model.compile(loss="mse", optimizer=nn.Adam(learning_rate=OneCycle(0.05, 16)))
        return model

    straight = compiled()
    straight.fit(x, y, epochs=4, batch_size=16, verbose=0)

    first = compiled()
    first.fit(x, y, epochs=2, batch_size=16, verbose=0)
    first.save(tmp_path / "half")
    resumed = nn.load_model(tmp_path / "half")
    assert isinstance(resumed.optimizer.learning_rate, OneCycle)
    assert resumed.optimizer.current_learning_rate() == OneCycle(0.05, 16)(8)
    resumed.fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(resumed.buffer.values, straight.buffer.values)


# --- validation --------------------------------------------------------------------------------

INVALID = [
    (lambda: ExponentialDecay(0.0, 10, 0.5),
     r"initial_learning_rate must be a number in \(0, inf\)"),
    (lambda: ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate"),
    (lambda: ExponentialDecay(float("nan"), 10, 0.5), "initial_learning_rate"),
    (lambda: ExponentialDecay(float("inf"), 10, 0.5), "initial_learning_rate"),
    (lambda: ExponentialDecay(0.1, 0, 0.5), "decay_steps must be an integer >= 1"),
    (lambda: ExponentialDecay(0.1, -5, 0.5), "decay_steps"),
    (lambda: ExponentialDecay(0.1, 2.5, 0.5), "decay_steps"),
    (lambda: ExponentialDecay(0.1, 10, 0.0), r"decay_rate must be a number in \(0, inf\)"),
    (lambda: ExponentialDecay(0.1, 10, -0.5), "decay_rate"),
    (lambda: PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1]), "strictly increasing"),
    (lambda: PiecewiseConstantDecay([10, 10], [1.0, 0.5, 0.1]), "strictly increasing"),
    (lambda: PiecewiseConstantDecay([10], [1.0]), r"values needs len\(boundaries\) \+ 1 = 2"),
    (lambda: PiecewiseConstantDecay([10], [1.0, 0.5, 0.1]), "values needs"),
    (lambda: PiecewiseConstantDecay([-1, 5], [1.0, 0.5, 0.1]), "boundaries must be steps >= 0"),
    (lambda: PiecewiseConstantDecay([-0.5], [1.0, 0.5]), r"boundaries\[0\]"),
    (lambda: PiecewiseConstantDecay([10], [1.0, 0.0]), r"values\[1\] must be a number in \(0"),
    (lambda: PiecewiseConstantDecay([10], [-1.0, 0.5]), r"values\[0\]"),
    (lambda: CosineDecay(0.0, 10), r"initial_learning_rate must be a number in \(0, inf\)"),
    (lambda: CosineDecay(-0.1, 10, warmup_target=0.1, warmup_steps=5),
     r"initial_learning_rate must be a number in \[0, inf\)"),
    (lambda: CosineDecay(0.1, 0), "decay_steps must be an integer >= 1"),
    (lambda: CosineDecay(0.1, 10, alpha=-0.1), r"alpha must be a number in \[0, 1\]"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), r"alpha must be a number in \[0, 1\]"),
    (lambda: CosineDecay(0.1, 10, warmup_target=0.0, warmup_steps=5), "warmup_target"),
    (lambda: CosineDecay(0.1, 10, warmup_target=-1.0, warmup_steps=5), "warmup_target"),
    (lambda: CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-1),
     "warmup_steps must be an integer >= 0"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=5), "warmup_steps > 0 needs a warmup_target"),
    (lambda: StepDecay(0.0, 10), "initial_learning_rate"),
    (lambda: StepDecay(0.1, 0), "step_size must be an integer >= 1"),
    (lambda: StepDecay(0.1, 1.5), "step_size"),
    (lambda: StepDecay(0.1, 10, gamma=0.0), r"gamma must be a number in \(0, inf\)"),
    (lambda: StepDecay(0.1, 10, gamma=-0.5), "gamma"),
    (lambda: OneCycle(0.0, 100), r"max_learning_rate must be a number in \(0, inf\)"),
    (lambda: OneCycle(0.1, 0), "total_steps must be an integer >= 1"),
    (lambda: OneCycle(0.1, 100, pct_start=0.0), r"pct_start must be a number in \(0, 1\)"),
    (lambda: OneCycle(0.1, 100, pct_start=1.0), r"pct_start must be a number in \(0, 1\)"),
    (lambda: OneCycle(0.1, 100, pct_start=-0.2), "pct_start"),
    (lambda: OneCycle(0.1, 100, pct_start=0.6, three_phase=True),
     r"pct_start must be a number in \(0, 0.5\]"),
    (lambda: OneCycle(0.1, 100, div_factor=0.0), r"div_factor must be a number in \(0, inf\)"),
    (lambda: OneCycle(0.1, 100, final_div_factor=-1.0), "final_div_factor"),
    (lambda: OneCycle(0.1, 100, anneal_strategy="cosine"),
     "anneal_strategy must be 'cos' or 'linear'"),
]


@pytest.mark.parametrize("make, message", INVALID, ids=[m for _, m in INVALID])
def test_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("schedule", ALL, ids=[repr(s) for s in ALL])
def test_invalid_steps(schedule):
    with pytest.raises(ValueError, match="step must be >= 0"):
        schedule(-1)
    with pytest.raises(ValueError, match="step must be >= 0"):
        schedule(float("nan"))
    with pytest.raises(TypeError, match="step must be a number"):
        schedule("3")
