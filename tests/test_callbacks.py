"""Callbacks: early stopping, checkpoints, learning-rate control, logging, NaN handling."""

import csv
import math

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.callbacks import (
    CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler, ModelCheckpoint,
    ReduceLROnPlateau, TerminateOnNaN,
)
from neuralnp.preprocessing import StandardScaler, train_test_split


def _breast_cancer():
    x, y = nn.datasets.breast_cancer()
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.25, stratify=y, seed=0)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_valid), y_train, y_valid


def _model(seed=0, lr=1e-2):
    model = nn.Sequential([nn.Dense(32, activation="relu"), nn.Dense(32, activation="relu"),
                           nn.Dense(1, activation="sigmoid")], seed=seed)
    model.compile(loss="binary_crossentropy", optimizer=nn.Adam(lr), metrics=["accuracy"])
    return model


def test_early_stopping_restores_the_best_epochs_weights_on_breast_cancer():
    x, xv, y, yv = _breast_cancer()
    model = _model()
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    stop = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    history = model.fit(x, y, epochs=200, batch_size=32, validation_data=(xv, yv), verbose=0,
                        callbacks=[keep, stop])
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    # It stopped early, exactly `patience` epochs after the best one, and the history shows it.
    assert len(val_loss) < 200
    assert stop.best_epoch == best and stop.stopped_epoch == len(val_loss) - 1 == best + 5
    assert all(v >= val_loss[best] for v in val_loss[best + 1:])
    # The final weights are the best epoch's, not the last epoch's.
    for got, saved in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(got, saved)
    assert not np.array_equal(snapshots[-1][0], snapshots[best][0])
    assert model.evaluate(xv, yv)[0] == pytest.approx(val_loss[best], rel=1e-6)


def test_early_stopping_restores_even_when_training_ends_at_the_last_epoch():
    x, xv, y, yv = _breast_cancer()
    model = _model(lr=0.05)
    stop = EarlyStopping(monitor="val_accuracy", patience=100, restore_best_weights=True)
    history = model.fit(x, y, epochs=12, validation_data=(xv, yv), verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) == 12 and stop.stopped_epoch == 0
    best = int(np.argmax(history.history["val_accuracy"]))
    assert stop.best_epoch == best
    assert model.evaluate(xv, yv)[1] == history.history["val_accuracy"][best]


def test_early_stopping_start_from_epoch_and_baseline():
    x, xv, y, yv = _breast_cancer()
    stop = EarlyStopping(monitor="val_loss", patience=0, start_from_epoch=4)
    history = _model().fit(x, y, epochs=30, validation_data=(xv, yv), verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) >= 5
    # A baseline no epoch can beat: patience runs out as if nothing improved.
    stop = EarlyStopping(monitor="val_loss", patience=2, baseline=1e-9)
    history = _model().fit(x, y, epochs=30, validation_data=(xv, yv), verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) == 2


@pytest.mark.parametrize("kwargs, name", [
    (dict(monitor="val_acuracy"), "monitor"), (dict(mode="best"), "mode"),
    (dict(patience=-1), "patience"), (dict(min_delta=-0.1), "min_delta"),
    (dict(start_from_epoch=-2), "start_from_epoch"),
])
def test_early_stopping_rejects_bad_arguments_at_construction(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EarlyStopping(**kwargs)


def test_monitoring_a_value_that_is_not_logged_says_how_to_get_it():
    x, _, y, _ = _breast_cancer()
    with pytest.raises(ValueError, match="validation_data"):
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping("val_loss")])


def test_model_checkpoint_saves_only_improvements(tmp_path):
    x, xv, y, yv = _breast_cancer()
    model = _model()
    path = tmp_path / "ckpt-{epoch:02d}.zip"
    history = model.fit(x, y, epochs=8, validation_data=(xv, yv), verbose=0,
                        callbacks=[ModelCheckpoint(path, save_best_only=True)])
    val_loss = history.history["val_loss"]
    improved = [e + 1 for e in range(8) if val_loss[e] < min(val_loss[:e], default=math.inf)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ckpt-{e:02d}.zip" for e in improved]
    best = nn.load_model(tmp_path / f"ckpt-{improved[-1]:02d}.zip")
    assert best.evaluate(xv, yv)[0] == pytest.approx(min(val_loss), rel=1e-6)


def test_reduce_lr_on_plateau_and_learning_rate_scheduler():
    x, _, y, _ = _breast_cancer()
    model = _model()
    seen = []
    record = LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.optimizer.learning_rate))
    # min_delta so large that nothing counts as an improvement after the first epoch
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=10.0,
                                min_lr=1e-3)
    model.fit(x, y, epochs=9, verbose=0, callbacks=[plateau, record])
    assert seen == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3, 1.25e-3, 1.25e-3, 1e-3])

    model = _model()
    seen.clear()
    halve = LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[halve, record])
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, xv, y, yv = _breast_cancer()
    history = _model().fit(x, y, epochs=3, validation_data=(xv, yv), verbose=0,
                           callbacks=[CSVLogger(tmp_path / "log.csv")])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])


