"""Optimizers over the flat parameter buffer.

An optimizer is bound to a model's :class:`~neuralnp.parameters.FlatBuffer`; ``step()`` reads
``buffer.grads`` and updates ``buffer.values`` with a few vectorised operations over the whole
model at once. Its state (moments, step count) is kept in flat arrays of the same length, exposed
through ``state_dict()`` / ``load_state_dict()`` so a saved model resumes training exactly.
"""

import math

import numpy as np

from ._registry import Configurable, resolve


class Optimizer(Configurable):
    """Base class: subclasses name their state arrays in ``slots`` and write ``_update``."""

    slots = ()

    def __init__(self, learning_rate=0.001):
        if not callable(learning_rate):
            learning_rate = float(learning_rate)
            if not (learning_rate > 0 and math.isfinite(learning_rate)):
                raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
        self.learning_rate = learning_rate
        self.iterations = 0
        self.buffer = None
        self.state = {}

    def build(self, buffer):
        """Bind to a model's flat buffer and create zeroed state (kept if already loaded)."""
        self.buffer = buffer
        for name in self.slots:
            arr = self.state.get(name)
            if arr is None or arr.shape != buffer.values.shape:
                self.state[name] = np.zeros_like(buffer.values)
        self._tmp = np.empty_like(buffer.values)

    def current_learning_rate(self):
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    def step(self):
        """One update of every parameter from its gradient."""
        if self.buffer is None:
            raise RuntimeError("the optimizer is not bound to a model; call model.compile() first")
        lr = self.current_learning_rate()
        self.iterations += 1
        self._update(self.buffer.values, self.buffer.grads, lr)

    def _update(self, params, grads, lr):
        raise NotImplementedError

    def state_dict(self):
        """``{"iterations": t, "<slot>": array, ...}``: everything needed to resume exactly."""
        return {"iterations": self.iterations,
                **{name: np.array(arr, copy=True) for name, arr in self.state.items()}}

    def load_state_dict(self, state):
        state = dict(state)
        self.iterations = int(state.pop("iterations", 0))
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
        if callable(self.learning_rate):
            raise ValueError("saving a learning-rate schedule is not supported yet")
        return {"learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formula.

    Without momentum: ``θ ← θ - η g``. With momentum ``μ``: ``b ← μ b + (1 - dampening) g``
    (``b = g`` on the first step), then ``θ ← θ - η b``, or with ``nesterov=True``
    ``θ ← θ - η (g + μ b)``.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, dampening=0.0, nesterov=False):
        super().__init__(learning_rate)
        if not 0.0 <= momentum < 1.0 or not 0.0 <= dampening <= 1.0:
            raise ValueError(f"SGD needs 0 <= momentum < 1 and 0 <= dampening <= 1, got "
                             f"momentum={momentum}, dampening={dampening}")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)
        self.slots = ("momentum",) if self.momentum else ()

    def _update(self, params, grads, lr):
        if not self.momentum:
            np.multiply(grads, lr, out=self._tmp)
            params -= self._tmp
            return
        buf = self.state["momentum"]
        if self.iterations == 1:
            buf[...] = grads
        else:
            buf *= self.momentum
            np.multiply(grads, 1.0 - self.dampening, out=self._tmp)
            buf += self._tmp
        if self.nesterov:
            np.multiply(buf, self.momentum, out=self._tmp)
            self._tmp += grads
        else:
            self._tmp[...] = buf
        self._tmp *= lr
        params -= self._tmp

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected exactly as ``torch.optim.Adam`` computes it.

    ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, then
    ``θ ← θ - (η / (1-β₁ᵗ)) · m / (√v / √(1-β₂ᵗ) + ε)``.
    """

    slots = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got beta_1={beta_1}, beta_2={beta_2}")
        if not epsilon >= 0:
            raise ValueError(f"Adam epsilon must be >= 0, got {epsilon}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, params, grads, lr):
        m, v, tmp = self.state["m"], self.state["v"], self._tmp
        b1, b2, t = self.beta_1, self.beta_2, self.iterations
        m *= b1
        np.multiply(grads, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(grads, grads, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        step_size = lr / (1.0 - b1 ** t)
        np.sqrt(v, out=tmp)
        tmp /= math.sqrt(1.0 - b2 ** t)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        params -= tmp

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


REGISTRY = {"sgd": SGD, "adam": Adam}


def get(identifier):
    """An optimizer from a name (``"adam"``, with its defaults), a config dict, or an instance."""
    return resolve(identifier, REGISTRY, "optimizer")
