"""Batched NumPy engine, optimisers, baselines and training methods.

The engine is checked against ``tests/reference.py`` (an independent per-sample rendering of
the spec's Euler scheme) to 1e-10 in float64, the analytic pieces against direct solves and
finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.engines.baselines import bp_gradient, dfa_feedback, dfa_gradient
from dfc_brian.engines.batched import BatchedDFC, box_muller_normals, loss_and_grad
from dfc_brian.engines.errors import DivergenceError
from dfc_brian.engines.methods import make_method
from dfc_brian.engines.optim import SGD, Adam, clip_per_tensor
from dfc_brian.model.params import ConfigError, ModelParams
from dfc_brian.model.weights import Weights, init_weights, weight_product_Q
from tests import reference as ref

ACTS = ["tanh", "tanh", "linear"]
SIZES = [4, 6, 5, 3]


def _setup(controller=None, convergence=None, sleep=None, loss="mse", seed=1, B=3):
    cfg = {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": loss},
        "controller": {
            "k_p": 1.5,
            "alpha": 0.01,
            "dt": 0.02,
            "tmax": 40,
            "tcr": 0.2,
            "target_stepsize": 0.5,
            **(controller or {}),
        },
        "convergence": convergence or {},
        "sleep": sleep or {},
    }
    p = ModelParams.from_dict(cfg)
    rng = np.random.default_rng(seed)
    w = init_weights(p.network, seed=seed)
    # feedback near the stable weight-product choice, perturbed so that Q is generic
    w.Q = [q + 0.2 * rng.normal(size=q.shape) for q in weight_product_Q(w.W)]
    w.b = [0.3 * rng.normal(size=x.shape) for x in w.b]
    X = rng.normal(size=(B, SIZES[0]))
    y = rng.normal(size=(B, SIZES[-1])) if loss == "mse" else rng.integers(0, SIZES[-1], B)
    return p, w, X, y


def _ref_hist(p, w, x, r_star, **kw):
    c = p.controller
    return ref.simulate(
        w.W,
        w.b,
        w.Q,
        p.network.activations,
        x,
        r_star,
        k_p=c.k_p,
        alpha=c.alpha,
        dt=c.dt,
        tcr=c.tcr,
        T=c.tmax,
        proactive=c.proactive,
        form=c.form,
        K_I=c.K_I,
        instantaneous=c.instantaneous,
        **kw,
    )


def _angle(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([m.ravel() for m in a])
    y = np.concatenate([m.ravel() for m in b])
    c = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


# ------------------------------------------------------------------ controlled phase vs reference
@pytest.mark.parametrize("form", ["code", "slides"])
@pytest.mark.parametrize("proactive", [True, False])
@pytest.mark.parametrize("instantaneous", [True, False])
def test_trajectories_match_reference(form, proactive, instantaneous):
    p, w, X, y = _setup({"form": form, "K_I": 1.3, "proactive": proactive, "instantaneous": instantaneous})
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    res = eng.controlled_phase(X, r_star, record=True)
    T = p.controller.tmax
    assert res.v_soma[0].shape == (3, T, 6) and res.u.shape == (3, T, 3)
    for b in range(len(X)):
        h = _ref_hist(p, w, X[b], r_star[b])
        for key in ("v_soma", "v_basal", "v_apical", "r"):
            for i in range(3):
                expect = np.array([h[key][t][i] for t in range(T)])
                np.testing.assert_allclose(getattr(res, key)[i][b], expect, rtol=0, atol=1e-10)
        for key in ("u", "u_int", "e"):
            np.testing.assert_allclose(getattr(res, key)[b], np.array(h[key]), rtol=0, atol=1e-10)
    # the dynamics really moved: the controller is active and the output approached the target
    assert np.abs(res.u[:, -1]).max() > 0.05
    assert np.all(np.linalg.norm(res.e[:, -1], axis=1) < np.linalg.norm(res.e[:, 0], axis=1))


def test_time_averaged_update_matches_reference():
    p, w, X, y = _setup({"instantaneous": False, "proactive": False}, {"include_nonconverged": True})
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    res = eng.controlled_phase(X, r_star)
    assert res.v_soma is None  # nothing stored without record=True
    dW = [np.zeros_like(a) for a in w.W]
    db = [np.zeros_like(a) for a in w.b]
    for b in range(len(X)):
        gW, gb = ref.dfc_update(_ref_hist(p, w, X[b], r_star[b]), ACTS, X[b])
        for i in range(3):
            dW[i] += gW[i] / len(X)
            db[i] += gb[i] / len(X)
    for i in range(3):
        assert np.abs(dW[i]).max() > 1e-4
        np.testing.assert_allclose(res.dW_dfc[i], dW[i], rtol=0, atol=1e-10)
        np.testing.assert_allclose(res.db_dfc[i], db[i], rtol=0, atol=1e-10)


@pytest.mark.parametrize("split", ["few_dropped", "most_dropped"])
def test_nonconverged_samples_contribute_zero(split):
    """Tolerance placed between samples' residuals: the update is the converged samples' sum / B."""
    B = 5
    p, w, X, y = _setup({"tmax": 60}, {"epsilon": 10.0}, B=B)
    r_star = BatchedDFC(p, w).output_target(BatchedDFC(p, w).feedforward(X)[1][-1], y)
    rel = np.sort(BatchedDFC(p, w).controlled_phase(X, r_star).extra["rel_residual"])
    k = 3 if split == "few_dropped" else 1  # number of converged samples
    tol = 0.5 * (rel[k - 1] + rel[k])
    p2, _, _, _ = _setup({"tmax": 60}, {"epsilon": 10.0, "tol": float(tol)}, B=B)
    res = BatchedDFC(p2, w).controlled_phase(X, r_star)
    assert res.converged.sum() == k and res.n_nonconverged == B - k
    dW = [np.zeros_like(a) for a in w.W]
    ss = [np.zeros_like(a) for a in w.W]
    for b in np.flatnonzero(res.converged):
        h = _ref_hist(p2, w, X[b], r_star[b])
        gW, _ = ref.dfc_update(h, ACTS, X[b])
        for i in range(3):
            dW[i] += gW[i] / B
            ss[i] += _ss_term(h, w, i, X[b])[0] / B
    for i in range(3):
        np.testing.assert_allclose(res.dW_dfc[i], dW[i], rtol=0, atol=1e-10)
        np.testing.assert_allclose(res.dW_ss[i], ss[i], rtol=0, atol=1e-12)


def _ss_term(h, w, i, x):
    """Spec: DFC-SS rebuilds the basal input from r_{i-1}[T-1]; phi(vB + dv) - phi(vB)."""
    pre = x if i == 0 else h["r"][-1][i - 1]
    vB = w.W[i] @ pre + w.b[i]
    dv = h["v_soma"][-1][i] - h["v_basal"][-1][i]
    d = ref.phi(ACTS[i], vB + dv) - ref.phi(ACTS[i], vB)
    return np.outer(d, pre), d


@pytest.mark.parametrize("instantaneous", [True, False])
def test_steady_state_update_is_last_step_expression(instantaneous):
    p, w, X, y = _setup({"instantaneous": instantaneous}, {"include_nonconverged": True})
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    res = eng.controlled_phase(X, r_star, accumulate=False)
    assert res.dW_dfc is None
    for i in range(3):
        dW = np.zeros_like(w.W[i])
        db = np.zeros_like(w.b[i])
        for b in range(len(X)):
            gW, gb = _ss_term(_ref_hist(p, w, X[b], r_star[b]), w, i, X[b])
            dW += gW / len(X)
            db += gb / len(X)
        assert np.abs(dW).max() > 1e-4
        np.testing.assert_allclose(res.dW_ss[i], dW, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.db_ss[i], db, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ sleep phase
SLEEP = {
    "sigma": 0.05,
    "k_p_fb": 0.3,
    "alpha_fb": 0.4,
    "dt_fb": 0.01,
    "tmax_fb": 30,
    "tcr_fb": 0.02,
    "tau_A": 0.2,
}


@pytest.mark.parametrize("proactive,sigma_out", [(True, None), (False, None), (True, 0.0), (False, 0.02)])
def test_sleep_phase_matches_reference_with_explicit_noise(proactive, sigma_out):
    sleep = {**SLEEP, "sigma_output_fb": sigma_out}
    p, w, X, _ = _setup({"proactive": proactive}, sleep=sleep)
    eng = BatchedDFC(p, w)
    T, B = 30, len(X)
    rng = np.random.default_rng(5)
    noise = [rng.normal(size=(T - 1, B, n)) for n in SIZES[1:]]
    res = eng.sleep_phase(X, record=True, noise=noise, beta=0.1)
    r_ff = eng.feedforward(X)[1][-1]
    sig = [0.05, 0.05, 0.05 if sigma_out is None else sigma_out]
    hists = []
    for b in range(B):
        xi = [[noise[i][t, b] for i in range(3)] for t in range(T - 1)]
        h = ref.simulate(
            w.W,
            w.b,
            w.Q,
            ACTS,
            X[b],
            r_ff[b],
            k_p=0.3,
            alpha=0.4,
            dt=0.01,
            tcr=0.02,
            T=T,
            tau_A=0.2,
            sigma=sig,
            xi=xi,
            proactive=proactive,
        )
        hists.append(h)
        for key in ("v_soma", "v_apical", "r"):
            for i in range(3):
                expect = np.array([h[key][t][i] for t in range(T)])
                np.testing.assert_allclose(getattr(res, key)[i][b], expect, rtol=0, atol=1e-10)
        np.testing.assert_allclose(res.u[b], np.array(h["u"]), rtol=0, atol=1e-10)
    expect = ref.sleep_update(hists, sigma=0.05, beta=0.1, Q=w.Q)
    for i in range(3):
        np.testing.assert_allclose(res.dQ[i], expect[i], rtol=0, atol=1e-10)
    # noise drives the controller although the target is the feedforward output
    assert np.abs(res.u).max() > 1e-3
    if sigma_out == 0.0:  # Q_L u reaches v_A^L, but no noise: it is the noiseless filter of Q_L u
        vA = res.v_apical[-1]
        filt = vA[:, :-1] + 0.01 / 0.2 * (
            -vA[:, :-1] + (res.u[:, 1:] if proactive else res.u[:, :-1]) @ w.Q[-1].T
        )
        np.testing.assert_allclose(vA[:, 1:], filt, rtol=0, atol=1e-12)


def test_sleep_phase_rng_is_reproducible_and_validated():
    p, w, X, _ = _setup(sleep={"sigma": 0.05})
    eng = BatchedDFC(p, w)
    a = eng.sleep_phase(X, rng=np.random.default_rng(3)).dQ
    b = eng.sleep_phase(X, rng=np.random.default_rng(3)).dQ
    c = eng.sleep_phase(X, rng=np.random.default_rng(4)).dQ
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not np.allclose(a[0], c[0])
    with pytest.raises(ConfigError, match="rng"):
        eng.sleep_phase(X)
    with pytest.raises(ConfigError, match=r"noise\[1\]"):
        eng.sleep_phase(X, noise=[np.zeros((49, 3, 6)), np.zeros((49, 3, 4)), np.zeros((49, 3, 3))])
    with pytest.raises(ConfigError, match="noise_method"):
        eng.sleep_phase(X, rng=np.random.default_rng(3), noise_method="polar")
    with pytest.raises(ConfigError, match="noise_method"):
        eng.sleep_phase(X, rng=np.random.default_rng(3), noise_method="box_muller", exact=True)


def _sleep_outputs(res):
    return [*res.dQ, res.u_last, *res.r_last, res.e_last, *res.extra["v_apical_last"]]


@pytest.mark.parametrize(
    "ctrl,sigma_out",
    [
        ({}, None),
        ({"proactive": False}, 0.0),
        ({"instantaneous": False}, 0.02),
        ({"form": "slides", "K_I": 2.0, "proactive": False, "instantaneous": False}, None),
    ],
)
def test_fast_sleep_loop_equals_the_shared_integrator(ctrl, sigma_out):
    """The default sleep loop (_sleep_integrate) is the scheme of _integrate to round-off, with
    explicit noise and with a seeded generator (same draws in the same order)."""
    p, w, X, _ = _setup(ctrl, sleep={**SLEEP, "sigma_output_fb": sigma_out}, B=4)
    eng = BatchedDFC(p, w)
    rng = np.random.default_rng(7)
    noise = [rng.normal(size=(29, 4, n)) for n in SIZES[1:]]
    for kw in ({"noise": noise}, {"rng": 11}):
        args = {k: np.random.default_rng(v) if k == "rng" else v for k, v in kw.items()}
        fast = eng.sleep_phase(X, beta=0.1, **args)
        args = {k: np.random.default_rng(v) if k == "rng" else v for k, v in kw.items()}
        slow = eng.sleep_phase(X, beta=0.1, exact=True, **args)
        for a, b in zip(_sleep_outputs(fast), _sleep_outputs(slow), strict=True):
            assert np.abs(b).max() > 1e-6
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    # float32: the same scheme in single precision (the sums in float64)
    e32 = BatchedDFC(p, w, dtype=np.float32)
    fast, slow = e32.sleep_phase(X, noise=noise), e32.sleep_phase(X, noise=noise, exact=True)
    for a, b in zip(_sleep_outputs(fast), _sleep_outputs(slow), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_box_muller_normals_are_standard_normal(dtype):
    """Moments, tails, the normal CDF (Kolmogorov-Smirnov) and the independence of the cosine
    and sine halves, on 2e6 + 1 draws (an odd count: the last sine is not used)."""
    from scipy import stats

    z = box_muller_normals(np.random.default_rng(0), np.empty(2_000_001, dtype=dtype)).astype(np.float64)
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.kurtosis(z)) < 4 * np.sqrt(24 / n)  # excess kurtosis 0
    for k, p_tail in ((2.0, 0.0455003), (3.0, 0.0026998), (4.0, 6.334e-5)):
        q = np.mean(np.abs(z) > k)
        assert abs(q - p_tail) < 5 * np.sqrt(p_tail / n), (k, q)
    assert stats.kstest(z, "norm").statistic < 1.63 / np.sqrt(n)  # KS at the 1 % level
    c, s_ = z[: n // 2], z[n - n // 2 :][: n // 2]  # pairs sharing a radius
    assert abs(np.corrcoef(c, s_)[0, 1]) < 4 / np.sqrt(n / 2)
    assert abs(np.corrcoef(c**2, s_**2)[0, 1]) < 4 / np.sqrt(n / 2)


@pytest.mark.parametrize("noise_method", ["ziggurat", "box_muller"])
def test_fast_sleep_loop_apical_noise_has_the_ou_variance(noise_method):
    """Q = 0: every apical compartment is an Euler-Maruyama Ornstein-Uhlenbeck process from
    v_A = 0; after k = T-1 steps its variance is sigma^2 dt (1 - a^(2k)) / (tau_A^2 (1 - a^2)),
    a = 1 - dt/tau_A (sigma_output_fb in the output layer); with Q = 0 the control signal does
    not reach the apical compartments, so dQ has mean 0."""
    p, w, _, _ = _setup(sleep={**SLEEP, "sigma_output_fb": 0.02})
    for q in w.Q:
        q[:] = 0.0
    X = np.random.default_rng(2).normal(size=(3000, SIZES[0]))
    res = BatchedDFC(p, w).sleep_phase(X, rng=np.random.default_rng(3), noise_method=noise_method)
    a, k = 1 - 0.01 / 0.2, 29
    for i, sig in enumerate((0.05, 0.05, 0.02)):
        expect = sig**2 * 0.01 / 0.2**2 * (1 - a ** (2 * k)) / (1 - a**2)
        vA = res.extra["v_apical_last"][i]
        assert abs(vA.mean()) < 4 * np.sqrt(expect / vA.size)
        assert vA.var() == pytest.approx(expect, rel=0.05)  # std error of the variance ~1-2 %


def test_fast_sleep_loop_raises_on_divergence():
    p, w, X, _ = _setup(sleep={**SLEEP, "k_p_fb": 1e4, "tmax_fb": 200})
    with pytest.raises(DivergenceError, match="time step") as info:
        BatchedDFC(p, w).sleep_phase(X, rng=np.random.default_rng(0))
    assert 1 <= info.value.step < 200


# ------------------------------------------------------------------ DFC-SSA and the Jacobian
def _fd_jacobian(w, x):
    """Finite-difference Jacobian of r_L w.r.t. each layer's voltage (perturb v_i, propagate)."""
    vs, prev = [], x
    for i in range(3):
        vs.append(w.W[i] @ prev + w.b[i])
        prev = ref.phi(ACTS[i], vs[-1])

    def out_from(i, vi):
        r = ref.phi(ACTS[i], vi)
        for k in range(i + 1, 3):
            r = ref.phi(ACTS[k], w.W[k] @ r + w.b[k])
        return r

    blocks, h = [], 1e-6
    for i in range(3):
        cols = []
        for j in range(len(vs[i])):
            e = np.zeros(len(vs[i]))
            e[j] = h
            cols.append((out_from(i, vs[i] + e) - out_from(i, vs[i] - e)) / (2 * h))
        blocks.append(np.array(cols).T)
    return blocks


