"""Optimizers over the flat parameter buffer.

An optimizer is bound to a model's :class:`~neuralnp.parameters.FlatBuffer`; ``step()`` reads
``buffer.grads`` and updates ``buffer.values`` with a few vectorised operations over the whole
model at once, writing into preallocated arrays. Its state (moments, step count) lives in flat
arrays of the same length, exposed through ``state_dict()`` / ``load_state_dict()`` so that a
saved model resumes training exactly.

Every optimizer follows ``torch.optim``'s formula for the same hyperparameters (Keras's names for
them) and takes, before its own update:

- ``clipvalue``: ``g ← clip(g, -c, c)``, as ``torch.nn.utils.clip_grad_value_``;
- ``clipnorm``: ``g ← g · min(1, c / (‖g‖ + 1e-6))`` with ``‖g‖`` the global norm over every
  parameter, as ``torch.nn.utils.clip_grad_norm_`` (Keras calls this ``global_clipnorm``);
- ``weight_decay``: ``g ← g + λθ`` (L2, coupled), as torch does; ``AdamW`` decouples it instead.

Clipping by value comes first, then by norm, then weight decay.
"""

import math

import numpy as np

from . import schedules
from .backends import get_ops
from ._registry import Configurable, resolve, serialize
from .errors import TrainingDivergedError, refused_update
from ._checks import is_int


def _check_range(name, value, low, high, low_open=False, high_open=True):
    value = float(value)
    ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok or not math.isfinite(value):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")
    return float(value)


