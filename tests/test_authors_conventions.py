"""The authors' conventions (issue 7): target-based DFA, the sleep-phase Q estimator, the
feedback optimiser with its joint clip.

Expected values are written here from the formulas of DFC_SPEC.md section 2 (explicit loops
over samples, plain NumPy), not from the package's code.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from dfc_brian.engines.baselines import dfa_feedback, dfa_gradient
from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.engines.methods import make_method
from dfc_brian.engines.optim import SGD, clip_joint
from dfc_brian.model.params import ConfigError, ModelParams
from dfc_brian.model.weights import init_weights, weight_product_Q

SIZES = [4, 6, 5, 3]


def _tanh_prime(v):
    return 1.0 - np.tanh(v) ** 2


def _dfa_from_formula(W, b, Bfb, acts, X, Y, lam):
    """(1/B) sum_b 2 phi'(v_i)(h_i - h_i*) r_{i-1}^T with h_i* = h_i + B_i (r_L* - r_L), MSE loss."""
    n_samples, L = len(X), len(W)
    n_out = W[-1].shape[0]
    gW = [np.zeros_like(w) for w in W]
    gb = [np.zeros_like(c) for c in b]
    # the output target needs the batch-mean loss: r* = r - lam * 2 (r - y) / (B n_out)
    for s in range(n_samples):
        r_prev, v, r = X[s], [], []
        for i in range(L):
            v.append(W[i] @ r_prev + b[i])
            r.append(np.tanh(v[i]) if acts[i] == "tanh" else v[i].copy())
            r_prev = r[i]
        r_star = r[-1] - lam * 2.0 * (r[-1] - Y[s]) / (n_samples * n_out)
        for i in range(L):
            h_target = r[i] + Bfb[i] @ (r_star - r[-1])
            dphi = _tanh_prime(v[i]) if acts[i] == "tanh" else np.ones_like(v[i])
            teach = 2.0 * dphi * (r[i] - h_target)
            pre = X[s] if i == 0 else r[i - 1]
            gW[i] += np.outer(teach, pre) / n_samples
            gb[i] += teach / n_samples
    return gW, gb


def _params(acts):
    return ModelParams.from_dict(
        {
            "model": {"sizes": SIZES, "activations": acts, "loss": "mse"},
            "controller": {"target_stepsize": 0.05},
        }
    )


# ------------------------------------------------------------------ DFA
@pytest.mark.parametrize("acts", [["tanh", "tanh", "linear"], ["tanh", "tanh", "tanh"]])
def test_target_dfa_equals_the_formula(acts):
    p = _params(acts)
    w = init_weights(p.network, seed=4)
    rng = np.random.default_rng(0)
    w.b = [0.3 * rng.normal(size=c.shape) for c in w.b]
    X, Y = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    Bfb = dfa_feedback(p.network, 11)
    _, gW, gb = dfa_gradient(p.network, w, Bfb, X, Y, "target", 0.05)
    eW, eb = _dfa_from_formula(w.W, w.b, Bfb, acts, X, Y, 0.05)
    for i in range(3):
        np.testing.assert_allclose(gW[i], eW[i], rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(gb[i], eb[i], rtol=1e-12, atol=1e-18)


def test_target_dfa_is_2_lambda_over_B_times_textbook():
    p = _params(["tanh", "tanh", "linear"])
    w = init_weights(p.network, seed=5)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    Bfb = dfa_feedback(p.network, 2)
    lam, n = 0.001, 16
    _, tW, tb = dfa_gradient(p.network, w, Bfb, X, Y, "target", lam)
    _, xW, xb = dfa_gradient(p.network, w, Bfb, X, Y)
    for a, c in zip(tW + tb, xW + xb, strict=True):
        np.testing.assert_allclose(a, (2 * lam / n) * c, rtol=1e-12, atol=0)


def _dfa_cfg(**tr):
    return {
        "model": {"sizes": SIZES, "activations": ["tanh", "tanh", "linear"], "loss": "mse"},
        "controller": {"target_stepsize": 0.001},
        "training": {"method": "DFA", "lr": 0.1, "optimizer": "sgd", **tr},
    }


def test_dfa_method_uses_the_convention_and_clips_per_tensor():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(8, 4)), 5 * rng.normal(size=(8, 3))
    for conv in ("target", "textbook"):
        m = make_method(_dfa_cfg(dfa_convention=conv, clip=1e-4), seed=0)
        W0 = [x.copy() for x in m.weights.W]
        if conv == "target":
            _, gW, _ = dfa_gradient(m.params.network, m.weights, m.B_fb, X, Y, "target", 0.001)
        else:
            _, gW, _ = dfa_gradient(m.params.network, m.weights, m.B_fb, X, Y)
        m.train_step(X, Y)
        for i in range(3):
            g = gW[i] * min(1.0, 1e-4 / (np.linalg.norm(gW[i]) + 1e-6))
            np.testing.assert_allclose(m.weights.W[i], W0[i] - 0.1 * g, rtol=0, atol=1e-15)
            assert np.linalg.norm(W0[i] - m.weights.W[i]) < 0.1 * 1e-4 * (1 + 1e-9)


