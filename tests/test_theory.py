"""Tests of dfc_brian.analysis.theory, each against an independent computation.

Finite differences of a plain forward pass written here, closed forms on linear networks,
eigenvalues of hand-assembled 2x2 blocks, and the plain Euler scheme of ``tests/reference.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.analysis import theory as th
from dfc_brian.model.params import NetworkSpec
from dfc_brian.model.weights import Weights, init_weights
from tests.reference import simulate

ACTS = ("tanh", "tanh", "linear")
SIZES = (4, 5, 3, 2)


def _net(seed: int = 0, sizes=SIZES, acts=ACTS, bias_scale: float = 0.3) -> tuple[Weights, NetworkSpec]:
    spec = NetworkSpec(sizes, acts)
    w = init_weights(spec, seed)
    rng = np.random.default_rng(seed + 100)
    w.b = [bias_scale * rng.normal(size=b.shape) for b in w.b]
    w.Q = [rng.normal(size=q.shape) for q in w.Q]
    return w, spec


def _X(B: int = 3, n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (B, n))


def _fwd(W, b, acts, x, dv=None):
    """Plain single-sample forward pass, independent of the package."""
    f = {"tanh": np.tanh, "linear": lambda z: z}
    r = x
    for i in range(len(W)):
        v = W[i] @ r + b[i] + (0.0 if dv is None else dv[i])
        r = f[acts[i]](v)
    return r


def _loss(r, y, loss):
    if loss == "mse":
        return np.sum((r - y) ** 2) / r.size
    z = r - r.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(y)), y])


# ----------------------------------------------------------------------------------------
# angles
# ----------------------------------------------------------------------------------------


def test_angle_known_vectors():
    assert th.angle(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(90.0)
    assert th.angle(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(0.0, abs=1e-6)
    assert th.angle(np.array([1.0, 0.0]), np.array([-0.5, 0.0])) == pytest.approx(180.0)
    assert th.angle(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0)
    # matrices are flattened (Frobenius inner product)
    assert th.angle(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(90.0)
    assert np.isnan(th.angle(np.zeros(3), np.ones(3)))


def test_layer_angles_per_layer_and_total():
    a = [(np.array([[1.0, 0.0]]), np.array([0.0])), (np.array([[1.0]]), np.array([0.0]))]
    b = [(np.array([[0.0, 1.0]]), np.array([0.0])), (np.array([[2.0]]), np.array([0.0]))]
    per, total = th.layer_angles(a, b)
    np.testing.assert_allclose(per, [90.0, 0.0], atol=1e-6)
    # whole network: (1,0,0,1,0) vs (0,1,0,2,0): cos = 2 / (sqrt2 sqrt5)
    assert total == pytest.approx(np.degrees(np.arccos(2 / np.sqrt(10))))


# ----------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------


def test_jacobian_matches_finite_differences():
    w, spec = _net()
    X = _X()
    J = th.jacobian(w, spec, X)
    sizes = SIZES[1:]
    assert J.shape == (3, 2, sum(sizes))
    eps = 1e-5
    for bi, x in enumerate(X):
        col = 0
        for i, n in enumerate(sizes):
            for k in range(n):
                dv = [np.zeros(m) for m in sizes]
                dv[i][k] = eps
                up = _fwd(w.W, w.b, ACTS, x, dv)
                dv[i][k] = -eps
                dn = _fwd(w.W, w.b, ACTS, x, dv)
                np.testing.assert_allclose(J[bi, :, col], (up - dn) / (2 * eps), rtol=1e-6, atol=1e-9)
                col += 1


def test_weight_jacobian_matches_finite_differences():
    w, spec = _net(seed=2)
    X = _X(2)
    JW = th.weight_jacobian(w, spec, X)
    theta0 = th.flatten_update(list(zip(w.W, w.b, strict=True)))
    assert JW.shape == (2, 2, theta0.size)
    eps = 1e-5
    fd = np.zeros_like(JW)
    for p in range(theta0.size):
        for s in (1, -1):
            th_p = theta0.copy()
            th_p[p] += s * eps
            upd = th.split_flat(th_p, w)
            Wp, bp = [a for a, _ in upd], [c for _, c in upd]
            for bi, x in enumerate(X):
                fd[bi, :, p] += s * _fwd(Wp, bp, ACTS, x) / (2 * eps)
    np.testing.assert_allclose(JW, fd, rtol=1e-6, atol=1e-9)
    # without biases: the same columns minus the bias blocks
    JW_nb = th.weight_jacobian(w, spec, X, bias=False)
    keep = th.flatten_update([(np.ones_like(a), np.zeros_like(c)) for a, c in zip(w.W, w.b, strict=True)])
    np.testing.assert_allclose(JW_nb, JW[:, :, keep == 1])


def test_flatten_split_roundtrip():
    w, _ = _net()
    upd = list(zip(w.W, w.b, strict=True))
    back = th.split_flat(th.flatten_update(upd), w)
    for (a, c), (a2, c2) in zip(upd, back, strict=True):
        np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(c, c2)


# ----------------------------------------------------------------------------------------
# BP gradient and output target
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_bp_gradient_matches_finite_differences(loss):
    w, spec = _net(seed=3, sizes=(4, 5, 3, 3))
    X = _X(4)
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, size=4) if loss == "ce" else rng.normal(size=(4, 3))
    grad = th.flatten_update(th.bp_gradient(w, spec, X, y, loss))
    theta0 = th.flatten_update(list(zip(w.W, w.b, strict=True)))
    eps = 1e-6
    fd = np.zeros_like(theta0)
    for p in range(theta0.size):
        vals = []
        for s in (1, -1):
            th_p = theta0.copy()
            th_p[p] += s * eps
            upd = th.split_flat(th_p, w)
            out = np.array([_fwd([a for a, _ in upd], [c for _, c in upd], ACTS, x) for x in X])
            vals.append(_loss(out, y, loss))
        fd[p] = (vals[0] - vals[1]) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    # loss_value agrees with the independent loss; output_delta = -lambda dL/dr_L
    _, r = th.feedforward(w, spec, X)
    assert th.loss_value(r[-1], y, loss) == pytest.approx(_loss(r[-1], y, loss), rel=1e-12)
    d = th.output_delta(r[-1], y, loss, target_stepsize=0.1)
    fd_out = np.zeros_like(r[-1])
    for idx in np.ndindex(*r[-1].shape):
        rp, rm = r[-1].copy(), r[-1].copy()
        rp[idx] += eps
        rm[idx] -= eps
        fd_out[idx] = (_loss(rp, y, loss) - _loss(rm, y, loss)) / (2 * eps)
    np.testing.assert_allclose(d, -0.1 * fd_out, rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------------------
# GN, MN and SSA updates
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_gauss_newton_matches_explicit_formula(gamma):
    w, spec = _net(seed=4)
    X = _X(3)
    delta = np.random.default_rng(3).normal(size=(3, 2)) * 0.1
    JW = th.weight_jacobian(w, spec, X)
    per = [
        Jb.T @ np.linalg.solve(Jb @ Jb.T + gamma * np.eye(2), d) if gamma > 0 else np.linalg.pinv(Jb) @ d
        for Jb, d in zip(JW, delta, strict=True)
    ]
    expected = np.mean(per, axis=0)
    got = th.flatten_update(th.gauss_newton_update(w, spec, X, delta, gamma=gamma))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-13)


def _orthogonal_linear_net(n: int = 6, n_out: int = 3, seed: int = 0):
    """Linear net n-n-n-n_out, orthogonal hidden W, zero b: ||r_i|| = ||x|| (condition 1)."""
    rng = np.random.default_rng(seed)
    W = [np.linalg.qr(rng.normal(size=(n, n)))[0] for _ in range(2)] + [rng.normal(size=(n_out, n))]
    b = [np.zeros(n), np.zeros(n), np.zeros(n_out)]
    spec = NetworkSpec((n, n, n, n_out), ("linear",) * 3)
    # closed-form layer Jacobians J_3 = I, J_2 = W_3, J_1 = W_3 W_2
    J = np.hstack([W[2] @ W[1], W[2], np.eye(n_out)])
    Q = [q.copy() for q in np.split(J.T, [n, 2 * n])]
    return Weights(W, b, Q), spec, J


def test_linear_net_ssa_mn_gn_closed_forms():
    w, spec, J = _orthogonal_linear_net()
    rng = np.random.default_rng(11)
    X = rng.normal(size=(5, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # equal ||x||: condition 1 holds
    delta = 1e-4 * rng.normal(size=(5, 3))
    np.testing.assert_allclose(th.jacobian(w, spec, X), np.broadcast_to(J, (5,) + J.shape), atol=1e-14)
    assert th.condition_1(w, spec, X) == pytest.approx(0.0, abs=1e-12)

    # closed form of MN with the nonlinear-difference rule on a linear net:
    # dv = J^T (J J^T)^{-1} delta, r_i = W_i r_{i-1} + dv_i, dW_i = <dv_i r_{i-1}^T>
    dv = np.linalg.solve(J @ J.T, delta.T).T @ J
    dvs = np.split(dv, [6, 12], axis=1)
    pre, mn_closed = X, []
    for i in range(3):
        mn_closed.append((dvs[i].T @ pre / 5, dvs[i].mean(0)))
        pre = pre @ w.W[i].T + dvs[i]
    mn = th.minimum_norm_update(w, spec, X, delta, gamma=0.0)
    np.testing.assert_allclose(th.flatten_update(mn), th.flatten_update(mn_closed), rtol=1e-9, atol=1e-16)

    # SSA with Q = J^T and alpha -> 0 is MN (exactly MN with gamma = alpha)
    ssa = th.ssa_update(w, spec, X, delta, alpha=1e-9)
    assert th.layer_angles(ssa, mn)[1] < 1e-3
    ssa_a = th.ssa_update(w, spec, X, delta, alpha=0.05)
    mn_g = th.minimum_norm_update(w, spec, X, delta, gamma=0.05)
    np.testing.assert_allclose(th.flatten_update(ssa_a), th.flatten_update(mn_g), rtol=1e-9, atol=1e-16)

    # closed form of GN under condition 1: J_W J_W^T = (||x||^2 + 1) J J^T, hence
    # dW_i = dv_i^MN r_{i-1}^{-T} / (||x||^2 + 1), r^- the feedforward rates
    gn = th.gauss_newton_update(w, spec, X, delta, gamma=0.0)
    pre, gn_closed = X, []
    for i in range(3):
        gn_closed.append((dvs[i].T @ pre / 5 / 2.0, dvs[i].mean(0) / 2.0))
        pre = pre @ w.W[i].T
    np.testing.assert_allclose(th.flatten_update(gn), th.flatten_update(gn_closed), rtol=1e-9, atol=1e-16)
    per, total = th.layer_angles(ssa, gn)
    assert total < 1.0 and np.all(per < 1.0)


def test_ssa_equals_simulated_steady_state_on_linear_net():
    spec = NetworkSpec((3, 4, 3, 2), ("linear",) * 3)
    w = init_weights(spec, 3)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 3))
    J = th.jacobian(w, spec, x)[0]
    Q = J.T + 0.3 * rng.normal(size=J.T.shape)
    w.Q = [q.copy() for q in np.split(Q, [4, 7])]
    alpha, k_p, tcr = 0.3, 0.5, 0.2
    assert th.lambda_max_pi(w, spec, x, alpha, k_p, tcr, form="network")[0] < -0.5
    _, r = th.feedforward(w, spec, x)
    delta = np.array([[0.1, -0.2]])
    h = simulate(
        w.W,
        w.b,
        w.Q,
        spec.activations,
        x[0],
        r[-1][0] + delta[0],
        k_p=k_p,
        alpha=alpha,
        dt=0.005,
        tcr=tcr,
        T=5000,
    )
    u_ss, _ = th.ssa_steady_state(w, spec, x, delta, alpha)
    np.testing.assert_allclose(h["u"][-1], u_ss[0], rtol=1e-7)
    # DFC-SS update at the last step equals the SSA update (exact for a linear net)
    vs, vb, rr = h["v_soma"][-1], h["v_basal"][-1], h["r"][-1]
    ss = [(np.outer(vs[i] - vb[i], x[0] if i == 0 else rr[i - 1]), vs[i] - vb[i]) for i in range(3)]
    ssa = th.ssa_update(w, spec, x, delta, alpha)
    np.testing.assert_allclose(th.flatten_update(ssa), th.flatten_update(ss), rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------------------
# conditions and feedback alignment
# ----------------------------------------------------------------------------------------


def test_condition_2():
    w, spec = _net(seed=5)
    x = _X(1)
    J = th.jacobian(w, spec, x)[0]  # (2, 10): n_L < sum n_i
    assert th.condition_2(w, spec, x, Q=J.T) == pytest.approx(1.0, abs=1e-12)
    M = np.array([[1.0, 2.0], [-0.5, 0.3]])
    assert th.condition_2(w, spec, x, Q=J.T @ M) == pytest.approx(1.0, abs=1e-12)
    assert th.condition_2(w, spec, x, Q=np.random.default_rng(0).normal(size=(10, 2))) < 0.95
    # Q orthogonal to row(J): condition 2 is 0
    null = np.linalg.svd(J)[2][2:4].T
    assert th.condition_2(w, spec, x, Q=null) == pytest.approx(0.0, abs=1e-12)


def test_condition_1_known_value():
    # 2-2-2-1 linear net, W_1 = 2I, W_2 = 3I: norms ||x||, 2||x||, 6||x|| -> std/mean
    W = [2 * np.eye(2), 3 * np.eye(2), np.ones((1, 2))]
    w = Weights(W, [np.zeros(2), np.zeros(2), np.zeros(1)], [np.ones((2, 1)), np.ones((2, 1)), np.eye(1)])
    X = np.array([[1.0, 0.0], [0.3, -0.4]])
    n = np.array([1.0, 2.0, 6.0])
    assert th.condition_1(w, ("linear",) * 3, X) == pytest.approx(n.std() / n.mean(), rel=1e-12)


def test_feedback_alignment_angles():
    w, spec = _net(seed=6)
    x = _X(1)
    J = th.jacobian(w, spec, x)[0]
    assert th.angle_Q_JT(w, spec, x, Q=J.T) == pytest.approx(0.0, abs=1e-5)
    gamma = 0.3
    P = J.T @ np.linalg.inv(J @ J.T + gamma * np.eye(2))
    assert th.angle_Q_damped_pinv(w, spec, x, gamma, Q=P) == pytest.approx(0.0, abs=1e-5)
    assert th.angle_Q_damped_pinv(w, spec, x, 0.0, Q=np.linalg.pinv(J)) == pytest.approx(0.0, abs=1e-5)
    assert th.angle_Q_damped_pinv(w, spec, x, gamma, Q=J.T) == pytest.approx(th.angle(J.T, P), abs=1e-9)
    # damped pinv -> J^T direction as gamma -> infinity
    assert th.angle(th.damped_pinv(J, 1e8), J.T) < 1e-4


# ----------------------------------------------------------------------------------------
# stability
# ----------------------------------------------------------------------------------------


def test_lambda_max_simple_known_eigenvalues():
    w, spec = _net(seed=7)
    X = _X(3)
    alpha = 0.02
    J = th.jacobian(w, spec, X)
    for b in range(3):
        s_min = np.linalg.svd(J[b], compute_uv=False).min()
        lam = th.lambda_max_simple(w, spec, X[b : b + 1], alpha, Q=J[b].T)
        assert lam[0] == pytest.approx(-alpha - s_min**2, rel=1e-10)
    # Q = J^T M with M diagonal in the left singular basis: eig(JQ) = s^2 m
    U, s, _ = np.linalg.svd(J[0], full_matrices=False)
    M = U @ np.diag([2.0, -1.0 / s[1] ** 2]) @ U.T  # makes one eigenvalue of JQ equal to -1
    lam = th.lambda_max_simple(w, spec, X[:1], alpha, Q=J[0].T @ M)[0]
    assert lam == pytest.approx(1.0 - alpha, rel=1e-10)


def _pi_closed_form(s, alpha, k_p, tcr, n_extra):
    """Eigenvalues for Q = J^T (apical form): a 2x2 block per singular value s of J."""
    ev = [-1.0 / tcr] * n_extra
    for si in s:
        blk = np.array([[-(1 + k_p * si**2) / tcr, si / tcr], [-(1 - alpha * k_p) * si, -alpha]])
        ev.extend(np.linalg.eigvals(blk))
    return max(np.real(ev))


@pytest.mark.parametrize("k_p,tcr", [(0.0, 0.2), (1.5, 0.2), (1.0, 2.0)])
def test_lambda_max_pi_closed_form_for_Q_equal_JT(k_p, tcr):
    w, spec = _net(seed=8)
    x = _X(1)
    J = th.jacobian(w, spec, x)[0]
    alpha = 0.05
    s = np.linalg.svd(J, compute_uv=False)
    lam = th.lambda_max_pi(w, spec, x, alpha, k_p, tcr, Q=J.T)[0]
    assert lam == pytest.approx(_pi_closed_form(s, alpha, k_p, tcr, J.shape[1] - J.shape[0]), rel=1e-9)


@pytest.mark.parametrize("form", ["apical", "network"])
def test_lambda_max_pi_reduces_to_simple(form):
    w, spec = _net(seed=9)
    X = _X(2)
    simple = th.lambda_max_simple(w, spec, X, 0.05)
    pi = th.lambda_max_pi(w, spec, X, 0.05, k_p=0.0, tcr=1e-7, form=form)
    np.testing.assert_allclose(pi, simple, rtol=1e-4)


def _decay_rate(t, d, t1, t2, win):
    """Rate of the envelope of d(t): log(max over [t2, t2+win]) - log(max over [t1, t1+win])."""
    m1 = d[(t >= t1) & (t < t1 + win)].max()
    m2 = d[(t >= t2) & (t < t2 + win)].max()
    return np.log(m2 / m1) / (t2 - t1)


def test_lambda_max_pi_network_matches_simulated_decay():
    """Reference Euler scheme on a linear net; a case where the two forms disagree."""
    spec = NetworkSpec((3, 4, 3, 2), ("linear",) * 3)
    w = init_weights(spec, 3)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 3))
    J = th.jacobian(w, spec, x)[0]
    w.Q = [q.copy() for q in np.split(J.T + 0.3 * rng.normal(size=J.T.shape), [4, 7])]
    alpha, k_p, tcr, dt, T = 0.3, 0.0, 0.5, 2e-3, 17500
    lam_net = th.lambda_max_pi(w, spec, x, alpha, k_p, tcr, form="network")[0]
    lam_api = th.lambda_max_pi(w, spec, x, alpha, k_p, tcr, form="apical")[0]
    assert -0.3 < lam_net < -0.05 and lam_api < -1.0  # the reduced form is far more stable here
    _, r = th.feedforward(w, spec, x)
    delta = np.array([[0.1, -0.2]])
    h = simulate(
        w.W, w.b, w.Q, spec.activations, x[0], r[-1][0] + delta[0], k_p=k_p, alpha=alpha, dt=dt, tcr=tcr, T=T
    )
    u_ss, _ = th.ssa_steady_state(w, spec, x, delta, alpha)
    d = np.linalg.norm(np.array(h["u"]) - u_ss[0], axis=1)
    t = dt * np.arange(T)
    assert _decay_rate(t, d, 10.0, 27.0, 7.0) == pytest.approx(lam_net, rel=0.05)


def test_lambda_max_pi_apical_matches_simulated_decay():
    """Direct Euler simulation of the reduced (Delta v, u_int) system written out here."""
    w, spec = _net(seed=10)
    x = _X(1)
    J = th.jacobian(w, spec, x)[0]
    Q = J.T + 0.3 * np.random.default_rng(2).normal(size=J.T.shape)
    w.Q = [q.copy() for q in np.split(Q, [5, 8])]
    alpha, k_p, tcr, dt, T = 0.3, 0.5, 0.2, 1e-3, 19000
    lam = th.lambda_max_pi(w, spec, x, alpha, k_p, tcr, form="apical")[0]
    assert lam < 0
    delta = np.array([0.1, -0.2])
    dv, u_int = np.zeros(Q.shape[0]), np.zeros(2)
    d = np.empty(T)
    u_ss = np.linalg.solve(J @ Q + alpha * np.eye(2), delta)
    for k in range(T):
        e = delta - J @ dv
        u = u_int + k_p * e
        d[k] = np.linalg.norm(u - u_ss)
        dv, u_int = dv + dt / tcr * (-dv + Q @ u), u_int + dt * (e - alpha * u)
    t = dt * np.arange(T)
    # 0.5 %: the network form of the same system differs by 1.4 % here
    assert _decay_rate(t, d, 8.0, 16.0, 2.5) == pytest.approx(lam, rel=0.005)


# ----------------------------------------------------------------------------------------
# Fig. 2 experiment and plotting
# ----------------------------------------------------------------------------------------


def test_fig2_experiment_properties():
    from dfc_brian.analysis.fig2 import fig2_experiment

    res = fig2_experiment(n_samples=300, alpha=0.0, seed=1)
    J = res.J
    assert res.Q.shape == (300, 4, 2) and res.proj_Q.shape == (300, 2)
    np.testing.assert_allclose(np.linalg.norm(res.Q, axis=(1, 2)), 1.0)
    # every kept Q is stable and lies in row(J): Q = J^T M exactly
    assert np.all(res.lambda_max < 0)
    for Qk, Mk in zip(res.Q[:20], res.M[:20], strict=True):
        ev = np.linalg.eigvals(J @ (J.T @ Mk))
        assert np.all(ev.real > 0)
        assert th.angle(Qk, J.T @ Mk) < 1e-6
    # Gaussian M: stable iff det M > 0 and tr(J J^T M) > 0, about a quarter of the draws
    assert 0.1 < res.acceptance_rate < 0.45
    # damped pseudo-inverses run from J^+ (gamma -> 0) to the direction of J^T (gamma -> inf)
    assert th.angle(res.damped[0], res.refs["J^+"]) < 1.0
    assert th.angle(res.damped[-1], res.refs["J^T"]) < 1.0
    # PCA axes are orthonormal and projections use them
    np.testing.assert_allclose(res.components @ res.components.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(res.proj_refs["J^T"], (res.refs["J^T"].ravel() - res.mean) @ res.components.T)


def test_plotting_functions_return_figures(tmp_path):
    from matplotlib.figure import Figure

    from dfc_brian.analysis.fig2 import fig2_experiment
    from dfc_brian.plotting import STYLE_PATH, use_style
    from dfc_brian.plotting.figures import (
        plot_compartments,
        plot_controller,
        plot_fig2,
        plot_training_curves,
    )

    assert STYLE_PATH.exists()
    use_style()
    t = np.linspace(0, 1, 20)
    figs = [
        plot_fig2(fig2_experiment(n_samples=50)),
        plot_compartments(t, {"v_basal": np.ones((20, 2)), "v_soma": np.zeros((20, 2))}, "x"),
        plot_controller(t, np.ones((3, 20, 1)), np.ones((3, 1)), np.zeros((3, 20, 1))),
        plot_training_curves({"DFC": {"a": np.arange(5.0), "b": np.ones((2, 5))}}, ["a", "b"]),
    ]
    for k, fig in enumerate(figs):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"f{k}.png")
        assert (tmp_path / f"f{k}.png").stat().st_size > 0
