"""Theory of Deep Feedback Control: angles between updates, the paper's conditions and stability.

Pure NumPy, written from ``shared/spec/DFC_SPEC.md`` section 3. Every function takes plain
arrays (a :class:`~dfc_brian.model.weights.Weights` and the layer nonlinearities), so it
applies to the results of either engine; nothing here imports an engine.

The network mathematics these diagnostics use (feedforward pass, loss and output error
:math:`\\delta_L = r_L^* - r_L^-`, the Jacobian J, BP, the nonlinear-difference rule, DFC-SSA and
the ideal Gauss-Newton and minimum-norm updates) is in :mod:`dfc_brian.model.mlp`, with its
conventions (layers 0..L-1 = paper 1..L, propagating voltage perturbations, batch-mean loss)
and its one sign convention: an *update* is added to the weights (proportional to
:math:`-\\nabla\\mathcal{L}`), a *gradient* is its negative. Those functions are re-exported
here under their old names (``theory.jacobian``, ``theory.ssa_update``, ...).

*Q* is stacked like J's columns: :math:`Q = [Q_1; \\dots; Q_L] \\in \\mathbb{R}^{N \\times n_L}`,
:math:`N = \\sum_i n_i` (:func:`~dfc_brian.model.mlp.stack_Q`); functions taking ``Q`` accept
the stacked array or the per-layer list.

The flat parameter order of :func:`weight_jacobian` and :func:`flatten_update` is
``[vec(W_1), b_1, vec(W_2), b_2, ..., vec(W_L), b_L]`` with ``vec`` the row-major (C order)
flattening of the (n_post, n_pre) matrix; without biases ``[vec(W_1), ..., vec(W_L)]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfc_brian.model.mlp import (  # re-exported: the network mathematics lives in model/mlp.py
    Acts,
    Update,
    activations,
    bp_gradient,
    bp_update,
    feedforward,
    gauss_newton_update,
    jacobian,
    layer_jacobians,
    loss_value,
    minimum_norm_update,
    nonlinear_difference_update,
    output_delta,
    phi_prime,
    ssa,
    ssa_update,
    stack_Q,
)
from dfc_brian.model.weights import Weights

__all__ = [
    "angle",
    "angle_Q_JT",
    "angle_Q_damped_pinv",
    "bp_gradient",
    "bp_update",
    "condition_1",
    "condition_2",
    "damped_pinv",
    "feedforward",
    "flatten_update",
    "gauss_newton_update",
    "jacobian",
    "lambda_max_pi",
    "lambda_max_simple",
    "layer_angles",
    "loss_value",
    "minimum_norm_update",
    "nonlinear_difference_update",
    "output_delta",
    "pi_system_matrix",
    "split_flat",
    "ssa_steady_state",
    "ssa_update",
    "stack_Q",
    "weight_jacobian",
]


# ----------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------


def weight_jacobian(weights: Weights, acts: Acts, X: np.ndarray, bias: bool = True) -> np.ndarray:
    """Jacobian :math:`J_W` of :math:`r_L` w.r.t. all weights (and biases), per sample.

    .. math::
        \\frac{\\partial r_L}{\\partial (W_i)_{pq}} = (J_i)_{:,p} \\, (r_{i-1})_q, \\qquad
        \\frac{\\partial r_L}{\\partial b_i} = J_i

    Returns
    -------
    ndarray, shape (B, n_L, P)
        Columns in the order ``[vec(W_1), b_1, ..., vec(W_L), b_L]`` (row-major ``vec``);
        without the ``b_i`` blocks if ``bias`` is False. See :func:`split_flat`.
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    v, r = feedforward(weights, acts, X)
    Ji = layer_jacobians(weights, acts, v)
    B, nL = X.shape[0], Ji[-1].shape[1]
    blocks = []
    for i, J in enumerate(Ji):
        pre = X if i == 0 else r[i - 1]
        blocks.append(np.einsum("bjp,bq->bjpq", J, pre).reshape(B, nL, -1))
        if bias:
            blocks.append(J)
    return np.concatenate(blocks, axis=2)


def flatten_update(upd: Update, bias: bool = True) -> np.ndarray:
    """Flatten a list of ``(dW, db)`` into the parameter order of :func:`weight_jacobian`."""
    parts = []
    for dW, db in upd:
        parts.append(np.ravel(dW))
        if bias:
            parts.append(np.ravel(db))
    return np.concatenate(parts)


