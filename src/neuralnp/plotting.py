"""Pictures of training: learning curves, confusion matrices and network diagrams, as PNG files.

Needs matplotlib, an optional extra: ``pip install "neuralnp[plot]"``. It is imported inside each
function, so ``import neuralnp`` never pays for it, and the figures are drawn on an Agg canvas of
their own (``Figure`` + ``FigureCanvasAgg``) rather than through pyplot: nothing global changes,
no window opens, and plotting works on a headless machine or from threads.

Every function writes its PNG atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half an image, and returns the path it wrote as a string.

>>> history = model.fit(x, y, epochs=20, validation_split=0.2)          # doctest: +SKIP
>>> learning_curves(history, "curves.png")                              # doctest: +SKIP
'curves.png'
>>> network_diagram(model_layers(model), "network.png")                 # doctest: +SKIP
'network.png'
"""

import math
import os

import numpy as np

from ._files import atomic_write

__all__ = ["learning_curves", "confusion_matrix", "network_diagram", "model_layers"]

# Metrics for which a larger value is better; the same substrings as the callbacks' "auto" mode
# (callbacks._HIGHER_IS_BETTER), so the epoch marked best here is the one EarlyStopping and
# ModelCheckpoint would keep. "acc" covers accuracy, binary_accuracy, categorical_accuracy...
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "r2")

# History keys that are logged per epoch but are not metrics (a learning-rate log, as Keras's
# ReduceLROnPlateau adds): never picked as "the main metric".
_NOT_METRICS = ("lr", "learning_rate")

_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#ff7f0e"
_BEST_COLOR = "#d62728"


# -- shared helpers -----------------------------------------------------------------------------


def _matplotlib():
    """``(Figure, FigureCanvasAgg)``, or an ImportError that says how to install matplotlib."""
    try:
        # ``import matplotlib`` first: a submodule already in sys.modules would otherwise be
        # found even when the package itself is unavailable (or hidden with None).
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'neuralnp.plotting needs matplotlib, which is not installed: '
            'pip install "neuralnp[plot]"'
        ) from exc
    return Figure, FigureCanvasAgg


def _new_figure(figsize, dpi, layout=None):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas; no pyplot, no global backend switch
    return fig


