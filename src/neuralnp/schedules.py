"""Learning-rate schedules: the learning rate as a function of the optimizer step.

Pass one as an optimizer's learning rate; before each update the optimizer calls it with its
0-based step number (``optimizer.iterations``: 0 for the first update) and uses the result.

>>> from neuralnp.optimizers import SGD
>>> from neuralnp.schedules import StepDecay
>>> schedule = StepDecay(0.1, step_size=2, gamma=0.5)
>>> [schedule(k) for k in range(5)]
[0.1, 0.1, 0.05, 0.05, 0.025]
>>> optimizer = SGD(learning_rate=schedule)

A schedule is a pure function of the step and holds no state, so a run resumed from a saved step
number gets exactly the learning rates it would have had. ``ExponentialDecay``,
``PiecewiseConstantDecay`` and ``CosineDecay`` take Keras 3's arguments and compute Keras's
formulas; ``StepDecay`` and ``OneCycle`` compute ``torch.optim.lr_scheduler``'s ``StepLR`` and
``OneCycleLR``. The tests check every schedule against PyTorch, step by step.
"""

import bisect
import math

from ._registry import Configurable, resolve
from ._checks import is_int, is_real


def _number(name, value, *, low=0.0, low_inclusive=False, high=None, high_inclusive=True):
    """``value`` as a finite float in the given range, or a ValueError naming ``name``."""
    ok = is_real(value)
    if ok:
        value = float(value)
        ok = (math.isfinite(value)
              and (value >= low if low_inclusive else value > low)
              and (high is None or (value <= high if high_inclusive else value < high)))
    if not ok:
        left = "[" if low_inclusive else "("
        right = ("]" if high_inclusive else ")") if high is not None else ")"
        upper = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be a number in {left}{low:g}, {upper}{right}, got {value!r}")
    return value