def test_jacobian_and_ssa_direct_solve():
    p, w, X, y = _setup()
    eng = BatchedDFC(p, w)
    r_ff = eng.feedforward(X)[1][-1]
    r_star = eng.output_target(r_ff, y)
    J = eng.jacobian(X)
    assert J.shape == (3, 3, 6 + 5 + 3)
    res = eng.ssa(X, r_star)
    alpha = p.controller.alpha
    for b in range(len(X)):
        blocks = _fd_jacobian(w, X[b])
        np.testing.assert_allclose(J[b], np.concatenate(blocks, axis=1), rtol=0, atol=1e-8)
        Qs = np.concatenate(w.Q, axis=0)
        u = np.linalg.solve(np.concatenate(blocks, axis=1) @ Qs + alpha * np.eye(3), r_star[b] - r_ff[b])
        np.testing.assert_allclose(res.u[b], u, rtol=0, atol=1e-7)
        prev = X[b]
        for i in range(3):
            vB = w.W[i] @ prev + w.b[i]
            r_i = ref.phi(ACTS[i], vB + w.Q[i] @ u)
            d = r_i - ref.phi(ACTS[i], vB)
            np.testing.assert_allclose(res.extra["delta_v"][i][b], w.Q[i] @ u, rtol=0, atol=1e-7)
            prev = r_i
    # batch-mean update from the propagated targets, computed here from res.u
    prev = X
    for i in range(3):
        vB = prev @ w.W[i].T + w.b[i]
        r_i = ref.phi(ACTS[i], vB + res.u @ w.Q[i].T)
        d = r_i - ref.phi(ACTS[i], vB)
        np.testing.assert_allclose(res.dW_ssa[i], d.T @ prev / len(X), rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.db_ssa[i], d.mean(axis=0), rtol=0, atol=1e-12)
        prev = r_i


