"""The batched NumPy engine and the Brian2 model integrate the same discretisation.

Same weights, inputs and targets, float64: trajectories and weight updates agree to 1e-9.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dfc_brian import ControllerParams, ConvergenceParams, ModelParams, NetworkSpec, SleepParams, init_weights
from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.engines.brian2_engine import BrianDFC
from dfc_brian.engines.convergence import convergence_test

TOL = 1e-9


def _setup(loss, seed, conv=None, **ctrl):
    spec = NetworkSpec((5, 6, 4, 3), ("tanh", "tanh", "linear"), loss=loss)
    kw = dict(k_p=1.2, alpha=0.02, dt=0.02, tmax=40, tcr=0.2, target_stepsize=0.4)
    kw.update(ctrl)
    params = ModelParams(
        spec,
        ControllerParams(**kw),
        SleepParams(sigma=0.02, k_p_fb=0.3, alpha_fb=0.3, dt_fb=0.01, tmax_fb=25, tcr_fb=0.05, tau_A=0.2),
        ConvergenceParams(**(conv or {"include_nonconverged": True})),
    )
    w = init_weights(spec, seed=seed)
    rng = np.random.default_rng(seed)
    for i in range(3):
        w.b[i] = rng.normal(0, 0.2, w.b[i].shape)
    X = rng.uniform(-1, 1, (4, 5))
    y = rng.integers(0, 3, 4) if loss == "ce" else rng.normal(size=(4, 3))
    return params, w, X, y


@pytest.mark.parametrize(
    "loss, ctrl",
    [
        ("mse", {}),
        ("ce", {}),
        ("mse", {"form": "slides", "K_I": 0.8}),
        ("ce", {"proactive": False}),
        # DFC-SS rebuilds the basal input from r_(i-1)[T-1] (differs from phi(v) - phi(v_B) here)
        ("mse", {"instantaneous": False}),
        ("ce", {"instantaneous": False, "proactive": False}),
    ],
)
def test_controlled_phase_trajectories_and_updates_agree(loss, ctrl):
    params, w, X, y = _setup(loss, seed=3, **ctrl)
    bt = BatchedDFC(params, w)
    r_star = bt.output_target(bt.feedforward(X)[1][-1], y)
    a = bt.controlled_phase(X, r_star, record=True)
    b = BrianDFC(params, w).controlled_phase(
        X, y, record=("v_soma", "v_basal", "v_apical", "r", "u", "u_int", "e")
    )
    np.testing.assert_allclose(b.r_star, r_star, rtol=0, atol=TOL)
    assert type(b) is type(a)  # one result type (engines/result.py), same field names
    for name in ("r_L_ff", "u_last", "e_last", "u_int_last"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=TOL, err_msg=name)
    for i in range(3):
        np.testing.assert_allclose(b.r_last[i], a.r_last[i], rtol=0, atol=TOL)
    assert b.n_nonconverged == a.n_nonconverged
    for name in ("v_soma", "v_basal", "v_apical", "r"):
        for i in range(3):
            np.testing.assert_allclose(
                getattr(b, name)[i], getattr(a, name)[i], rtol=0, atol=TOL, err_msg=name
            )
    for name in ("u", "u_int", "e"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=TOL, err_msg=name)
    for i in range(3):
        assert np.abs(a.dW_dfc[i]).max() > 1e-5
        np.testing.assert_allclose(b.dW_dfc[i], a.dW_dfc[i], rtol=0, atol=TOL)
        np.testing.assert_allclose(b.db_dfc[i], a.db_dfc[i], rtol=0, atol=TOL)
        np.testing.assert_allclose(b.dW_ss[i], a.dW_ss[i], rtol=0, atol=TOL)
        np.testing.assert_allclose(b.db_ss[i], a.db_ss[i], rtol=0, atol=TOL)


@pytest.mark.parametrize("form", ["code", "slides"])
def test_convergence_flags_agree(form):
    """Both engines call the shared test; with the slides controller the steady state is
    e = alpha u_int (before the fix Brian2 checked e = alpha u and flagged every sample)."""
    params, w, X, y = _setup("mse", seed=4, alpha=0.05, dt=0.05, tmax=1500, form=form, K_I=0.8)
    bt = BatchedDFC(params, w)
    r_star = bt.output_target(bt.feedforward(X)[1][-1], y)
    a = bt.controlled_phase(X, r_star, record=True)
    b = BrianDFC(params, w).controlled_phase(X, y)
    np.testing.assert_allclose(b.u_last, a.u_last, rtol=0, atol=TOL)
    np.testing.assert_allclose(b.u_int_last, a.u_int[:, -1], rtol=0, atol=TOL)
    np.testing.assert_allclose(b.convergence.rel_residual, a.extra["rel_residual"], rtol=1e-6, atol=1e-14)
    np.testing.assert_array_equal(b.converged, a.converged)
    assert a.converged.all()  # measured: rel. residual <= 1e-9 (tol 1e-5) in both forms


def test_slides_steady_state_is_alpha_u_int():
    """A long slides-form run ends at e = alpha u_int, not e = alpha u (K_I != 1, k_p > 0)."""
    params, w, X, y = _setup("mse", seed=4, alpha=0.05, dt=0.05, tmax=1500, form="slides", K_I=0.8)
    bt = BatchedDFC(params, w)
    r_star = bt.output_target(bt.feedforward(X)[1][-1], y)
    a = bt.controlled_phase(X, r_star, record=True)
    e, u, u_int = a.e[:, -1], a.u[:, -1], a.u_int[:, -1]
    scale = np.linalg.norm(a.e[:, 0], axis=1)
    assert np.all(np.linalg.norm(e - 0.05 * u_int, axis=1) < 1e-8 * scale)
    assert np.all(np.linalg.norm(e - 0.05 * u, axis=1) > 1e-3 * scale)  # measured: >= 9e-3 * scale
    ct = convergence_test(
        a.r[2][:, -1], r_star, u, u_int, e, a.e[:, 0], a.r_L_ff, params.controller, params.convergence
    )
    assert ct.converged.all()
    code = dataclasses.replace(params.controller, form="code")
    assert not convergence_test(
        a.r[2][:, -1], r_star, u, u_int, e, a.e[:, 0], a.r_L_ff, code, params.convergence
    ).converged.any()


@pytest.mark.parametrize("n_converged", [1, 3])
def test_nonconverged_samples_dropped_as_in_batched_engine(n_converged):
    """include_nonconverged = false: samples that fail the test contribute zero to the DFC and
    DFC-SS updates of both engines but still count in the 1/B mean."""
    params, w, X, y = _setup("mse", seed=7, tmax=60, instantaneous=False)
    bt = BatchedDFC(params, w)
    r_star = bt.output_target(bt.feedforward(X)[1][-1], y)
    full = bt.controlled_phase(X, r_star)
    rel = np.sort(full.extra["rel_residual"])
    tol = float(0.5 * (rel[n_converged - 1] + rel[n_converged]))  # between two samples' residuals
    params = dataclasses.replace(params, convergence=ConvergenceParams(tol=tol, epsilon=10.0))
    a = BatchedDFC(params, w).controlled_phase(X, r_star)
    b = BrianDFC(params, w).controlled_phase(X, y)
    assert a.converged.sum() == n_converged
    np.testing.assert_array_equal(b.converged, a.converged)
    for i in range(3):
        assert np.abs(a.dW_dfc[i] - full.dW_dfc[i]).max() > 1e-5  # the dropped samples mattered
        for name in ("dW_dfc", "db_dfc", "dW_ss", "db_ss"):
            np.testing.assert_allclose(
                getattr(b, name)[i], getattr(a, name)[i], rtol=0, atol=TOL, err_msg=name
            )


def test_noiseless_sleep_dynamics_agree():
    params, w, X, _ = _setup("mse", seed=5)
    rng = np.random.default_rng(0)
    for i in range(3):
        w.Q[i] = rng.normal(0, 0.5, w.Q[i].shape)
    T = params.sleep.tmax_fb
    zero = [np.zeros((T - 1, len(X), n)) for n in (6, 4, 3)]
    a = BatchedDFC(params, w).sleep_phase(X, noise=zero, record=True)
    b = BrianDFC(params, w).sleep_phase(X, noise=False, plastic=False, record=("v_soma", "v_apical", "u"))
    for i in range(3):
        np.testing.assert_allclose(b.v_soma[i], a.v_soma[i], rtol=0, atol=TOL)
        np.testing.assert_allclose(b.v_apical[i], a.v_apical[i], rtol=0, atol=TOL)
    np.testing.assert_allclose(b.u, a.u, rtol=0, atol=TOL)


def test_noisy_sleep_phase_gives_the_same_expected_feedback_update():
    """With noise the engines draw different random numbers; the anti-Hebbian update they
    estimate, averaged over many samples, must agree (and differ clearly from zero)."""
    params, w, _, _ = _setup("mse", seed=6)
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (2000, 5))  # measured: cos >= 0.958, norm ratio 0.96-1.01
    a = BatchedDFC(params, w).sleep_phase(X, rng=np.random.default_rng(2))
    b = BrianDFC(params, w, seed=3).sleep_phase(X, plasticity="accumulate")
    for i in range(3):
        cos = np.sum(b.dQ[i] * a.dQ[i]) / (np.linalg.norm(b.dQ[i]) * np.linalg.norm(a.dQ[i]))
        assert cos > 0.9, (i, cos)  # two seeds of one engine: 0.96-0.99
        assert 0.85 < np.linalg.norm(b.dQ[i]) / np.linalg.norm(a.dQ[i]) < 1.15
