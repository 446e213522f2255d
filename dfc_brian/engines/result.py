"""The result of one phase, the same type for both engines (batched NumPy and Brian2).

Layer lists are 0-based everywhere: entry ``i`` is paper layer ``i + 1``. Arrays are NumPy;
``B`` is the number of samples, ``T`` the number of stored steps, time in units of tau_u.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dfc_brian.engines.convergence import ConvergenceResult


class LayerRecord(list):
    """A recorded variable per layer: entry ``i`` is paper layer ``i + 1``. Reading a layer
    that was not in ``layers=`` raises a KeyError saying which layers were recorded, instead
    of returning ``None``."""

    def __init__(self, name: str, values: list, recorded: Sequence[int]) -> None:
        super().__init__(values)
        self.name, self.recorded = name, tuple(recorded)

    def __getitem__(self, i):
        out = super().__getitem__(i)
        if out is None:
            idx = ", ".join(str(k) for k in self.recorded)
            raise KeyError(
                f"{self.name}[{i}] is layer {int(i) % len(self) + 1}, which was not recorded; recorded "
                f"layers (layers=, 0-based): {list(self.recorded)}, i.e. {self.name}[{idx}]"
            )
        return out


@dataclass
class PhaseResult:
    """Outcome of one simulated phase (controlled or sleep) or of the DFC-SSA solve.

    Updates are per-sample means over the minibatch, in the direction of the plasticity rule
    (the optimiser gradient is their negative, see :mod:`dfc_brian.engines.methods`).
    Recordings are ``None`` unless recorded; the Brian2 engine records only the ``layers=``
    asked for, and reading another layer raises a KeyError naming the recorded ones.
    """

    r_star: np.ndarray  # (B, n_L) output target r_L^*
    r_L_ff: np.ndarray  # (B, n_L) feedforward output r_L^-
    converged: np.ndarray  # (B,) bool, the spec's convergence test
    n_nonconverged: int
    u_last: np.ndarray  # (B, n_L) u[T-1] (SSA: the steady state)
    e_last: np.ndarray  # (B, n_L) e[T-1]
    r_last: list[np.ndarray]  # per layer (B, n_i): rates at T-1
    u_int_last: np.ndarray | None = None  # (B, n_L) u_int[T-1]
    convergence: ConvergenceResult | None = None  # the criteria's values per sample
    dW_dfc: list[np.ndarray] | None = None  # DFC: time-averaged nonlinear difference
    db_dfc: list[np.ndarray] | None = None
    dW_ss: list[np.ndarray] | None = None  # DFC-SS: last step only
    db_ss: list[np.ndarray] | None = None
    dW_ssa: list[np.ndarray] | None = None  # DFC-SSA: analytic linearised steady state
    db_ssa: list[np.ndarray] | None = None
    dQ: list[np.ndarray] | None = None  # sleep: -(1/sigma~^2) <v_A[t] u[t+1]^T> - beta Q
    t: np.ndarray | None = None  # (T_rec,) recording times within a sample (Brian2)
    neurons: list[np.ndarray | None] | None = None  # recorded neuron indices per layer (Brian2)
    v_soma: list[np.ndarray] | None = None  # per layer (B, T, n_i)
    v_basal: list[np.ndarray] | None = None
    v_apical: list[np.ndarray] | None = None
    r: list[np.ndarray] | None = None
    I_basal: list[np.ndarray] | None = None  # Brian2 only: W_i r_(i-1)
    I_apical: list[np.ndarray] | None = None  # Brian2 only: Q_i u
    r_basal: list[np.ndarray] | None = None  # Brian2 only: phi(v_basal)
    u: np.ndarray | None = None  # (B, T, n_L) (SSA: (B, n_L) steady state)
    u_int: np.ndarray | None = None
    e: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
