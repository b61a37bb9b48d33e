"""ONNX export: onnxruntime runs the exported graph and must give ``model.predict``'s outputs."""

import doctest
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import neuralnp as nn  # noqa: E402
from neuralnp import onnx as nn_onnx  # noqa: E402
from neuralnp.cli import main  # noqa: E402
from neuralnp.layers.activations import REGISTRY as ACTIVATIONS  # noqa: E402

# Two correct float32 implementations differ by a few ulps: matrix products sum in another
# order, onnxruntime has its own exp, erf and tanh. rtol 1e-5 is about 80 float32 ulps. A
# relative bound means nothing for outputs that cancel to almost zero (an ulp of the terms is a
# large fraction of them), hence atol 1e-6: far below what a wrong weight, pad or axis gives.
RTOL, ATOL = 1e-5, 1e-6


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_exports(model, x, path, **kwargs):
    """Export, check the file, and compare onnxruntime with predict; returns the loaded file."""
    nn_onnx.export(model, path, **kwargs)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dtype = np.dtype(kwargs.get("dtype") or model.dtype)
    got = _session(path).run(None, {"input": x.astype(dtype)})[0]
    assert got.dtype == dtype
    np.testing.assert_allclose(got, model.predict(x), rtol=RTOL, atol=ATOL)
    return proto