class Optimizer(Configurable):
    """Base class: subclasses name their state arrays in ``slots``, the numbers each step
    computes in ``numbers`` (by ``_numbers``), and write ``_update``."""

    slots = ()
    numbers = ("_lr",)

    def __init__(self, learning_rate=0.001, weight_decay=0.0, clipnorm=None, clipvalue=None):
        if isinstance(learning_rate, dict):
            learning_rate = schedules.get(learning_rate)
        if not callable(learning_rate):
            learning_rate = _check_range("learning_rate", float(learning_rate), 0, math.inf,
                                         low_open=True)
        self.learning_rate = learning_rate
        self.weight_decay = _check_range("weight_decay", weight_decay, 0, math.inf)
        self.clipnorm = None if clipnorm is None else _check_range("clipnorm", clipnorm, 0,
                                                                   math.inf, low_open=True)
        self.clipvalue = None if clipvalue is None else _check_range("clipvalue", clipvalue, 0,
                                                                     math.inf, low_open=True)
        self.iterations = 0
        self.buffer = None
        self.state = {}

    def build(self, buffer, ops=None):
        """Bind to a model's flat buffer and create zeroed state (kept if already loaded);
        the updates run on ``ops`` (``get_ops()`` when None)."""
        self.ops = ops if ops is not None else get_ops()
        self.xp = xp = self.ops.xp
        self._on_host = self.ops.reads_are_free
        self._sqrt = math.sqrt if self._on_host else xp.sqrt  # for _numbers
        self.buffer = buffer
        for name in self.slots:
            arr = self.state.get(name)
            if arr is None or arr.shape != buffer.values.shape:
                self.state[name] = xp.full_like(buffer.values, self._initial_state(name))
        self._tmp = xp.empty_like(buffer.values)
        # The weights before each step, put back when the step makes any of them NaN or inf,
        # and the finite check of the new ones (see Ops.sgd and Ops.keep_finite).
        self._previous = xp.empty_like(buffer.values)
        self._check = xp.empty(1, buffer.dtype)
        # Each number a step computes from the step count and the learning rate is a
        # 1-element array of the model's dtype, named in `numbers` in the order _numbers
        # returns them, as the ops take them: the host writes them before each update, a
        # device computes them in place.
        for name in self.numbers:
            setattr(self, name, xp.empty(1, buffer.dtype))
        self._number_arrays = [getattr(self, name) for name in self.numbers]
        self._lr_limit = float(np.finfo(buffer.dtype).max)
        if not callable(self.learning_rate) and not self.learning_rate <= self._lr_limit:
            raise ValueError(f"learning_rate {self.learning_rate:g} is infinite in the model's "
                             f"{buffer.dtype.name} (largest {self._lr_limit:.3g}), so every "
                             "update would be too; pass a learning rate such as 1e-3")
        # The gate and the refused-weight count of a step() called directly; fit passes its own.
        self._gate, self._bad = xp.ones(1), xp.zeros(1)
        if not self._on_host:
            # A device counts its own updates (float64, as t in the formulas) and takes each
            # step's learning rate from a table that plan() writes: nothing per step from the host.
            self._t, self._t0, self._rate_now = xp.zeros(1), xp.zeros(1), xp.zeros(1)
            self._index, self._table = xp.zeros(1, dtype=np.intp), xp.zeros(1)
            self.plan(1)

    def _initial_state(self, name):
        return 0.0

    def current_learning_rate(self):
        """The learning rate the next step uses (a schedule is called with the step number)."""
        return self._rate_at(self.iterations)

    def _rate_at(self, step):
        lr = self.learning_rate
        return float(lr(step)) if callable(lr) else lr

    def _checked_rate(self, step):
        """The learning rate of update ``step`` (from 0), refused unless finite in the model's
        dtype (a NaN fails too)."""
        lr = self._rate_at(step)
        if not -self._lr_limit <= lr <= self._lr_limit:
            raise ValueError(f"the learning-rate schedule gave {lr!r} for step {step}, which is "
                             f"not a finite {self.buffer.dtype.name} number (|lr| <= "
                             f"{self._lr_limit:.3g}); make it return rates such as 1e-3")
        return lr

    def _numbers(self, t, rate):
        """This step's :attr:`numbers`, in their order, from its step count ``t`` (from 1) and
        learning rate: Python floats on the host, 1-element float64 arrays on a device, by the
        same formulas, so that both round them once, to the model's dtype, from the same
        values."""
        return (rate,)

    def _on_first_step(self, target, value):
        """``target ← value`` when this is the optimizer's first update."""
        if self._on_host:
            if self.iterations == 0:
                target[...] = value
        else:
            self.xp.copyto(target, value, where=self._t == 0)

    def plan(self, steps):
        """Before ``steps`` updates on a device: their learning rates (the schedule's, checked
        now) written in one copy, and the device's step count set to ``iterations``. On the
        host each step computes its own, so this does nothing there."""
        if self._on_host:
            return
        xp, steps = self.xp, max(steps, 1)
        if callable(self.learning_rate):
            rates = [self._checked_rate(self.iterations + k) for k in range(steps)]
        else:
            rates = [self._checked_rate(self.iterations)] * steps
        if self._table.size < steps:  # written in place after this: a captured step reads it
            self._table = xp.empty(steps)
        xp.copyto(self._table[:steps], self.ops.to_device(np.array(rates, dtype=np.float64)))
        xp.copyto(self._t, self.ops.to_device(np.array([self.iterations], np.float64)))
        xp.copyto(self._t0, self._t)

    def step(self):
        """One update of every parameter from its gradient. An update that would make any
        weight NaN or infinite is undone and raises :class:`TrainingDivergedError`."""
        if self.buffer is None:
            raise RuntimeError("the optimizer is not bound to a model; call model.compile() first")
        self.plan(1)
        self._gate.fill(1.0)
        self.apply(self._gate, self._bad)
        if not self._gate[0]:
            raise TrainingDivergedError(refused_update(int(self._bad[0]), self.buffer.size))
        if not self._on_host:
            self.iterations += 1

    def apply(self, gate, bad):
        """The update as a training step makes it, reading nothing back on a device: skipped
        while ``gate[0]`` is 0 (a non-finite loss closed it); an update that would make any
        weight NaN or infinite closes the gate, puts the weights back (the optimizer's state
        keeps its contribution) and writes how many into ``bad[0]``. ``iterations`` counts the
        updates made (on a device, the loop adds them up per epoch)."""
        if self._on_host:  # the gate is host memory: read it
            if gate[0] and self._step(gate, bad):
                self.iterations += 1
            return
        self.ops.gated(gate, lambda: self._step(gate, bad), self.buffer.values,
                       *self.state.values())
        self._t += gate

    def _step(self, gate, bad):
        """The update; on the host, whether it was kept (a device does not know yet)."""
        xp, params, grads = self.xp, self.buffer.values, self.buffer.grads
        self._write_numbers()
        if self.clipvalue is not None:
            xp.clip(grads, -self.clipvalue, self.clipvalue, out=grads)
        if self.clipnorm is not None:
            self._clip_norm(grads)
        if self.weight_decay and not self.decoupled_weight_decay:
            xp.multiply(params, self.weight_decay, out=self._tmp)
            grads += self._tmp
        if not self._guarded_update:
            xp.copyto(self._previous, params)
        self._update(params, grads, self._lr)
        if not self._guarded_update:
            self.ops.sum_squares(params, self._check)
        if self._on_host and math.isfinite(self._check[0]):  # the host trusts a finite hint
            return True
        self.ops.keep_finite(params, self._previous, self._check, gate, bad)
        return self._on_host and bool(gate[0])

    def _write_numbers(self):
        """Fill this step's 1-element arrays (see _numbers)."""
        if self._on_host:
            lr = self.learning_rate  # _checked_rate, written out: this runs every step
            rate = lr if not callable(lr) else float(lr(self.iterations))
            if not -self._lr_limit <= rate <= self._lr_limit:
                self._checked_rate(self.iterations)  # raises
            numbers = self._numbers(self.iterations + 1, rate)
            for array, value in zip(self._number_arrays, numbers):
                array[0] = value
            return
        xp = self.xp
        xp.subtract(self._t, self._t0, out=self._index, casting="unsafe")
        xp.take(self._table, self._index, out=self._rate_now, mode="clip")
        numbers = self._numbers(self._t + 1.0, self._rate_now)
        for array, value in zip(self._number_arrays, numbers):
            xp.copyto(array, value, casting="same_kind")

    def _clip_norm(self, grads):
        """``g ← g · min(1, c / (‖g‖ + 1e-6))``, the norm in float64 as torch computes it."""
        norm_sq = self.ops.sum_squares(grads, self._check)
        if self._on_host:
            coef = self.clipnorm / (math.sqrt(float(norm_sq[0])) + 1e-6)
            if coef < 1.0:
                grads *= coef
            return
        xp = self.xp
        coef = xp.minimum(self.clipnorm / (xp.sqrt(norm_sq.astype(np.float64)) + 1e-6), 1.0)
        grads *= coef.astype(grads.dtype)

    decoupled_weight_decay = False
    # True when _update saves the weights in self._previous and writes the finite check into
    # self._check in the same pass as the update (Ops.adam, Ops.sgd); otherwise _step does
    # both around it, two more passes over the buffer.
    _guarded_update = False

    def _update(self, params, grads, lr):
        """Update ``params`` in place from ``grads``; ``lr`` is a 1-element array."""
        raise NotImplementedError

    def state_dict(self):
        """``{"iterations": t, "<slot>": array, ...}``: everything needed to resume exactly."""
        host = self.ops.to_host if self.buffer is not None else np.asarray
        return {"iterations": self.iterations,
                **{name: np.array(host(arr)) for name, arr in self.state.items()}}

    def load_state_dict(self, state):
        state = dict(state)
        iterations = state.pop("iterations", 0)
        if (not is_int(iterations)
                or not 0 <= iterations < 2 ** 53):
            raise ValueError(f"the optimizer's step count must be an integer in [0, 2**53), got "
                             f"{iterations!r}")
        self.iterations = int(iterations)
        unknown = set(state) - set(self.slots)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no state named {sorted(unknown)}")
        for name, arr in state.items():
            arr = np.asarray(arr)
            if self.buffer is not None:
                if arr.shape != self.buffer.values.shape:
                    raise ValueError(
                        f"optimizer state {name!r} has shape {arr.shape}, the model has "
                        f"{self.buffer.values.shape[0]} parameters"
                    )
                self.state[name][...] = arr
            else:
                self.state[name] = arr.copy()

    def get_config(self):
        lr = self.learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = serialize(lr)
        elif callable(lr):
            raise ValueError("only neuralnp.schedules schedules can be saved; a plain function "
                             "has no config. Wrap it in a LearningRateSchedule subclass")
        config = {"learning_rate": lr}
        if self.weight_decay:
            config["weight_decay"] = self.weight_decay
        if self.clipnorm is not None:
            config["clipnorm"] = self.clipnorm
        if self.clipvalue is not None:
            config["clipvalue"] = self.clipvalue
        return config


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formula.

    Without momentum: ``θ ← θ - η g``. With momentum ``μ``: ``b ← μ b + (1 - dampening) g``
    (``b = g`` on the first step), then ``θ ← θ - η b``, or with ``nesterov=True``
    ``θ ← θ - η (g + μ b)``.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, dampening=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check_range("momentum", momentum, 0, 1)
        self.dampening = _check_range("dampening", dampening, 0, 1, high_open=False)
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)
        self.slots = ("momentum",) if self.momentum else ()
        self._guarded_update = not self.momentum

    def _update(self, params, grads, lr):
        if not self.momentum:
            return self.ops.sgd(params, grads, lr, self._tmp, self._previous, self._check)
        xp, buf = self.xp, self.state["momentum"]
        buf *= self.momentum
        xp.multiply(grads, 1.0 - self.dampening, out=self._tmp)
        buf += self._tmp
        self._on_first_step(buf, grads)  # torch starts the buffer at g itself
        if self.nesterov:
            xp.multiply(buf, self.momentum, out=self._tmp)
            self._tmp += grads
            return self.ops.sgd(params, self._tmp, lr, self._tmp)
        return self.ops.sgd(params, buf, lr, self._tmp)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop, ``torch.optim.RMSprop``'s formula (``rho`` is torch's ``alpha``).

    ``s ← ρ s + (1-ρ) g²``; centered: ``ḡ ← ρ ḡ + (1-ρ) g`` and ``d = √(s - ḡ²) + ε``, else
    ``d = √s + ε``; then ``θ ← θ - η g/d``, or with momentum ``b ← μ b + g/d``, ``θ ← θ - η b``.
    Keras puts ε inside the square root; we follow torch.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-8, centered=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _check_range("rho", rho, 0, 1)
        self.momentum = _check_range("momentum", momentum, 0, 1)
        self.epsilon = _check_range("epsilon", epsilon, 0, math.inf)
        self.centered = bool(centered)
        self.slots = ("square_avg",) + (("grad_avg",) if centered else ()) + \
            (("momentum",) if self.momentum else ())

    def build(self, buffer, ops=None):
        super().build(buffer, ops)
        self._denom = self.xp.empty_like(buffer.values)

    def _update(self, params, grads, lr):
        xp, rho, tmp, denom = self.xp, self.rho, self._tmp, self._denom
        sq = self.state["square_avg"]
        sq *= rho
        xp.multiply(grads, grads, out=tmp)
        tmp *= 1.0 - rho
        sq += tmp
        if self.centered:
            ga = self.state["grad_avg"]
            ga *= rho
            xp.multiply(grads, 1.0 - rho, out=tmp)
            ga += tmp
            xp.multiply(ga, ga, out=denom)
            xp.subtract(sq, denom, out=denom)
            xp.sqrt(denom, out=denom)
        else:
            xp.sqrt(sq, out=denom)
        denom += self.epsilon
        xp.divide(grads, denom, out=denom)  # g/d: the step direction
        if self.momentum:
            buf = self.state["momentum"]
            buf *= self.momentum
            buf += denom
            denom = buf
        self.ops.sgd(params, denom, lr, tmp)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, ``torch.optim.Adagrad``'s formula.

    ``Σ ← Σ + g²``, ``θ ← θ - η_t g / (√Σ + ε)`` with ``η_t = η / (1 + (t-1)·lr_decay)``;
    ``Σ`` starts at ``initial_accumulator_value``.
    """

    slots = ("sum",)

    def __init__(self, learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-10,
                 lr_decay=0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _check_range("initial_accumulator_value",
                                                      initial_accumulator_value, 0, math.inf)
        self.epsilon = _check_range("epsilon", epsilon, 0, math.inf)
        self.lr_decay = _check_range("lr_decay", lr_decay, 0, math.inf)

    def _initial_state(self, name):
        return self.initial_accumulator_value

    def build(self, buffer, ops=None):
        super().build(buffer, ops)
        self._direction = self.xp.empty_like(buffer.values)

    def _update(self, params, grads, lr):
        xp, acc, tmp, direction = self.xp, self.state["sum"], self._tmp, self._direction
        xp.multiply(grads, grads, out=tmp)
        acc += tmp
        xp.sqrt(acc, out=direction)
        direction += self.epsilon
        xp.divide(grads, direction, out=direction)
        self.ops.sgd(params, direction, lr, tmp)

    def _numbers(self, t, rate):
        return (rate / (1.0 + (t - 1) * self.lr_decay) if self.lr_decay else rate,)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon, "lr_decay": self.lr_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected exactly as ``torch.optim.Adam`` computes it.

    ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, then
    ``θ ← θ - (η / (1-β₁ᵗ)) · m / (√v̂ / √(1-β₂ᵗ) + ε)`` where ``v̂ = v``, or with
    ``amsgrad=True`` the running maximum of ``v`` (AMSGrad).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_range("beta_1", beta_1, 0, 1)
        self.beta_2 = _check_range("beta_2", beta_2, 0, 1)
        self.epsilon = _check_range("epsilon", epsilon, 0, math.inf)
        self.amsgrad = bool(amsgrad)
        self.slots = ("m", "v", "v_max") if self.amsgrad else ("m", "v")
        # Nadam writes its own update, and AdamW's decay changes the weights before Ops.adam
        self._guarded_update = type(self) is Adam

    # The bias corrections η/(1-β₁ᵗ) and √(1-β₂ᵗ), as the ops take them
    numbers = ("_lr", "_step_size", "_bc2_sqrt")

    def _numbers(self, t, rate):
        return rate, rate / (1.0 - self.beta_1 ** t), self._sqrt(1.0 - self.beta_2 ** t)

    def _update(self, params, grads, lr):
        guarded = self._guarded_update
        # One fused pass over the flat buffer on NumbaOps.
        self.ops.adam(params, grads, self.state["m"], self.state["v"], self.state.get("v_max"),
                      self.beta_1, self.beta_2, self.epsilon, self._step_size, self._bc2_sqrt,
                      self._tmp, self._previous if guarded else None,
                      self._check if guarded else None)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``:
    ``θ ← θ(1 - ηλ)`` before the Adam step, instead of adding ``λθ`` to the gradient."""

    decoupled_weight_decay = True

    def __init__(self, learning_rate=0.001, weight_decay=0.01, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)

    numbers = Adam.numbers + ("_decay",)

    def _numbers(self, t, rate):
        return (*super()._numbers(t, rate), 1.0 - rate * self.weight_decay)

    def _update(self, params, grads, lr):
        if self.weight_decay:
            params *= self._decay
        super()._update(params, grads, lr)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