def _count(name, value, *, minimum=1):
    """``value`` as an int >= ``minimum`` (an integral float such as 100.0 is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class LearningRateSchedule(Configurable):
    """Base class: ``schedule(step)`` is the learning rate for the 0-based optimizer step.

    Subclasses write ``_learning_rate(step)`` for a validated step (a float >= 0) and
    ``get_config()`` returning their constructor arguments (JSON-serialisable), which
    ``from_config`` passes back to the constructor.
    """

    def __call__(self, step):
        if not is_real(step):
            raise TypeError(f"the step must be a number, got {type(step).__name__}")
        if not (math.isfinite(step) and step >= 0):
            raise ValueError(f"the step must be >= 0 (0 for the first update), got {step}")
        return float(self._learning_rate(float(step)))

    def _learning_rate(self, step):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``lr = initial_learning_rate · decay_rate ** (step / decay_steps)`` (Keras's).

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``, so the rate drops by
    ``decay_rate`` every ``decay_steps`` steps: that is ``torch.optim.lr_scheduler.StepLR``
    (``step_size=decay_steps, gamma=decay_rate``). With ``decay_steps=1`` it is ``ExponentialLR``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _count("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def _learning_rate(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``lr = values[i]`` for ``boundaries[i-1] < step <= boundaries[i]`` (Keras's).

    That is ``values[0]`` up to and including step ``boundaries[0]`` and ``values[-1]`` after the
    last boundary, so ``len(values) == len(boundaries) + 1``. A boundary step still uses the
    value before it, whereas ``torch.optim.lr_scheduler.MultiStepLR`` switches at its milestone:
    boundaries ``b`` correspond to milestones ``b + 1`` (with ``values[i] = lr · gamma**i``).
    """

    def __init__(self, boundaries, values):
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values needs len(boundaries) + 1 = {len(boundaries) + 1} entries "
                             f"(one per interval), got {len(values)}")
        # ints stay ints so the config reads as it was written; numpy scalars become plain numbers
        self.boundaries = [int(b) if is_int(b)
                           else _number(f"boundaries[{i}]", b, low_inclusive=True)
                           for i, b in enumerate(boundaries)]
        if any(b < 0 for b in self.boundaries):
            raise ValueError(f"boundaries must be steps >= 0, got {self.boundaries}")
        if any(a >= b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {self.boundaries}")
        self.values = [_number(f"values[{i}]", v) for i, v in enumerate(values)]

    def _learning_rate(self, step):
        # the number of boundaries strictly below the step is the index of its interval
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class CosineDecay(LearningRateSchedule):
    """``lr = init · ((1-α) · ½(1 + cos(π · min(step, decay_steps)/decay_steps)) + α)``, α = alpha.

    Keras 3's CosineDecay, including its optional linear warm-up. When ``warmup_target`` is
    given, the rate first rises linearly, ``lr = init + (warmup_target - init) · step /
    warmup_steps`` for ``step < warmup_steps``, then follows the cosine above with
    ``warmup_target`` in place of ``init`` and ``step - warmup_steps`` in place of ``step``; it
    stays at ``alpha · warmup_target`` after ``warmup_steps + decay_steps``. As in Keras,
    ``warmup_target`` with ``warmup_steps=0`` decays from ``warmup_target`` straight away;
    unlike Keras, ``warmup_steps > 0`` without a ``warmup_target`` is an error rather than
    silently ignored. ``initial_learning_rate`` may be 0 when warming up (Keras's example).

    PyTorch: without warm-up, ``CosineAnnealingLR(T_max=decay_steps, eta_min=alpha · init)`` for
    steps 0..decay_steps (torch then rises again, Keras stays at the minimum). With warm-up and
    an optimizer lr of ``warmup_target``, ``SequentialLR([LinearLR(start_factor=init /
    warmup_target, total_iters=warmup_steps), CosineAnnealingLR(T_max=decay_steps, eta_min=alpha
    · warmup_target)], milestones=[warmup_steps])`` for steps 0..warmup_steps + decay_steps.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None,
                 warmup_steps=0):
        self.decay_steps = _count("decay_steps", decay_steps)
        self.alpha = _number("alpha", alpha, low_inclusive=True, high=1.0)
        self.warmup_steps = _count("warmup_steps", warmup_steps, minimum=0)
        if warmup_target is None:
            if self.warmup_steps:
                raise ValueError("warmup_steps > 0 needs a warmup_target (the learning rate "
                                 "to warm up to), a number in (0, inf)")
            self.warmup_target = None
        else:
            self.warmup_target = _number("warmup_target", warmup_target)
        # warming up from 0 is the common case, so 0 is allowed only when there is a warm-up
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate,
                                             low_inclusive=self.warmup_target is not None)

    def _learning_rate(self, step):
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def _decay(self, step, decay_from):
        # Keras computes π · (step / decay_steps); torch's closed form π · step / T_max
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step / self.decay_steps)))
        return decay_from * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class StepDecay(LearningRateSchedule):
    """``lr = initial_learning_rate · gamma ** floor(step / step_size)``, torch's StepLR.

    The same as ``ExponentialDecay(initial_learning_rate, step_size, gamma, staircase=True)``.
    """

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.step_size = _count("step_size", step_size)
        self.gamma = _number("gamma", gamma)

    def _learning_rate(self, step):
        return self.initial_learning_rate * self.gamma ** math.floor(step / self.step_size)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "step_size": self.step_size, "gamma": self.gamma}


class OneCycle(LearningRateSchedule):
    """``lr`` anneals ``max/div_factor → max → max/(div_factor·final_div_factor)`` (torch's).

    The rate rises from ``max_learning_rate / div_factor`` to ``max_learning_rate`` until step
    ``pct_start · total_steps - 1``, then falls to ``max_learning_rate / (div_factor ·
    final_div_factor)`` at step ``total_steps - 1``, along half a cosine (``anneal_strategy="cos"``)
    or a straight line (``"linear"``). With ``three_phase=True`` it first comes back down to
    ``max_learning_rate / div_factor`` at step ``2 · pct_start · total_steps - 2`` and then
    falls to the minimum. The phase boundaries and arithmetic are torch's, so the rates equal
    ``OneCycleLR(..., cycle_momentum=False)``'s for steps 0..total_steps-1.

    Only the learning rate is scheduled: torch's momentum cycling (``cycle_momentum``,
    ``base_momentum``, ``max_momentum``) has no counterpart here. After ``total_steps - 1`` the
    rate stays at its final value, where torch extrapolates one more step and then raises.
    """

    def __init__(self, max_learning_rate, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, anneal_strategy="cos", three_phase=False):
        self.max_learning_rate = _number("max_learning_rate", max_learning_rate)
        self.total_steps = _count("total_steps", total_steps)
        self.three_phase = bool(three_phase)
        # three phases need the two ramps (2 · pct_start of the steps) to leave room for the third
        self.pct_start = _number("pct_start", pct_start, high=0.5 if self.three_phase else 1.0,
                                 high_inclusive=self.three_phase)
        self.div_factor = _number("div_factor", div_factor)
        self.final_div_factor = _number("final_div_factor", final_div_factor)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy

        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        # (last step of the phase, rate at its start, rate at its end), computed as torch does
        warmup_end = self.pct_start * self.total_steps - 1
        if self.three_phase:
            self._phases = [(warmup_end, initial, self.max_learning_rate),
                            (2 * self.pct_start * self.total_steps - 2,
                             self.max_learning_rate, initial),
                            (self.total_steps - 1, initial, final)]
        else:
            self._phases = [(warmup_end, initial, self.max_learning_rate),
                            (self.total_steps - 1, self.max_learning_rate, final)]

    def _learning_rate(self, step):
        step = min(step, self.total_steps - 1)
        start = 0.0
        for i, (end, lr_start, lr_end) in enumerate(self._phases):
            if step <= end or i == len(self._phases) - 1:
                break
            start = end
        # a phase of length 0 (pct_start · total_steps == 1) is where torch divides by zero
        pct = (step - start) / (end - start) if end > start else 1.0
        if self.anneal_strategy == "cos":
            return lr_end + (lr_start - lr_end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (lr_end - lr_start) * pct + lr_start

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor,
                "anneal_strategy": self.anneal_strategy, "three_phase": self.three_phase}


REGISTRY = {
    "exponential_decay": ExponentialDecay,
    "piecewise_constant_decay": PiecewiseConstantDecay,
    "cosine_decay": CosineDecay,
    "step_decay": StepDecay,
    "one_cycle": OneCycle,
}


def get(identifier):
    """A schedule from a ``{"class_name", "config"}`` dict (as ``serialize`` writes) or an instance.

    A bare name such as ``"cosine_decay"`` is resolved too, but every schedule has required
    arguments, so it only helps to get a clear error for a misspelt name.
    """
    return resolve(identifier, REGISTRY, "learning-rate schedule")
