"""neuralnp.testing.check_layer must pass a correct layer and fail each kind of broken one with
a message naming the part; and Layer subclasses register themselves, safely."""

import doctest
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import layers, testing
from neuralnp import onnx as nn_onnx
from neuralnp.layers.base import REGISTRY
from neuralnp.testing import check_layer

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def registry():
    """The layer registry, put back as it was after the test (classes defined inside a test
    register themselves and would otherwise stay)."""
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)


@pytest.fixture
def converters(monkeypatch):
    """ONNX converters registered by the test are forgotten after it."""
    monkeypatch.setattr(nn_onnx, "_LAYERS", dict(nn_onnx._LAYERS))


# -- a 1 % error in one gradient entry --------------------------------------------------------

class OnePercentOffDense(nn.Dense):
    """A Dense whose backward scales one entry of one parameter's gradient by ``factor``."""

    param, entry, factor = "kernel", (0, 0), 1.0

    def backward(self, grad_out):
        grad_in = super().backward(grad_out)
        getattr(self, self.param).grad[self.entry] *= self.factor
        return grad_in


def test_a_correct_dense_passes_every_part(monkeypatch, converters):
    monkeypatch.setattr(OnePercentOffDense, "factor", 1.0)
    nn_onnx.register_converter(OnePercentOffDense, nn_onnx._LAYERS[nn.Dense])
    report = check_layer(OnePercentOffDense(3, activation="tanh"), (4,))
    assert report.passed == ["config", "build", "gradients", "float32", "save/load", "onnx"]


@pytest.mark.parametrize("param, entries", [("kernel", list(np.ndindex(4, 3))),
                                            ("bias", list(np.ndindex(3)))])
def test_a_one_percent_error_in_any_single_gradient_entry_fails(monkeypatch, param, entries):
    # Every entry in turn, so the criterion cannot hide a small entry behind a large one.
    monkeypatch.setattr(OnePercentOffDense, "param", param)
    monkeypatch.setattr(OnePercentOffDense, "factor", 1.01)
    for entry in entries:
        monkeypatch.setattr(OnePercentOffDense, "entry", entry)
        layer = OnePercentOffDense(3, activation="tanh", name="off")
        with pytest.raises(AssertionError) as info:
            check_layer(layer, (4,), onnx=False)
        message = str(info.value)
        assert "gradients failed" in message
        assert f"gradient of parameter 'off.{param}' (training=False) is wrong" in message
        assert f"at index {entry}" in message
        assert "relative error 1.00e-02" in message


class OffInput(nn.Layer):
    """y = x²; backward gets one entry of ∂L/∂x wrong by 1 %."""

    def forward(self, x, training=False):
        self._x = x
        return x * x

    def backward(self, grad_out):
        grad_in = 2 * self._x * grad_out
        grad_in[1, 2] *= 1.01
        return grad_in


def test_a_one_percent_error_in_the_input_gradient_fails():
    with pytest.raises(AssertionError, match=r"gradients failed: the input gradient ∂L/∂x "
                                             r"\(training=False\) is wrong: at index \(1, 2\)"):
        check_layer(OffInput(), (4,), onnx=False)


# -- other broken layers, one part each -------------------------------------------------------

class AddsToGrad(nn.Layer):
    """y = x ⊙ w, but backward adds to w.grad instead of overwriting it."""

    def build(self, input_shape):
        self.w = self.add_weight("w", input_shape, "ones")

    def forward(self, x, training=False):
        self._x = x
        return x * self.w.value

    def backward(self, grad_out):
        self.w.grad += np.sum(grad_out * self._x, axis=0)
        return grad_out * self.w.value


def test_a_backward_that_accumulates_fails():
    with pytest.raises(AssertionError, match=r"gradients failed: backward\(training=False\) "
                                             r"did not write every entry.*never add to it"):
        check_layer(AddsToGrad(), (3,), onnx=False)


class FirstLayerOnly(nn.Dense):
    """A Dense whose backward doubles the kernel gradient when it skips ∂L/∂x."""

    def backward(self, grad_out):
        grad_in = super().backward(grad_out)
        if not self.need_input_grad:
            self.kernel.grad[...] *= 2
        return grad_in


def test_the_first_layer_branch_of_backward_is_checked_too():
    with pytest.raises(AssertionError, match=r"gradients failed: with need_input_grad off .* "
                                             r"another gradient for parameter '.*kernel'"):
        check_layer(FirstLayerOnly(2), (3,), onnx=False)


class GlobalNoise(nn.Layer):
    """Noise from np.random's global state: no seed can replay it."""

    def forward(self, x, training=False):
        return x + np.random.normal(size=x.shape) if training else x

    def backward(self, grad_out):
        return grad_out


class Noise(GlobalNoise):
    """y = x + 0.1·n, n ~ N(0, 1) from the layer's generator, in training only."""

    def forward(self, x, training=False):
        return x + 0.1 * self._rng.standard_normal(x.shape) if training else x


