"""Check a layer in one call: ``check_layer(layer, input_shape)``.

A layer here is a hand-written ``forward`` and ``backward``, and everything else the library
does with it (training, saving, loading, float32, ONNX) trusts that pair and the config. The
checker builds fresh copies of ``layer`` from its config (``layer`` itself is never modified),
gives them the same random weights, and runs, in order:

``config``     ``get_config()`` is JSON; the class is in the layer registry under its name;
               ``from_config`` of the JSON gives the same config back, and a layer that
               computes what ``layer`` computes with the same weights (an argument missing
               from the config would otherwise take its default after loading).
``build``      in float64: the output has the shape ``compute_output_shape`` promises (with the
               batch axis in front) and the input's dtype; weight names are unique.
``gradients``  with ``training=False`` and ``training=True``: the scalar ``L = Σ y ⊙ R`` for a
               random ``R`` has ``∂L/∂y = R``, so ``backward(R)`` must return ``∂L/∂x`` and
               write ``∂L/∂θ`` for every parameter ``θ``. Each entry is compared with the
               central difference ``(L(θ + ε) - L(θ - ε)) / 2ε`` in float64 (``ε = 1e-6``):
               ``|analytic - numeric| <= rtol·|numeric| + atol`` with ``rtol = 1e-5`` and
               ``atol`` a thousandth of that relative to the largest entry (plus the rounding
               of ``L``), so a 1 % error in a single entry fails. Random numbers and states
               (Dropout's mask, BatchNormalization's moving statistics) are put back before
               every forward call, so each evaluation sees the same mask. ``backward`` must
               overwrite every gradient entry (the model never zeroes them between steps), and
               write the same ones with ``need_input_grad`` off (the model's first layer).
``float32``    the same weights in float32: outputs and gradients keep float32 and agree with
               float64 within ``1e-4`` of their largest entry (``training=True`` too, unless
               the layer draws random numbers: float32 and float64 draws differ).
``save/load``  the layer alone in a float32 ``Sequential``, saved to a temporary folder and
               loaded back: same class, config and weights, and bit-identical predictions.
``onnx``       :mod:`neuralnp.onnx` has a converter for the class; with ``onnx`` and
               ``onnxruntime`` installed the model is exported and onnxruntime's outputs must
               match ``predict`` (``rtol = 1e-5``, ``atol = 1e-6``), else that half is skipped
               with a warning. ``onnx=False`` skips the part for layers you never export.

The first part that fails raises ``AssertionError`` naming the part, the weight or input, and
what to change. The cost is two forward calls per input and weight entry and mode, so keep
``input_shape`` and the layer small (a few hundred entries check in well under a second).

>>> import neuralnp as nn
>>> report = check_layer(nn.Dense(3, activation="tanh"), (4,))
>>> report.passed
['config', 'build', 'gradients', 'float32', 'save/load', 'onnx']
"""

import copy
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import onnx as nn_onnx
from .layers.base import REGISTRY, Layer
from .loading import load_model
from .model import Sequential
from ._checks import is_int

EPS = 1e-6


class LayerCheck:
    """What :func:`check_layer` did: ``passed`` (part names, in order) and ``skipped``
    (``{part: reason}``)."""

    def __init__(self, layer_class):
        self.layer_class = layer_class
        self.passed, self.skipped = [], {}

    def __repr__(self):
        skipped = "".join(f"; skipped {k}: {v}" for k, v in self.skipped.items())
        return f"<LayerCheck {self.layer_class}: passed {', '.join(self.passed)}{skipped}>"


