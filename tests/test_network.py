"""One layer built by hand from :mod:`dfc_brian.network` relaxes as the equations say.

With the basal and apical inputs held fixed, the soma is a linear ODE,
:math:`\\tau_v \\dot v = -v + v^B + v^A`, whose forward-Euler solution from the feedforward
state :math:`v = v^B` is :math:`v[k] = v^B + v^A (1 - (1 - dt/\\tau_v)^k)`, close to the
exponential :math:`v^B + v^A (1 - e^{-k\\,dt/\\tau_v})`; in the sleep phase the apical
compartment itself relaxes to its input with :math:`\\tau_A`.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian import ControllerParams, ModelParams, NetworkSpec, SleepParams
from dfc_brian.model import equations as eq
from dfc_brian.network import build


def _layer(phase: str, tcr: float = 0.2, dt: float = 0.01, tmax: int = 300):
    import brian2 as b2

    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    b2.prefs.core.default_float_dtype = np.float64
    b2.start_scope()
    spec = NetworkSpec((3, 4, 2), ("tanh", "linear"))
    sleep = SleepParams(sigma=0.0, dt_fb=dt, tmax_fb=tmax, tcr_fb=tcr, tau_A=0.15)
    params = ModelParams(spec, ControllerParams(dt=dt, tmax=tmax, tcr=tcr), sleep)
    ns = eq.namespace(params, phase)
    ctrl = params.controller if phase == "controlled" else sleep.as_controller(params.controller)
    clocks = build.make_clocks(ctrl)
    ns.update(build.data_inputs(np.zeros((1, 3)), np.zeros((1, 2)), clocks))
    G = build.make_layer(0, spec, phase, ns, clocks)
    vB, vA = np.array([0.3, -0.2, 0.0, 1.1]), np.array([0.5, 0.25, -0.4, 0.0])
    G.I_basal, G.I_apical = vB, vA  # held fixed: no synapses
    M = b2.StateMonitor(G, ["v_soma", "v_basal", "v_apical", "r"], record=True, when="end")
    b2.Network(G, M).run(tmax * clocks.step.dt)
    return M, vB, vA, ctrl


def test_one_layer_soma_relaxes_with_tau_v():
    M, vB, vA, ctrl = _layer("controlled")
    k = np.arange(ctrl.tmax)[:, None]
    a = ctrl.dt / ctrl.tcr  # dt / tau_v in units of tau_u
    v = M.v_soma[:].T
    np.testing.assert_allclose(M.v_basal[:].T, np.broadcast_to(vB, v.shape), rtol=0, atol=1e-15)
    np.testing.assert_allclose(M.v_apical[:].T[1:], np.broadcast_to(vA, v[1:].shape), rtol=0, atol=1e-15)
    np.testing.assert_allclose(v, vB + vA * (1 - (1 - a) ** k), rtol=0, atol=1e-12)  # Euler, exact
    # the exponential relaxation with tau_v = tcr tau_u, to the Euler error (<= a/(2e) |v_A|)
    expo = vB + vA * (1 - np.exp(-k * ctrl.dt / ctrl.tcr))
    assert np.abs(v - expo).max() < 0.5 * a * np.abs(vA).max()
    assert np.abs(v[-1] - (vB + vA)).max() < 1e-5  # 15 tau_v: at v_B + v_A
    np.testing.assert_allclose(M.r[:].T, np.tanh(v), rtol=0, atol=1e-15)


def test_one_layer_sleep_apical_relaxes_with_tau_A():
    M, vB, vA, ctrl = _layer("sleep_noiseless", tcr=0.05, dt=0.005, tmax=200)
    k = np.arange(ctrl.tmax)[:, None]
    tau_A = 0.15
    expected = vA * (1 - (1 - ctrl.dt / tau_A) ** k)
    np.testing.assert_allclose(M.v_apical[:].T, expected, rtol=0, atol=1e-12)
    assert np.abs(M.v_apical[:].T - vA * (1 - np.exp(-k * ctrl.dt / tau_A))).max() < 0.02 * np.abs(vA).max()


def test_namespace_forms_the_symbols_from_params():
    pytest.importorskip("brian2")
    from brian2 import ms

    spec = NetworkSpec((3, 4, 2), ("tanh", "linear"))
    c = ControllerParams(dt=0.02, tmax=40, tcr=0.3, target_stepsize=0.6, tau_u_ms=5.0, proactive=False)
    s = SleepParams(sigma=0.04, sigma_output_fb=0.0, dt_fb=0.01, tmax_fb=30, tcr_fb=0.05, tau_A=0.2)
    p = ModelParams(spec, c, s)
    ns = eq.namespace(p, "controlled", plasticity="accumulate", batch_size=4)
    assert float(ns["tau_v"] / ms) == pytest.approx(0.3 * 5.0)
    assert float(ns["tau_A"] / ms) == pytest.approx(0.02 * 5.0)  # tau_A = dt: v_A = Q u
    assert ns["target_scale"] == pytest.approx(0.6 / 4)  # lambda / B
    assert (ns["acc_W"], ns["online_W"], ns["instant_A"], ns["delayed_fb"], ns["delayed_ff"]) == (
        1,
        0,
        1,
        1,
        0,
    )
    assert ns["sigma_layers"] == (0.0, 0.0)
    sl = eq.namespace(p, "sleep", plasticity="online")
    assert float(sl["tau_v"] / ms) == pytest.approx(0.05 * 5.0)
    assert float(sl["tau_A"] / ms) == pytest.approx(0.2 * 5.0)
    assert sl["sigma_layers"] == (0.04, 0.0) and sl["target_scale"] == 0.0
    assert (sl["online_W"], sl["acc_W"], sl["instant_A"], sl["T_steps"]) == (0, 0, 0, 30)
    assert eq.namespace(p, "sleep_noiseless")["sigma_layers"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="phase"):
        eq.namespace(p, "awake")
