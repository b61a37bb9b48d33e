"""Plotting: each function writes a real, non-blank PNG atomically, draws what it says (checked
on the figure before it is saved), builds the network description from a model, and explains
how to install matplotlib when it is missing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.image  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

import neuralnp as nn  # noqa: E402
from neuralnp import plotting  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_side=200):
    """A valid PNG of reasonable size that is not one flat color; returns the pixels."""
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side
    rgb = np.round(image[..., :3] * 255).astype(np.uint32)
    colors = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colors) > 10
    assert image[..., :3].std() > 0.05
    return image


@pytest.fixture
def figures(monkeypatch):
    """The figures the functions save, to check what they drew."""
    saved = []
    real = plotting._save_png

    def capture(fig, path, dpi):
        saved.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plotting, "_save_png", capture)
    return saved


def _texts(fig):
    """Every string drawn on the figure."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return out


def _history(epochs=12, validation=True):
    e = np.arange(1, epochs + 1)
    h = {"loss": list(0.8 * np.exp(-e / 4) + 0.1), "accuracy": list(0.95 - 0.4 * np.exp(-e / 4))}
    if validation:
        # validation loss is lowest at epoch 6, validation accuracy highest at epoch 8
        h["val_loss"] = list(0.3 + 0.01 * (e - 6) ** 2)
        h["val_accuracy"] = list(0.9 - 0.005 * (e - 8) ** 2)
    return h


# -- learning curves ----------------------------------------------------------------------------


def test_learning_curves_with_validation(tmp_path, figures):
    path = tmp_path / "curves.png"
    assert plotting.learning_curves(_history(), path) == str(path)
    _check_png(path)
    fig, = figures
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    texts = _texts(fig)
    assert "Learning curves" in texts
    assert texts.count("training") == 2 and texts.count("validation") == 2
    # the best validation epochs: lowest loss, highest accuracy
    assert "best: epoch 6\n0.3" in texts
    assert "best: epoch 8\n0.9" in texts
    # epochs are numbered from 1, on integer ticks
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == list(range(1, 13))
    ticks = fig.axes[0].get_xticks()
    assert np.all(ticks == np.round(ticks))


def test_learning_curves_without_validation(tmp_path, figures):
    path = plotting.learning_curves(_history(validation=False), tmp_path / "c.png", title="Run 3")
    _check_png(path)
    texts = _texts(figures[0])
    assert "Run 3" in texts and "validation" not in texts
    assert not any(t.startswith("best") for t in texts)


def test_learning_curves_single_epoch(tmp_path, figures):
    h = {"loss": [0.5], "val_loss": [0.6], "accuracy": [0.7], "val_accuracy": [0.65]}
    _check_png(plotting.learning_curves(h, tmp_path / "one.png"))
    ax = figures[0].axes[0]
    lo, hi = ax.get_xlim()
    assert lo < 1 < hi
    assert "best: epoch 1\n0.6" in _texts(figures[0])


def test_learning_curves_loss_only_and_chosen_metric(tmp_path, figures):
    plotting.learning_curves({"loss": [1.0, 0.5, 0.4]}, tmp_path / "a.png")
    assert len(figures[0].axes) == 1
    h = {"loss": [1.0, 0.5], "mae": [0.9, 0.6], "mse": [1.5, 0.7], "val_mse": [1.6, 0.9],
         "val_loss": [1.1, 0.8]}
    plotting.learning_curves(h, tmp_path / "b.png")
    assert figures[1].axes[1].get_ylabel() == "mae"  # the first metric by default
    plotting.learning_curves(h, tmp_path / "c.png", metric="val_mse")
    assert figures[2].axes[1].get_ylabel() == "mse"
    assert "best: epoch 2\n0.9" in _texts(figures[2])  # mse: lower is better
    with pytest.raises(ValueError, match="'auc' is not in the history"):
        plotting.learning_curves(h, tmp_path / "d.png", metric="auc")
    with pytest.raises(ValueError, match="empty"):
        plotting.learning_curves({}, tmp_path / "e.png")