def test_target_dfa_needs_target_stepsize():
    cfg = _dfa_cfg()
    del cfg["controller"]
    with pytest.raises(ConfigError, match="controller.target_stepsize"):
        make_method(cfg, seed=0)
    cfg["training"]["dfa_convention"] = "textbook"
    make_method(cfg, seed=0)  # the textbook gradient has no lambda


# ------------------------------------------------------------------ sleep estimator
def _sleep_setup(sigma, sigma_out, T=12, n_samples=3):
    cfg = {
        "model": {"sizes": SIZES, "activations": ["tanh", "tanh", "linear"], "loss": "mse"},
        "sleep": {
            "sigma": sigma,
            "sigma_output_fb": sigma_out,
            "k_p_fb": 0.3,
            "alpha_fb": 0.4,
            "dt_fb": 0.01,
            "tmax_fb": T,
            "tcr_fb": 0.02,
            "tau_A": 0.2,
        },
    }
    p = ModelParams.from_dict(cfg)
    w = init_weights(p.network, seed=3)
    rng = np.random.default_rng(7)
    w.Q = [q + 0.2 * rng.normal(size=q.shape) for q in weight_product_Q(w.W)]
    X = rng.normal(size=(n_samples, 4))
    noise = [rng.normal(size=(T - 1, n_samples, n)) for n in SIZES[1:]]
    return p, w, X, noise


@pytest.mark.parametrize(
    "sigma,sigma_out,sigma_tilde", [(0.05, None, 0.05), (0.004, None, 0.01), (0.02, 0.0, 0.02)]
)
def test_sleep_estimator_pairs_v_A_t_with_u_t_plus_1(sigma, sigma_out, sigma_tilde):
    T = 12
    p, w, X, noise = _sleep_setup(sigma, sigma_out, T)
    res = BatchedDFC(p, w).sleep_phase(X, record=True, noise=noise)
    n_samples = len(X)
    for i in range(3):
        expect = np.zeros_like(w.Q[i])
        for s in range(n_samples):
            for t in range(T - 1):
                expect -= np.outer(res.v_apical[i][s, t], res.u[s, t + 1])
        expect /= sigma_tilde**2 * n_samples * (T - 1)
        np.testing.assert_allclose(res.dQ[i], expect, rtol=1e-12, atol=1e-15)
    # the output layer's apical noise std is sigma_output_fb: 0 -> the noiseless filter of Q_L u
    if sigma_out == 0.0:
        vA, u = res.v_apical[-1], res.u
        expect_vA = vA[:, :-1] + 0.01 / 0.2 * (-vA[:, :-1] + u[:, 1:] @ w.Q[-1].T)
        np.testing.assert_allclose(vA[:, 1:], expect_vA, rtol=0, atol=1e-14)


