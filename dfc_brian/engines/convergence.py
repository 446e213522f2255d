"""The convergence test of the controlled phase, shared by every engine (spec section 2).

A sample has converged when, at the last stored step T-1, the output sits at the controller's
steady state and the output error has shrunk:

.. math::
    \\frac{\\lVert r_L[T-1] - (r_L^* - \\alpha\\, s[T-1]) \\rVert}{\\lVert r_L^- \\rVert} < \\mathrm{tol}
    \\quad\\text{and}\\quad
    \\lVert e[T-1] \\rVert < \\epsilon^2 \\lVert e[0] \\rVert

with :math:`s = u` for the authors' controller (``form='code'``: the leak acts on the total
output, :math:`\\tau_u \\dot u^{int} = e - \\alpha u`, steady state :math:`e = \\alpha u`) and
:math:`s = u^{int}` for the slides' controller (``form='slides'``: the leak acts on the
integral only, :math:`\\tau_u \\dot u^{int} = e - \\alpha u^{int}`, steady state
:math:`e = \\alpha u^{int}` whatever :math:`K_I`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfc_brian.model.params import ConfigError, ControllerParams, ConvergenceParams


@dataclass(frozen=True)
class ConvergenceResult:
    """Per-sample outcome of :func:`convergence_test` (all arrays of shape (B,))."""

    converged: np.ndarray  # bool: both criteria hold
    rel_residual: np.ndarray  # ||r_L[T-1] - (r* - alpha s)|| / ||r_L^-||
    e_last_norm: np.ndarray  # ||e[T-1]||
    e0_norm: np.ndarray  # ||e[0]||


def steady_state_signal(ctrl: ControllerParams, u: np.ndarray, u_int: np.ndarray) -> np.ndarray:
    """The controller variable s with :math:`e = \\alpha s` at the steady state (``u`` or ``u_int``)."""
    if ctrl.form == "code":
        return u
    if ctrl.form == "slides":
        return u_int
    raise ConfigError(f"controller.form = {ctrl.form!r} is unknown; choose 'code' or 'slides'")


def convergence_test(
    r_L_last: np.ndarray,
    r_star: np.ndarray,
    u_last: np.ndarray,
    u_int_last: np.ndarray,
    e_last: np.ndarray,
    e0: np.ndarray,
    r_L_ff: np.ndarray,
    ctrl: ControllerParams,
    conv: ConvergenceParams,
) -> ConvergenceResult:
    """Which samples converged in a controlled phase (spec section 2, both engines).

    Parameters
    ----------
    r_L_last, r_star, u_last, u_int_last, e_last, e0, r_L_ff : (B, n_L) arrays
        Output rate :math:`r_L[T-1]`, output target :math:`r_L^*`, control signal
        :math:`u[T-1]` and its integral part :math:`u^{int}[T-1]`, output errors
        :math:`e[T-1]` and :math:`e[0]`, feedforward output :math:`r_L^-`.
    ctrl : ControllerParams
        ``form`` chooses the steady-state signal (``u`` or ``u_int``); ``alpha`` the leak.
    conv : ConvergenceParams
        ``tol`` and ``epsilon`` of the two criteria.

    Returns
    -------
    ConvergenceResult
        ``converged`` (B,) bool and the quantities the criteria compare. A sample with
        :math:`r_L^- = 0` or :math:`e[0] = 0` cannot satisfy the strict inequalities and is
        flagged non-converged.
    """
    given = (r_L_last, r_star, u_last, u_int_last, e_last, e0, r_L_ff)
    arrs = [np.asarray(a, dtype=np.float64) for a in given]
    shape = arrs[0].shape
    names = ("r_L_last", "r_star", "u_last", "u_int_last", "e_last", "e0", "r_L_ff")
    for name, a in zip(names, arrs):
        if a.ndim != 2 or a.shape != shape:
            raise ConfigError(f"convergence_test: {name} has shape {a.shape}, expected {shape} (B, n_L)")
    r_L_last, r_star, u_last, u_int_last, e_last, e0, r_L_ff = arrs
    s = steady_state_signal(ctrl, u_last, u_int_last)
    resid = (r_L_last - r_star) + ctrl.alpha * s
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.linalg.norm(resid, axis=1) / np.linalg.norm(r_L_ff, axis=1)
    e_last_n = np.linalg.norm(e_last, axis=1)
    e0_n = np.linalg.norm(e0, axis=1)
    converged = (rel < conv.tol) & (e_last_n < conv.epsilon**2 * e0_n)
    return ConvergenceResult(converged=converged, rel_residual=rel, e_last_norm=e_last_n, e0_norm=e0_n)


__all__ = ["ConvergenceResult", "convergence_test", "steady_state_signal"]
