"""Theory of Deep Feedback Control: Jacobians, ideal updates, the paper's conditions and stability.

Pure NumPy, written from ``shared/spec/DFC_SPEC.md`` section 3. Every function takes plain
arrays (a :class:`~dfc_brian.model.weights.Weights` and the layer nonlinearities), so it
applies to the results of either engine; nothing here imports an engine.

Conventions
-----------
Layers ``i = 0..L-1`` in code are the paper's layers 1..L. For a batch ``X`` of shape
(B, n_0) the feedforward pass is

.. math::
    v_i^- = W_i r_{i-1}^- + b_i, \\qquad r_i^- = \\phi_i(v_i^-), \\qquad r_0 = x .

*Voltage perturbations* ``dv`` are additive on each layer's somatic voltage and propagate
upwards: :math:`v_i = W_i r_{i-1} + b_i + \\Delta v_i` with the *perturbed* :math:`r_{i-1}`.
This is the apical contribution of the paper, :math:`\\Delta v_i = v_i - v_i^B`.

*J* is the Jacobian of :math:`r_L` with respect to all layers' voltages in that sense,
stacked in layer order, :math:`J = [J_1, \\dots, J_L] \\in \\mathbb{R}^{n_L \\times N}`,
:math:`N = \\sum_i n_i`, with

.. math::
    J_L = D_L, \\qquad J_i = J_{i+1} W_{i+1} D_i, \\qquad D_i = \\mathrm{diag}(\\phi_i'(v_i^-)).

*Q* is stacked the same way: :math:`Q = [Q_1; \\dots; Q_L] \\in \\mathbb{R}^{N \\times n_L}`.

*Updates* are lists over layers of ``(dW, db)`` with ``dW`` (n_post, n_pre), ``db``
(n_post,). All ``*_update`` functions return **descent directions** (to be added to the
weights, proportional to :math:`-\\nabla L`) computed from the output error

.. math::
    \\delta_L = r_L^* - r_L^- = -\\lambda \\, \\partial L / \\partial r_L ,

with L the batch-mean loss (see :func:`output_delta`); this is the sign convention of the
engines' DFC updates :math:`(\\phi(v_i) - \\phi(v_i^B)) r_{i-1}^T`. Per-sample updates are
averaged over the batch (the 1/B of the batch-mean loss is already inside
:math:`\\delta_L`). :func:`bp_gradient` alone returns the gradient itself
(:math:`+\\nabla L`); :func:`bp_update` is its negative.

The flat parameter order of :func:`weight_jacobian` and :func:`flatten_update` is
``[vec(W_1), b_1, vec(W_2), b_2, ..., vec(W_L), b_L]`` with ``vec`` the row-major (C order)
flattening of the (n_post, n_pre) matrix; without biases ``[vec(W_1), ..., vec(W_L)]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfc_brian.model.params import NetworkSpec
from dfc_brian.model.weights import Weights

Update = list[tuple[np.ndarray, np.ndarray]]
Acts = Sequence[str] | NetworkSpec

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
# Nonlinearities and the feedforward pass
# ----------------------------------------------------------------------------------------


def _acts(acts: Acts) -> tuple[str, ...]:
    return tuple(acts.activations) if isinstance(acts, NetworkSpec) else tuple(acts)


def _phi(name: str, v: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(v)
    if name == "linear":
        return v
    if name == "relu":
        return np.maximum(v, 0.0)
    raise ValueError(f"unknown activation {name!r}")


def _dphi(name: str, v: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - np.tanh(v) ** 2
    if name == "linear":
        return np.ones_like(v)
    if name == "relu":
        return (v > 0).astype(v.dtype)
    raise ValueError(f"unknown activation {name!r}")


def feedforward(
    weights: Weights, acts: Acts, X: np.ndarray, dv: Sequence[np.ndarray] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Feedforward pass, optionally with additive, propagating voltage perturbations.

    .. math::
        v_i = W_i r_{i-1} + b_i + \\Delta v_i, \\qquad r_i = \\phi_i(v_i), \\qquad r_0 = x

    Parameters
    ----------
    weights : Weights
        ``W[i]`` (n_{i+1}, n_i), ``b[i]`` (n_{i+1},).
    acts : sequence of str or NetworkSpec
        Nonlinearity of each layer.
    X : ndarray, shape (B, n_0)
        Inputs.
    dv : list of ndarray (B, n_i), optional
        Perturbations :math:`\\Delta v_i`; ``None`` gives the plain feedforward pass.

    Returns
    -------
    v, r : lists over layers of ndarray (B, n_i)
        Somatic voltages and rates (the input is not included).
    """
    acts = _acts(acts)
    prev = np.atleast_2d(np.asarray(X, dtype=np.float64))
    v, r = [], []
    for i, (W, b) in enumerate(zip(weights.W, weights.b, strict=True)):
        vi = prev @ W.T + b
        if dv is not None:
            vi = vi + dv[i]
        v.append(vi)
        prev = _phi(acts[i], vi)
        r.append(prev)
    return v, r