def test_ssa_approaches_simulated_steady_state():
    """Small target step and leak, long simulation: DFC-SS update -> DFC-SSA update (< 1 degree)."""
    ctrl = {"k_p": 1.0, "alpha": 0.01, "dt": 0.05, "tmax": 3000, "tcr": 0.2, "target_stepsize": 0.01}
    p, w, X, y = _setup(ctrl, {"include_nonconverged": True}, B=4)
    w.Q = weight_product_Q(w.W)  # stable feedback
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    ss = eng.controlled_phase(X, r_star, accumulate=False)
    ssa = eng.ssa(X, r_star)
    assert ss.converged.all()
    angle = _angle(ss.dW_ss + ss.db_ss, ssa.dW_ssa + ssa.db_ssa)
    assert angle < 1.0, angle
    np.testing.assert_allclose(ss.u_last, ssa.u, rtol=0.05, atol=1e-6)


# ------------------------------------------------------------------ precision, divergence, errors
@pytest.mark.parametrize("loss,lam", [("mse", 0.5), ("ce", 0.01)])
def test_float32_close_to_float64(loss, lam):
    """The deviation form keeps float32 accurate even for a tiny target step (lambda/B ~ 1e-3)."""
    p, w, X, y = _setup({"target_stepsize": lam, "tmax": 200}, {"include_nonconverged": True}, loss=loss, B=8)
    r_star = BatchedDFC(p, w).output_target(BatchedDFC(p, w).feedforward(X)[1][-1], y)
    a = BatchedDFC(p, w).controlled_phase(X, r_star)
    b = BatchedDFC(p, w, dtype=np.float32).controlled_phase(X, r_star)
    assert b.dW_dfc[1].dtype == np.float64 and b.r_star.dtype == np.float64
    assert _angle(a.dW_dfc, b.dW_dfc) < 1e-3
    assert _angle(a.dW_ss, b.dW_ss) < 1e-3