def test_learning_curves_from_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = nn.Sequential([nn.Dense(6, activation="relu"), nn.Dense(1, activation="sigmoid")],
                          seed=0)
    model.compile("binary_crossentropy", "adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    _check_png(plotting.learning_curves(history, tmp_path / "fit.png"))


# -- confusion matrix ---------------------------------------------------------------------------


def test_confusion_matrix_two_classes(tmp_path, figures):
    path = plotting.confusion_matrix([[50, 2], [5, 43]], tmp_path / "cm.png",
                                     class_names=["cat", "dog"])
    _check_png(path)
    texts = _texts(figures[0])
    assert "Confusion matrix — accuracy 93.0%" in texts
    assert {"cat", "dog", "predicted", "true", "50", "43", "96.2%", "89.6%"} <= set(texts)
    assert len(figures[0].axes) == 2  # the heatmap and its colorbar


def test_confusion_matrix_ten_classes(tmp_path, figures):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 5000)
    p = np.where(rng.random(5000) < 0.9, y, rng.integers(0, 10, 5000))
    cm = nn.metrics.confusion_matrix(y, p, num_classes=10)
    _check_png(plotting.confusion_matrix(cm, tmp_path / "cm10.png", title="MNIST"))
    _check_png(plotting.confusion_matrix(cm, tmp_path / "cm10n.png", normalize=True))
    accuracy = f"{100 * np.trace(cm) / cm.sum():.1f}%"
    assert f"MNIST — accuracy {accuracy}" in _texts(figures[0])
    assert [t.get_text() for t in figures[0].axes[0].get_xticklabels()] == list("0123456789")
    # smaller text than with two classes, still legible
    sizes = [t.get_fontsize() for t in figures[0].axes[0].texts]
    assert 5 <= min(sizes) and max(sizes) <= 16