class Nadam(Adam):
    """Adam with Nesterov momentum (Dozat), as ``torch.optim.NAdam`` computes it.

    ``μ_t = β₁(1 - ½·0.96^(t·ψ))`` with ``ψ = momentum_decay``; with ``Π_t = Π_{k≤t} μ_k``:
    ``θ ← θ - η(1-μ_t)/(1-Π_t) · g/d - η μ_{t+1}/(1-Π_t μ_{t+1}) · m/d``,
    ``d = √(v/(1-β₂ᵗ)) + ε``.
    """

    def __init__(self, learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 momentum_decay=0.004, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)
        self.momentum_decay = _check_range("momentum_decay", momentum_decay, 0, math.inf)
        self._mu_product, self._prod = 1.0, None

    numbers = ("_lr", "_bc2", "_c1", "_c2")

    def build(self, buffer, ops=None):
        # Π_t is a float on the host; a device keeps its own, as a 1-element float64 array
        self._prod = None if ops is None or ops.reads_are_free else \
            ops.xp.full(1, self._mu_product)
        super().build(buffer, ops)
        self._denom = self.xp.empty_like(buffer.values)

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _numbers(self, t, rate):
        mu, mu_next = self._mu(t), self._mu(t + 1)
        product = (self._mu_product if self._on_host else self._prod) * mu  # Π_t
        self._next_product = product
        return (rate, 1.0 - self.beta_2 ** t, rate * (1.0 - mu) / (1.0 - product),
                rate * mu_next / (1.0 - product * mu_next))

    def apply(self, gate, bad):
        super().apply(gate, bad)
        if self._on_host:
            if gate[0]:
                self._mu_product = self._next_product
        else:
            self.xp.copyto(self._prod, self._next_product, where=gate != 0)

    def state_dict(self):
        """Adam's state plus ``mu_product`` (Π_t), so that loading takes constant time."""
        product = self._mu_product if self._prod is None else float(self._prod[0])
        return {**super().state_dict(), "mu_product": product}

    def load_state_dict(self, state):
        state = dict(state)
        mu_product = state.pop("mu_product", None)
        super().load_state_dict(state)
        if mu_product is None:  # a state saved before Π_t was
            mu_product = self._rebuild_mu_product(self.iterations)
        if (isinstance(mu_product, bool) or not isinstance(mu_product, (float, int, np.floating))
                or not 0.0 <= mu_product <= 1.0):
            raise ValueError(f"Nadam's mu_product must be a number in [0, 1], got {mu_product!r}")
        self._mu_product = float(mu_product)
        if getattr(self, "_prod", None) is not None:
            self._prod.fill(self._mu_product)

    def _rebuild_mu_product(self, steps, limit=10 ** 6):
        """Π_t with the multiplications the steps made, bit for bit. μ_k < 1 never decreases
        with k, so once a product stops changing (0, or the smallest subnormal, which rounds
        back to itself) it never changes again: for the usual β₁ that happens within thousands
        of steps and the loop ends there. Past ``limit`` steps μ_k equals β₁ to the last bit,
        so a power finishes it."""
        product = 1.0
        for t in range(1, min(steps, limit) + 1):
            new = product * self._mu(t)
            if new == product:
                return product
            product = new
        return product * self.beta_1 ** max(0, steps - limit)

    def _update(self, params, grads, lr):
        xp, tmp, denom = self.xp, self._tmp, self._denom
        v = self.ops.adam_moments(grads, self.state["m"], self.state["v"],
                                  self.state.get("v_max"), self.beta_1, self.beta_2, tmp)
        xp.divide(v, self._bc2, out=denom)
        xp.sqrt(denom, out=denom)
        denom += self.epsilon
        xp.divide(grads, denom, out=tmp)
        tmp *= self._c1
        params -= tmp
        xp.divide(self.state["m"], denom, out=tmp)
        tmp *= self._c2
        params -= tmp

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad")
        return {**config, "momentum_decay": self.momentum_decay}


REGISTRY = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adam": Adam, "adamw": AdamW,
            "nadam": Nadam}


def get(identifier):
    """An optimizer from a name (``"adam"``, with its defaults), a config dict, or an instance."""
    return resolve(identifier, REGISTRY, "optimizer")
