"""A training step that reads nothing back from the device, and a loop that reads once per epoch.

The model runs on ``DeviceOps``: the reference :class:`~neuralnp.backends.Ops` over
``devicelike.xp``, whose arrays count (and inside ``no_reads()`` refuse) every read back to the
host and every host number written into them, as a GPU's would cost a synchronisation or break
a captured graph. The oracle is the same model on the reference Ops over NumPy, which computes
the step's numbers (learning rate, bias corrections, the finite check) on the host: both must
give the same weights bit for bit.
"""

import numpy as np
import pytest

import devicelike
import neuralnp as nn
from neuralnp import devices, training
from neuralnp.backends import Ops


class DeviceOps(Ops):
    name = "device-like"

    def __init__(self):
        super().__init__(devicelike.xp)


def _model(ops, optimizer, loss="sparse_categorical_crossentropy", units=3, activation="softmax",
           regularizer=None, dtype="float32"):
    model = nn.Sequential([nn.Dense(6, activation="tanh", kernel_regularizer=regularizer),
                           nn.Dense(units, activation=activation)], seed=3, dtype=dtype)
    model.ops = ops
    model.build((None, 4))
    model.compile(loss=loss, optimizer=optimizer)
    return model


def _data(n=37, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)


OPTIMIZERS = {
    "adam": lambda: nn.Adam(0.01),
    "adam-amsgrad-clipnorm": lambda: nn.Adam(0.01, amsgrad=True, clipnorm=0.05),
    "adamw": lambda: nn.AdamW(0.01, weight_decay=0.1),
    "nadam": lambda: nn.Nadam(0.01),
    "sgd": lambda: nn.SGD(0.1),
    "sgd-momentum-dampening": lambda: nn.SGD(0.1, momentum=0.9, dampening=0.3, clipvalue=0.02),
    "rmsprop-centered-momentum": lambda: nn.RMSprop(0.01, momentum=0.5, centered=True,
                                                    weight_decay=0.01),
    "adagrad-decay": lambda: nn.Adagrad(0.1, lr_decay=0.05),
    "adam-schedule": lambda: nn.Adam(nn.schedules.ExponentialDecay(0.02, 3, 0.5)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_training_step_reads_nothing_back(name):
    model = _model(DeviceOps(), OPTIMIZERS[name](), regularizer=nn.regularizers.L1L2(1e-3, 1e-2))
    x, y = _data()
    xb = model.ops.to_device(model._inputs(x[:16]))
    yb = model.ops.to_device(model._targets(y[:16], 16))
    record = training.EpochRecord(model.ops, 5, model.buffer.size)
    record.begin()
    model.optimizer.plan(5)
    before = np.array(model.ops.to_host(model.buffer.values))
    with devicelike.no_reads():
        for step in range(5):
            training.train_step(model, xb, yb, None, 16, training.LocalStrategy(),
                                record.slots[step], record.gate, record.bad)
            record.count_update()
    values = model.ops.to_host(record.values)
    assert values[0] == 1.0 and values[2] == 5  # the gate open, five updates made
    assert np.isfinite(values[3:]).all() and values[7] < values[3]  # the loss went down
    assert not np.array_equal(model.ops.to_host(model.buffer.values), before)


def test_the_checker_sees_a_read():
    """The test above can fail: a step that reads its loss (as the loop did before) is caught."""
    model = _model(DeviceOps(), nn.Adam(0.01))
    x, y = _data()
    xb = model.ops.to_device(model._inputs(x[:16]))
    yb = model.ops.to_device(model._targets(y[:16], 16))
    out = model._forward(xb, training=True)
    with devicelike.no_reads(), pytest.raises(devicelike.HostRead, match="float"):
        model._train_loss.forward(out, yb)  # no out=: it returns a float


def _fit(ops, optimizer, **kwargs):
    model = _model(ops, optimizer, **kwargs.pop("model", {}))
    x, y = kwargs.pop("data", _data())
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, **kwargs)
    return model, history


def _assert_same_training(device, host):
    (dmodel, dhist), (hmodel, hhist) = device, host
    assert np.array_equal(devicelike.to_host(dmodel.buffer.values), hmodel.buffer.values)
    dstate, hstate = dmodel.optimizer.state_dict(), hmodel.optimizer.state_dict()
    assert dstate.keys() == hstate.keys()
    for key in dstate:
        assert np.array_equal(np.asarray(devicelike.to_host(dstate[key])
                                         if hasattr(dstate[key], "get") else dstate[key]),
                              hstate[key]), key
    assert dhist.history == hhist.history


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_device_step_trains_as_the_host_step_bit_for_bit(name):
    """37 samples in batches of 8: four full batches and a partial one, three epochs, with a
    regularizer; the device computes its numbers from its own step count and rate table."""
    kwargs = {"model": {"regularizer": nn.regularizers.L2(1e-2)}}
    _assert_same_training(_fit(DeviceOps(), OPTIMIZERS[name](), **kwargs),
                          _fit(Ops(), OPTIMIZERS[name](), **dict(kwargs)))


@pytest.mark.parametrize("loss, units, activation, dtype", [
    ("mse", 2, None, "float64"),
    ("binary_crossentropy", 1, "sigmoid", "float32"),
    ("categorical_crossentropy", 3, "softmax", "float64"),
])
def test_other_losses_weights_and_dtypes_train_the_same(loss, units, activation, dtype):
    x, labels = _data()
    y = {"mse": np.stack([x[:, 0], x[:, 1] * 2], axis=1), "binary_crossentropy": x[:, 0] > 0,
         "categorical_crossentropy": labels}[loss]
    weights = np.linspace(0.5, 2.0, len(x))
    kwargs = {"model": {"loss": loss, "units": units, "activation": activation, "dtype": dtype},
              "data": (x, y), "sample_weight": weights, "validation_split": 0.2}
    _assert_same_training(_fit(DeviceOps(), nn.Adam(0.01), **kwargs),
                          _fit(Ops(), nn.Adam(0.01), **dict(kwargs, model=dict(kwargs["model"]))))


def test_the_loop_reads_once_per_epoch_whatever_the_number_of_steps():
    reads = []
    for n in (40, 400):
        model = _model(DeviceOps(), nn.Adam(0.01))
        x, y = _data(n)
        with devicelike.counting() as tally:
            model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        reads.append(tally.reads)
    assert reads[0] == reads[1] and reads[0] <= 3 * 2, reads


def test_per_batch_callbacks_see_each_batch_loss_on_the_host():
    seen = {}
    for ops in (DeviceOps(), Ops()):
        losses = seen[ops.name] = []
        callback = nn.callbacks.LambdaCallback(
            on_batch_end=lambda batch, logs, losses=losses: losses.append(logs["loss"]))
        _fit(ops, nn.Adam(0.01), callbacks=[callback])
    assert len(seen["reference"]) == 15 and all(type(v) is float for v in seen["device-like"])
    assert seen["device-like"] == seen["reference"]


@pytest.mark.parametrize("name", ["adam", "sgd-momentum-dampening", "nadam", "adam-schedule"])
@pytest.mark.parametrize("how", ["loss", "update"])
def test_divergence_on_the_device_stops_where_the_host_stops(name, how):
    """An infinite loss (a 1e30 target in the 23rd sample, batch 2 of the second epoch) or an
    update that overflows (a learning rate near float32's largest): the device learns it at the
    epoch's end, the host at the step, and both raise the same error with the same last finite
    weights."""
    x, y = _data()
    errors, models = [], []
    for ops in (DeviceOps(), Ops()):
        if how == "loss":
            data = (x, x[:, 0] * 2)
            model = _model(ops, OPTIMIZERS[name](), loss="mse", units=1, activation=None)
            model.fit(*data, batch_size=8, epochs=1, verbose=0, shuffle=False)
            data[1][22] = 1e30  # a finite target whose squared error is inf in float32
        else:
            data = (x, y)
            model = _model(ops, OPTIMIZERS[name]())
            model.fit(*data, batch_size=8, epochs=1, verbose=0, shuffle=False)
            if callable(model.optimizer.learning_rate):
                model.optimizer.learning_rate.initial_learning_rate = 3e38
            else:
                model.optimizer.learning_rate = 3e38
        with pytest.raises(nn.TrainingDivergedError) as error:
            model.fit(*data, batch_size=8, epochs=2, verbose=0, shuffle=False)
        errors.append(str(error.value))
        models.append(model)
    assert errors[0] == errors[1], errors
    assert "optimizer step" in errors[0]
    if how == "update" and name == "adam":  # the others' steps stay finite, the next loss not
        assert "weights NaN or infinite" in errors[0]
    assert models[0].optimizer.iterations == models[1].optimizer.iterations
    assert np.array_equal(devicelike.to_host(models[0].buffer.values), models[1].buffer.values)
    assert np.isfinite(models[1].buffer.values).all()


def test_terminate_on_nan_on_the_device_keeps_the_history_of_the_host():
    x, _ = _data()
    y = x[:, 0] * 2
    y[30] = 1e30
    runs = []
    for ops in (DeviceOps(), Ops()):
        model = _model(ops, nn.Adam(0.01), loss="mse", units=1, activation=None)
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                            callbacks=[nn.callbacks.TerminateOnNaN()])
        runs.append((model, history))
    assert runs[0][1].history == runs[1][1].history
    assert np.array_equal(devicelike.to_host(runs[0][0].buffer.values), runs[1][0].buffer.values)