def test_divergence_raises_naming_layer_and_step():
    p, w, X, y = _setup({"k_p": 500.0, "dt": 0.02, "tcr": 0.02, "tmax": 400, "target_stepsize": 1.0})
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    with pytest.raises(DivergenceError, match="time step") as info:
        eng.controlled_phase(X, r_star)
    assert 1 <= info.value.step < 400 and -1 <= info.value.layer < 3


def test_bad_inputs_name_the_argument():
    p, w, X, y = _setup()
    eng = BatchedDFC(p, w)
    r_star = np.zeros((3, 3))
    with pytest.raises(ConfigError, match=r"^X has shape"):
        eng.controlled_phase(X[:, :3], r_star)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="X contains non-finite"):
        eng.feedforward(bad)
    with pytest.raises(ConfigError, match="r_star has shape"):
        eng.controlled_phase(X, np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="r_star contains non-finite"):
        eng.controlled_phase(X, np.full((3, 3), np.inf))
    with pytest.raises(ConfigError, match="y has shape"):
        eng.output_target(np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="dtype"):
        BatchedDFC(p, w, dtype=np.int32)
    w_bad = Weights([a.copy() for a in w.W], w.b, w.Q)
    w_bad.W[1] = np.zeros((2, 2))
    with pytest.raises(ConfigError, match=r"W\[1\]"):
        BatchedDFC(p, w_bad)


