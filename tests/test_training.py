"""The training loop (training.py): its hooks, its strategy and its public snapshots."""

import numpy as np
import pytest

import neuralnp as nn
from neuralnp import training


def _model():
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(1, activation="sigmoid")],
                          seed=0)
    model.compile(loss="binary_crossentropy", optimizer=nn.Adam(1e-2))
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype(int)


class Recorder(nn.Callback):
    def __init__(self):
        self.events = []

    def on_batch_begin(self, batch, logs=None):
        self.events.append(("begin", batch, logs["size"]))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("end", batch))


def test_on_batch_begin_is_called_before_each_batch():
    x, y = _data()
    recorder = Recorder()
    _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[recorder])
    expected = [e for b, size in enumerate([16, 16, 16, 2])
                for e in (("begin", b, size), ("end", b))] * 2
    assert recorder.events == expected


class Quietly(nn.Callback):
    def __init__(self):
        self.messages = []

    def on_diverged(self, message):
        self.messages.append(message)
        return True


def test_a_callback_can_take_over_divergence_and_the_weights_stay_finite():
    x, y = _data()

    def exploding():
        model = _model()
        model.compile(loss="mse", optimizer=nn.SGD(1e30))  # finite in float32, but the step is not
        return model

    model, quiet = exploding(), Quietly()
    history = model.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[quiet])
    assert len(quiet.messages) == 1 and "optimizer step" in quiet.messages[0]
    assert history.history.get("loss", []) == []  # stopped in the first epoch, before its logs
    assert all(np.isfinite(w).all() for w in model.get_weights())
    with pytest.raises(nn.TrainingDivergedError, match="last finite weights"):
        exploding().fit(x, y, epochs=3, batch_size=10, verbose=0)


def test_terminate_on_nan_owns_its_behaviour(capsys):
    assert nn.callbacks.TerminateOnNaN().on_diverged("the loss became nan at step 3")
    assert "TerminateOnNaN: the loss became nan" in capsys.readouterr().out
    assert nn.Callback().on_diverged("anything") is False


def test_snapshot_and_restore_are_public_and_exact():
    x, y = _data()
    model = nn.Sequential([nn.Dense(8), nn.BatchNormalization(), nn.Dense(1)], seed=0)
    model.compile(loss="mse", optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    saved = model.snapshot()
    before = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    model.restore(saved)
    for a, b in zip(model.get_weights(), before):
        assert np.array_equal(a, b)


def test_the_local_strategy_does_nothing():
    local = training.LocalStrategy()
    assert local.begin_step(3, 9) == (3, 9) and local.shard(7) == (0, 7)
    loss = np.array([0.25])
    local.start_loss_mean(loss, 6, 6)
    grads = np.arange(4.0)
    local.reduce_gradients(grads)
    local.loss_mean(loss)
    assert loss.tolist() == [0.25] and grads.tolist() == [0.0, 1.0, 2.0, 3.0]


def _step(model, xb, yb, count, strategy):
    """One training step; its loss, read back."""
    loss, gate, bad = np.zeros(1), np.ones(1), np.zeros(1)
    training.train_step(model, xb, yb, None, count, strategy, loss, gate, bad)
    assert gate[0] == 1.0
    return float(loss[0])


def test_a_split_batch_step_equals_the_whole_batch_step():
    """Two halves of a batch, each run as one process of two would run it (loss scaled by its
    rows, gradients summed by the strategy), give the whole batch's update."""
    x, y = _data()
    whole, split = _model(), _model()
    for m in (whole, split):
        m.build((None, 3))
        m.compile(loss="binary_crossentropy", optimizer=nn.SGD(0.1))
    whole.set_weights(split.get_weights())
    xb, yb = whole._inputs(x[:20]), whole._targets(y[:20], 20)
    expected = _step(whole, xb, yb, 20, training.LocalStrategy())

    class TwoHalves(training.LocalStrategy):
        """Runs both halves in this process and sums them as an allreduce would."""

    grads = np.zeros_like(split.buffer.grads)
    losses = []
    for lo, hi in ((0, 8), (8, 20)):
        strategy = TwoHalves()
        split.optimizer.apply = lambda gate, bad: None
        losses.append(_step(split, xb[lo:hi], yb[lo:hi], 20, strategy) * (hi - lo) / 20)
        del split.optimizer.apply
        grads += split.buffer.grads
    split.buffer.grads[...] = grads
    split.optimizer.step()
    assert sum(losses) == pytest.approx(expected, rel=1e-6)
    for a, b in zip(split.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