def test_early_stopping_and_a_learning_rate_callback_act_the_same_on_the_device():
    runs = []
    for ops in (DeviceOps(), Ops()):
        callbacks = [nn.callbacks.EarlyStopping("val_loss", patience=1, restore_best_weights=True),
                     nn.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)]
        runs.append(_fit(ops, nn.Adam(0.05), validation_split=0.3, callbacks=callbacks))
    _assert_same_training(*runs)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_computes_every_number_it_names(name):
    for ops in (DeviceOps(), Ops()):
        optimizer = _model(ops, OPTIMIZERS[name]()).optimizer
        t = 1 if ops.reads_are_free else ops.xp.ones(1)
        rate = 0.5 if ops.reads_are_free else ops.xp.full(1, 0.5)
        assert len(optimizer._numbers(t, rate)) == len(optimizer.numbers) >= 1


def test_a_direct_step_on_the_device_counts_and_refuses_as_on_the_host():
    models = [_model(ops, nn.Adam(3e38)) for ops in (DeviceOps(), Ops())]
    for model in models:
        model.buffer.grads[...] = model.ops.to_device(np.linspace(-1, 1, model.buffer.size,
                                                                  dtype=np.float32))
        before = np.array(model.ops.to_host(model.buffer.values))
        with pytest.raises(nn.TrainingDivergedError, match="weights NaN or infinite"):
            model.optimizer.step()
        assert np.array_equal(model.ops.to_host(model.buffer.values), before)
        model.optimizer.learning_rate = 0.01
        model.optimizer.step()
        assert model.optimizer.iterations == 1
    assert np.array_equal(models[0].ops.to_host(models[0].buffer.values), models[1].buffer.values)


