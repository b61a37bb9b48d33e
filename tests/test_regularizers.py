"""L1/L2 penalties: added to the loss and its gradient with Keras's semantics, checked with torch."""

import numpy as np
import pytest

import neuralnp as nn
from neuralnp.regularizers import L1, L2, L1L2


@pytest.mark.parametrize("reg, l1, l2", [(L1(0.03), 0.03, 0.0), (L2(0.05), 0.0, 0.05),
                                         (L1L2(0.02, 0.04), 0.02, 0.04)])
def test_penalty_and_gradient_by_hand(reg, l1, l2):
    w = np.array([[1.5, -2.0], [0.0, 0.5]])
    assert reg(w) == pytest.approx(l1 * 4.0 + l2 * (2.25 + 4.0 + 0.25))
    grad = np.ones_like(w)
    reg.add_gradient(w, grad)
    np.testing.assert_allclose(grad, 1 + l1 * np.sign(w) + 2 * l2 * w)


def test_training_with_penalties_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    model = nn.Sequential([
        nn.Dense(6, activation="tanh", kernel_regularizer=L1L2(0.01, 0.02), bias_regularizer="l2"),
        nn.Dense(2, kernel_regularizer=L1(0.05)),
    ], seed=1, dtype="float64")
    model.build((4,))
    w1, b1, w2, b2 = model.get_weights()
    model.compile(loss="mse", optimizer=nn.SGD(0.1))
    history = model.fit(x, y, epochs=30, batch_size=20, shuffle=False, verbose=0)

    params = [torch.tensor(a, requires_grad=True) for a in (w1, b1, w2, b2)]
    opt = torch.optim.SGD(params, lr=0.1)
    tx, ty = torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        tw1, tb1, tw2, tb2 = params
        out = torch.tanh(tx @ tw1 + tb1) @ tw2 + tb2
        loss = (torch.nn.functional.mse_loss(out, ty) + 0.01 * tw1.abs().sum()
                + 0.02 * (tw1 ** 2).sum() + 0.01 * (tb1 ** 2).sum() + 0.05 * tw2.abs().sum())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for got, want in zip(model.get_weights(), params):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=0, atol=1e-10)
    # the reported loss includes the penalty, as in Keras
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-10)


def test_regularizers_survive_save_and_load(tmp_path):
    model = nn.Sequential([nn.Dense(3, kernel_regularizer=L2(0.3), input_dim=2)], seed=0)
    model.compile(loss="mse", optimizer="sgd")
    model.save(tmp_path / "m")
    layer = nn.load_model(tmp_path / "m").layers[0]
    assert isinstance(layer.kernel_regularizer, L2) and layer.kernel_regularizer.l2 == 0.3


@pytest.mark.parametrize("make", [lambda: L1(-0.1), lambda: L2(float("nan")),
                                  lambda: nn.Dense(2, kernel_regularizer="l3")])
def test_bad_factors_and_names(make):
    with pytest.raises(ValueError, match="l1|l2|regularizer"):
        make()
