"""Finite-difference oracles for the layer and loss tests (a helper module, not a test file).

Everything here works in float64: central differences with ``eps = 1e-6`` have a truncation error
of order ``eps²·f'''`` and a rounding error of order ``1e-16·|f| / eps``, both far below the
``1e-6`` relative tolerance the tests use.
"""

import numpy as np

from neuralnp.testing import numerical_gradient


def relative_error(a, b):
    """``max|a - b| / max(1e-8, max|a| + max|b|)``: scale-free, and safe when both are ~0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(1e-8, float(np.max(np.abs(a)) + np.max(np.abs(b))))
    return float(np.max(np.abs(a - b))) / scale


def assert_gradient_close(analytic, numeric, tol=1e-6, what="gradient"):
    err = relative_error(analytic, numeric)
    assert err < tol, (f"{what}: relative error {err:.3e} >= {tol:g}\n"
                       f"analytic:\n{analytic}\nnumeric:\n{numeric}")


def check_layer_gradients(layer, x, seed=0, tol=1e-6):
    """Check ``layer.backward`` against finite differences of ``L = Σ forward(x) ⊙ R``.

    ``R`` is a fixed random array, so ``∂L/∂y = R`` is the ``grad_out`` passed to ``backward``.
    Checks ``∂L/∂x`` (unless ``need_input_grad`` is off) and every parameter's ``grad``. The layer
    must already be built in float64.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64, copy=True)
    y = np.array(layer.forward(x, training=True), copy=True)
    R = rng.normal(size=y.shape)

    gx = layer.backward(R.copy())
    gx = None if gx is None else np.array(gx, copy=True)
    param_grads = [np.array(p.grad, copy=True) for p in layer.parameters()]

    def loss():
        return np.sum(layer.forward(x, training=True) * R)

    if gx is not None:
        assert gx.shape == x.shape
        assert_gradient_close(gx, numerical_gradient(loss, x), tol, "dL/dx")
    for p, g in zip(layer.parameters(), param_grads):
        assert g.shape == p.shape
        assert_gradient_close(g, numerical_gradient(loss, p.value), tol, f"dL/d{p.name}")
    return gx, param_grads