def _save_png(fig, path, dpi):
    """Write ``fig`` to ``path`` atomically and return the path as a string."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, facecolor="white")
    return path


def _higher_is_better(name):
    return any(key in name.lower() for key in _HIGHER_IS_BETTER)


def _fmt(value):
    """A short, readable number: 0.1234, 12.35, 1.235e-05."""
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


# -- learning curves ----------------------------------------------------------------------------


def learning_curves(history, path, title=None, metric=None, kept_epoch=None):
    """Plot the loss and metrics per epoch, training and validation, to a PNG at ``path``.

    ``history`` is the dict ``fit`` records (``History.history``: ``{"loss": [...],
    "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}``) or the ``History`` object
    itself. The figure has a panel for the loss and one for each name in ``metric`` (a name or
    a list of names; by default the first logged key that is neither the loss nor a ``val_``
    key, and no second panel when there is none); more than two panels make a grid two wide.
    Each panel draws the training curve and, when logged, the validation curve against the
    epoch (numbered from 1), and marks the best validation epoch with a dot and its value: the
    lowest loss, the highest accuracy, AUC, precision, recall, F1 or R², the lowest of any other
    metric (mse, mae, ...). With ``kept_epoch`` (numbered as on the axis) every panel marks that
    epoch instead, "kept": the weights a model holds after EarlyStopping restored them, so that
    all panels tell one story. Returns ``path`` as a string.

    >>> learning_curves({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.6, 0.7],
    ...                  "accuracy": [0.6, 0.8, 0.85], "val_accuracy": [0.55, 0.75, 0.74]},
    ...                 "curves.png")  # doctest: +SKIP
    'curves.png'
    """
    curves, epochs = _history_dict(history)
    panels = []
    if "loss" in curves:
        panels.append("loss")
    if metric is not None:
        for name in [metric] if isinstance(metric, str) else list(metric):
            if name.startswith("val_"):
                name = name[4:]
            if name not in curves:
                raise ValueError(f"metric {name!r} is not in the history; it logs "
                                 f"{', '.join(sorted(curves)) or 'nothing'}")
            if name not in panels:
                panels.append(name)
    else:
        main = next((k for k in curves if k != "loss" and not k.startswith("val_")
                     and k not in _NOT_METRICS), None)
        if main is not None:
            panels.append(main)
    if not panels:
        # e.g. a history holding only val_ keys: plot those rather than refuse
        panels = [k[4:] for k in curves if k.startswith("val_")][:2]
    if not panels:
        raise ValueError("the history has nothing to plot; pass History.history from fit, "
                         "e.g. {'loss': [...], 'val_loss': [...]}")

    longest = max(len(c) for c in curves.values())
    if kept_epoch is not None and not epochs <= int(kept_epoch) < epochs + longest:
        raise ValueError(f"kept_epoch {kept_epoch} is not one of the epochs in the history "
                         f"({epochs} to {epochs + longest - 1})")
    columns = min(len(panels), 2)
    rows = math.ceil(len(panels) / columns)
    fig = _new_figure((5.0 * columns + (0.0 if columns > 1 else 1.0), 4.0 * rows), 120,
                      layout="constrained")
    fig.suptitle(title or "Learning curves", fontsize=13, fontweight="bold")
    grid = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax in grid[len(panels):]:
        ax.remove()  # an odd number of panels leaves one cell of the grid empty
    axes = grid[:len(panels)]
    bests = [_curve_panel(ax, name, curves.get(name), curves.get(f"val_{name}"), epochs,
                          kept_epoch)
             for ax, name in zip(axes, panels)]
    if any(best is not None for best in bests):
        # The notes are placed where they hide the least of the curves, which needs the final
        # axes positions: run the layout once first.
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax, best in zip(axes, bests):
            if best is not None:
                _place_note(ax, *best, renderer)
        # The layout is settled (the notes and legends stay inside their axes): keep it, and
        # spare savefig a second layout pass.
        fig.set_layout_engine("none")
    for ax in axes:
        # after the notes, so that "best" keeps the legend off them as well as off the curves
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
    return _save_png(fig, path, dpi=120)


def _history_dict(history):
    """``({key: float array}, first epoch number)`` from a History or its dict, checked."""
    epochs_logged = getattr(history, "epoch", None)
    if hasattr(history, "history") and not isinstance(history, dict):
        history = history.history
    if not hasattr(history, "items"):
        raise TypeError(f"history must be a dict like History.history or a History object, "
                        f"got {type(history).__name__}")
    curves = {}
    for key, values in history.items():
        try:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"history[{key!r}] must be a list of numbers, one per epoch, "
                             f"got {values!r}") from None
        if arr.size:
            curves[str(key)] = arr
    if not curves:
        raise ValueError("the history is empty: no epoch was logged")
    # A fit resumed with initial_epoch=k logs epochs k, k+1, ...: number the x axis the same way.
    first = 1
    if isinstance(epochs_logged, (list, tuple)) and epochs_logged:
        try:
            first = int(epochs_logged[0]) + 1
        except (TypeError, ValueError):
            first = 1
    return curves, first


def _curve_panel(ax, name, train, val, first_epoch, kept_epoch=None):
    from matplotlib.ticker import MaxNLocator

    longest = max(len(c) for c in (train, val) if c is not None)
    # Dots on each epoch while they can be told apart; a single epoch is otherwise invisible.
    marker = "o" if longest <= 30 else None
    for values, label, color in ((train, "training", _TRAIN_COLOR),
                                 (val, "validation", _VAL_COLOR)):
        if values is None:
            continue
        x = np.arange(first_epoch, first_epoch + len(values))
        ax.plot(x, values, color=color, label=label, linewidth=1.8, marker=marker, markersize=4)

    best = None
    shown = val if val is not None else train
    if kept_epoch is not None and shown is not None and kept_epoch - first_epoch < len(shown) \
            and np.isfinite(shown[kept_epoch - first_epoch]):
        # the epoch whose weights the model kept, the same in every panel
        best = (int(kept_epoch), float(shown[kept_epoch - first_epoch]), "kept")
    elif kept_epoch is None and val is not None and np.isfinite(val).any():
        maximize = name != "loss" and _higher_is_better(name)
        # the first best epoch, as EarlyStopping(restore_best_weights=True) would keep it
        i = int(np.nanargmax(val) if maximize else np.nanargmin(val))
        best = (first_epoch + i, float(val[i]), "best")
    if best is not None:
        ax.axvline(best[0], color=_BEST_COLOR, linewidth=0.8, linestyle=":", alpha=0.7,
                   zorder=1)
        ax.plot([best[0]], [best[1]], "o", color=_BEST_COLOR, markersize=8, zorder=5,
                markeredgecolor="white", markeredgewidth=1.2)

    ax.set_xlabel("epoch", fontsize=11)
    ax.set_ylabel(name, fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    # Half an epoch of air on each side, so the first and last points are not on the frame.
    ax.set_xlim(first_epoch - 0.5, first_epoch + longest - 0.5)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=9)
    return best


def _place_note(ax, epoch, value, label, renderer):
    """Annotate the best (or kept) epoch, trying offsets around the dot and keeping the one
    whose box stays inside the axes and covers the fewest points of the curves."""
    from matplotlib.text import Text

    note = ax.annotate(f"{label}: epoch {epoch}\n{_fmt(value)}", xy=(epoch, value),
                       xytext=(0, 0), textcoords="offset points", fontsize=8.5,
                       color=_BEST_COLOR, zorder=6, multialignment="left",
                       bbox=dict(boxstyle="round,pad=0.3", facecolor="white",
                                 edgecolor=_BEST_COLOR, linewidth=0.8, alpha=0.9),
                       arrowprops=dict(arrowstyle="-", color=_BEST_COLOR, linewidth=0.8,
                                       shrinkA=0, shrinkB=5))
    note.set_in_layout(False)  # it stays inside the axes; the layout need not make room
    # The curves as display points, several per segment, so a box between two epochs counts.
    points = []
    for line in ax.get_lines():
        xy = line.get_xydata()
        if len(xy) < 1 or np.ptp(xy[:, 0]) == 0 and len(xy) > 1:
            continue  # the vertical marker line at the best epoch
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) > 1:
            t = np.linspace(0.0, 1.0, 8, endpoint=False)[:, None, None]
            xy = np.concatenate([(xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2), xy[-1:]])
        points.append(ax.transData.transform(xy))
    points = np.concatenate(points) if points else np.empty((0, 2))
    frame = ax.get_window_extent(renderer)
    pad = 5.0 * renderer.points_to_pixels(1.0)

    best_choice, best_score = None, math.inf
    for distance in (18, 34, 55, 80):
        for angle in range(0, 360, 45):
            dx = round(distance * math.cos(math.radians(angle)), 1)
            dy = round(distance * math.sin(math.radians(angle)), 1)
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            note.set_position((dx, dy))
            note.set_ha(ha)
            note.set_va(va)
            note.update_positions(renderer)  # resolves the offset into display coordinates
            box = Text.get_window_extent(note, renderer).padded(pad)
            outside = (max(frame.x0 - box.x0, 0) + max(box.x1 - frame.x1, 0)
                       + max(frame.y0 - box.y0, 0) + max(box.y1 - frame.y1, 0))
            hidden = int(np.count_nonzero(
                (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)))
            score = 1000.0 * outside + 10.0 * hidden + distance
            if score < best_score:
                best_choice, best_score = (dx, dy, ha, va), score
    dx, dy, ha, va = best_choice
    note.set_position((dx, dy))
    note.set_ha(ha)
    note.set_va(va)


# -- confusion matrix ---------------------------------------------------------------------------


def confusion_matrix(matrix, path, class_names=None, title=None, normalize=False):
    """Draw a confusion matrix (rows: true class, columns: predicted) as a heatmap PNG.

    ``matrix`` is the ``(K, K)`` count array of :func:`neuralnp.metrics.confusion_matrix`. Each
    cell shows its count and, smaller, its share of the true class's row; the color follows the
    count, or the row share when ``normalize=True`` (then the share is the big number), which
    keeps rare classes visible. ``class_names`` label the ticks (default ``0..K-1``). The title
    (default "Confusion matrix") ends with the accuracy, ``trace / total``. Returns ``path``.

    >>> confusion_matrix([[50, 2], [5, 43]], "cm.png", class_names=["cat", "dog"])  # doctest: +SKIP
    'cm.png'
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"matrix must be a square (K, K) array of counts, got shape "
                         f"{counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("matrix must hold finite, non-negative counts")
    k = counts.shape[0]
    if class_names is None:
        names = [str(i) for i in range(k)]
    else:
        names = [str(n) for n in class_names]
        if len(names) != k:
            raise ValueError(f"class_names has {len(names)} names but the matrix has {k} classes")

    total = counts.sum()
    row_sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(row_sums > 0, counts / np.where(row_sums > 0, row_sums, 1), np.nan)
    heading = title or "Confusion matrix"
    if total > 0:
        heading += f" — accuracy {100.0 * np.trace(counts) / total:.1f}%"

    # Grow the figure with K so that cells stay big enough for their text, up to a point;
    # past it the text shrinks (and the small percentage goes) instead.
    side = min(max(4.2, 0.62 * k + 2.2), 12.0)
    fig = _new_figure((side + 1.3, side), 120, layout="constrained")
    ax = fig.add_subplot()
    shown = np.nan_to_num(shares) if normalize else counts
    vmax = 1.0 if normalize else max(float(counts.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of the true class" if normalize else "count", fontsize=10)
    bar.ax.tick_params(labelsize=8)
    if normalize:
        from matplotlib.ticker import PercentFormatter
        bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))

    integral = bool(np.all(counts == np.round(counts)))
    count_text = [[(f"{int(v)}" if integral else f"{v:.3g}") for v in row] for row in counts]
    pct_text = [["" if np.isnan(s) else f"{100.0 * s:.1f}%" for s in row] for row in shares]
    big, small = (pct_text, count_text) if normalize else (count_text, pct_text)

    # Font sizes from the cell size: the heatmap gets about side - 1.4 inches for K cells.
    cell_pt = (side - 1.4) / k * 72.0
    widest_big = max(len(t) for row in big for t in row) or 1
    widest_small = max(len(t) for row in small for t in row) or 1
    # (a bold digit or % is about 0.7 of the font size wide; keep 20% of the cell free)
    big_fs = min(15.0, 0.3 * cell_pt, 0.8 * cell_pt / (0.7 * widest_big))
    small_fs = min(0.7 * big_fs, 0.8 * cell_pt / (0.62 * widest_small))
    show_small = small_fs >= 5.0
    big_fs = max(big_fs, 5.0)

    cmap, norm = image.get_cmap(), image.norm
    for i in range(k):
        for j in range(k):
            r, g, b, _ = cmap(norm(shown[i, j]))
            # relative luminance (ITU-R BT.709): white text on dark cells, black on light ones
            color = "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"
            weight = "bold" if i == j else "normal"
            if show_small and small[i][j]:
                ax.text(j, i - 0.1, big[i][j], ha="center", va="center", color=color,
                        fontsize=big_fs, fontweight=weight)
                ax.text(j, i + 0.24, small[i][j], ha="center", va="center", color=color,
                        fontsize=small_fs, alpha=0.85)
            else:
                ax.text(j, i, big[i][j], ha="center", va="center", color=color,
                        fontsize=big_fs, fontweight=weight)

    tick_fs = max(6.0, min(10.0, 0.45 * cell_pt))
    ax.set_xticks(range(k), names, fontsize=tick_fs)
    ax.set_yticks(range(k), names, fontsize=tick_fs)
    # Slant the predicted-class labels when they would not fit side by side under the cells.
    if max(len(n) for n in names) * 0.6 * tick_fs > 0.9 * cell_pt:
        for label in ax.get_xticklabels():
            label.set_rotation(40)
            label.set_ha("right")
            label.set_rotation_mode("anchor")
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("true", fontsize=11)
    # thin white lines between cells
    ax.set_xticks(np.arange(-0.5, k, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1.0), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(heading, fontsize=12, fontweight="bold", pad=10)
    return _save_png(fig, path, dpi=120)


# -- network diagram ----------------------------------------------------------------------------

# Layer kinds drawn as a thin band between columns, with the band's color.
_BAND_COLORS = {"dropout": "#fde0dd", "batchnormalization": "#e5f5e0",
                "layernormalization": "#e5f5e0", "activation": "#efedf5"}
_BAND_DEFAULT = "#f0f0f0"
_INPUT_COLOR, _HIDDEN_COLOR, _OUTPUT_COLOR = "#9ecae1", "#fdd0a2", "#a1d99b"

# Geometry, in data units of 0.36 inch: a neuron slot is 1 unit high.
_INCH_PER_UNIT = 0.36
_MAX_DRAWN = 10          # neuron slots per column, the ellipsis included
_HEAD, _TAIL = 5, 4      # neurons drawn above and below the ellipsis when a column is cut
_RADIUS = 0.34


def network_diagram(layers, path, title=None):
    """Draw a feed-forward network: one column of neurons per stage, linked to the next.

    ``layers`` lists the stages from input to output as dicts, e.g. ``{"name": "input",
    "units": 30}``, ``{"name": "dense", "units": 24, "activation": "relu"}``
    (:func:`model_layers` builds the list from a model). A stage with ``units`` is a column of
    circles; one with more than 10 units shows its first 5 and last 4 neurons around a
    vertical ellipsis, and its label gives the true count. Stages without units, such as
    ``{"name": "dropout", "kind": "Dropout", "rate": 0.2}`` or ``{"kind":
    "BatchNormalization"}``, are thin labelled bands between the columns; a bare
    ``{"kind": "Activation", "activation": "tanh"}`` joins the label of the column before it.
    Every column is labelled underneath with its name, size and activation. Returns ``path``.

    >>> network_diagram([{"name": "input", "units": 4},
    ...                  {"name": "dense", "units": 8, "activation": "relu"},
    ...                  {"name": "dense_1", "units": 3, "activation": "softmax"}],
    ...                 "network.png")  # doctest: +SKIP
    'network.png'
    """
    columns, bands = _stages(layers)
    if not columns:
        raise ValueError("the network has no stage with units to draw; give each dense stage "
                         "e.g. {'name': 'dense', 'units': 24}")

    labels = [_column_label(c, i) for i, c in enumerate(columns)]
    title = title or "Network"
    # Sizes below are in data units of _INCH_PER_UNIT inches; text widths are estimated at
    # 0.6 of the font size per character (DejaVu Sans averages a little less).
    char = 0.6 / 72 / _INCH_PER_UNIT  # one character at 1 pt
    # Columns far enough apart for their labels (9 pt) and for the bands between them.
    widest = max(len(line) for label in labels for line in label.split("\n"))
    base_gap = max(5.0, 9 * char * widest + 1.0)
    xs, band_xs, x = [], [], 0.0
    for i in range(len(columns)):
        if i:
            n = len(bands[i])
            gap = max(base_gap, 1.3 * (n + 1) + 1.0)
            x += gap
            band_xs.append([x - gap + gap * (j + 1) / (n + 1) for j in range(n)])
        xs.append(x)
    # bands before the first column (no input stage) and after the last one
    band_xs.insert(0, [xs[0] - 1.3 * (len(bands[0]) - j) for j in range(len(bands[0]))])
    band_xs.append([xs[-1] + 1.3 * (j + 1) for j in range(len(bands[-1]))])

    # Neurons: slot k of a column sits at y = top - k, columns centred on y = 0.
    slots = [_slots(int(c["units"])) for c in columns]
    tops = [(len(sl) - 1) / 2.0 for sl in slots]
    centers = [[(x, top - k) for k, what in enumerate(sl) if what == "n"]
               for x, top, sl in zip(xs, tops, slots)]
    dots = [[(x, top - k) for k, what in enumerate(sl) if what == "."]
            for x, top, sl in zip(xs, tops, slots)]

    # Bands: as tall as the taller column beside them (plus a margin), and at least as tall
    # as their rotated label.
    band_boxes = []  # (x, top, bottom, band)
    for gap, (positions, group) in enumerate(zip(band_xs, bands)):
        beside = [i for i in (gap - 1, gap) if 0 <= i < len(columns)]
        half = max(tops[i] for i in beside) + 0.75
        for bx, band in zip(positions, group):
            h = max(half, (8.5 * char * len(_band_label(band)) + 1.0) / 2)
            band_boxes.append((bx, h, -h, band))

    lowest = min([-t for t in tops] + [b[2] for b in band_boxes])
    highest = max(tops + [b[1] for b in band_boxes])
    label_top = lowest - 0.9
    label_lines = max(label.count("\n") + 1 for label in labels)
    y0 = label_top - label_lines * 9 * 1.25 * 1.2 / 72 / _INCH_PER_UNIT - 0.6
    title_y = highest + 0.6 + 0.28 / _INCH_PER_UNIT
    y1 = title_y + 0.3 / _INCH_PER_UNIT
    margin = max(1.6, 0.5 * base_gap)
    x0 = min([xs[0]] + band_xs[0]) - margin
    x1 = max([xs[-1]] + band_xs[-1]) + margin
    # wide enough for the title (13 pt bold, a little wider per character than regular)
    spare = 13 * char * 1.1 * len(title) + 1.0 - (x1 - x0)
    if spare > 0:
        x0, x1 = x0 - spare / 2, x1 + spare / 2

    fig = _new_figure(((x1 - x0) * _INCH_PER_UNIT, (y1 - y0) * _INCH_PER_UNIT), 120)
    # One axes over the whole figure, its limits in proportion to the figure's size: one data
    # unit is _INCH_PER_UNIT inches both ways, so circles stay round and text placed in data
    # coordinates lands where the layout above expects.
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()

    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle, FancyBboxPatch

    # Connections first, so that neurons and bands sit on top of them.
    segments = [(a, b) for left, right in zip(centers, centers[1:]) for a in left for b in right]
    if segments:
        dense = max(len(left) * len(right) for left, right in zip(centers, centers[1:])) > 40
        ax.add_collection(LineCollection(segments, colors="#9e9e9e",
                                         linewidths=0.4 if dense else 0.6,
                                         alpha=0.45 if dense else 0.6, zorder=1))

    for bx, top, bottom, band in band_boxes:
        ax.add_patch(FancyBboxPatch((bx - 0.32, bottom), 0.64, top - bottom,
                                    boxstyle="round,pad=0,rounding_size=0.25",
                                    facecolor=_band_color(band), edgecolor="#8c8c8c",
                                    linewidth=0.8, alpha=0.92, zorder=2))
        ax.text(bx, (top + bottom) / 2, _band_label(band), rotation=90, ha="center",
                va="center", fontsize=8.5, color="#333333", zorder=3)

    last = len(columns) - 1
    for i, (column, cs, ds) in enumerate(zip(columns, centers, dots)):
        color = (_INPUT_COLOR if i == 0 and _is_input(column, i)
                 else _OUTPUT_COLOR if i == last else _HIDDEN_COLOR)
        for c in cs:
            ax.add_patch(Circle(c, _RADIUS, facecolor=color, edgecolor="#4d4d4d",
                                linewidth=0.9, zorder=4))
        # The "⋮" of a cut column, drawn as three dots rather than a glyph so that it does not
        # depend on the font having U+22EE.
        for d in ds:
            for dy in (-0.28, 0.0, 0.28):
                ax.add_patch(Circle((d[0], d[1] + dy), 0.07, facecolor="#4d4d4d",
                                    edgecolor="none", zorder=4))
        ax.text(xs[i], label_top, labels[i], ha="center", va="top", fontsize=9,
                linespacing=1.25, color="#222222", zorder=5)

    ax.text((x0 + x1) / 2, title_y, title, ha="center", va="center", fontsize=13,
            fontweight="bold")
    return _save_png(fig, path, dpi=120)


def _stages(layers):
    """``(columns, bands)``: the stages with units, and per gap (before column 0, between
    columns i-1 and i at index i, after the last column) the band stages in it."""
    if isinstance(layers, dict) or not hasattr(layers, "__iter__"):
        raise TypeError("layers must be a list of dicts, e.g. [{'name': 'input', 'units': 4}, "
                        "{'name': 'dense', 'units': 3, 'activation': 'softmax'}]")
    columns, pending, bands = [], [], []
    for stage in layers:
        if not isinstance(stage, dict):
            raise TypeError(f"each stage must be a dict, got {type(stage).__name__}")
        units = stage.get("units")
        kind = str(stage.get("kind") or "").lower()
        if units is not None and kind not in _BAND_COLORS:
            if isinstance(units, bool) or int(units) != units or units < 1:
                raise ValueError(f"units must be a positive integer, got {units!r} in {stage}")
            bands.append(pending)
            pending = []
            columns.append(dict(stage))
        elif (kind in ("", "activation") and stage.get("activation") and columns
              and not _is_input(columns[-1], len(columns) - 1)):
            # an activation stage: part of the column before it
            _fold_activation(columns[-1], stage["activation"])
        else:
            pending.append(stage)
    bands.append(pending)
    return columns, bands


def _fold_activation(column, activation):
    current = column.get("activation")
    column["activation"] = (activation if current in (None, "", "linear")
                            else f"{current} → {activation}")


def _is_input(column, index):
    kind = str(column.get("kind") or "").lower()
    return kind in ("input", "inputlayer") or (index == 0 and not kind
                                               and str(column.get("name", "")).startswith("input"))


def _column_label(column, index):
    units = int(column["units"])
    name = str(column.get("name") or column.get("kind") or f"layer {index}")
    if _is_input(column, index):
        return f"{name}\n{units:,} feature{'s' * (units != 1)}"
    activation = column.get("activation") or "linear"
    return f"{name}\n{units:,} unit{'s' * (units != 1)}\n{activation}"


def _slots(units):
    """What each slot of a column holds, top to bottom: "n" a neuron, "." the ellipsis."""
    if units <= _MAX_DRAWN:
        return "n" * units
    return "n" * _HEAD + "." + "n" * _TAIL


def _band_color(band):
    return _BAND_COLORS.get(str(band.get("kind") or "").lower(), _BAND_DEFAULT)


def _band_label(band):
    kind = str(band.get("kind") or "")
    name = str(band.get("name") or kind or "layer")
    parts = [name]
    if kind and kind.lower() not in name.lower().replace("_", ""):
        parts.append(f"({kind})")
    if band.get("rate") is not None:
        parts.append(f"(rate {band['rate']:g})")
    if band.get("activation"):
        parts.append(str(band["activation"]))
    return " ".join(parts)


def model_layers(model):
    """The stages of a :class:`neuralnp.Sequential`, as :func:`network_diagram` takes them.

    An ``input`` stage with the number of features, one stage per Dense layer (``name``,
    ``units``, ``activation``), Activation layers and bare activation layers (``ReLU()``,
    ``Tanh()``...) folded into the activation of the Dense stage before them, and other layers
    (Dropout with its ``rate``, BatchNormalization, ...) as stages without units. The model
    must be built (``fit``, ``build``) or declare its input with ``Dense(..., input_dim=n)``.

    >>> model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1)])  # doctest: +SKIP
    >>> model.build((None, 4))                                               # doctest: +SKIP
    >>> model_layers(model)                                                  # doctest: +SKIP
    [{'name': 'input', 'kind': 'Input', 'units': 4}, {'name': 'dense', 'kind': 'Dense',
    'units': 8, 'activation': 'relu'}, {'name': 'dense_1', 'kind': 'Dense', 'units': 1,
    'activation': 'linear'}]
    """
    from .layers import activations

    shape = getattr(model, "input_shape", None) if getattr(model, "built", False) else None
    if shape is None and hasattr(model, "_declared_input_shape"):
        shape = model._declared_input_shape()
    if shape is None:
        raise ValueError("the model's input size is unknown; build it first, e.g. "
                         "model.build((None, n_features)), or fit it")
    shape = tuple(int(d) for d in shape)
    stage = {"name": "input", "kind": "Input", "units": int(math.prod(shape))}
    if len(shape) > 1:
        stage["shape"] = shape
    stages = [stage]
    dense_seen = False
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        act_name = activations.name_of(layer)
        if isinstance(layer, activations.Activation):
            act_name = _activation_name(layer.activation)
        units = getattr(layer, "units", None)
        if units is not None:
            act = getattr(layer, "activation", None)
            stages.append({"name": layer.name, "kind": kind, "units": int(units),
                           "activation": "linear" if act is None else _activation_name(act)})
            dense_seen = True
        elif act_name is not None and dense_seen:
            last = next(s for s in reversed(stages) if "units" in s)
            _fold_activation(last, act_name)
        else:
            band = {"name": layer.name, "kind": kind}
            if hasattr(layer, "rate"):
                band["rate"] = float(layer.rate)
            if act_name is not None:
                band["kind"], band["activation"] = "Activation", act_name
            stages.append(band)
    return stages


def _activation_name(act):
    from .layers import activations

    return activations.name_of(act) or type(act).__name__.lower()