def split_flat(theta: np.ndarray, weights: Weights, bias: bool = True) -> Update:
    """Inverse of :func:`flatten_update`; missing biases come back as zeros."""
    out, k = [], 0
    for W in weights.W:
        n = W.size
        dW = theta[k : k + n].reshape(W.shape)
        k += n
        if bias:
            db = theta[k : k + W.shape[0]].copy()
            k += W.shape[0]
        else:
            db = np.zeros(W.shape[0])
        out.append((dW, db))
    if k != theta.size:
        raise ValueError(f"flat vector has {theta.size} entries, the network needs {k}")
    return out


# ----------------------------------------------------------------------------------------
# Ideal updates
# ----------------------------------------------------------------------------------------


def damped_pinv(J: np.ndarray, gamma: float = 0.0) -> np.ndarray:
    """Damped pseudo-inverse :math:`J^T (J J^T + \\gamma I)^{-1}` (Moore-Penrose if γ = 0).

    ``J`` (n_L, N) or a stack (B, n_L, N); returns (N, n_L) or (B, N, n_L).
    """
    if gamma > 0:
        n = J.shape[-2]
        JT = np.swapaxes(J, -1, -2)
        return np.swapaxes(np.linalg.solve(J @ JT + gamma * np.eye(n), J), -1, -2)
    return np.linalg.pinv(J)


def ssa_steady_state(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    delta: np.ndarray,
    alpha: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The linearised steady state of :func:`~dfc_brian.model.mlp.ssa` in stacked form.

    .. math::
        u_{ss} = (J Q + \\alpha I)^{-1} \\delta_L, \\qquad \\Delta v_{ss} = Q u_{ss}

    Returns
    -------
    u : ndarray (B, n_L)
    dv : ndarray (B, N), the layers' :math:`\\Delta v_i` stacked in order 1..L
    """
    ss = ssa(weights, acts, X, delta, alpha, Q)
    return ss.u, np.concatenate(ss.dv, axis=1)


# ----------------------------------------------------------------------------------------
# Angles
# ----------------------------------------------------------------------------------------


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two arrays, flattened.

    .. math::
        \\angle(a, b) = \\frac{180}{\\pi}\\arccos
        \\frac{\\langle a, b\\rangle_F}{\\lVert a\\rVert_F \\lVert b\\rVert_F}

    computed as :math:`2\\arctan2(\\lVert\\hat a - \\hat b\\rVert, \\lVert\\hat a + \\hat b\\rVert)` with
    :math:`\\hat a = a/\\lVert a\\rVert`: the same angle, but accurate to round-off near 0° and
    180°, where arccos of a cosine close to ±1 cannot resolve less than ~1e-6°.
    Returns NaN if either array is zero.
    """
    a = np.ravel(np.asarray(a, dtype=np.float64))
    b = np.ravel(np.asarray(b, dtype=np.float64))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    a, b = a / na, b / nb
    return float(np.degrees(2.0 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))))


def layer_angles(upd_a: Update, upd_b: Update, bias: bool = True) -> tuple[np.ndarray, float]:
    """Angles between two updates per layer and for the whole network, in degrees.

    A layer's angle uses its ``dW`` and (if ``bias``) ``db`` concatenated; the network angle
    concatenates every tensor of every layer.

    Returns
    -------
    per_layer : ndarray (L,)
    total : float
    """
    per = np.array(
        [
            angle(flatten_update([ua], bias), flatten_update([ub], bias))
            for ua, ub in zip(upd_a, upd_b, strict=True)
        ]
    )
    return per, angle(flatten_update(upd_a, bias), flatten_update(upd_b, bias))


def angle_Q_JT(
    weights: Weights, acts: Acts, X: np.ndarray, Q: Sequence[np.ndarray] | np.ndarray | None = None
) -> float:
    """Mean over samples of the angle (degrees) between Q (N, n_L) and :math:`J^T`."""
    Qs = stack_Q(weights.Q if Q is None else Q)
    J = jacobian(weights, acts, X)
    return float(np.mean([angle(Qs, Jb.T) for Jb in J]))


