"""Fig. 2 of the paper: where random stable feedback Q = J^T M lies relative to J^T, J^+.

Model parameters
----------------
Network 5-2-2 (tanh hidden, linear output), xavier-normal weights, one input
:math:`x \\sim U(-1, 1)^5`; :math:`J \\in \\mathbb{R}^{2 \\times 4}` is the Jacobian of
:math:`r_L` w.r.t. both layers' voltages (:func:`dfc_brian.model.mlp.jacobian`).

Experiment
----------
1. Draw :math:`M \\in \\mathbb{R}^{2\\times 2}` with i.i.d. :math:`\\mathcal{N}(0, 1)` entries
   (``m_dist='gaussian'``) or a random symmetric positive-definite
   :math:`M = A A^T / 2 + 10^{-3} I` with Gaussian A (``m_dist='spd'``), set
   :math:`Q = J^T M` (so :math:`\\mathrm{col}(Q) \\subseteq \\mathrm{row}(J)`, condition 2
   holds), and keep Q only if the simplest linearised controller is stable,

   .. math::
       \\max \\mathrm{Re}\\, \\mathrm{eig}\\big(-(J Q + \\alpha I)\\big) < 0 ,

   i.e. all eigenvalues of :math:`J J^T M + \\alpha I` have positive real part; repeat until
   ``n_samples`` are kept (rejection sampling; the acceptance rate is returned).
2. References: :math:`J^T`, :math:`J^+ = J^T (J J^T)^{-1}` and the damped pseudo-inverses
   :math:`J^T (J J^T + \\gamma I)^{-1}` over a log grid of γ (which runs from
   :math:`J^+` at γ → 0 to the direction of :math:`J^T` at γ → ∞).
3. Every matrix is divided by its Frobenius norm and flattened (8 numbers). PCA(2): centre
   with the mean of the random set, SVD, keep the two leading right singular vectors; the
   random set alone defines the axes, and the references are projected onto them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfc_brian.analysis.theory import damped_pinv
from dfc_brian.model.mlp import jacobian
from dfc_brian.model.params import NetworkSpec
from dfc_brian.model.weights import Weights, init_weights

SIZES = (5, 2, 2)  # input, hidden, output
ACTIVATIONS = ("tanh", "linear")


@dataclass
class Fig2Result:
    """Arrays of the Fig. 2 experiment (shapes for the 5-2-2 net: N = 4, n_L = 2)."""

    J: np.ndarray  # (n_L, N) Jacobian at the chosen input
    alpha: float  # controller leak used in the stability test
    M: np.ndarray  # (n, n_L, n_L) accepted mixing matrices
    Q: np.ndarray  # (n, N, n_L) accepted Q = J^T M, Frobenius-normalised
    lambda_max: np.ndarray  # (n,) max Re eig(-(J Q + alpha I)) of the unnormalised Q
    angle_to_pinv: np.ndarray  # (n,) angle (degrees) between Q and J^+
    acceptance_rate: float  # kept / drawn
    refs: dict[str, np.ndarray]  # 'J^T', 'J^+' -> (N, n_L), normalised
    gammas: np.ndarray  # (k,) damping values
    damped: np.ndarray  # (k, N, n_L) normalised J^T (J J^T + gamma I)^{-1}
    mean: np.ndarray  # (N * n_L,) PCA centre
    components: np.ndarray  # (2, N * n_L) principal axes
    explained_variance_ratio: np.ndarray  # (2,) of the random set
    proj_Q: np.ndarray  # (n, 2)
    proj_refs: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (2,)
    proj_damped: np.ndarray | None = None  # (k, 2)


def _normalise(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=(-2, -1), keepdims=True)


def _draw_M(rng: np.random.Generator, n: int, k: int, m_dist: str) -> np.ndarray:
    if m_dist == "gaussian":
        return rng.normal(size=(n, k, k))
    if m_dist == "spd":
        A = rng.normal(size=(n, k, k))
        return A @ np.swapaxes(A, 1, 2) / 2 + 1e-3 * np.eye(k)
    raise ValueError(f"m_dist must be 'gaussian' or 'spd', got {m_dist!r}")


def fig2_experiment(
    n_samples: int = 2000,
    alpha: float = 0.0,
    gammas: np.ndarray | None = None,
    m_dist: str = "gaussian",
    seed: int = 0,
    weights: Weights | None = None,
    x: np.ndarray | None = None,
    max_draws: int = 1_000_000,
) -> Fig2Result:
    """Run the Fig. 2 experiment (see the module docstring).

    Parameters
    ----------
    n_samples : int
        Number of stable random Q to keep.
    alpha : float
        Controller leak α of the stability test :math:`-(JQ + \\alpha I)`.
    gammas : ndarray, optional
        Damping values of the damped pseudo-inverses; default ``logspace(-3, 3, 25)``.
    m_dist : {'gaussian', 'spd'}
        Distribution of M.
    seed : int
        Seeds the weights (if not given), the input (if not given) and M.
    weights, x : optional
        A 5-2-2 network and its input (n_0,) to use instead of random ones.
    max_draws : int
        Give up (ValueError) after this many draws of M.
    """
    spec = NetworkSpec(SIZES, ACTIVATIONS)
    rng = np.random.default_rng(seed)
    if weights is None:
        weights = init_weights(spec, seed=seed)
    if x is None:
        x = rng.uniform(-1.0, 1.0, SIZES[0])
    J = jacobian(weights, spec, np.asarray(x, dtype=np.float64)[None, :])[0]
    nL, N = J.shape
    JJt = J @ J.T

    kept_M, kept_lam, drawn = [], [], 0
    while sum(len(m) for m in kept_M) < n_samples:
        if drawn >= max_draws:
            raise ValueError(f"only {sum(len(m) for m in kept_M)} stable Q in {drawn} draws")
        M = _draw_M(rng, n_samples, nL, m_dist)
        drawn += n_samples
        lam = np.linalg.eigvals(-(JJt @ M + alpha * np.eye(nL))).real.max(axis=1)
        ok = lam < 0
        kept_M.append(M[ok])
        kept_lam.append(lam[ok])
    n_kept = sum(len(m) for m in kept_M)
    M = np.concatenate(kept_M)[:n_samples]
    lam = np.concatenate(kept_lam)[:n_samples]
    Q = _normalise(J.T @ M)

    if gammas is None:
        gammas = np.logspace(-3, 3, 25)
    gammas = np.asarray(gammas, dtype=np.float64)
    refs = {"J^T": _normalise(J.T), "J^+": _normalise(damped_pinv(J, 0.0))}
    damped = np.stack([_normalise(damped_pinv(J, g)) for g in gammas])

    flat = Q.reshape(len(Q), -1)
    mean = flat.mean(axis=0)
    _, s, Vt = np.linalg.svd(flat - mean, full_matrices=False)
    comps = Vt[:2]
    evr = s[:2] ** 2 / np.sum(s**2)

    def proj(A: np.ndarray) -> np.ndarray:
        return (A.reshape(*A.shape[:-2], -1) - mean) @ comps.T

    pinv_dir = refs["J^+"].ravel()
    angle_to_pinv = np.degrees(np.arccos(np.clip(flat @ pinv_dir, -1.0, 1.0)))
    return Fig2Result(
        J=J,
        alpha=alpha,
        M=M,
        Q=Q,
        lambda_max=lam,
        angle_to_pinv=angle_to_pinv,
        acceptance_rate=n_kept / drawn,
        refs=refs,
        gammas=gammas,
        damped=damped,
        mean=mean,
        components=comps,
        explained_variance_ratio=evr,
        proj_Q=proj(Q),
        proj_refs={k: proj(v) for k, v in refs.items()},
        proj_damped=proj(damped),
    )