def test_random_numbers_must_come_from_the_layers_generator():
    with pytest.raises(AssertionError, match=r"gradients failed: forward\(training=True\) gave "
                                             r"two different outputs.*self\._rng"):
        check_layer(GlobalNoise(), (3,), onnx=False)
    report = check_layer(Noise(), (3,), onnx=False)  # replayed before each evaluation
    assert "gradients" in report.passed


class Pairs(nn.Layer):
    """Sums neighbouring features, (batch, 2k) → (batch, k), without compute_output_shape."""

    def forward(self, x, training=False):
        return x.reshape(len(x), -1, 2).sum(axis=2)

    def backward(self, grad_out):
        return np.repeat(grad_out, 2, axis=1)


def test_a_wrong_output_shape_fails_at_build():
    with pytest.raises(AssertionError, match=r"build failed: forward returned shape \(4, 2\), "
                                             r"but compute_output_shape.*override"):
        check_layer(Pairs(), (4,), onnx=False)


class Promotes(nn.Layer):
    """y = x·c with a float64 constant array: float32 inputs come out float64."""

    def forward(self, x, training=False):
        return x * np.full(x.shape[1:], 2.0)

    def backward(self, grad_out):
        return grad_out * 2.0


def test_float32_must_stay_float32():
    with pytest.raises(AssertionError, match=r"float32 failed: forward\(training=False\) turned "
                                             r"float32 input into float64"):
        check_layer(Promotes(), (3,), onnx=False)


class HiddenWeight(nn.Layer):
    """y = x ⊙ w with w drawn in build but not created by add_weight: never saved."""

    def build(self, input_shape):
        self.w = self._rng.normal(size=input_shape).astype(self.dtype)

    def forward(self, x, training=False):
        return x * self.w

    def backward(self, grad_out):
        return grad_out * self.w


class Forgets(nn.Layer):
    """y = k·x, but get_config() leaves k out, so a loaded layer has the default k."""

    def __init__(self, k=1.0, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def forward(self, x, training=False):
        return self.k * x

    def backward(self, grad_out):
        return self.k * grad_out


def test_what_a_saved_model_does_not_hold_fails_at_save_load():
    with pytest.raises(AssertionError, match=r"save/load failed: the loaded model predicts "
                                             r"differently.*add_weight"):
        check_layer(HiddenWeight(), (3,), onnx=False)


class ObjectInConfig(Forgets):
    def get_config(self):
        return {**super().get_config(), "k": np.float32(self.k)}


class NoKwargs(nn.Layer):
    def __init__(self):
        super().__init__()

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out):
        return grad_out


def test_config_problems_fail_at_config(registry):
    with pytest.raises(AssertionError, match=r"config failed: the layer computes something else "
                                             r"than a copy made from its get_config\(\)"):
        check_layer(Forgets(k=3.0), (3,), onnx=False)
    check_layer(Forgets(k=1.0), (3,), onnx=False)  # the default: nothing is lost
    with pytest.raises(AssertionError, match=r"config failed: get_config\(\) must hold JSON "
                                             r"values only"):
        check_layer(ObjectInConfig(k=2.0), (3,), onnx=False)
    with pytest.raises(AssertionError, match=r"config failed: NoKwargs.from_config\(get_config"
                                             r"\(\)\) raised TypeError.*\*\*kwargs"):
        check_layer(NoKwargs(), (3,), onnx=False)

    class Unsaved(Noise, register=False):
        pass

    with pytest.raises(AssertionError, match=r"config failed: Unsaved is not in the layer "
                                             r"registry \(it was defined with register=False"):
        check_layer(Unsaved(), (3,), onnx=False)


# -- ONNX -------------------------------------------------------------------------------------

class Triple(nn.Layer):
    """y = 3x."""

    def forward(self, x, training=False):
        return 3 * x

    def backward(self, grad_out):
        return 3 * grad_out


def test_a_layer_without_a_converter_says_how_to_register_one(converters):
    with pytest.raises(AssertionError, match=r"onnx failed: neuralnp.onnx has no converter for "
                                             r"Triple.*register_converter\(Triple, convert\).*"
                                             r"onnx=False"):
        check_layer(Triple(), (3,))
    report = check_layer(Triple(), (3,), onnx=False)
    assert report.passed[-1] == "save/load" and report.skipped == {"onnx": "onnx=False"}


def test_a_registered_converter_is_exported_and_compared(converters):
    pytest.importorskip("onnxruntime")
    nn_onnx.register_converter(Triple, lambda g, layer, x: g.op("Mul", [x, g.scalar(2)]))
    with pytest.raises(AssertionError, match=r"onnx failed: onnxruntime's output .* differs"):
        check_layer(Triple(), (3,))

    @nn_onnx.register_converter(Triple)
    def _triple(g, layer, x):
        return g.op("Mul", [x, g.scalar(3)])

    assert check_layer(Triple(), (3,)).passed[-1] == "onnx"