def test_sleep_estimator_differs_from_the_old_pairing():
    """The old estimator (v_A[t] with u[t], T terms) is a different number on the same trajectory."""
    T = 12
    p, w, X, noise = _sleep_setup(0.05, None, T)
    res = BatchedDFC(p, w).sleep_phase(X, record=True, noise=noise)
    old = -np.einsum("stn,stm->nm", res.v_apical[0], res.u) / (0.05**2 * len(X) * T)
    assert not np.allclose(old, res.dQ[0], rtol=1e-3)


# ------------------------------------------------------------------ feedback optimiser and joint clip
def test_clip_joint_numbers():
    g, norm = clip_joint([np.array([3.0]), np.array([[4.0, 12.0]])], 1.0)
    assert norm == 13.0
    np.testing.assert_allclose(g[0], [3.0 / (13.0 + 1e-6)], rtol=1e-15)
    np.testing.assert_allclose(g[1], [[4.0 / (13.0 + 1e-6), 12.0 / (13.0 + 1e-6)]], rtol=1e-15)
    small, n2 = clip_joint([np.array([0.3]), np.array([0.4])], 1.0)
    assert n2 == pytest.approx(0.5) and small[0][0] == 0.3 and small[1][0] == 0.4


def _dfc_cfg(**tr):
    return {
        "model": {"sizes": SIZES, "activations": ["tanh", "tanh", "linear"], "loss": "mse"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.02, "tmax": 20, "tcr": 0.2, "target_stepsize": 0.5},
        "sleep": {
            "sigma": 0.05,
            "k_p_fb": 0.3,
            "alpha_fb": 0.4,
            "dt_fb": 0.01,
            "tmax_fb": 10,
            "tcr_fb": 0.02,
        },
        "training": {"method": "DFC", "q": "trained", "lr": 1e-2, "lr_fb": 0.5, "wd_fb": 0.1, **tr},
    }


def _raw_sleep_gradient(m, X):
    """-dQ of the sleep phase the method is about to run (same noise: a copy of its generator)."""
    rng = copy.deepcopy(m.rng)
    return [-dq for dq in m.engine.sleep_phase(X, rng=rng).dQ]


@pytest.mark.parametrize("freeze_QL", [False, True])
def test_feedback_sgd_step_clips_jointly_then_adds_weight_decay(freeze_QL):
    X = np.random.default_rng(3).normal(size=(5, 4))
    m = make_method(_dfc_cfg(optimizer_fb="sgd", clip_fb=1e-3, freeze_QL=freeze_QL), seed=1)
    assert isinstance(m.fb_opt, SGD)
    Q0 = [q.copy() for q in m.weights.Q]
    g = _raw_sleep_gradient(m, X)
    norm = math.sqrt(sum(float(np.sum(x * x)) for x in g))  # all Q_i, Q_L included (authors' code)
    assert norm > 1e-3  # the clip is active
    out = m.feedback_step(X)
    assert out["sleep_dQ_norm"] == pytest.approx(norm, rel=1e-12)
    c = 1e-3 / (norm + 1e-6)
    for i in range(3):
        if freeze_QL and i == 2:
            np.testing.assert_array_equal(m.weights.Q[i], Q0[i])
        else:
            expect = Q0[i] - 0.5 * (c * g[i] + 0.1 * Q0[i])  # clip the raw gradient, then wd inside the step
            np.testing.assert_allclose(m.weights.Q[i], expect, rtol=0, atol=1e-14)


def test_feedback_adam_uses_adam_eps_fb_and_no_clip_when_null():
    X = np.random.default_rng(4).normal(size=(5, 4))
    eps = 0.3
    m = make_method(_dfc_cfg(optimizer_fb="adam", adam_eps_fb=eps, clip_fb=None), seed=2)
    Q0 = [q.copy() for q in m.weights.Q]
    g = _raw_sleep_gradient(m, X)
    m.feedback_step(X)
    for i in range(3):
        gd = g[i] + 0.1 * Q0[i]  # torch Adam, first step: p -= lr * g / (|g| + eps)
        np.testing.assert_allclose(m.weights.Q[i], Q0[i] - 0.5 * gd / (np.abs(gd) + eps), rtol=0, atol=1e-14)