def angle_Q_damped_pinv(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    gamma: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
) -> float:
    """Mean over samples of the angle between Q and :math:`J^T (J J^T + \\gamma I)^{-1}`."""
    Qs = stack_Q(weights.Q if Q is None else Q)
    P = damped_pinv(jacobian(weights, acts, X), gamma)
    return float(np.mean([angle(Qs, Pb) for Pb in P]))


# ----------------------------------------------------------------------------------------
# Conditions of the paper
# ----------------------------------------------------------------------------------------


def condition_1(weights: Weights, acts: Acts, X: np.ndarray) -> float:
    """Condition 1 (``dev_r``): how unequal the norms of :math:`r_0, \\dots, r_{L-1}` are.

    Per sample, the coefficient of variation (population std / mean) of the L norms
    :math:`\\lVert r_0\\rVert, \\dots, \\lVert r_{L-1}\\rVert` of the feedforward rates
    (:math:`r_0 = x`), averaged over the batch:

    .. math::
        \\mathrm{dev}_r = \\Big\\langle \\frac{\\mathrm{std}_i \\lVert r_i\\rVert}
        {\\mathrm{mean}_i \\lVert r_i\\rVert} \\Big\\rangle_b, \\quad i = 0..L-1 .

    0 iff condition 1 holds exactly, i.e. all presynaptic rate vectors have equal norm, in
    which case :math:`J_W J_W^T \\propto J J^T` (without biases) and GN and MN updates
    coincide to first order. Samples whose norms are all zero contribute 0.
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    _, r = feedforward(weights, acts, X)
    norms = np.stack([np.linalg.norm(p, axis=1) for p in [X] + r[:-1]], axis=1)
    mean = norms.mean(axis=1)
    std = norms.std(axis=1)
    cv = np.divide(std, mean, out=np.zeros_like(std), where=mean > 0)
    return float(cv.mean())


def condition_2(
    weights: Weights, acts: Acts, X: np.ndarray, Q: Sequence[np.ndarray] | np.ndarray | None = None
) -> float:
    """Condition 2: the fraction of Q inside the row space of J, averaged over samples.

    .. math::
        \\frac{\\lVert J^T (J J^T)^{-1} J \\, Q \\rVert_F}{\\lVert Q \\rVert_F}

    (the projector is computed as :math:`J^+ J`, valid also for rank-deficient J). Equals 1
    iff :math:`\\mathrm{col}(Q) \\subseteq \\mathrm{row}(J)`.
    """
    Qs = stack_Q(weights.Q if Q is None else Q)
    J = jacobian(weights, acts, X)
    P = np.linalg.pinv(J) @ J
    return float(np.mean(np.linalg.norm(P @ Qs, axis=(1, 2)) / np.linalg.norm(Qs)))


# ----------------------------------------------------------------------------------------
# Stability
# ----------------------------------------------------------------------------------------


def lambda_max_simple(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    alpha: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
) -> np.ndarray:
    """Largest real part of the eigenvalues of :math:`-(J Q + \\alpha I)`, per sample.

    The simplest linearisation (integral control only, :math:`\\tau_v \\to 0`):
    :math:`\\dot u = -(J Q + \\alpha I) u + \\delta_L`. Negative means stable.

    Returns
    -------
    ndarray (B,)
    """
    Qs = stack_Q(weights.Q if Q is None else Q)
    J = jacobian(weights, acts, X)
    A = -(J @ Qs + alpha * np.eye(J.shape[1]))
    return np.linalg.eigvals(A).real.max(axis=1)


def pi_system_matrix(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    alpha: float,
    k_p: float,
    tcr: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
    form: str = "apical",
) -> np.ndarray:
    """System matrix A (B, N + n_L, N + n_L) of the linearised PI-controlled network.

    See :func:`lambda_max_pi` for the derivation of both forms.
    """
    Qs = stack_Q(weights.Q if Q is None else Q)
    N, nL = Qs.shape
    if form == "apical":
        C = jacobian(weights, acts, X)  # e = delta - J dv
        M = np.broadcast_to(np.eye(N), (C.shape[0], N, N))
    elif form == "network":
        acts_t = activations(acts)
        v, _ = feedforward(weights, acts_t, X)
        B = v[0].shape[0]
        sizes = [W.shape[0] for W in weights.W]
        off = np.concatenate([[0], np.cumsum(sizes)])
        M = np.broadcast_to(np.eye(N), (B, N, N)).copy()
        for i in range(1, len(sizes)):
            # d v_i^B / d v_{i-1} = W_i diag(phi'(v_{i-1}))
            M[:, off[i] : off[i + 1], off[i - 1] : off[i]] = (
                -weights.W[i] * phi_prime(acts_t[i - 1], v[i - 1])[:, None, :]
            )
        C = np.zeros((B, nL, N))
        C[:, :, off[-2] :] = np.einsum("jk,bk->bjk", np.eye(nL), phi_prime(acts_t[-1], v[-1]))
    else:
        raise ValueError(f"form must be 'apical' or 'network', got {form!r}")
    B = C.shape[0]
    A = np.zeros((B, N + nL, N + nL))
    A[:, :N, :N] = -(M + k_p * Qs @ C) / tcr
    A[:, :N, N:] = Qs / tcr
    A[:, N:, :N] = -(1.0 - alpha * k_p) * C
    A[:, N:, N:] = -alpha * np.eye(nL)
    return A


def lambda_max_pi(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    alpha: float,
    k_p: float,
    tcr: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
    form: str = "apical",
) -> np.ndarray:
    """Largest real part of the eigenvalues of the linearised PI-controlled network, per sample.

    Time in units of :math:`\\tau_u`, :math:`t_{cr} = \\tau_v/\\tau_u`, controller of the
    authors' code (leak on the total u, :math:`K_I = 1`).

    **form='apical'** (the paper's reduced model, in the apical coordinates
    :math:`\\Delta v = v - v^B`, basal inputs treated as fixed during the transient):

    .. math::
        t_{cr}\\,\\dot{\\Delta v} = -\\Delta v + Q u, \\quad
        \\dot u^{int} = e - \\alpha u, \\quad
        u = u^{int} + k_p e, \\quad
        e = \\delta_L - J \\Delta v .

    Substituting u and e,

    .. math::
        t_{cr}\\,\\dot{\\Delta v} = -(I + k_p Q J)\\Delta v + Q u^{int} + k_p Q \\delta_L, \\qquad
        \\dot u^{int} = -(1 - \\alpha k_p) J \\Delta v - \\alpha u^{int}
        + (1 - \\alpha k_p)\\delta_L ,

    so the state :math:`x = (\\Delta v, u^{int})` obeys :math:`\\dot x = A x + c` with

    .. math::
        A = \\begin{pmatrix} -(I + k_p Q J)/t_{cr} & Q / t_{cr} \\\\
                             -(1 - \\alpha k_p) J & -\\alpha I \\end{pmatrix}.

    Using :math:`(\\Delta v, u)` instead of :math:`(\\Delta v, u^{int})` is the invertible
    change of variables :math:`u = u^{int} + k_p(\\delta_L - J\\Delta v)`, which leaves the
    eigenvalues unchanged.

    **form='network'** (exact linearisation of the layered somatic dynamics
    :math:`t_{cr}\\dot v_i = -v_i + W_i\\phi(v_{i-1}) + b_i + Q_i u` around the
    feedforward state, which is what the engines integrate): with :math:`\\delta v = v - v^-`,

    .. math::
        t_{cr}\\,\\dot{\\delta v} = -M \\delta v + Q u, \\quad
        M = I - \\mathcal{W}, \\quad
        \\mathcal{W}_{i,i-1} = W_i D_{i-1}, \\quad
        e = \\delta_L - C \\delta v, \\quad C = [0, \\dots, 0, D_L],

    giving the same A with :math:`I \\to M` and :math:`J \\to C` (note :math:`J = C M^{-1}`).
    The two forms share their slow eigenvalues only as :math:`t_{cr} \\to 0`.

    Limits: for :math:`k_p = 0`, :math:`t_{cr} \\to 0` both reduce to
    :func:`lambda_max_simple`, :math:`-(JQ + \\alpha I)` (the fast eigenvalues go to
    :math:`-\\infty`).

    Returns
    -------
    ndarray (B,)
    """
    A = pi_system_matrix(weights, acts, X, alpha, k_p, tcr, Q, form)
    return np.linalg.eigvals(A).real.max(axis=1)
