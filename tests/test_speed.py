"""Fast engine paths (issue 9) against the exact ones they replace.

Each fast path is checked against its ``exact`` counterpart, which the other test files check
against ``tests/reference.py`` and the analytic results.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.model import mlp
from dfc_brian.model.params import ConfigError, ModelParams
from dfc_brian.model.weights import init_weights

SIZES = [7, 9, 8, 6, 4]
ACTS = ["tanh", "relu", "tanh", "linear"]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _setup(B: int = 5, seed: int = 2, sleep: dict | None = None, acts: list[str] = ACTS):
    cfg = {
        "model": {"sizes": SIZES, "activations": acts, "loss": "ce"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.05, "tmax": 60, "tcr": 0.2, "target_stepsize": 0.5},
    }
    if sleep is not None:
        cfg["sleep"] = sleep
    p = ModelParams.from_dict(cfg)
    w = init_weights(p.network, seed=seed, q_init="random")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, SIZES[0]))
    y = rng.integers(0, SIZES[-1], B)
    return p, w, X, y


# ------------------------------------------------------------------ DFC-SSA
def test_jq_forward_push_equals_jacobian_times_q():
    p, w, X, _ = _setup()
    eng = BatchedDFC(p, w)
    v, _ = eng.feedforward(X)
    J = eng.jacobian(v=v, stacked=False)
    expect = sum(np.matmul(J[i], w.Q[i]) for i in range(len(J)))
    got = eng.jq(v)
    assert got.shape == (len(X), SIZES[-1], SIZES[-1])
    assert _rel(got, expect) < 1e-13


@pytest.mark.parametrize("acts", [ACTS, ["tanh", "tanh", "tanh", "tanh"]])
def test_ssa_fast_equals_exact(acts):
    p, w, X, y = _setup(acts=acts)
    eng = BatchedDFC(p, w)
    ff = eng.feedforward(X)
    r_star = eng.output_target(ff[1][-1], y)
    a = eng.ssa(X, r_star, exact=True)
    b = eng.ssa(X, r_star)
    c = eng.ssa(X, r_star, ff=ff)
    assert _rel(b.u, a.u) < 1e-10 and np.abs(a.u).max() > 1e-3
    for i in range(len(acts)):
        assert _rel(b.dW_ssa[i], a.dW_ssa[i]) < 1e-10
        assert _rel(b.db_ssa[i], a.db_ssa[i]) < 1e-10
        assert _rel(b.r_last[i], a.r_last[i]) < 1e-12
        np.testing.assert_array_equal(c.dW_ssa[i], b.dW_ssa[i])


AUTO_SIZES = [12, 6, 3, 6, 12]  # the autoencoder's shape in small: n_{L-1} = 6 < n_L = 12
AUTO_ACTS = ["tanh", "linear", "tanh", "linear"]


def _auto_setup(
    q_init: str,
    alpha: float,
    acts: list[str] = AUTO_ACTS,
    sizes: list[int] = AUTO_SIZES,
    sleep: dict | None = None,
):
    ctrl = {"k_p": 1.5, "alpha": alpha, "dt": 0.05, "tmax": 60, "tcr": 0.2, "target_stepsize": 0.5}
    cfg = {"model": {"sizes": sizes, "activations": acts, "loss": "mse"}, "controller": ctrl}
    if sleep is not None:
        cfg["sleep"] = sleep
    p = ModelParams.from_dict(cfg)
    w = init_weights(p.network, seed=4, q_init=q_init)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, sizes[0]))
    return p, w, X, rng.normal(size=(9, sizes[-1]))


@pytest.mark.parametrize("q_init", ["random", "weight_product"])
@pytest.mark.parametrize("alpha", [1e-4, 0.05])
def test_ssa_low_rank_route_equals_exact(q_init, alpha):
    """Linear output, Q_L = I, n_{L-1} < n_L: u by the push-through identity, JQ never formed."""
    p, w, X, y = _auto_setup(q_init, alpha)
    eng = BatchedDFC(p, w)
    ff = eng.feedforward(X)
    r_star = eng.output_target(ff[1][-1], y)
    a = eng.ssa(X, r_star, exact=True)
    b = eng.ssa(X, r_star)
    assert b.extra["JQ"] is None and a.extra["JQ"] is not None  # the route was taken
    assert _rel(b.u, a.u) < 1e-12 and np.abs(a.u).max() > 1e-2
    for i in range(len(AUTO_ACTS)):
        assert _rel(b.dW_ssa[i], a.dW_ssa[i]) < 1e-11
        assert _rel(b.db_ssa[i], a.db_ssa[i]) < 1e-11
    # u solves the defining system (JQ + alpha I) u = delta_L
    JQ = a.extra["JQ"]
    delta = r_star - ff[1][-1]
    resid = np.einsum("bkc,bc->bk", JQ, b.u) + alpha * b.u - delta
    assert np.abs(resid).max() < 1e-12 * np.abs(delta).max()


@pytest.mark.parametrize(
    "acts, sizes",
    [
        (["tanh", "linear"], [12, 6, 12]),  # one hidden layer: P = P_1
        (["tanh", "tanh", "linear"], [12, 7, 3, 12]),  # two: layer 2 from layer 1, no loop
        (["tanh", "linear", "tanh", "tanh", "linear"], [12, 9, 3, 5, 6, 12]),  # the loop twice
    ],
)
def test_ssa_low_rank_route_at_every_depth(acts, sizes):
    """ssa_control_low_rank against the defining system solved directly, (JQ + alpha I) u = delta,
    with JQ from the layer Jacobians: every branch of its layer recursion (depth 1, 2, 4)."""
    p, w, X, _ = _auto_setup("random", 0.02, acts, sizes)
    v, _r = mlp.feedforward(w, acts, X)
    delta = np.random.default_rng(7).normal(size=(X.shape[0], sizes[-1]))
    blocks = mlp.layer_jacobians(w, acts, v)
    JQ = sum(np.matmul(blocks[i], w.Q[i]) for i in range(len(w.Q)))
    u_direct = np.linalg.solve(JQ + 0.02 * np.eye(sizes[-1]), delta[:, :, None])[:, :, 0]
    u = mlp.ssa_control_low_rank(w, acts, v, w.Q, delta, 0.02)
    assert _rel(u, u_direct) < 1e-12 and np.abs(u).max() > 1e-2


@pytest.mark.parametrize(
    "case",
    ["Q_L not identity", "tanh output", "wide last hidden layer"],
)
def test_ssa_low_rank_route_only_where_it_holds(case):
    """Elsewhere the direct solve runs (JQ formed) and still equals the exact route."""
    acts, sizes = list(AUTO_ACTS), list(AUTO_SIZES)
    if case == "tanh output":
        acts[-1] = "tanh"
    if case == "wide last hidden layer":
        sizes[-2] = 14
    p, w, X, y = _auto_setup("random", 0.01, acts, sizes)
    if case == "Q_L not identity":
        w.Q[-1] = w.Q[-1] + 0.1 * np.random.default_rng(1).normal(size=w.Q[-1].shape)
    eng = BatchedDFC(p, w)
    ff = eng.feedforward(X)
    r_star = eng.output_target(ff[1][-1], y)
    b = eng.ssa(X, r_star)
    assert b.extra["JQ"] is not None
    assert _rel(b.u, eng.ssa(X, r_star, exact=True).u) < 1e-10
    delta = r_star - ff[1][-1]
    if case == "wide last hidden layer":  # exact there too, only not cheaper
        assert _rel(mlp.ssa_control_low_rank(w, acts, ff[0], w.Q, delta, 0.01), b.u) < 1e-10
    else:
        with pytest.raises(ConfigError, match="linear output layer below a hidden layer and Q_L = I"):
            mlp.ssa_control_low_rank(w, acts, ff[0], w.Q, delta, 0.01)


# ------------------------------------------------------------------ sleep phase
SLEEP = {
    "sigma": 0.05,
    "sigma_output_fb": 0.0,
    "k_p_fb": 0.3,
    "alpha_fb": 0.4,
    "dt_fb": 0.01,
    "tmax_fb": 40,  # 39 pairs v_A[t] u[t+1]
    "tcr_fb": 0.02,
    "tau_A": 0.2,
}


def test_sleep_rng_draws_the_documented_noise_arrays():
    """rng path = explicit noise drawn step by step, layer by layer (noisy layers only), (B, n_i) each."""
    p, w, X, _ = _setup(sleep=SLEEP)
    eng = BatchedDFC(p, w)
    a = eng.sleep_phase(X, rng=np.random.default_rng(11))
    g = np.random.default_rng(11)
    T, B = SLEEP["tmax_fb"], len(X)
    noise = [np.empty((T - 1, B, n)) for n in SIZES[1:]]
    for t in range(T - 1):
        for i in range(len(SIZES) - 2):  # output layer: sigma_output_fb 0, no draw
            noise[i][t] = g.standard_normal((B, SIZES[i + 1]))
    noise[-1][:] = 7.0  # ignored: its noise std is 0
    b = eng.sleep_phase(X, noise=noise)
    for i in range(len(SIZES) - 1):
        np.testing.assert_array_equal(a.dQ[i], b.dQ[i])
    assert np.abs(a.dQ[0]).max() > 1e-3


def test_sleep_estimator_equals_the_sum_over_the_trajectory():
    p, w, X, _ = _setup(sleep=SLEEP)
    res = BatchedDFC(p, w).sleep_phase(X, rng=np.random.default_rng(4), record=True)
    T, B = SLEEP["tmax_fb"], len(X)
    for i in range(len(SIZES) - 1):
        S = np.einsum("btn,btm->nm", res.v_apical[i][:, :-1], res.u[:, 1:])
        expect = -S / (SLEEP["sigma"] ** 2 * B * (T - 1))
        assert _rel(res.dQ[i], expect) < 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identity_output_feedback_is_bit_identical_to_the_product(monkeypatch, dtype):
    """Q_L = I: the phases feed u (times the gain) instead of the GEMM with I, bit for bit."""
    cfg_sleep = dict(SLEEP, sigma_output_fb=0.03)  # output noise on: every term of the phase live
    p, w, X, y = _auto_setup("random", 0.05, sleep=cfg_sleep)
    eng = BatchedDFC(p, w, dtype=dtype)
    assert eng._identity_feedback() == [False, False, False, True]
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    T = cfg_sleep["tmax_fb"]
    rng = np.random.default_rng(3)
    noise = [rng.standard_normal((T - 1, len(X), n)) for n in AUTO_SIZES[1:]]

    def phases():
        return (
            eng.controlled_phase(X, r_star, accumulate=True),
            eng.controlled_phase(X, r_star, record=True),
            eng.sleep_phase(X, noise=noise),
            eng.sleep_phase(X, noise=noise, record=True),
        )

    fast = phases()
    monkeypatch.setattr(BatchedDFC, "_identity_feedback", lambda self: [False] * self.L)
    slow = phases()
    for a, b in zip(fast[:2], slow[:2], strict=True):
        np.testing.assert_array_equal(a.u_last, b.u_last)
        for i in range(len(AUTO_ACTS)):
            np.testing.assert_array_equal(a.r_last[i], b.r_last[i])
    for i in range(len(AUTO_ACTS)):
        np.testing.assert_array_equal(fast[0].dW_dfc[i], slow[0].dW_dfc[i])
        np.testing.assert_array_equal(fast[1].v_apical[i], slow[1].v_apical[i])
        np.testing.assert_array_equal(fast[2].dQ[i], slow[2].dQ[i])
        np.testing.assert_array_equal(fast[3].v_apical[i], slow[3].v_apical[i])
    assert np.abs(fast[1].v_apical[-1]).max() > 1e-3  # the output layer's apical input is live
    assert np.abs(fast[2].dQ[-1]).max() > 1e-3


# ------------------------------------------------------------------ optimiser
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_in_place_equals_the_textbook_expressions(wd):
    """The in-place Adam gives bit for bit the numbers of the plain expressions."""
    from dfc_brian.engines.optim import Adam

    rng = np.random.default_rng(0)
    p = rng.normal(size=(20, 9))
    q, m, s = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = Adam(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    for t in range(1, 6):
        g = rng.normal(size=p.shape)
        opt.step([p], [g])
        g = g + wd * q
        m = 0.9 * m + (1.0 - 0.9) * g  # (m *= b1; m += ...) is this expression
        s = 0.99 * s + (1.0 - 0.99) * g * g
        q = q - (0.01 / (1.0 - 0.9**t)) * m / (np.sqrt(s) / np.sqrt(1.0 - 0.99**t) + 1e-8)
        np.testing.assert_array_equal(p, q)


def test_sleep_float32_phase_matches_float64_with_the_same_noise():
    p, w, X, _ = _setup(sleep=SLEEP)
    eng = BatchedDFC(p, w)
    T, B = SLEEP["tmax_fb"], len(X)
    g = np.random.default_rng(8)
    noise = [g.standard_normal((T - 1, B, n)) for n in SIZES[1:]]
    a = eng.sleep_phase(X, noise=noise)
    b = eng.sleep_phase(X, noise=noise, dtype=np.float32)
    for i in range(len(SIZES) - 1):
        assert b.dQ[i].dtype == np.float64
        assert 0 < _rel(b.dQ[i], a.dQ[i]) < 1e-5  # float32 round-off, not float64's
    with pytest.raises(ConfigError, match="dtype"):
        eng.sleep_phase(X, noise=noise, dtype=np.float16)


def test_training_dtype_fb_selects_the_sleep_precision():
    from dfc_brian.engines.methods import make_method

    cfg = {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "ce"},
        "sleep": SLEEP,
        "training": {"method": "DFC-SSA", "lr": 0.01, "lr_fb": 0.01, "dtype_fb": "float32"},
    }
    m = make_method(cfg, seed=0)
    assert m.training["dtype_fb"] == "float32" and m.engine.dtype == np.float64
    calls = []
    orig = m.engine.sleep_phase
    m.engine.sleep_phase = lambda X, **kw: calls.append(kw["dtype"]) or orig(X, **kw)
    m.feedback_step(np.random.default_rng(0).normal(size=(4, SIZES[0])))
    assert calls == [np.float32]
    cfg["training"]["dtype_fb"] = None
    assert make_method(cfg, seed=0).training["dtype_fb"] == "float64"
    cfg["training"]["dtype_fb"] = "float16"
    with pytest.raises(ConfigError, match="training.dtype_fb"):
        make_method(cfg, seed=0)


def test_training_noise_method_fb_selects_the_sleep_draws():
    from dfc_brian.engines.methods import make_method

    cfg = {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "ce"},
        "sleep": SLEEP,
        "training": {"method": "DFC-SSA", "lr": 0.01, "lr_fb": 0.01},
    }
    X = np.random.default_rng(0).normal(size=(4, SIZES[0]))
    Q = {}
    for nm in ("ziggurat", "box_muller"):
        cfg["training"]["noise_method_fb"] = nm
        m = make_method(cfg, seed=0)
        calls = []
        orig = m.engine.sleep_phase
        m.engine.sleep_phase = lambda X, _c=calls, _o=orig, **kw: _c.append(kw["noise_method"]) or _o(X, **kw)
        m.feedback_step(X)
        assert calls == [nm]
        Q[nm] = [q.copy() for q in m.weights.Q]
    # other draws, so another Q after one step (same seed); the default stays numpy's ziggurat
    assert not all(np.array_equal(a, b) for a, b in zip(Q["ziggurat"], Q["box_muller"], strict=True))
    del cfg["training"]["noise_method_fb"]
    assert make_method(cfg, seed=0).training["noise_method_fb"] == "ziggurat"
    cfg["training"]["noise_method_fb"] = "mersenne"
    with pytest.raises(ConfigError, match="training.noise_method_fb"):
        make_method(cfg, seed=0)


# ------------------------------------------------------------------ DFC: stationary finish
def _angle_deg(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([m.ravel() for m in a])
    y = np.concatenate([m.ravel() for m in b])
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(x - y), np.linalg.norm(x + y))))


@pytest.mark.parametrize("exact_sums", [True, False])
def test_dfc_stationary_finish_is_close_to_the_full_integration(exact_sums):
    from dfc_brian.model.weights import weight_product_Q

    p, w, X, y = _setup(B=6)
    p = ModelParams.from_dict({**p.to_dict(), "controller": {**p.to_dict()["controller"], "tmax": 2000}})
    w.Q = weight_product_Q(w.W)  # stable feedback: the phase settles well before T
    eng = BatchedDFC(p, w)
    r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
    exact = eng.controlled_phase(X, r_star)
    fast = eng.controlled_phase(X, r_star, stationary_tol=1e-9, exact=exact_sums)
    assert exact.extra["steps_simulated"] == 2000
    assert fast.extra["steps_simulated"] < 1000  # it did finish early
    assert _angle_deg(fast.dW_dfc + fast.db_dfc, exact.dW_dfc + exact.db_dfc) < 1e-4
    for i in range(len(SIZES) - 1):
        assert _rel(fast.dW_dfc[i], exact.dW_dfc[i]) < 1e-6
    # a coarse tolerance stops earlier and is further off: the closed form is what is tested
    coarse = eng.controlled_phase(X, r_star, stationary_tol=1e-2, exact=exact_sums)
    assert coarse.extra["steps_simulated"] < fast.extra["steps_simulated"]
    with pytest.raises(ConfigError, match="stationary_tol"):
        eng.controlled_phase(X, r_star, stationary_tol=0.0)


# ------------------------------------------------------------------ DFC block accumulation
def _phase_setup(target_stepsize: float, tmax: int = 400, B: int = 6):
    from dfc_brian.model.weights import weight_product_Q

    p, w, X, y = _setup(B=B)
    w.Q = weight_product_Q(w.W)  # a stable loop: the deviations scale with the target step
    d = p.to_dict()
    ctrl = {**d["controller"], "tmax": tmax, "target_stepsize": target_stepsize}
    p = ModelParams.from_dict({**d, "controller": ctrl, "convergence": {"include_nonconverged": True}})
    eng = BatchedDFC(p, w)
    return eng, X, eng.output_target(eng.feedforward(X)[1][-1], y)


def test_dfc_block_accumulation_is_exact_when_every_step_is_a_block(monkeypatch):
    """With the per-step stretch covering the phase, exact=False is the decomposition
    (sum d)^T r^- + sum d dr^T alone: equal to the exact sums to round-off."""
    import dfc_brian.engines.batched as batched

    eng, X, r_star = _phase_setup(0.5, tmax=120)
    monkeypatch.setattr(batched, "BLOCK_EXACT_STEPS", 10_000)
    a = eng.controlled_phase(X, r_star, exact=True)
    b = eng.controlled_phase(X, r_star, exact=False)
    for i in range(len(SIZES) - 1):
        assert np.abs(a.dW_dfc[i]).max() > 1e-5
        np.testing.assert_allclose(b.dW_dfc[i], a.dW_dfc[i], rtol=0, atol=1e-14)
        np.testing.assert_array_equal(b.db_dfc[i], a.db_dfc[i])
        np.testing.assert_array_equal(b.dW_ss[i], a.dW_ss[i])  # same trajectory
    np.testing.assert_array_equal(b.u_last, a.u_last)


def test_dfc_block_accumulation_error_scales_with_the_deviations():
    """exact=False approximates only the second-order part of the sum (the product of two
    controlled deviations), so its relative error falls as the target step (the deviations'
    size) falls: ~lambda. Measured here (largest over layers 2-4): 7.1e-7 at lambda 0.5,
    6.8e-10 at lambda 5e-4."""
    errs = []
    for lam in (0.5, 5e-4):
        eng, X, r_star = _phase_setup(lam)
        a = eng.controlled_phase(X, r_star, exact=True)
        b = eng.controlled_phase(X, r_star, exact=False)
        errs.append(max(_rel(b.dW_dfc[i], a.dW_dfc[i]) for i in range(1, len(SIZES) - 1)))
        assert _rel(b.dW_dfc[0], a.dW_dfc[0]) < 1e-12  # layer 1: no second-order part
    assert 0 < errs[1] < 1e-8 and errs[0] < 1e-5
    assert 300 < errs[0] / errs[1] < 3000  # ~ the ratio of the target steps, 1000


def test_training_exact_dfc_reaches_the_controlled_phase():
    from dfc_brian.engines.methods import make_method

    cfg = {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "ce"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.05, "tmax": 60, "tcr": 0.2, "target_stepsize": 0.5},
        "training": {"method": "DFC", "q": "fixed", "lr": 0.01},
    }
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, SIZES[0])), rng.integers(0, SIZES[-1], 4)
    for value, expect in ((None, True), (False, False)):
        if value is not None:
            cfg["training"]["exact_dfc"] = value
        m = make_method(cfg, seed=0)
        seen = []
        orig = m.engine.controlled_phase
        m.engine.controlled_phase = lambda X, r, seen=seen, orig=orig, **kw: (
            seen.append(kw["exact"]) or orig(X, r, **kw)
        )
        m.train_step(X, y)
        assert seen == [expect]
    cfg["training"]["exact_dfc"] = "yes"
    with pytest.raises(ConfigError, match="training.exact_dfc"):
        make_method(cfg, seed=0)


def test_training_stationary_tol_reaches_the_controlled_phase():
    from dfc_brian.engines.methods import make_method

    cfg = {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "ce"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.05, "tmax": 60, "tcr": 0.2, "target_stepsize": 0.5},
        "training": {"method": "DFC", "q": "fixed", "lr": 0.01, "stationary_tol": 1e-7},
    }
    m = make_method(cfg, seed=0)
    seen = []
    orig = m.engine.controlled_phase
    m.engine.controlled_phase = lambda X, r, **kw: seen.append(kw["stationary_tol"]) or orig(X, r, **kw)
    rng = np.random.default_rng(0)
    m.train_step(rng.normal(size=(4, SIZES[0])), rng.integers(0, SIZES[-1], 4))
    assert seen == [1e-7]
    cfg["training"]["stationary_tol"] = -1.0
    with pytest.raises(ConfigError, match="training.stationary_tol"):
        make_method(cfg, seed=0)


def test_blas_threads_setting_does_not_change_results():
    p, w, X, y = _setup(sleep=SLEEP)
    r_star = BatchedDFC(p, w).output_target(BatchedDFC(p, w).feedforward(X)[1][-1], y)
    a = BatchedDFC(p, w, threads=1)
    b = BatchedDFC(p, w, threads=None)
    assert _rel(a.ssa(X, r_star).u, b.ssa(X, r_star).u) < 1e-13
    assert _rel(a.controlled_phase(X, r_star).u_last, b.controlled_phase(X, r_star).u_last) < 1e-12
    with pytest.raises(ConfigError, match="threads"):
        BatchedDFC(p, w, threads=0)
