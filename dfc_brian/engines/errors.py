"""Errors raised by the simulation engines."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """A simulated trajectory left the finite range (NaN, inf or :math:`|v| > 10^6`).

    Attributes
    ----------
    layer : int
        Layer index 0..L-1 (paper layer ``layer + 1``) whose somatic voltage diverged,
        or -1 for the controller output ``u``.
    step : int
        Time step t (0..T-1) at which the divergence was detected.
    phase : str
        ``'controlled'`` or ``'sleep'``.
    """

    def __init__(self, layer: int, step: int, phase: str, detail: str = "") -> None:
        self.layer = layer
        self.step = step
        self.phase = phase
        where = "controller output u" if layer < 0 else f"layer {layer} (paper layer {layer + 1}) v_soma"
        msg = f"{phase} phase diverged: {where} non-finite or |v| > 1e6 at time step {step}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