def test_without_onnxruntime_only_the_converter_is_checked(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.warns(UserWarning, match=r"onnx and onnxruntime are not installed"):
        report = check_layer(nn.ReLU(), (3,))
    assert report.passed[-1] == "onnx" and "onnx export" in report.skipped


def test_register_converter_refuses_what_is_not_a_layer_class():
    with pytest.raises(TypeError, match="takes a Layer subclass"):
        nn_onnx.register_converter(int, lambda g, layer, x: x)
    with pytest.raises(TypeError, match="must be a function"):
        nn_onnx.register_converter(Triple, "Mul")


# -- the arguments ----------------------------------------------------------------------------

def test_check_layer_says_what_it_takes():
    with pytest.raises(TypeError, match=r"not the class"):
        check_layer(nn.ReLU, (3,))
    with pytest.raises(TypeError, match=r"takes a neuralnp Layer"):
        check_layer("relu", (3,))
    with pytest.raises(ValueError, match=r"input_shape must be positive integers"):
        check_layer(nn.ReLU(), (0, 3))
    with pytest.raises(ValueError, match=r"x has shape \(2, 4\)"):
        check_layer(nn.ReLU(), (3,), x=np.ones((2, 4)))
    # A leading None (Keras's batch axis) and an explicit x are accepted; the layer is untouched.
    layer = nn.Dense(2)
    check_layer(layer, (None, 3), x=np.linspace(-1, 1, 6).reshape(2, 3), onnx=False)
    assert not layer.built


def test_the_module_docstring_runs():
    result = doctest.testmod(testing)
    assert result.attempted > 0 and result.failed == 0


# -- registration -----------------------------------------------------------------------------

def _define(module, source="class Twin(nn.Layer):\n    pass\n"):
    namespace = {"__name__": module, "nn": nn}
    exec(source, namespace)
    return namespace.get("Twin")


def test_every_layer_subclass_registers_on_definition(registry):
    first = _define("notebook")
    assert layers.REGISTRY is REGISTRY and REGISTRY["Twin"] is first
    again = _define("notebook")  # the same cell run twice replaces the class
    assert REGISTRY["Twin"] is again
    with pytest.raises(ValueError, match=r"two layer classes are called 'Twin': notebook.Twin "
                                         r"and elsewhere.Twin.*register=False"):
        _define("elsewhere")
    assert REGISTRY["Twin"] is again
    _define("elsewhere", "class Twin(nn.Layer, register=False):\n    pass\n")
    _define("elsewhere", "class _Twin(nn.Layer):\n    pass\n")
    assert REGISTRY["Twin"] is again and "_Twin" not in REGISTRY
    with pytest.raises(ValueError, match=r"two layer classes are called 'Dense'"):
        _define("mine", "class Dense(nn.Dense):\n    pass\n")


def test_the_registry_holds_layer_classes_only():
    assert all(isinstance(c, type) and issubclass(c, nn.Layer) for c in REGISTRY.values())
    assert all(name == c.__name__ for name, c in REGISTRY.items())
    # Base classes are not layers a config can name.
    for name in ("Layer", "WeightedLayer", "_Elementwise", "_Normalization", "Sequential",
                 "os.system"):
        with pytest.raises(ValueError, match=rf"unknown layer class '{re.escape(name)}'.*"
                                             r"import it first"):
            layers.deserialize({"class_name": name, "config": {}})


def test_a_users_layer_loads_from_a_saved_model_without_extra_calls(tmp_path):
    model = nn.Sequential([nn.Dense(3), Noise(), Triple()], seed=0)
    model.build((2,))
    model.save(tmp_path / "m")
    loaded = nn.load_model(tmp_path / "m")
    assert [type(layer) for layer in loaded.layers] == [nn.Dense, Noise, Triple]
    x = np.ones((2, 2), dtype="float32")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# -- the README -------------------------------------------------------------------------------

def _readme_example():
    section = README.read_text().split("\n## Write your own layer\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's 'Write your own layer' section has one code block"
    return blocks[0]


def test_the_readme_example_runs(tmp_path, monkeypatch, registry, converters, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_write_your_own_layer"}
    exec(compile(_readme_example(), str(README), "exec"), namespace)
    assert "passed config, build, gradients, float32, save/load, onnx" in capsys.readouterr().out
    assert (tmp_path / "scale-model" / "config.json").is_file()
    # A mistake in its backward is caught, by name.
    broken = _readme_example().replace("np.sum(grad_out * self.x, axis=0)",
                                       "np.sum(grad_out * self.x, axis=0) * 1.01")
    broken = broken.split("print(check_layer")[0] + "check_layer(Scale(), (4,))\n"
    with pytest.raises(AssertionError, match=r"gradient of parameter 'scale.*\.w'"):
        exec(compile(broken, str(README), "exec"), {"__name__": "readme_write_your_own_layer"})