# ------------------------------------------------------------------ targets, baselines
def test_output_targets_follow_spec():
    p, w, X, y = _setup(loss="ce")
    eng = BatchedDFC(p, w)
    z = eng.feedforward(X)[1][-1]
    sm = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expect = z - 0.5 / 3 * (sm - np.eye(3)[y])
    np.testing.assert_allclose(eng.output_target(z, y), expect, rtol=0, atol=1e-14)
    np.testing.assert_allclose(eng.output_target(z, np.eye(3)[y]), expect, rtol=0, atol=1e-14)
    p, w, X, y = _setup(loss="mse")
    r = BatchedDFC(p, w).feedforward(X)[1][-1]
    np.testing.assert_allclose(BatchedDFC(p, w).output_target(r, y), r - 0.5 * 2 * (r - y) / 9, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_bp_gradient_matches_finite_differences(loss):
    p, w, X, y = _setup(loss=loss, B=4)
    _, gW, gb = bp_gradient(p.network, w, X, y)

    def loss_at(wp):
        from dfc_brian.engines.baselines import forward

        return loss_and_grad(forward(p.network, wp, X)[1][-1], y, loss)[0]

    h = 1e-6
    for i in range(3):
        for arr, g in ((w.W[i], gW[i]), (w.b[i], gb[i])):
            fd = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                lp = loss_at(w)
                arr[idx] = old - h
                lm = loss_at(w)
                arr[idx] = old
                fd[idx] = (lp - lm) / (2 * h)
            assert np.abs(fd).max() > 1e-4
            np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_dfa_uses_fixed_random_feedback():
    p, w, X, y = _setup(B=4)
    Bs = dfa_feedback(p.network, 7)
    assert [b.shape for b in Bs] == [(6, 3), (5, 3), (3, 3)]
    np.testing.assert_array_equal(Bs[0], dfa_feedback(p.network, 7)[0])
    _, gW, _ = dfa_gradient(p.network, w, Bs, X, y)
    _, gW_bp, _ = bp_gradient(p.network, w, X, y)
    np.testing.assert_allclose(gW[2], gW_bp[2], atol=1e-14)  # output layer: own error
    # hidden layer 2 by hand: delta = phi'(v) * (B e)
    from dfc_brian.engines.baselines import forward

    v, r = forward(p.network, w, X)
    e = 2 * (r[-1] - y) / (4 * 3)
    d = (e @ Bs[1].T) * (1 - np.tanh(v[1]) ** 2)
    np.testing.assert_allclose(gW[1], d.T @ r[0], atol=1e-14)


# ------------------------------------------------------------------ optimisers
def test_adam_matches_hand_computation():
    p = np.array([1.0, -2.0])
    g1, g2 = np.array([0.5, -1.0]), np.array([0.1, 0.3])
    opt = Adam(lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    opt.step([p], [g1.copy()])
    opt.step([p], [g2.copy()])
    q = np.array([1.0, -2.0])
    m = s = np.zeros(2)
    for t, g in enumerate((g1, g2), start=1):
        gg = g + 0.01 * q
        m = 0.9 * m + 0.1 * gg
        s = 0.99 * s + 0.01 * gg**2
        q = q - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(p, q, rtol=0, atol=1e-15)
    # the first (bias-corrected) step of Adam moves each coordinate by lr
    p1 = np.array([1.0, -2.0])
    Adam(lr=0.1).step([p1], [np.array([3.0, -1e-3])])
    np.testing.assert_allclose(p1, [0.9, -1.9], rtol=0, atol=1e-4)
    sgd = SGD(lr=0.5, weight_decay=0.1)
    p2 = np.array([1.0, 2.0])
    sgd.step([p2], [np.array([1.0, 0.0])])
    np.testing.assert_allclose(p2, [1.0 - 0.5 * 1.1, 2.0 - 0.5 * 0.2])


def test_clipping_per_tensor():
    g = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(clip_per_tensor(g, 1.0), g / (5.0 + 1e-6))
    np.testing.assert_allclose(np.linalg.norm(clip_per_tensor(g, 2.0)), 2 * 5 / (5 + 1e-6))
    small = np.array([0.3, 0.4])
    np.testing.assert_array_equal(clip_per_tensor(small, 1.0), small)


# ------------------------------------------------------------------ methods
def _method_cfg(method, q="trained", **tr):
    return {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "mse"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.02, "tmax": 30, "tcr": 0.2, "target_stepsize": 0.5},
        "sleep": {
            "sigma": 0.05,
            "k_p_fb": 0.3,
            "alpha_fb": 0.4,
            "dt_fb": 0.01,
            "tmax_fb": 10,
            "tcr_fb": 0.02,
            "tau_A": 0.2,
        },
        "convergence": {"include_nonconverged": True},
        "training": {"method": method, "q": q, "lr": 1e-2, "lr_fb": 1e-3, "wd_fb": 0.01, **tr},
    }


@pytest.mark.parametrize(
    "method,q",
    [("DFC", "trained"), ("DFC-SS", "fixed"), ("DFC-SSA", "trained"), ("BP", "trained"), ("DFA", "trained")],
)
def test_state_dict_resume_is_bit_identical(method, q):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 3))
    cfg = _method_cfg(method, q)
    m = make_method(cfg, seed=3)
    m.pretrain_feedback_step(X)
    for _ in range(2):
        m.train_step(X, y)
    state = m.state_dict()
    for k, v in state.items():
        assert isinstance(v, np.ndarray) and v.dtype != object, k
    state = {k: v.copy() for k, v in state.items()}
    for _ in range(2):
        m.train_step(X, y)
    m2 = make_method(cfg, seed=99)  # different init, overwritten by the state
    m2.load_state_dict(state)
    for _ in range(2):
        m2.train_step(X, y)
    for a, b in zip(m.weights.to_npz_dict().values(), m2.weights.to_npz_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_methods_q_modes_and_training_reduces_loss():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(16, 4)), 0.5 * rng.normal(size=(16, 3))
    fixed = make_method(_method_cfg("DFC", "fixed"), seed=2)
    Q0 = [q.copy() for q in fixed.weights.Q]
    for a, b in zip(Q0, weight_product_Q(fixed.weights.W), strict=True):
        np.testing.assert_allclose(a, b)
    trained = make_method(_method_cfg("DFC", "trained", freeze_QL=True), seed=2)
    QL = trained.weights.Q[-1].copy()
    Q1 = trained.weights.Q[0].copy()
    np.testing.assert_array_equal(QL, np.eye(3))
    losses = [trained.train_step(X, y)["loss"] for _ in range(15)]
    fixed.train_step(X, y)
    assert losses[-1] < 0.9 * losses[0]
    np.testing.assert_array_equal(trained.weights.Q[-1], QL)  # frozen
    assert not np.allclose(trained.weights.Q[0], Q1)  # trained in the sleep phase
    for a, b in zip(fixed.weights.Q, Q0, strict=True):
        np.testing.assert_array_equal(a, b)  # fixed Q never moves
    r_L = BatchedDFC(trained.params, trained.weights).feedforward(X)[1][-1]
    np.testing.assert_allclose(trained.predict(X), r_L)