def test_confusion_matrix_edge_cases(tmp_path, figures):
    _check_png(plotting.confusion_matrix(np.zeros((3, 3)), tmp_path / "empty.png"), 100)
    assert "Confusion matrix" in _texts(figures[0])  # no accuracy without samples
    with pytest.raises(ValueError, match="square"):
        plotting.confusion_matrix(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 names but the matrix has 3"):
        plotting.confusion_matrix(np.eye(3), tmp_path / "x.png", class_names=["a", "b"])
    with pytest.raises(ValueError, match="non-negative"):
        plotting.confusion_matrix([[1, -1], [0, 1]], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# -- network diagram ----------------------------------------------------------------------------


def _neurons(fig):
    return [p for p in fig.axes[0].patches
            if isinstance(p, Circle) and p.get_radius() == plotting._RADIUS]


def test_network_diagram_small(tmp_path, figures):
    layers = [{"name": "input", "units": 30}, {"name": "dense", "units": 24, "activation": "relu"},
              {"name": "dense_1", "units": 24, "activation": "relu"},
              {"name": "dense_2", "units": 1, "activation": "sigmoid"}]
    _check_png(plotting.network_diagram(layers, tmp_path / "net.png"))
    texts = _texts(figures[0])
    assert "Network" in texts
    assert {"input\n30 features", "dense_1\n24 units\nrelu",
            "dense_2\n1 unit\nsigmoid"} <= set(texts)
    assert len(_neurons(figures[0])) == 9 + 9 + 9 + 1


def test_network_diagram_large_layers_are_cut(tmp_path, figures):
    layers = [{"name": "input", "units": 784},
              {"name": "dense", "units": 512, "activation": "relu"},
              {"name": "dropout", "kind": "Dropout", "rate": 0.2},
              {"name": "dense_1", "units": 128, "activation": "relu"},
              {"kind": "BatchNormalization"},
              {"name": "dense_2", "units": 10, "activation": "softmax"}]
    _check_png(plotting.network_diagram(layers, tmp_path / "mnist.png", title="MNIST MLP"))
    fig = figures[0]
    texts = _texts(fig)
    assert {"MNIST MLP", "input\n784 features", "dense\n512 units\nrelu",
            "dense_2\n10 units\nsoftmax", "dropout (rate 0.2)", "BatchNormalization"} <= set(texts)
    # at most 10 slots a column: 9 neurons around an ellipsis, all 10 of the output
    assert len(_neurons(fig)) == 9 * 3 + 10
    dots = [p for p in fig.axes[0].patches if isinstance(p, Circle) and p.get_radius() < 0.1]
    assert len(dots) == 3 * 3
    # nothing is drawn off the figure
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    for text in fig.axes[0].texts:
        box = text.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_network_diagram_folds_activation_stages_and_checks_input(tmp_path, figures):
    layers = [{"name": "input", "units": 4}, {"name": "dense", "units": 8},
              {"kind": "Activation", "activation": "tanh"}, {"name": "out", "units": 2}]
    plotting.network_diagram(layers, tmp_path / "n.png")
    assert {"dense\n8 units\ntanh", "out\n2 units\nlinear"} <= set(_texts(figures[0]))
    with pytest.raises(ValueError, match="no stage with units"):
        plotting.network_diagram([{"kind": "Dropout", "rate": 0.1}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="positive integer"):
        plotting.network_diagram([{"name": "input", "units": 0}], tmp_path / "x.png")
    with pytest.raises(TypeError, match="list of dicts"):
        plotting.network_diagram({"name": "input", "units": 3}, tmp_path / "x.png")


# -- model_layers -------------------------------------------------------------------------------


def test_model_layers_from_sequential(tmp_path):
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dropout(0.1),
                           nn.Dense(3, activation="softmax")])
    model.build((None, 4))
    dense, dropout, out = (layer.name for layer in model.layers)
    assert plotting.model_layers(model) == [
        {"name": "input", "kind": "Input", "units": 4},
        {"name": dense, "kind": "Dense", "units": 8, "activation": "relu"},
        {"name": dropout, "kind": "Dropout", "rate": 0.1},
        {"name": out, "kind": "Dense", "units": 3, "activation": "softmax"},
    ]
    _check_png(plotting.network_diagram(plotting.model_layers(model), tmp_path / "model.png"))


def test_model_layers_folds_activation_layers():
    model = nn.Sequential([nn.Dense(16), nn.BatchNormalization(), nn.ReLU(), nn.Dense(8),
                           nn.Activation("tanh"), nn.Dense(2, activation="relu"), nn.Softmax()])
    model.build((None, 5))
    stages = plotting.model_layers(model)
    assert [s.get("kind") for s in stages] == ["Input", "Dense", "BatchNormalization", "Dense",
                                               "Dense"]
    assert [s.get("activation") for s in stages if s["kind"] == "Dense"] == [
        "relu", "tanh", "relu → softmax"]


def test_model_layers_needs_the_input_size():
    with pytest.raises(ValueError, match="build it first"):
        plotting.model_layers(nn.Sequential([nn.Dense(3)]))
    declared = nn.Sequential([nn.Dense(3, input_dim=7)])
    assert plotting.model_layers(declared)[0]["units"] == 7


# -- files --------------------------------------------------------------------------------------


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    folder = tmp_path / "out" / "plots"  # created on demand
    a = plotting.learning_curves(_history(), folder / "curves.png")
    b = plotting.confusion_matrix(np.eye(2) * 5, folder / "cm.png")
    c = plotting.network_diagram([{"name": "input", "units": 3}, {"name": "d", "units": 2}],
                                 str(folder / "net.png"))
    assert isinstance(a, str) and isinstance(c, str)
    assert sorted(os.listdir(folder)) == ["cm.png", "curves.png", "net.png"]
    # overwriting works too
    plotting.confusion_matrix(np.eye(3), b)
    assert sorted(os.listdir(folder)) == ["cm.png", "curves.png", "net.png"]
    _check_png(b, 100)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "cm.png"
    plotting.confusion_matrix(np.eye(2), path)
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.confusion_matrix(np.eye(3), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["cm.png"]


# -- matplotlib is optional ---------------------------------------------------------------------


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    calls = [
        lambda: plotting.learning_curves({"loss": [1.0]}, tmp_path / "a.png"),
        lambda: plotting.confusion_matrix(np.eye(2), tmp_path / "b.png"),
        lambda: plotting.network_diagram([{"name": "input", "units": 2}], tmp_path / "c.png"),
    ]
    for call in calls:
        with pytest.raises(ImportError, match=r'pip install "neuralnp\[plot\]"'):
            call()
    assert os.listdir(tmp_path) == []


def test_import_is_lazy_and_pyplot_unused(tmp_path):
    code = (
        "import sys\n"
        "import neuralnp, neuralnp.plotting as P\n"
        "assert 'matplotlib' not in sys.modules, 'imported at module import'\n"
        f"P.confusion_matrix([[1, 0], [0, 1]], {str(tmp_path / 'cm.png')!r})\n"
        f"P.learning_curves({{'loss': [1.0, 0.5], 'val_loss': [1.2, 0.7]}}, "
        f"{str(tmp_path / 'c.png')!r})\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_learning_curves_mark_the_kept_epoch_in_every_panel(tmp_path, figures):
    # EarlyStopping kept epoch 6 (lowest validation loss); accuracy peaks at 8, but the weights
    # are epoch 6's, so both panels mark 6
    path = plotting.learning_curves(_history(), tmp_path / "c.png", kept_epoch=6)
    _check_png(path)
    texts = _texts(figures[0])
    assert "kept: epoch 6\n0.3" in texts and "kept: epoch 6\n0.88" in texts
    assert not any(t.startswith("best") for t in texts)
    with pytest.raises(ValueError, match="kept_epoch 13"):
        plotting.learning_curves(_history(), tmp_path / "d.png", kept_epoch=13)


def test_learning_curves_with_several_metrics_make_a_grid(tmp_path, figures):
    h = {**_history(), "mae": list(np.linspace(3, 1, 12)), "val_mae": list(np.linspace(4, 2, 12))}
    plotting.learning_curves(h, tmp_path / "c.png", metric=["accuracy", "val_mae"], kept_epoch=12)
    fig, = figures
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy", "mae"]
    assert len({round(ax.get_position().y0, 3) for ax in fig.axes}) == 2  # two rows
    assert sum(t.startswith("kept: epoch 12") for t in _texts(fig)) == 3