def stack_Q(Q: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack per-layer feedback weights ``Q[i]`` (n_i, n_L) into Q (N, n_L)."""
    if isinstance(Q, np.ndarray) and Q.ndim == 2:
        return Q
    return np.vstack([np.asarray(q, dtype=np.float64) for q in Q])


def _split_layers(a: np.ndarray, sizes: Sequence[int], axis: int = -1) -> list[np.ndarray]:
    return np.split(a, np.cumsum(sizes)[:-1], axis=axis)


def _layer_sizes(weights: Weights) -> list[int]:
    return [W.shape[0] for W in weights.W]


# ----------------------------------------------------------------------------------------
# Losses and output targets
# ----------------------------------------------------------------------------------------


def _onehot(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        out = np.zeros((y.shape[0], n))
        out[np.arange(y.shape[0]), y.astype(int)] = 1.0
        return out
    return y.astype(np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    ez = np.exp(z)
    return ez / ez.sum(axis=1, keepdims=True)


def loss_value(r_L: np.ndarray, y: np.ndarray, loss: str) -> float:
    """Batch-mean loss.

    .. math::
        L_{MSE} = \\frac{1}{B n_L} \\sum_b \\lVert r_{L,b} - y_b \\rVert^2, \\qquad
        L_{CE} = -\\frac{1}{B} \\sum_b \\log \\mathrm{softmax}(r_{L,b})_{y_b}

    ``y``: targets (B, n_L) for MSE; integer labels (B,) or one-hot (B, n_L) for CE.
    """
    B, n = r_L.shape
    if loss == "mse":
        return float(np.sum((r_L - y) ** 2) / (B * n))
    if loss == "ce":
        z = r_L - r_L.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.sum(_onehot(y, n) * logp) / B)
    raise ValueError(f"unknown loss {loss!r}")


def _dloss(r_L: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """:math:`\\partial L / \\partial r_L` of the batch-mean loss, shape (B, n_L)."""
    B, n = r_L.shape
    if loss == "mse":
        return 2.0 * (r_L - y) / (B * n)
    if loss == "ce":
        return (_softmax(r_L) - _onehot(y, n)) / B
    raise ValueError(f"unknown loss {loss!r}")


def output_delta(r_L: np.ndarray, y: np.ndarray, loss: str, target_stepsize: float = 1.0) -> np.ndarray:
    """Output error :math:`\\delta_L = r_L^* - r_L^- = -\\lambda\\,\\partial L/\\partial r_L`.

    CE: :math:`-(\\lambda/B)(\\mathrm{softmax}(r_L) - \\mathrm{onehot}(y))`;
    MSE: :math:`-\\lambda \\, 2 (r_L - y)/(B n_L)` (spec section 2), shape (B, n_L).
    """
    return -target_stepsize * _dloss(np.asarray(r_L, dtype=np.float64), y, loss)


# ----------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------


def _layer_jacobians(weights: Weights, acts: Acts, X: np.ndarray) -> tuple[list, list, list]:
    """Per-layer :math:`J_i` (B, n_L, n_i), with the feedforward v and r."""
    acts = _acts(acts)
    v, r = feedforward(weights, acts, X)
    L = len(v)
    Ji = [None] * L
    Ji[L - 1] = np.einsum("jk,bk->bjk", np.eye(v[-1].shape[1]), _dphi(acts[-1], v[-1]))
    for i in range(L - 2, -1, -1):
        Ji[i] = (Ji[i + 1] @ weights.W[i + 1]) * _dphi(acts[i], v[i])[:, None, :]
    return Ji, v, r


def jacobian(weights: Weights, acts: Acts, X: np.ndarray) -> np.ndarray:
    """Jacobian J of :math:`r_L` w.r.t. all layers' somatic voltages, per sample.

    .. math::
        J = \\left[\\frac{\\partial r_L}{\\partial \\Delta v_1}, \\dots,
        \\frac{\\partial r_L}{\\partial \\Delta v_L}\\right], \\qquad
        J_L = D_L,\\; J_i = J_{i+1} W_{i+1} D_i

    evaluated at the feedforward pass (perturbations propagate, see module docstring).

    Returns
    -------
    ndarray, shape (B, n_L, N)
        :math:`N = \\sum_i n_i`, layers stacked in order 1..L.
    """
    Ji, _, _ = _layer_jacobians(weights, acts, X)
    return np.concatenate(Ji, axis=2)


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
    Ji, _, r = _layer_jacobians(weights, acts, X)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
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


def _damped_solve(G: np.ndarray, rhs: np.ndarray, gamma: float) -> np.ndarray:
    """Per-sample :math:`(G + \\gamma I)^{-1} rhs`; pseudo-inverse when ``gamma == 0``."""
    if gamma > 0:
        n = G.shape[-1]
        return np.linalg.solve(G + gamma * np.eye(n), rhs[..., None])[..., 0]
    return np.einsum("bij,bj->bi", np.linalg.pinv(G), rhs)


def damped_pinv(J: np.ndarray, gamma: float = 0.0) -> np.ndarray:
    """Damped pseudo-inverse :math:`J^T (J J^T + \\gamma I)^{-1}` (Moore-Penrose if γ = 0).

    ``J`` (n_L, N) or a stack (B, n_L, N); returns (N, n_L) or (B, N, n_L).
    """
    if gamma > 0:
        n = J.shape[-2]
        JT = np.swapaxes(J, -1, -2)
        return np.swapaxes(np.linalg.solve(J @ JT + gamma * np.eye(n), J), -1, -2)
    return np.linalg.pinv(J)


def gauss_newton_update(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    delta: np.ndarray,
    gamma: float = 0.0,
    bias: bool = True,
) -> Update:
    """Damped Gauss-Newton update, per sample then averaged over the batch.

    .. math::
        \\Delta\\theta^{GN}_b = J_{W,b}^T (J_{W,b} J_{W,b}^T + \\gamma I)^{-1} \\delta_{L,b}

    computed without forming :math:`J_W`:
    :math:`J_W J_W^T = \\sum_i (\\lVert r_{i-1}\\rVert^2 + 1) J_i J_i^T` (the 1 from the
    bias; dropped if ``bias`` is False), and with :math:`c = (J_W J_W^T+\\gamma I)^{-1}\\delta_L`,
    :math:`\\Delta W_i = (J_i^T c) r_{i-1}^T`, :math:`\\Delta b_i = J_i^T c`. With
    ``gamma = 0`` the Moore-Penrose pseudo-inverse is used (:math:`J_W^+ \\delta_L`).

    Parameters
    ----------
    delta : ndarray (B, n_L)
        Output error :math:`\\delta_L = r_L^* - r_L^-` (descent direction; the spec's
        :math:`e = \\partial L/\\partial r_L` up to the factor :math:`-\\lambda`).
    gamma : float
        Damping γ >= 0.
    bias : bool
        Include the biases in θ (else ``db`` is zero).
    """
    Ji, _, r = _layer_jacobians(weights, acts, X)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    pres = [X] + r[:-1]
    G = sum(
        ((np.sum(p**2, axis=1) + (1.0 if bias else 0.0))[:, None, None]) * (J @ np.swapaxes(J, 1, 2))
        for J, p in zip(Ji, pres, strict=True)
    )
    c = _damped_solve(G, np.asarray(delta, dtype=np.float64), gamma)
    B = X.shape[0]
    out = []
    for J, p in zip(Ji, pres, strict=True):
        g = np.einsum("bjp,bj->bp", J, c)
        out.append((g.T @ p / B, g.mean(axis=0) if bias else np.zeros(J.shape[2])))
    return out


def nonlinear_difference_update(
    weights: Weights, acts: Acts, X: np.ndarray, dv: Sequence[np.ndarray]
) -> Update:
    """Forward-weight update of the nonlinear-difference rule with propagated rates.

    Voltage perturbations :math:`\\Delta v_i` are propagated layer by layer
    (:math:`v_i = W_i r_{i-1} + b_i + \\Delta v_i`, :math:`r_i = \\phi(v_i)`, :math:`r_0 = x`)
    and

    .. math::
        \\Delta W_i = \\frac{1}{B}\\sum_b \\big(\\phi(v_i) - \\phi(v_i - \\Delta v_i)\\big)
        r_{i-1}^T, \\qquad
        \\Delta b_i = \\frac{1}{B}\\sum_b \\big(\\phi(v_i) - \\phi(v_i - \\Delta v_i)\\big),

    i.e. the basal voltage :math:`v_i^B = W_i r_{i-1} + b_i` and the presynaptic rate
    :math:`r_{i-1}` are both taken at the *perturbed* (controlled) state, as in DFC-SS and
    DFC-SSA (spec section 2). Used by :func:`minimum_norm_update` and :func:`ssa_update`.
    """
    acts = _acts(acts)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    v, r = feedforward(weights, acts, X, dv=dv)
    B = X.shape[0]
    out = []
    for i in range(len(v)):
        diff = r[i] - _phi(acts[i], v[i] - dv[i])
        pre = X if i == 0 else r[i - 1]
        out.append((diff.T @ pre / B, diff.mean(axis=0)))
    return out


def minimum_norm_update(
    weights: Weights, acts: Acts, X: np.ndarray, delta: np.ndarray, gamma: float = 0.0
) -> Update:
    """Minimum-norm voltage update, turned into weights by the nonlinear-difference rule.

    Per sample

    .. math::
        \\Delta v^{MN} = J^T (J J^T + \\gamma I)^{-1} \\delta_L

    (:math:`J^+ \\delta_L` if γ = 0), split into layers :math:`\\Delta v_i^{MN}` and fed to
    :func:`nonlinear_difference_update`: propagated rates, difference
    :math:`\\phi(v_i^B + \\Delta v_i) - \\phi(v_i^B)` with :math:`v_i^B` rebuilt from the
    propagated :math:`r_{i-1}`, outer product with that propagated :math:`r_{i-1}`, batch
    mean. This is exactly what DFC-SSA computes when :math:`Q = J^T` and
    :math:`\\alpha = \\gamma`.
    """
    J = jacobian(weights, acts, X)
    c = _damped_solve(J @ np.swapaxes(J, 1, 2), np.asarray(delta, dtype=np.float64), gamma)
    dv = np.einsum("bjn,bj->bn", J, c)
    return nonlinear_difference_update(weights, acts, X, _split_layers(dv, _layer_sizes(weights)))


def ssa_steady_state(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    delta: np.ndarray,
    alpha: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic linearised steady state of the controlled network (DFC-SSA).

    .. math::
        u_{ss} = (J Q + \\alpha I)^{-1} \\delta_L, \\qquad \\Delta v_{ss} = Q u_{ss}

    from :math:`e = \\delta_L - J\\Delta v` and :math:`e = \\alpha u` at steady state.

    Returns
    -------
    u : ndarray (B, n_L)
    dv : ndarray (B, N)
    """
    Qs = stack_Q(weights.Q if Q is None else Q)
    J = jacobian(weights, acts, X)
    nL = J.shape[1]
    u = np.linalg.solve(J @ Qs + alpha * np.eye(nL), np.asarray(delta, dtype=np.float64)[..., None])[..., 0]
    return u, u @ Qs.T


def ssa_update(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    delta: np.ndarray,
    alpha: float,
    Q: Sequence[np.ndarray] | np.ndarray | None = None,
) -> Update:
    """DFC-SSA update: :func:`ssa_steady_state` then :func:`nonlinear_difference_update`.

    .. math::
        \\Delta v = Q (J Q + \\alpha I)^{-1} \\delta_L, \\quad
        v_i = W_i r_{i-1} + b_i + \\Delta v_i, \\quad
        \\Delta W_i = \\langle (\\phi(v_i) - \\phi(v_i - \\Delta v_i)) r_{i-1}^T \\rangle_b
    """
    _, dv = ssa_steady_state(weights, acts, X, delta, alpha, Q)
    return nonlinear_difference_update(weights, acts, X, _split_layers(dv, _layer_sizes(weights)))


def bp_gradient(weights: Weights, acts: Acts, X: np.ndarray, y: np.ndarray, loss: str) -> Update:
    """Exact gradient :math:`\\nabla_\\theta L` of the batch-mean loss (backpropagation).

    .. math::
        g_L = \\frac{\\partial L}{\\partial r_L} \\odot \\phi_L'(v_L), \\quad
        g_{i} = (W_{i+1}^T g_{i+1}) \\odot \\phi_i'(v_i), \\quad
        \\nabla_{W_i} L = \\sum_b g_i r_{i-1}^T, \\quad \\nabla_{b_i} L = \\sum_b g_i

    ``loss`` is ``mse`` or ``ce`` (see :func:`loss_value`). Note the sign: this is the
    gradient, not a descent direction (see :func:`bp_update`).
    """
    acts = _acts(acts)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    v, r = feedforward(weights, acts, X)
    L = len(v)
    g = _dloss(r[-1], y, loss) * _dphi(acts[-1], v[-1])
    out: Update = [None] * L  # type: ignore[list-item]
    for i in range(L - 1, -1, -1):
        pre = X if i == 0 else r[i - 1]
        out[i] = (g.T @ pre, g.sum(axis=0))
        if i > 0:
            g = (g @ weights.W[i]) * _dphi(acts[i - 1], v[i - 1])
    return out


def bp_update(
    weights: Weights, acts: Acts, X: np.ndarray, y: np.ndarray, loss: str, target_stepsize: float = 1.0
) -> Update:
    """Backprop descent direction :math:`-\\lambda \\nabla_\\theta L` (sign of the other updates)."""
    grad = bp_gradient(weights, acts, X, y, loss)
    return [(-target_stepsize * dW, -target_stepsize * db) for dW, db in grad]


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
        acts_t = _acts(acts)
        v, _ = feedforward(weights, acts_t, X)
        B = v[0].shape[0]
        sizes = _layer_sizes(weights)
        off = np.concatenate([[0], np.cumsum(sizes)])
        M = np.broadcast_to(np.eye(N), (B, N, N)).copy()
        for i in range(1, len(sizes)):
            # d v_i^B / d v_{i-1} = W_i diag(phi'(v_{i-1}))
            M[:, off[i] : off[i + 1], off[i - 1] : off[i]] = (
                -weights.W[i] * _dphi(acts_t[i - 1], v[i - 1])[:, None, :]
            )
        C = np.zeros((B, nL, N))
        C[:, :, off[-2] :] = np.einsum("jk,bk->bjk", np.eye(nL), _dphi(acts_t[-1], v[-1]))
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