def test_sleep_passes_per_train_step():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 3))
    m = make_method(_method_cfg("DFC-SS", "trained"), seed=0)
    m.train_step(X, y)
    assert m.n_sleep == 3  # sleep, forward, sleep, sleep
    m.pretrain_feedback_step(X)
    assert m.n_sleep == 4 and m.fb_pre_opt.t == 1 and m.fb_opt.t == 3
    e = make_method(_method_cfg("DFC-SS", "trained", extra_sleep_mode="epoch"), seed=0)
    e.train_step(X, y)  # epoch mode (the authors' order): the forward step never sleeps
    assert e.n_sleep == 0 and e.fb_opt.t == 0
    e.feedback_step(X)
    assert e.n_sleep == 1 and e.fb_opt.t == 1
    f = make_method(_method_cfg("DFC-SS", "fixed"), seed=0)
    f.train_step(X, y)
    assert f.n_sleep == 0 and f.pretrain_feedback_step(X) == {}


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("lr", -1.0, "training.lr must be positive"),
        ("method", "TP", "training.method"),
        ("q", "random", "training.q"),
        ("clip", "x", "training.clip"),
        ("adam_betas", [0.9], "training.adam_betas"),
        ("extra_sleep", 1.5, "training.extra_sleep"),
        ("lr_typo", 1.0, "unknown key"),
    ],
)
def test_training_config_errors_name_the_field(field, value, match):
    cfg = _method_cfg("DFC")
    cfg["training"][field] = value
    with pytest.raises(ConfigError, match=match):
        make_method(cfg, seed=0)


def test_sleep_learning_aligns_Q_with_J_transpose():
    """Sign check of the anti-Hebbian rule: sleep-only training turns Q towards J^T."""
    cfg = {
        "model": {"sizes": [6, 5, 4, 3], "activations": ["tanh", "tanh", "linear"], "loss": "mse"},
        "sleep": {
            "sigma": 0.05,
            "k_p_fb": 0.1,
            "alpha_fb": 0.25,
            "dt_fb": 0.005,
            "tmax_fb": 50,
            "tcr_fb": 0.01,
            "tau_A": 0.3,
        },
        "training": {"method": "DFC", "q": "trained", "lr": 1e-3, "lr_fb_pretrain": 3e-3, "freeze_QL": True},
    }
    m = make_method(cfg, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 6))

    def mean_angle():
        J = m.engine.jacobian(X)
        Q = np.concatenate(m.weights.Q, axis=0)
        return np.mean([_angle([Q], [J[b].T]) for b in range(len(X))])

    before = mean_angle()
    for _ in range(300):
        m.pretrain_feedback_step(X[rng.integers(0, 64, 16)])
    after = mean_angle()
    assert after < before - 15.0, (before, after)
