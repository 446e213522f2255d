"""Real-number checks of the toy experiments (quick settings, numpy Brian2 target)."""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.experiments import toy


def test_fig1d_reaches_the_controller_steady_state():
    res = toy.fig1d(quick=True)
    S, T = res["r_L"].shape
    assert (S, T) == (3, 400) and res["u"].shape == (3, 400) and res["t"].shape == (400,)
    delta = np.abs(res["r_star"] - res["r_ff"])
    assert np.all(delta > 1e-3)  # the target differs from the feedforward output
    # at the end of 2 tau_u the output sits at r* - alpha u to within 10 % of the initial error
    assert np.all(res["steady_residual"] < 0.1 * delta)
    assert np.all(np.abs(res["e"][:, -1]) < 0.25 * np.abs(res["e"][:, 0]))


def test_fig3_quick_metrics_shapes_and_ssa_identity(tmp_path):
    res = toy.fig3(("DFC-SSA", "DFC (fixed)", "DFA"), quick=True, seed=1)
    E = len(res["epochs"])
    assert E == 3
    for name, m in res["metrics"].items():
        for key in ("condition_2", "condition_1", "angle_MN", "angle_GN", "test_loss"):
            assert m[key].shape == (E,) and np.all(np.isfinite(m[key])), (name, key)
        assert np.all((m["condition_2"] > 0) & (m["condition_2"] <= 1 + 1e-9))
    # DFC-SSA's update is the SSA update: angle 0
    np.testing.assert_allclose(res["metrics"]["DFC-SSA"]["angle_SSA"], 0.0, atol=1e-4)
    # fixed Q = weight product: stable and close to the SSA update
    assert np.all(res["metrics"]["DFC (fixed)"]["lambda_max"] < 0)
    assert np.all(res["metrics"]["DFC (fixed)"]["angle_SSA"] < 30)
    assert np.all(np.isnan(res["metrics"]["DFA"]["lambda_max"]))
    npz, js = toy.save(res, tmp_path / "fig3")
    arrays, meta = toy.load(tmp_path / "fig3")
    np.testing.assert_array_equal(arrays["metrics.DFA.angle_GN"], res["metrics"]["DFA"]["angle_GN"])
    assert meta["methods"] == ["DFC-SSA", "DFC (fixed)", "DFA"]


def test_feedback_learning_reduces_the_angle_to_JT():
    res = toy.feedback_learning(quick=True, alpha_fb_list=(), kp_fb_list=(), iterations=200, eval_every=100)
    (run,) = res["runs"].values()
    assert run["angle"].shape == (3, len(res["gammas"]))
    assert run["angle_JT"][-1] < run["angle_JT"][0] - 5


@pytest.mark.parametrize("quick", [True])
def test_compartments_records_every_layer(quick):
    res = toy.compartments(quick=quick)
    for phase, T in (("controlled", 400), ("sleep", 250)):
        d = res[phase]
        for i in (1, 2, 3):
            for var in ("v_basal", "v_apical", "v_soma"):
                assert d[f"{var}.layer{i}"].shape == (T, 2)
    # the apical input is visible in the controlled phase and small (noise) in the sleep phase
    assert np.abs(res["controlled"]["v_apical.layer3"][-1]).max() > 0.05
    assert np.abs(res["sleep"]["v_apical.layer3"]).max() < 0.1