def perturb(model, seed=0):
    """Weights away from their trivial initial values: random biases, γ, β, PReLU slopes and
    moving statistics, so that a constant mixed up in the export would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for p in layer.variables():
            kind = p.name.rsplit(".", 1)[-1]
            if kind in ("bias", "beta", "moving_mean"):
                p.value[...] = rng.normal(0, 0.3, p.shape)
            elif kind in ("gamma", "moving_variance"):
                p.value[...] = rng.uniform(0.5, 2.0, p.shape)
            elif kind == "alpha":
                p.value[...] = rng.uniform(-0.5, 0.5, p.shape)
    return model


def ops(proto):
    return [node.op_type for node in proto.graph.node]


# -- every activation, in an MLP ----------------------------------------------------------------

VARIANTS = {**{name: (lambda name=name: name) for name in ACTIVATIONS},
            "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
            "leaky_relu_0.3": lambda: nn.LeakyReLU(0.3),
            "elu_0.5": lambda: nn.ELU(0.5),
            "prelu_0.1": lambda: nn.PReLU(alpha_initializer=0.1)}
NO_FLOAT64 = {"arctan", "gelu"}  # onnxruntime has no float64 Atan or Erf


def _layer(spec):
    return nn.layers.activations.get(spec) if isinstance(spec, str) else spec


@pytest.mark.parametrize("opset", [13, 20])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_activation_fused_and_as_a_layer(name, dtype, opset, tmp_path):
    make = VARIANTS[name]
    # Fused in Dense, as a layer of its own, and wrapped in Activation when it has a name.
    layers = [nn.Dense(6, activation=make()), _layer(make()), nn.Dense(4)]
    if isinstance(make(), str):
        layers.append(nn.Activation(make()))
    model = perturb(nn.Sequential(layers, seed=1, dtype=dtype))
    model.build((5,))
    x = np.random.default_rng(2).normal(0, 2.0, (16, 5))
    if dtype == "float64" and name in NO_FLOAT64:
        with pytest.raises(ValueError, match="dtype='float32'"):
            nn_onnx.export(model, tmp_path / "m.onnx", opset=opset)
        assert_exports(model, x, tmp_path / "m.onnx", opset=opset, dtype="float32")
        return
    assert_exports(model, x, tmp_path / "m.onnx", opset=opset)


# -- CNNs: every image layer, strides, "same" padding, dilation, odd sizes ----------------------

GEOMETRIES = [  # kernel, strides, padding, dilation, image (height, width)
    (3, 2, "same", 1, (11, 13)),        # TensorFlow's asymmetric "same" pads
    ((2, 3), (1, 2), "valid", 1, (9, 12)),
    (3, 1, "same", 2, (7, 10)),
    (2, 1, "valid", (2, 3), (9, 9)),
    (3, 2, "same", 2, (12, 9)),
    (4, 3, "same", 1, (10, 8)),
]


@pytest.mark.parametrize("kernel, strides, padding, dilation, size", GEOMETRIES)
def test_cnn_with_every_image_layer(kernel, strides, padding, dilation, size, tmp_path):
    model = nn.Sequential([
        nn.Conv2D(4, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                  activation="relu"),
        nn.BatchNormalization(),
        nn.MaxPooling2D(3, strides=2, padding="same"),
        nn.Conv2D(5, 1, activation=nn.PReLU(shared_axes=[1, 2])),
        nn.AveragePooling2D((2, 3), strides=1, padding="same"),  # border windows count fewer
        nn.LayerNormalization(axis=[1, 2]),  # not the trailing axes
        nn.Dropout(0.3),
        nn.PReLU(),
        nn.Softmax(axis=-1),
        nn.Activation("silu"),
        nn.GlobalAveragePooling2D(keepdims=True),
        nn.Flatten(),
        nn.Dense(3, activation="softmax"),
    ], seed=3)
    model.build((*size, 2))
    x = np.random.default_rng(4).normal(size=(6, *size, 2))
    proto = assert_exports(perturb(model, 5), x, tmp_path / "cnn.onnx")
    # Into NCHW once at the first Conv, back once for Flatten.
    assert ops(proto).count("Transpose") == 2


def test_trained_cnn_from_flat_rows(tmp_path):
    model = nn.Sequential([
        nn.Reshape((7, 7, 2)),
        nn.Conv2D(3, 3, padding="same", activation=nn.Softmax(axis=1)),
        nn.BatchNormalization(axis=[1, 2, 3], momentum=0.5),
        nn.MaxPooling2D((2, 3), strides=(1, 2), padding="valid"),
        nn.AveragePooling2D(3, strides=2, padding="valid"),
        nn.LayerNormalization(),
        nn.Conv2D(4, 2, padding="same", activation="gelu"),
        nn.GlobalAveragePooling2D(),
        nn.Dense(2, activation="sigmoid"),
    ], seed=6)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(24, 98))
    model.compile(loss="binary_crossentropy", optimizer="adam")  # fused sigmoid: predict
    model.fit(x, rng.integers(0, 2, (24, 2)), epochs=2, batch_size=8, verbose=0)
    moving_variance = model.layers[2].moving_variance.value
    assert not np.allclose(moving_variance, 1.0)  # the moving statistics moved
    assert_exports(model, x, tmp_path / "trained.onnx")


def test_trained_mlp_with_batch_norm_and_dropout_in_a_zip_round_trip(tmp_path):
    model = nn.Sequential([nn.Dense(8, activation="tanh"), nn.BatchNormalization(momentum=0.5),
                           nn.Dropout(0.5), nn.Dense(3, activation="softmax")], seed=8)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(40, 4))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, rng.integers(0, 3, 40), epochs=2, batch_size=10, verbose=0)
    model.save(tmp_path / "m.zip")
    assert_exports(nn.load_model(tmp_path / "m.zip"), x, tmp_path / "m.onnx")


@pytest.mark.parametrize("opset", [13, 17, 18, 20, "newest"])
def test_opsets(opset, tmp_path):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    model = perturb(nn.Sequential([nn.Dense(6), nn.LayerNormalization(), nn.GELU(),
                                   nn.Dense(2, activation="softmax")], seed=10))
    model.build((3,))
    proto = assert_exports(model, np.random.default_rng(11).normal(size=(5, 3)),
                           tmp_path / "m.onnx", opset=opset)
    assert proto.opset_import[0].version == opset
    assert ("Gelu" in ops(proto)) == (opset >= 20)


def test_the_input_has_a_free_batch_size_and_the_library_layout(tmp_path):
    model = nn.Sequential([nn.Conv2D(2, 3), nn.Flatten(), nn.Dense(1)], seed=12)
    model.build((5, 6, 3))
    nn_onnx.export(model, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "input" and dims == ["batch", 5, 6, 3]
    assert graph.output[0].name == "output"
    session = _session(tmp_path / "m.onnx")
    for n in (1, 7):
        x = np.random.default_rng(n).normal(size=(n, 5, 6, 3)).astype("float32")
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x),
                                   rtol=RTOL, atol=ATOL)


def test_a_model_that_changes_nothing_exports_an_identity(tmp_path):
    model = nn.Sequential([nn.Dropout(0.5), nn.Linear()])
    model.build((3,))
    proto = assert_exports(model, np.arange(6.0).reshape(2, 3), tmp_path / "m.onnx")
    assert ops(proto) == ["Identity"]


def test_a_fitted_estimator_exports_its_model_(tmp_path):
    class Fitted:  # what neuralnp.sklearn's estimators hold after fit
        def __init__(self, model):
            self.model_ = model

        def fit(self, x, y):
            return self

    model = nn.Sequential([nn.Dense(3, activation="relu"), nn.Dense(1, activation="sigmoid")])
    model.build((2,))
    x = np.random.default_rng(13).normal(size=(4, 2))
    nn_onnx.export(Fitted(model), tmp_path / "m.onnx")
    np.testing.assert_allclose(_session(tmp_path / "m.onnx").run(None, {"input": x.astype(
        "float32")})[0], model.predict(x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="not fitted.*call fit"):
        nn_onnx.export(Fitted(None), tmp_path / "m.onnx")


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_neuralnp_sklearn_estimators_export_their_network(kind, tmp_path):
    pytest.importorskip("sklearn")
    from neuralnp.sklearn import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 5)).astype("float32")
    if kind == "regression":
        estimator = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        y = x @ rng.normal(size=5)
    else:
        estimator = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                                  batch_norm=True, dropout=0.1)
        y = (x[:, 0] > 0).astype(int) + (kind == "multiclass") * (x[:, 1] > 0)
    estimator.fit(x, y)
    nn_onnx.export(estimator, tmp_path / "e.onnx")
    got = _session(tmp_path / "e.onnx").run(None, {"input": x})[0]
    if kind == "regression":
        expected = estimator.predict(x).reshape(-1, 1)
    else:
        expected = estimator.predict_proba(x)
        if kind == "binary":  # one sigmoid column: P(class 1)
            expected = expected[:, 1:]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_the_docstring_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(nn_onnx)
    assert result.attempted > 0 and result.failed == 0


# -- mistakes -----------------------------------------------------------------------------------

class Doubler(nn.Layer):
    def forward(self, x, training=False):
        return 2 * x


class Halver(nn.ReLU):  # a subclass may compute anything: only known classes export
    def _forward(self, x):
        return x / 2


def test_bad_input_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    model = nn.Sequential([nn.Dense(2)])
    with pytest.raises(ValueError, match=r"not built.*model.build\(input_shape\)"):
        nn_onnx.export(model, path)
    model.build((3,))
    newest = onnx.defs.onnx_opset_version()
    for opset in (12, newest + 1, "17", 17.0, True):
        with pytest.raises(ValueError, match=f"opset must be an integer from 13 to {newest}"):
            nn_onnx.export(model, path, opset=opset)
    with pytest.raises(TypeError, match="export takes a neuralnp.Sequential"):
        nn_onnx.export(object(), path)
    with pytest.raises(ValueError, match="dtype must be one of"):
        nn_onnx.export(model, path, dtype="float16")

    path.write_bytes(b"old")
    odd = nn.Sequential([nn.Dense(2), Doubler()])
    odd.build((3,))
    with pytest.raises(TypeError, match="'doubler' of type Doubler has no ONNX export"):
        nn_onnx.export(odd, path)
    odd = nn.Sequential([nn.Dense(2, activation=Halver())])
    odd.build((3,))
    with pytest.raises(TypeError, match="'dense.*' applies the activation Halver, which has no"):
        nn_onnx.export(odd, path)
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]

    cnn = nn.Sequential([nn.Conv2D(2, 3), nn.Flatten()], dtype="float64")
    cnn.build((5, 5, 1))
    with pytest.raises(ValueError, match="Conv, which onnxruntime runs in float32 only.*"
                                         "dtype='float32'"):
        nn_onnx.export(cnn, path)

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "neuralnp\[onnx\]"'):
        nn_onnx.export(model, path)


# -- the command line ---------------------------------------------------------------------------

def test_cli_export(tmp_path, capsys):
    model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2, activation="softmax")],
                          seed=14)
    x = np.random.default_rng(15).normal(size=(20, 5))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(x, np.arange(20) % 2, epochs=1, verbose=0)
    model.metadata["cli"] = {"target": "label"}  # as neuralnp train leaves it
    model.save(tmp_path / "model")

    assert main(["export", str(tmp_path / "model"), str(tmp_path / "m.onnx"),
                 "--opset", "13"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "opset 13" in out[0] and "(batch, 5) float32" in out[0]
    assert "not raw CSV rows" in out[0] and "not part of the graph" in out[0]
    got = _session(tmp_path / "m.onnx").run(None, {"input": x.astype("float32")})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=RTOL, atol=ATOL)

    for argv, message in ((["--opset", "99"], "opset must be an integer from 13"),
                          (["--opset", "12"], "opset must be an integer from 13")):
        assert main(["export", str(tmp_path / "model"), str(tmp_path / "x.onnx"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("neuralnp: error: ") and message in err[0]
    assert main(["export", str(tmp_path / "none"), str(tmp_path / "x.onnx")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_cli_export_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "neuralnp export model model.onnx" in out