def _diverging():
    x = np.array([[1.0], [2.0], [3.0]], dtype="float32")
    y = np.array([1.0, 2.0, 3.0], dtype="float32")
    model = nn.Sequential([nn.Dense(1)], seed=0)
    model.compile(loss="mse", optimizer=nn.SGD(5.0))
    return model, x, y


def test_terminate_on_nan_stops_instead_of_raising_and_keeps_finite_weights(capsys):
    model, x, y = _diverging()
    weights = []
    keep = LambdaCallback(on_batch_end=lambda b, logs: weights.append(model.get_weights()))
    history = model.fit(x, y, epochs=500, batch_size=3, verbose=0,
                        callbacks=[keep, TerminateOnNaN()])
    assert len(history.history.get("loss", [])) < 500
    assert "TerminateOnNaN" in capsys.readouterr().out
    final = model.get_weights()
    assert all(np.isfinite(w).all() for w in final)
    for got, last in zip(final, weights[-1]):  # the last update that had a finite loss
        np.testing.assert_array_equal(got, last)

    model, x, y = _diverging()
    with pytest.raises(nn.TrainingDivergedError, match="last finite weights"):
        model.fit(x, y, epochs=500, batch_size=3, verbose=0)


def test_callbacks_see_every_hook_in_order():
    x, _, y, _ = _breast_cancer()
    events = []
    spy = LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda e, logs: events.append(f"epoch_begin {e}"),
        on_batch_end=lambda b, logs: events.append("batch"),
        on_epoch_end=lambda e, logs: events.append(f"epoch_end {e}"),
        on_train_end=lambda logs: events.append("train_end"))
    _model().fit(x[:64], y[:64], epochs=2, batch_size=32, verbose=0, callbacks=[spy])
    assert events == ["train_begin", "epoch_begin 0", "batch", "batch", "epoch_end 0",
                      "epoch_begin 1", "batch", "batch", "epoch_end 1", "train_end"]


def test_callbacks_must_be_callback_objects():
    x, _, y, _ = _breast_cancer()
    with pytest.raises(TypeError, match="Callback"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[lambda: None])


@pytest.mark.parametrize("callback", [
    lambda path: ModelCheckpoint(path / "m-{epoch}-{val_loss:.3f}"),
    lambda path: ModelCheckpoint(path / "best", save_best_only=True),
    lambda path: EarlyStopping(monitor="val_loss"),
    lambda path: ReduceLROnPlateau(monitor="val_accuracy"),
], ids=["checkpoint-filepath", "checkpoint-best", "early-stopping", "reduce-lr"])
def test_monitoring_a_val_quantity_without_validation_data_fails_before_training(callback,
                                                                                  tmp_path):
    x, _, y, _ = _breast_cancer()
    model = _model()
    epochs = []
    seen = LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(ValueError, match=r"val_.*validation_data or validation_split") as info:
        model.fit(x, y, epochs=2, verbose=0, callbacks=[seen, callback(tmp_path)])
    assert "\n" not in str(info.value)
    assert epochs == [] and list(tmp_path.iterdir()) == []
    model.fit(x, y, epochs=1, verbose=0, validation_split=0.2, callbacks=[callback(tmp_path)])


def test_a_checkpoint_filepath_naming_an_unlogged_quantity_says_what_is_logged(tmp_path):
    x, _, y, _ = _breast_cancer()
    with pytest.raises(ValueError, match=r"\{auc\}.*available: accuracy, epoch, loss"):
        _model().fit(x, y, epochs=1, verbose=0,
                     callbacks=[ModelCheckpoint(tmp_path / "m-{auc}", monitor="loss")])