def check_layer(layer, input_shape, *, x=None, batch_size=4, seed=0, onnx=True, rtol=1e-5):
    """Check ``layer``'s gradients, config, save/load, float32 and ONNX export; see the module.

    ``layer`` is an instance, built or not; it is left as it is (the checks run on copies);
    ``input_shape`` excludes the batch axis, e.g. ``(4,)`` or ``(6, 6, 2)``. ``x`` is an input
    batch of shape ``(batch, *input_shape)`` for layers that need particular values (positive
    ones, say); by default ``batch_size`` rows of standard normal values drawn with ``seed``.
    ``onnx=False`` skips the ONNX part. ``rtol`` is the gradient check's relative tolerance.

    Returns a :class:`LayerCheck`; raises ``AssertionError`` at the first part that fails.
    """
    if isinstance(layer, type):
        raise TypeError(f"check_layer takes a layer instance, e.g. check_layer({layer.__name__}"
                        "(...), input_shape), not the class")
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer takes a neuralnp Layer, got {type(layer).__name__}")
    shape = tuple(input_shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    if not all(is_int(d) and d > 0
               for d in shape):
        raise ValueError(f"input_shape must be positive integers without the batch axis, "
                         f"e.g. (4,) or (6, 6, 2); got {input_shape!r}")
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.normal(size=(batch_size, *shape))
    x = np.array(x, dtype=np.float64, copy=True)
    if x.shape[1:] != shape:
        raise ValueError(f"x has shape {x.shape}, but input_shape {shape} needs "
                         f"(batch, {', '.join(map(str, shape))})")
    return _Checker(layer, shape, x, rng, seed, rtol).run(onnx)


class _Checker:
    def __init__(self, layer, input_shape, x, rng, seed, rtol):
        self.cls = type(layer)
        self.template = layer
        self.input_shape, self.x, self.rng, self.seed, self.rtol = input_shape, x, rng, seed, rtol
        self.what = f"check_layer({self.cls.__name__} {layer.name!r})"
        self.report = LayerCheck(self.cls.__name__)
        self.part = None

    def run(self, onnx):
        for part, method in (("config", self.check_config), ("build", self.check_build),
                             ("gradients", self.check_gradients), ("float32", self.check_float32),
                             ("save/load", self.check_save_load), ("onnx", self.check_onnx)):
            if part == "onnx" and not onnx:
                self.report.skipped[part] = "onnx=False"
                continue
            self.part = part
            try:
                method()
            except AssertionError:
                raise
            except Exception as e:  # the layer's own code failed inside this part
                self.fail(f"{type(e).__name__}: {e}", cause=e)
            self.report.passed.append(part)
        return self.report

    def fail(self, message, cause=None):
        raise AssertionError(f"{self.what}: {self.part} failed: {message}") from cause

    # -- config -----------------------------------------------------------------------------

    def check_config(self):
        config = self.template.get_config()
        if not isinstance(config, dict):
            self.fail(f"get_config() returned {type(config).__name__}, not a dict of the "
                      "constructor's arguments")
        try:
            text = json.dumps(config, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            self.fail(f"get_config() must hold JSON values only (numbers, strings, lists, dicts, "
                      f"None), so that a saved model can hold it: {e}. Store a name, or "
                      "neuralnp._registry.serialize(obj) for an initializer or regularizer")
        name = self.cls.__name__
        if REGISTRY.get(name) is not self.cls:
            other = REGISTRY.get(name)
            why = (f"the name is taken by {other.__module__}.{other.__qualname__}"
                   if other is not None else
                   "it was defined with register=False or its name starts with '_'")
            self.fail(f"{name} is not in the layer registry ({why}), so a saved model holding "
                      "it could not be loaded. Give it a unique public name and let it register "
                      "itself (every Layer subclass does when it is defined)")
        self.config = json.loads(text)
        try:
            again = self.fresh().get_config()
        except TypeError as e:
            self.fail(f"{name}.from_config(get_config()) raised TypeError: {e}. __init__ must "
                      "accept every key get_config() returns, and pass name= and dtype= on to "
                      "Layer.__init__ (take **kwargs)", cause=e)
        again = json.loads(json.dumps(again, allow_nan=False, sort_keys=True))
        if again != self.config:
            diff = sorted(k for k in self.config.keys() | again.keys()
                          if self.config.get(k, ...) != again.get(k, ...))
            self.fail(f"from_config(get_config()) gives a layer whose config differs at "
                      f"{', '.join(diff)}: {({k: self.config.get(k) for k in diff})} became "
                      f"{({k: again.get(k) for k in diff})}. get_config() must return exactly "
                      "the constructor's arguments")

    def fresh(self):
        return self.cls.from_config(json.loads(json.dumps(self.config)))

    def built(self, dtype):
        layer = self.fresh()
        layer.build_for(self.input_shape, dtype, np.random.default_rng(self.seed))
        return layer

    # -- build ------------------------------------------------------------------------------

    def check_build(self):
        layer = self.layer = self.built("float64")
        # Off the initializers' zeros and ones (a zero bias, a unit gamma), which hide mistakes
        # such as a missing bias or a gamma applied twice; sign-keeping, so variances stay > 0.
        for p in layer.variables():
            if p.value.dtype != np.float64:
                self.fail(f"weight {p.name!r} is {p.value.dtype} in a float64 layer: create "
                          "weights with add_weight / add_state, which use the layer's dtype")
            p.value[...] = (p.value * self.rng.uniform(0.9, 1.1, p.shape)
                            + self.rng.uniform(0.0, 0.1, p.shape))
        self.weights = layer.get_weights()
        names = [p.name for p in layer.variables()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            self.fail(f"weight names {twice} are used twice; a saved file names each weight, so "
                      "give each add_weight / add_state call its own name")
        for p in layer.parameters():
            if p.grad.shape != p.shape:
                self.fail(f"parameter {p.name!r} has shape {p.shape} but its grad {p.grad.shape}")
        y = layer.forward(self.x.copy(), training=False)
        want = (len(self.x), *layer.output_shape)
        if tuple(np.shape(y)) != want:
            self.fail(f"forward returned shape {np.shape(y)}, but compute_output_shape"
                      f"({self.input_shape}) says {layer.output_shape}, i.e. {want} for this "
                      "batch; override compute_output_shape(input_shape) (shapes without the "
                      "batch axis)")
        if y.dtype != np.float64:
            self.fail(f"forward returned {y.dtype} for float64 input; compute in the input's "
                      "dtype (use self.dtype or x.dtype, not a fixed one)")
        self.part = "config"
        self.check_twin(y)
        self.part = "build"

    def check_twin(self, y):
        """The layer given and its copy from get_config() compute the same: a constructor
        argument missing from get_config() would silently take its default after loading."""
        twin = copy.deepcopy(self.template)
        twin.build_for(self.input_shape, "float64", np.random.default_rng(self.seed))
        try:
            twin.set_weights(self.weights)
        except ValueError as e:
            self.fail(f"the layer has other weights than a copy made from its get_config() "
                      f"({e}): get_config() misses a constructor argument", cause=e)
        if not np.array_equal(twin.forward(self.x.copy(), training=False), y, equal_nan=True):
            self.fail("the layer computes something else than a copy made from its "
                      "get_config(), with the same weights: get_config() misses a constructor "
                      "argument (every one must be in it, so that a loaded layer is the same)")

    # -- gradients --------------------------------------------------------------------------

    def check_gradients(self):
        for training in (False, True):
            self.check_mode(self.layer, training)
        self.layer.set_weights(self.weights)

    def check_mode(self, layer, training):
        mode = f"training={training}"
        replay = _Replay(layer)

        def forward(x):
            replay.restore()
            return np.array(layer.forward(x.copy(), training=training), copy=True)

        x = self.x.copy()
        y = forward(x)
        if not np.array_equal(y, forward(x), equal_nan=True):
            self.fail(f"forward({mode}) gave two different outputs for the same input, weights "
                      "and random generator state: draw random numbers from self._rng (the "
                      "model's generator, given to build_for), not np.random, so that a seed "
                      "fixes them and a step can be replayed")
        if not np.all(np.isfinite(y)):
            self.fail(f"forward({mode}) returned NaN or infinity for finite input")
        R = self.rng.normal(size=y.shape)
        params = layer.parameters()
        for p in params:
            p.grad[...] = np.nan
        forward(x)
        gx = layer.backward(R.copy())
        if gx is None:
            self.fail("backward returned None; it must return ∂L/∂x, shaped like its input "
                      "(only the model's first layer, with need_input_grad False, may skip it)")
        gx = np.array(gx, copy=True)
        if gx.shape != x.shape or gx.dtype != np.float64:
            self.fail(f"backward returned {gx.dtype} {gx.shape}; it must return ∂L/∂x with the "
                      f"input's shape {x.shape} and dtype float64")
        grads = [np.array(p.grad, copy=True) for p in params]
        for p, g in zip(params, grads):
            if np.isnan(g).any():
                self.fail(f"backward({mode}) did not write every entry of ∂L/∂{p.name} (it was "
                          "filled with NaN before the call and some stayed NaN). backward must "
                          "overwrite param.grad (grad[...] = ..., or out=param.grad), never add "
                          "to it: the model does not zero gradients between steps")

        def loss():
            return float(np.sum(forward(x) * R))

        scale = float(np.sum(np.abs(y * R)))
        self.compare(gx, numerical_gradient(loss, x), f"the input gradient ∂L/∂x ({mode})",
                     scale)
        for p, g in zip(params, grads):
            self.compare(g, numerical_gradient(loss, p.value),
                         f"the gradient of parameter {p.name!r} ({mode})", scale)

        # The model's first layer skips ∂L/∂x (need_input_grad off): a branch of its own.
        layer.need_input_grad = False
        try:
            for p in params:
                p.grad[...] = np.nan
            forward(x)
            layer.backward(R.copy())
        finally:
            layer.need_input_grad = True
        for p, g in zip(params, grads):
            if not np.allclose(p.grad, g, rtol=1e-12, atol=0.0):
                self.fail(f"with need_input_grad off (as the model's first layer) backward("
                          f"{mode}) writes another gradient for parameter {p.name!r} than with "
                          "it on; skip only the input gradient in that case")
        replay.restore()

    def compare(self, analytic, numeric, what, scale):
        # Central differences in float64 are good to ~1e-9 relative, so rtol = 1e-5 leaves a
        # wide margin while a 1 % error in any entry above a 1e-5 share of the largest fails.
        # The rounding of L itself (~1e-16·Σ|y ⊙ R| / ε) bounds what can be seen at all.
        atol = self.rtol * 1e-2 * float(np.max(np.abs(numeric), initial=0.0)) + 1e-9 * scale
        excess = np.abs(analytic - numeric) - (self.rtol * np.abs(numeric) + atol)
        if excess.size and np.nanmax(excess) > 0 or np.isnan(excess).any():
            i = np.unravel_index(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)),
                                 excess.shape)
            a, n = float(analytic[i]), float(numeric[i])
            rel = abs(a - n) / max(abs(n), 1e-300)
            bad = int(np.sum(~(excess <= 0)))
            self.fail(f"{what} is wrong: at index {tuple(map(int, i))} backward gives {a:.9g}, "
                      f"finite differences {n:.9g} (relative error {rel:.2e}, allowed "
                      f"{self.rtol:g}); {bad} of {excess.size} entries are off. Check the "
                      "derivative in backward against forward's formula")

    # -- float32 ----------------------------------------------------------------------------

    def check_float32(self):
        l64, l32 = self.layer, self.built("float32")
        replay = _Replay(l64)
        l64.forward(self.x.copy(), training=True)
        # float32 and float64 draws of one generator differ, so a random mask cannot match.
        random = replay.drew()
        replay.restore()
        for training in [False] if random else [False, True]:
            mode = f"training={training}"
            l64.set_weights(self.weights)
            l32.set_weights([w.astype(np.float32) for w in self.weights])
            y64 = np.array(l64.forward(self.x.copy(), training=training), copy=True)
            y32 = np.array(l32.forward(self.x.astype(np.float32), training=training), copy=True)
            if y32.dtype != np.float32:
                self.fail(f"forward({mode}) turned float32 input into {y32.dtype}: a float64 "
                          "constant array or np.float64 scalar promotes it; cast with "
                          ".astype(x.dtype) or build constants in self.dtype")
            self.agree(y32, y64, f"forward({mode})")
            R = self.rng.normal(size=y64.shape)
            g64 = np.array(l64.backward(R.copy()), copy=True)
            g32 = l32.backward(R.astype(np.float32))
            if g32.dtype != np.float32:
                self.fail(f"backward({mode}) turned a float32 gradient into {g32.dtype}; keep "
                          "the layer's dtype (cast with .astype(grad_out.dtype))")
            self.agree(g32, g64, f"∂L/∂x ({mode})")
            for p64, p32 in zip(l64.parameters(), l32.parameters()):
                self.agree(p32.grad, p64.grad, f"∂L/∂{p64.name} ({mode})")
        l64.set_weights(self.weights)

    def agree(self, a32, a64, what):
        # 1e-4 of the largest entry is ~800 float32 ulps: room for sums in another order and
        # float32's own exp and erf, far below what a formula computed in the wrong dtype (a
        # float16 intermediate, an epsilon lost to rounding) gives.
        a32, a64 = np.asarray(a32, dtype=np.float64), np.asarray(a64)
        err = float(np.max(np.abs(a32 - a64), initial=0.0))
        tol = 1e-4 * max(float(np.max(np.abs(a64), initial=0.0)), 1e-30)
        if not err <= tol:
            self.fail(f"{what} in float32 differs from float64 by {err:.3g} (allowed {tol:.3g}, "
                      "1e-4 of the largest entry) with the same weights and input: some step "
                      "loses precision in float32 (a cancellation, an epsilon too small for "
                      "float32, a sum in a lower precision)")

    # -- save/load --------------------------------------------------------------------------

    def check_save_load(self):
        self.model = model = Sequential([self.fresh()], seed=self.seed, dtype="float32")
        model.build(self.input_shape)
        model.set_weights(self.weights)
        x32 = self.x.astype(np.float32)
        self.predicted = model.predict(x32)
        with tempfile.TemporaryDirectory(prefix="neuralnp-check-") as tmp:
            model.save(Path(tmp) / "model")
            loaded = load_model(Path(tmp) / "model")
        got = loaded.layers[0]
        if type(got) is not self.cls:
            self.fail(f"the loaded layer is a {type(got).__module__}.{type(got).__qualname__}, "
                      f"not {self.cls.__module__}.{self.cls.__qualname__}")
        if json.loads(json.dumps(got.get_config(), sort_keys=True)) != self.config:
            self.fail(f"the loaded layer's config {got.get_config()} differs from the saved "
                      f"one {self.config}")
        for p, want, have in zip(got.variables(), model.get_weights(), loaded.get_weights()):
            if not np.array_equal(want, have):
                self.fail(f"weight {p.name!r} changed in the round trip")
        if not np.array_equal(loaded.predict(x32), self.predicted, equal_nan=True):
            self.fail("the loaded model predicts differently from the saved one although its "
                      "weights are equal: something forward reads is neither in get_config() "
                      "nor a weight. Create arrays with add_weight (trainable) or add_state "
                      "(running statistics), and put every constructor argument in get_config()")

    # -- onnx -------------------------------------------------------------------------------

    def check_onnx(self):
        name = self.cls.__name__
        if not nn_onnx.has_converter(self.cls):
            self.fail(f"neuralnp.onnx has no converter for {name}, so a model holding it cannot "
                      f"be exported. Register one: neuralnp.onnx.register_converter({name}, "
                      "convert), where convert(g, layer, x) adds nodes with g.op(...) and "
                      "returns the output's name (see its docstring); or pass onnx=False to "
                      "check_layer if you never export this layer")
        try:
            import onnxruntime as ort
            import onnx  # noqa: F401
        except ImportError:
            reason = ('onnx and onnxruntime are not installed (pip install "neuralnp[onnx]"), '
                      "so only the converter's presence was checked, not an export")
            self.report.skipped["onnx export"] = reason
            warnings.warn(f"{self.what}: {reason}", stacklevel=3)
            return
        with tempfile.TemporaryDirectory(prefix="neuralnp-check-") as tmp:
            path = Path(tmp) / "model.onnx"
            nn_onnx.export(self.model, path)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": self.x.astype(np.float32)})[0]
        want = self.predicted
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            err = np.max(np.abs(got - want)) if got.shape == want.shape else "a shape mismatch"
            self.fail(f"onnxruntime's output {got.shape} differs from predict {want.shape} by "
                      f"{err} (allowed: rtol 1e-5, atol 1e-6): the converter computes something "
                      "else than forward(training=False)")


class _Replay:
    """Puts a layer's random generators and states back as they were when this was made, so
    that forward can be run again and again with the same dropout mask and statistics."""

    def __init__(self, layer):
        self.generators = list({id(g): g for g in _generators(layer)}.values())
        self.saved = [(g, g.bit_generator.state) for g in self.generators]
        self.states = [(s, np.array(s.value, copy=True)) for s in layer.states()]

    def restore(self):
        for g, state in self.saved:
            g.bit_generator.state = state
        for s, value in self.states:
            s.value[...] = value

    def drew(self):
        """Whether a generator moved since this was made (or last restored)."""
        return any(g.bit_generator.state != state for g, state in self.saved)


def _generators(layer, seen=None):
    """Every ``numpy.random.Generator`` held by ``layer`` or a layer inside it."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return []
    seen.add(id(layer))
    found = []
    for value in vars(layer).values():
        if isinstance(value, np.random.Generator):
            found.append(value)
        elif isinstance(value, Layer):
            found += _generators(value, seen)
    return found


def numerical_gradient(f, x, eps=EPS):
    """``(f(x + ε·e_i) - f(x - ε·e_i)) / 2ε`` for every entry ``i`` of the float64 array ``x``,
    perturbing ``x`` in place (and restoring it), so the scalar ``f()`` may read ``x`` through
    any reference: a layer's cached input, a parameter's value."""
    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64, got {x.dtype}")
    grad = np.empty(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + eps
        plus = float(f())
        x[i] = original - eps
        minus = float(f())
        x[i] = original
        grad[i] = (plus - minus) / (2.0 * eps)
    return grad