def _stateful_model(ops, dropout=False):
    model = nn.Sequential([nn.Dense(6, activation="relu"), nn.BatchNormalization(),
                           *([nn.Dropout(0.3, seed=5)] if dropout else []),
                           nn.Dense(3, activation="softmax")], seed=1)
    model.ops = ops
    model.compile(loss="sparse_categorical_crossentropy", optimizer=nn.Nadam(0.01))
    return model


def test_moving_a_model_to_the_device_and_back_continues_training_exactly():
    """Weights, batch-norm statistics, the optimizer's moments and step count and the model's
    generator all cross over: a model that went to the device for two epochs and came back
    equals one that stayed, bit for bit. (With dropout it could not: a device draws its masks
    from its own counter-based stream, seeded from the layer's generator.)"""
    x, y = _data()
    stayed, moved = _stateful_model(Ops()), _stateful_model(Ops())
    histories = []
    for model, hops in ((stayed, None), (moved, (DeviceOps(), Ops()))):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        if hops:
            devices.move(model, hops[0])
            assert type(model.buffer.values) is devicelike.DeviceArray
            assert type(model.optimizer.state["m"]) is devicelike.DeviceArray
        histories.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0).history)
        if hops:
            devices.move(model, hops[1])
            assert type(model.buffer.values) is np.ndarray
        histories.append(model.fit(x, y, batch_size=8, epochs=1, verbose=0).history)
    assert histories[:2] == histories[2:]
    assert np.array_equal(moved.buffer.values, stayed.buffer.values)
    for a, b in zip(moved.get_weights(), stayed.get_weights()):
        assert np.array_equal(a, b)
    assert moved.optimizer.iterations == stayed.optimizer.iterations == 20  # 4 epochs × 5
    assert np.array_equal(moved.predict(x), stayed.predict(x))


def test_an_unbuilt_model_moves_by_changing_its_ops():
    model = nn.Sequential([nn.Dense(2)])
    devices.move(model, DeviceOps())
    model.build((None, 4))
    assert type(model.buffer.values) is devicelike.DeviceArray
    assert type(model.predict(np.ones((3, 4), np.float32))) is np.ndarray


def test_moving_keeps_each_layers_own_generator():
    """A seeded dropout layer's generator is rebuilt by the move and put back as it was: a model
    moved to the device and straight back draws the CPU masks of one that never moved."""
    x, y = _data()
    stayed, moved = _stateful_model(Ops(), dropout=True), _stateful_model(Ops(), dropout=True)
    for model in (stayed, moved):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    devices.move(moved, DeviceOps())
    devices.move(moved, Ops())
    for model in (stayed, moved):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.array_equal(moved.buffer.values, stayed.buffer.values)
