"""The network mathematics of ``dfc_brian.model.mlp`` against finite differences and the spec.

Every expected value is computed here independently of the module: finite differences of a
feedforward pass and a loss written in this file, the spec's output-target formulas
(``shared/spec/DFC_SPEC.md`` section 2), and the batched engine's simulated controlled phase.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.model import mlp
from dfc_brian.model.params import ConfigError, ModelParams
from dfc_brian.model.weights import Weights, init_weights, weight_product_Q

SIZES = [4, 6, 5, 3]
ACTS = ("tanh", "tanh", "linear")
PHI = {"tanh": np.tanh, "linear": lambda v: v, "relu": lambda v: np.maximum(v, 0.0)}


def _net(seed: int = 0, acts: tuple[str, ...] = ACTS, B: int = 3) -> tuple[Weights, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = [rng.normal(size=(SIZES[i + 1], SIZES[i])) / np.sqrt(SIZES[i]) for i in range(3)]
    b = [0.3 * rng.normal(size=SIZES[i + 1]) for i in range(3)]
    w = Weights(W, b, [q + 0.2 * rng.normal(size=q.shape) for q in weight_product_Q(W)])
    return w, rng.normal(size=(B, SIZES[0]))


def _out(w: Weights, acts: tuple[str, ...], x: np.ndarray, dv: list[np.ndarray] | None = None) -> np.ndarray:
    """r_L of one sample with additive voltage perturbations, written here from the spec."""
    r = x
    for i in range(len(w.W)):
        r = PHI[acts[i]](w.W[i] @ r + w.b[i] + (0.0 if dv is None else dv[i]))
    return r


def _loss(r_L: np.ndarray, y: np.ndarray, loss: str) -> float:
    B, n = r_L.shape
    if loss == "mse":
        return float(np.sum((r_L - y) ** 2) / (B * n))
    lse = np.log(np.sum(np.exp(r_L), axis=1))
    return float(np.mean(lse - r_L[np.arange(B), y]))


@pytest.mark.parametrize("name", ["tanh", "linear", "relu"])
def test_phi_prime_matches_finite_differences(name):
    v = np.array([-1.7, -0.4, 0.3, 0.9, 2.2])  # away from the relu kink
    h = 1e-6
    fd = (PHI[name](v + h) - PHI[name](v - h)) / (2 * h)
    np.testing.assert_allclose(mlp.phi_prime(name, v), fd, rtol=1e-8, atol=1e-10)
    out = np.empty_like(v)
    assert mlp.phi_prime(name, v, out=out) is out
    np.testing.assert_array_equal(out, mlp.phi_prime(name, v))
    np.testing.assert_array_equal(mlp.phi(name, v), PHI[name](v))
    with pytest.raises(ConfigError, match="unknown activation 'sigmoid'"):
        mlp.phi("sigmoid", v)


def test_feedforward_and_jacobian_match_finite_differences():
    w, X = _net()
    v, r = mlp.feedforward(w, ACTS, X)
    assert [x.shape for x in v] == [(3, 6), (3, 5), (3, 3)]
    for b in range(3):
        np.testing.assert_allclose(r[-1][b], _out(w, ACTS, X[b]), rtol=0, atol=1e-14)
    J = mlp.jacobian(w, ACTS, X)
    assert J.shape == (3, 3, 6 + 5 + 3)
    h = 1e-6
    for b in range(3):
        cols = []
        for i, n in enumerate(SIZES[1:]):
            for k in range(n):
                dv = [np.zeros(m) for m in SIZES[1:]]
                dv[i][k] = h
                up = _out(w, ACTS, X[b], dv)
                dv[i][k] = -h
                cols.append((up - _out(w, ACTS, X[b], dv)) / (2 * h))
        np.testing.assert_allclose(J[b], np.array(cols).T, rtol=1e-7, atol=1e-9)
    # J Q by pushing Q forward equals the stacked product
    np.testing.assert_allclose(mlp.jq(w, ACTS, v), J @ mlp.stack_Q(w.Q), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_bp_gradient_matches_finite_differences_of_the_loss(loss):
    w, X = _net(seed=1, B=4)
    rng = np.random.default_rng(5)
    y = rng.normal(size=(4, 3)) if loss == "mse" else np.array([0, 2, 1, 2])

    def loss_at() -> float:
        return _loss(np.array([_out(w, ACTS, x) for x in X]), y, loss)

    assert mlp.loss_value(mlp.feedforward(w, ACTS, X)[1][-1], y, loss) == pytest.approx(loss_at(), rel=1e-13)
    grad = mlp.bp_gradient(w, ACTS, X, y, loss)
    h = 1e-6
    for i in range(3):
        for arr, g in ((w.W[i], grad[i][0]), (w.b[i], grad[i][1])):
            fd = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                lp = loss_at()
                arr[idx] = old - h
                fd[idx] = (lp - loss_at()) / (2 * h)
                arr[idx] = old
            assert np.abs(fd).max() > 1e-3
            np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    # the sign convention: an update is minus lambda times the gradient
    for (uW, ub), (gW, gb) in zip(mlp.bp_update(w, ACTS, X, y, loss, 0.3), grad, strict=True):
        np.testing.assert_array_equal(uW, -0.3 * gW)
        np.testing.assert_array_equal(ub, -0.3 * gb)


def test_output_target_is_the_spec_formula():
    lam = 0.37
    z = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])
    y = np.array([2, 0])
    ez = np.exp(z)
    softmax = ez / ez.sum(axis=1, keepdims=True)
    onehot = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    expect = z - lam / 2 * (softmax - onehot)  # CE: r* = z - (lambda/B)(softmax(z) - onehot(y))
    np.testing.assert_allclose(mlp.output_target(z, y, "ce", lam), expect, rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.output_target(z, onehot, "ce", lam), expect, rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.output_delta(z, y, "ce", lam), expect - z, rtol=1e-14, atol=1e-16)
    t = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    expect = z - lam * 2 * (z - t) / (2 * 3)  # MSE: r* = r - lambda 2 (r - y)/(B n_out)
    np.testing.assert_allclose(mlp.output_target(z, t, "mse", lam), expect, rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.output_delta(z, t, "mse", lam), expect - z, rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(mlp.one_hot(y, 3), onehot)
    with pytest.raises(ConfigError, match="labels must lie in 0..2"):
        mlp.output_target(z, np.array([0, 3]), "ce", lam)
    with pytest.raises(ConfigError, match="labels must be integers"):
        mlp.one_hot(np.array([0.5, 1.0]), 3)
    with pytest.raises(ConfigError, match="unknown loss 'l1'"):
        mlp.loss_value(z, t, "l1")


def test_dfa_target_gradient_is_2_lambda_over_B_times_textbook():
    w, X = _net(seed=2, B=5)
    y = np.random.default_rng(3).normal(size=(5, 3))
    rng = np.random.default_rng(4)
    B_fb = [rng.normal(size=(n, 3)) for n in SIZES[1:-1]] + [np.eye(3)]
    lam = 0.05
    textbook = mlp.dfa_gradient(w, ACTS, B_fb, X, y, "mse")
    target = mlp.dfa_gradient(w, ACTS, B_fb, X, y, "mse", "target", lam)
    for (tW, tb), (gW, gb) in zip(target, textbook, strict=True):
        np.testing.assert_allclose(tW, 2 * lam / 5 * gW, rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(tb, 2 * lam / 5 * gb, rtol=1e-12, atol=1e-18)
    with pytest.raises(ConfigError, match="needs target_stepsize"):
        mlp.dfa_gradient(w, ACTS, B_fb, X, y, "mse", "target")
    # the output layer's DFA gradient is BP's; a hidden layer's uses B_i e instead of W^T delta
    bp = mlp.bp_gradient(w, ACTS, X, y, "mse")
    np.testing.assert_allclose(textbook[-1][0], bp[-1][0], rtol=1e-14, atol=1e-16)
    v, r = mlp.feedforward(w, ACTS, X)
    e = 2 * (r[-1] - y) / (5 * 3)
    d = (e @ B_fb[1].T) * (1 - np.tanh(v[1]) ** 2)
    np.testing.assert_allclose(textbook[1][0], d.T @ r[0], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("lam", [1e-3, 1e-4])
def test_ssa_matches_the_engines_long_controlled_phase(lam):
    """DFC-SSA is the linearised steady state: a long simulation reaches it up to O(delta^2).

    The relative gap between the simulated steady state (DFC-SS, ``u[T-1]``) and the analytic
    one is measured 5.7e-5 at lambda = 1e-3 and 5.7e-6 at 1e-4 (linear in lambda, as a
    second-order remainder over a first-order term must be); a wrong alpha gives 1.3e-2.
    """
    cfg = {
        "model": {"sizes": SIZES, "activations": list(ACTS), "loss": "mse"},
        "controller": {
            "k_p": 0.5,
            "alpha": 0.02,
            "dt": 0.05,
            "tmax": 4000,
            "tcr": 0.2,
            "target_stepsize": lam,
        },
    }
    p = ModelParams.from_dict(cfg)
    w, X = _net(seed=6)
    y = np.random.default_rng(7).normal(size=(3, 3))
    eng = BatchedDFC(p, w)
    r_ff = eng.feedforward(X)[1][-1]
    res = eng.controlled_phase(X, eng.output_target(r_ff, y), accumulate=False)
    assert res.converged.all()
    ss = mlp.ssa(w, ACTS, X, mlp.output_delta(r_ff, y, "mse", lam), p.controller.alpha)
    tol = 0.1 * lam  # measured 0.057 lambda
    np.testing.assert_allclose(res.u_last, ss.u, rtol=0, atol=tol * np.abs(ss.u).max())
    for (dW, db), sW, sb in zip(ss.update, res.dW_ss, res.db_ss, strict=True):
        np.testing.assert_allclose(dW, sW, rtol=0, atol=tol * np.abs(sW).max())
        np.testing.assert_allclose(db, sb, rtol=0, atol=tol * np.abs(sb).max())
    # the sign convention: a step along the update lowers the loss
    before = mlp.loss_value(r_ff, y, "mse")
    stepped = Weights(
        [W + dW for W, (dW, _) in zip(w.W, ss.update, strict=True)],
        [b + db for b, (_, db) in zip(w.b, ss.update, strict=True)],
        w.Q,
    )
    assert mlp.loss_value(mlp.feedforward(stepped, ACTS, X)[1][-1], y, "mse") < before


def test_ssa_of_the_engine_is_mlp_ssa():
    p = ModelParams.from_dict(
        {
            "model": {"sizes": SIZES, "activations": list(ACTS)},
            "controller": {"alpha": 0.1, "target_stepsize": 0.2},
        }
    )
    w = init_weights(p.network, seed=3)
    X = np.random.default_rng(0).normal(size=(4, SIZES[0]))
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], np.zeros((4, 3)))
    res = eng.ssa(X, r_star)
    ss = mlp.ssa(w, p.network, X, r_star - eng.feedforward(X)[1][-1], 0.1)
    for i in range(3):
        np.testing.assert_array_equal(res.dW_ssa[i], ss.update[i][0])
        np.testing.assert_array_equal(res.db_ssa[i], ss.update[i][1])
    # the exact route (stacked Jacobian) agrees to round-off
    ex = mlp.ssa(w, p.network, X, r_star - eng.feedforward(X)[1][-1], 0.1, exact=True)
    np.testing.assert_allclose(ex.u, ss.u, rtol=1e-10, atol=1e-16)


def test_bad_input_names_x():
    w, _ = _net()
    with pytest.raises(ConfigError, match=r"X has shape \(2, 5\), expected \(B, 4\)"):
        mlp.feedforward(w, ACTS, np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="X contains non-finite"):
        mlp.feedforward(w, ACTS, np.full((2, 4), np.nan))
