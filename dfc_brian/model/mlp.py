"""The mathematics of the multilayer network that DFC controls, in one place.

Everything the package computes about the feedforward network itself, outside the controlled
dynamics, lives here as plain NumPy on plain arrays: the rate function, the feedforward pass,
the loss and the output target, the network Jacobian, the backpropagation and feedback-alignment
gradients, the nonlinear-difference rule, the linearised steady state of DFC (DFC-SSA) and the
ideal Gauss-Newton and minimum-norm updates. The batched engine, the baselines, the training
methods, the theory diagnostics and the toy experiments all call these functions; none keeps a
copy. Written from ``shared/spec/DFC_SPEC.md`` sections 1-3.

Conventions
-----------
*Layers.* Code index ``i = 0..L-1`` is the paper's layer ``i + 1``; the input :math:`r_0 = x`
is not in the lists. A batch is a stack of row vectors, shape (B, n_i); ``W[i]`` has shape
(n_post, n_pre) and ``b[i]`` (n_post,), ``Q[i]`` (n_post, n_L). ``acts`` is a
:class:`~dfc_brian.model.params.NetworkSpec` or the sequence of the layers' nonlinearities.

*Feedforward pass.*

.. math::
    v_i^- = W_i r_{i-1}^- + b_i, \\qquad r_i^- = \\phi_i(v_i^-), \\qquad r_0 = x .

*Loss.* Always the batch mean (as the authors' code), so :math:`\\partial\\mathcal{L}/\\partial r_L`
carries the factor 1/B.

*Sign convention.* An **update** (``dW``, ``db``, the output error :math:`\\delta_L`, the
functions ``*_update``) points in the direction of the plasticity rule: it is what is *added*
to the weights, proportional to :math:`-\\nabla\\mathcal{L}`. A **gradient** (the functions
``*_gradient``) is what an optimiser *subtracts*: the negative of an update (for DFC the
training methods use :math:`g = -2\\,\\Delta W`, the factor 2 being the authors'; see
:mod:`dfc_brian.engines.methods`). Both come as an :data:`Update`, a list over layers of
``(dW, db)`` pairs with ``dW`` (n_post, n_pre) and ``db`` (n_post,).

*Voltage perturbations* ``dv`` are additive on each layer's somatic voltage and propagate
upwards, :math:`v_i = W_i r_{i-1} + b_i + \\Delta v_i` with the perturbed :math:`r_{i-1}`: the
apical contribution :math:`\\Delta v_i = v_i - v_i^B` of the paper.

*Precision.* Everything here is float64; the engines' integration loops alone may run in
float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from dfc_brian.model.params import ConfigError, NetworkSpec
from dfc_brian.model.weights import Weights

Update = list[tuple[np.ndarray, np.ndarray]]
"""Per layer ``(dW, db)``: ``dW`` (n_post, n_pre), ``db`` (n_post,)."""
Acts = Sequence[str] | NetworkSpec
"""The layers' nonlinearities: a NetworkSpec or a sequence such as ``("tanh", "linear")``."""
Feedforward = tuple[list[np.ndarray], list[np.ndarray]]
"""The lists ``(v, r)`` of :func:`feedforward`."""
Feedback = Sequence[np.ndarray] | np.ndarray
"""Feedback weights Q: the per-layer list ``Q[i]`` (n_i, n_L) or the stacked (N, n_L) array."""

__all__ = [
    "Acts",
    "Feedback",
    "Feedforward",
    "SteadyState",
    "Update",
    "activations",
    "bp_gradient",
    "bp_update",
    "dfa_gradient",
    "feedforward",
    "gauss_newton_update",
    "jacobian",
    "jq",
    "layer_jacobians",
    "layer_Q",
    "loss_and_grad",
    "loss_value",
    "minimum_norm_update",
    "nonlinear_difference",
    "nonlinear_difference_update",
    "one_hot",
    "output_delta",
    "output_target",
    "phi",
    "phi_prime",
    "split_layers",
    "ssa",
    "ssa_update",
    "stack_Q",
]


# ----------------------------------------------------------------------------------------
# 1. Rate function
# ----------------------------------------------------------------------------------------


def activations(acts: Acts) -> tuple[str, ...]:
    """The nonlinearity of every layer, as a tuple of names."""
    return tuple(acts.activations) if isinstance(acts, NetworkSpec) else tuple(acts)


def phi(name: str, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rate function :math:`\\phi(v)`, elementwise; writes into ``out`` if given.

    ``tanh`` (hidden layers of the paper), ``linear`` (the output layer) or ``relu``
    (:math:`\\max(v, 0)`).
    """
    if name == "tanh":
        return np.tanh(v, out=out)
    if name == "linear":
        if out is None:
            return v.copy()
        np.copyto(out, v)
        return out
    if name == "relu":
        return np.maximum(v, 0.0, out=out)
    raise ConfigError(f"unknown activation {name!r}")


def phi_prime(name: str, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Derivative :math:`\\phi'(v)`, elementwise; writes into ``out`` if given.

    .. math::
        \\tanh'(v) = 1 - \\tanh^2 v, \\qquad \\mathrm{linear}' = 1, \\qquad
        \\mathrm{relu}'(v) = [v > 0]
    """
    if name == "tanh":
        t = np.tanh(v, out=out)
        np.multiply(t, t, out=t)
        return np.subtract(1.0, t, out=t)
    if name == "linear":
        if out is None:
            return np.ones_like(v)
        out[...] = 1.0
        return out
    if name == "relu":
        if out is None:
            return (v > 0).astype(v.dtype)
        np.greater(v, 0, out=out)
        return out
    raise ConfigError(f"unknown activation {name!r}")


# ----------------------------------------------------------------------------------------
# 2. Feedforward pass
# ----------------------------------------------------------------------------------------


def _input(weights: Weights, X: np.ndarray) -> np.ndarray:
    """``X`` as a float64 (B, n_0) batch (a single (n_0,) sample becomes (1, n_0)); ConfigError if bad."""
    try:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError("X is not a numeric array") from None
    n0 = weights.W[0].shape[1]
    if X.ndim != 2 or X.shape[1] != n0:
        raise ConfigError(f"X has shape {X.shape}, expected (B, {n0})")
    if not np.all(np.isfinite(X)):
        raise ConfigError("X contains non-finite values (NaN or inf)")
    return X


def feedforward(weights: Weights, acts: Acts, X: np.ndarray) -> Feedforward:
    """Feedforward pass, float64.

    .. math::
        v_i^- = W_i r_{i-1}^- + b_i, \\qquad r_i^- = \\phi_i(v_i^-), \\qquad r_0 = x

    Parameters
    ----------
    weights : Weights
        ``W[i]`` (n_{i+1}, n_i), ``b[i]`` (n_{i+1},).
    acts : NetworkSpec or sequence of str
        Nonlinearity of each layer.
    X : ndarray, shape (B, n_0)
        Inputs (a single sample (n_0,) is taken as B = 1).

    Returns
    -------
    v, r : lists over layers of ndarray (B, n_i)
        Somatic voltages and rates (the input is not included).
    """
    acts = activations(acts)
    prev = _input(weights, X)
    v, r = [], []
    for i, (W, b) in enumerate(zip(weights.W, weights.b, strict=True)):
        vi = prev @ W.T + b
        v.append(vi)
        prev = phi(acts[i], vi)
        r.append(prev)
    return v, r


# ----------------------------------------------------------------------------------------
# 3. Loss, output error and output target
# ----------------------------------------------------------------------------------------


def one_hot(y: np.ndarray, n_out: int, B: int | None = None) -> np.ndarray:
    """Class labels (B,) as a one-hot (B, n_out) float64 array; a one-hot array is checked and kept.

    ConfigError if the labels are not integers in ``0..n_out-1`` or the shape is not (B,) or
    (B, n_out) (``B`` defaults to ``len(y)``).
    """
    y = np.asarray(y)
    B = y.shape[0] if B is None and y.ndim >= 1 else B
    if y.ndim == 1:
        if y.shape != (B,):
            raise ConfigError(f"y has shape {y.shape}, expected ({B},) labels or ({B}, {n_out}) one-hot")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ConfigError("y labels must be integers")
            y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= n_out:
            raise ConfigError(f"y labels must lie in 0..{n_out - 1}")
        oh = np.zeros((B, n_out))
        oh[np.arange(B), y] = 1.0
        return oh
    if y.shape != (B, n_out):
        raise ConfigError(f"y has shape {y.shape}, expected ({B},) labels or ({B}, {n_out}) one-hot")
    if not np.all(np.isfinite(y)):
        raise ConfigError("y contains non-finite values")
    return y.astype(np.float64)


def loss_and_grad(r_L: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """Batch-mean loss and its gradient :math:`\\partial\\mathcal{L}/\\partial r_L` (B, n_L).

    .. math::
        \\mathcal{L}_{CE} = -\\frac1B\\sum_b \\log\\mathrm{softmax}(r_{L,b})_{y_b}, \\qquad
        \\frac{\\partial\\mathcal{L}_{CE}}{\\partial r_L}
            = \\frac1B\\big(\\mathrm{softmax}(r_L) - \\mathrm{onehot}(y)\\big)

    .. math::
        \\mathcal{L}_{MSE} = \\frac{1}{B n_L}\\sum_b \\lVert r_{L,b} - y_b\\rVert^2, \\qquad
        \\frac{\\partial\\mathcal{L}_{MSE}}{\\partial r_L} = \\frac{2 (r_L - y)}{B n_L}

    ``y``: integer labels (B,) or one-hot (B, n_L) for ``ce``; targets (B, n_L) for ``mse``.
    ConfigError on a bad ``y`` or an unknown loss.
    """
    r_L = np.asarray(r_L, dtype=np.float64)
    B, n_out = r_L.shape
    if loss == "ce":
        oh = one_hot(y, n_out, B)
        z = r_L - r_L.max(axis=1, keepdims=True)
        logsm = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        val = -float(np.mean(np.sum(oh * logsm, axis=1)))
        return val, (np.exp(logsm) - oh) / B
    if loss == "mse":
        y = np.asarray(y, dtype=np.float64)
        if y.shape != r_L.shape:
            raise ConfigError(f"y has shape {y.shape}, expected {r_L.shape} for the mse loss")
        if not np.all(np.isfinite(y)):
            raise ConfigError("y contains non-finite values")
        diff = r_L - y
        return float(np.mean(diff**2)), 2.0 * diff / (B * n_out)
    raise ConfigError(f"unknown loss {loss!r}")


def loss_value(r_L: np.ndarray, y: np.ndarray, loss: str) -> float:
    """Batch-mean loss :math:`\\mathcal{L}` (see :func:`loss_and_grad`)."""
    return loss_and_grad(r_L, y, loss)[0]


def output_delta(r_L: np.ndarray, y: np.ndarray, loss: str, target_stepsize: float = 1.0) -> np.ndarray:
    """Output error :math:`\\delta_L = r_L^* - r_L^- = -\\lambda\\,\\partial\\mathcal{L}/\\partial r_L`.

    Shape (B, n_L). CE: :math:`-(\\lambda/B)(\\mathrm{softmax}(r_L) - \\mathrm{onehot}(y))`; MSE:
    :math:`-\\lambda\\,2 (r_L - y)/(B n_L)`; formed without the cancellation of
    ``output_target(...) - r_L``. ``target_stepsize`` is :math:`\\lambda`.
    """
    return -target_stepsize * loss_and_grad(r_L, y, loss)[1]


def output_target(r_L: np.ndarray, y: np.ndarray, loss: str, target_stepsize: float) -> np.ndarray:
    """Output target :math:`r_L^* = r_L^- - \\lambda\\,\\partial\\mathcal{L}/\\partial r_L` (B, n_L).

    With the batch-mean loss (spec section 2): cross-entropy
    :math:`r^* = z - \\frac{\\lambda}{B}(\\mathrm{softmax}(z) - \\mathrm{onehot}(y))`, MSE
    :math:`r^* = r - \\lambda\\, 2 (r - y)/(B\\, n_L)`, with :math:`r_L^-` (= z) the feedforward output.
    """
    r_L = np.asarray(r_L, dtype=np.float64)
    _, grad = loss_and_grad(r_L, y, loss)
    return r_L - target_stepsize * grad


# ----------------------------------------------------------------------------------------
# 4. The network Jacobian
# ----------------------------------------------------------------------------------------


def layer_jacobians(weights: Weights, acts: Acts, v: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Blocks :math:`J_i = \\partial r_L / \\partial \\Delta v_i` (B, n_L, n_i) at the voltages ``v``.

    .. math::
        J_L = D_L, \\qquad J_i = J_{i+1} W_{i+1} D_i, \\qquad D_i = \\mathrm{diag}(\\phi_i'(v_i))

    (perturbations propagate upwards, see the module docstring).
    """
    acts = activations(acts)
    L = len(weights.W)
    dphi = [phi_prime(acts[i], np.asarray(v[i], dtype=np.float64)) for i in range(L)]
    B, n_L = dphi[-1].shape
    blocks: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    J = np.zeros((B, n_L, n_L))
    J[:, np.arange(n_L), np.arange(n_L)] = dphi[-1]
    blocks[-1] = J
    for i in range(L - 2, -1, -1):
        J = np.matmul(J, weights.W[i + 1]) * dphi[i][:, None, :]
        blocks[i] = J
    return blocks


def jacobian(
    weights: Weights,
    acts: Acts,
    X: np.ndarray | None = None,
    *,
    v: Sequence[np.ndarray] | None = None,
    stacked: bool = True,
) -> np.ndarray | list[np.ndarray]:
    """Jacobian J of :math:`r_L` w.r.t. every layer's somatic voltage, per sample.

    .. math::
        J = \\left[\\frac{\\partial r_L}{\\partial \\Delta v_1}, \\dots,
        \\frac{\\partial r_L}{\\partial \\Delta v_L}\\right] \\in \\mathbb{R}^{n_L \\times N},
        \\qquad N = \\sum_i n_i

    evaluated at the feedforward pass of ``X`` or at the given voltages ``v`` (list of (B, n_i)).

    Returns
    -------
    ndarray (B, n_L, N), layers stacked in order 1..L, if ``stacked``; else the list of
    :func:`layer_jacobians` blocks (B, n_L, n_i).
    """
    if v is None:
        if X is None:
            raise ConfigError("jacobian needs X or v")
        v, _ = feedforward(weights, acts, X)
    blocks = layer_jacobians(weights, acts, v)
    return np.concatenate(blocks, axis=2) if stacked else blocks


def stack_Q(Q: Feedback) -> np.ndarray:
    """Stack per-layer feedback weights ``Q[i]`` (n_i, n_L) into Q (N, n_L) (a stacked Q is kept)."""
    if isinstance(Q, np.ndarray) and Q.ndim == 2:
        return Q
    return np.vstack([np.asarray(q, dtype=np.float64) for q in Q])


def split_layers(a: np.ndarray, sizes: Sequence[int], axis: int = -1) -> list[np.ndarray]:
    """Split a stacked array along ``axis`` into the layers' blocks of widths ``sizes``."""
    return np.split(a, np.cumsum(sizes)[:-1], axis=axis)


def layer_Q(weights: Weights, Q: Feedback | None = None) -> list[np.ndarray]:
    """Feedback weights per layer: ``weights.Q`` if ``Q`` is None, else ``Q`` (list, or stacked (N, n_L))."""
    if Q is None:
        return list(weights.Q)
    if isinstance(Q, np.ndarray) and Q.ndim == 2:
        return split_layers(Q, [W.shape[0] for W in weights.W], axis=0)
    return [np.asarray(q, dtype=np.float64) for q in Q]


def jq(weights: Weights, acts: Acts, v: Sequence[np.ndarray], Q: Feedback | None = None) -> np.ndarray:
    """:math:`J Q = \\sum_i J_i Q_i` per sample (B, n_L, n_L), by pushing Q forward.

    The columns of Q are the directions in which the controller moves the voltages, so
    :math:`J Q` is the forward-mode derivative of :math:`r_L` w.r.t. u through the network
    linearised at the voltages ``v``:

    .. math::
        Z_1 = Q_1, \\qquad Z_{i+1} = W_{i+1}\\,\\mathrm{diag}(\\phi_i'(v_i))\\, Z_i + Q_{i+1},
        \\qquad J Q = \\mathrm{diag}(\\phi_L'(v_L))\\, Z_L

    with :math:`Z_i = \\partial v_i/\\partial u` (n_i x n_L). All samples' tangents are carried
    as one (B n_L, n_i) matrix, so each layer is one GEMM; no (B, n_L, N) Jacobian is formed.
    Equal to ``sum_i layer_jacobians(v)[i] @ Q_i`` up to round-off.
    """
    acts = activations(acts)
    L = len(weights.W)
    Q = layer_Q(weights, Q)
    dphi = [phi_prime(acts[i], np.asarray(v[i], dtype=np.float64)) for i in range(L)]
    B, n_L = dphi[-1].shape
    W = weights.W
    R = Q[0].T[None, :, :] * dphi[0][:, None, :]  # (B, n_L, n_1): d r_1 / d u, row c = column c of Q
    for i in range(1, L):
        Z = (R.reshape(B * n_L, -1) @ W[i].T).reshape(B, n_L, -1)
        Z += Q[i].T[None, :, :]
        Z *= dphi[i][:, None, :]
        R = Z
    return np.ascontiguousarray(R.transpose(0, 2, 1))  # JQ[b, k, c] = d r_L[k] / d u[c]


# ----------------------------------------------------------------------------------------
# 5. Gradients of the loss: backpropagation and direct feedback alignment
# ----------------------------------------------------------------------------------------


def _output_gradient(
    weights: Weights, acts: Acts, X: np.ndarray, y: np.ndarray, loss: str, ff: Feedforward | None
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The preamble of every gradient: X (float64), the feedforward v and r, and dL/dr_L."""
    X = _input(weights, X)
    v, r = feedforward(weights, acts, X) if ff is None else ff
    return X, v, r, loss_and_grad(r[-1], y, loss)[1]


def _from_deltas(deltas: Sequence[np.ndarray], X: np.ndarray, r: Sequence[np.ndarray]) -> Update:
    """:math:`(\\sum_b \\delta_i r_{i-1}^T, \\sum_b \\delta_i)` per layer."""
    out = []
    for i, d in enumerate(deltas):
        pre = X if i == 0 else r[i - 1]
        out.append((d.T @ pre, d.sum(axis=0)))
    return out


def bp_gradient(
    weights: Weights, acts: Acts, X: np.ndarray, y: np.ndarray, loss: str, ff: Feedforward | None = None
) -> Update:
    """Exact gradient :math:`\\nabla_\\theta\\mathcal{L}` of the batch-mean loss (backpropagation).

    .. math::
        \\delta_L = \\phi_L'(v_L) \\odot \\frac{\\partial\\mathcal{L}}{\\partial r_L}, \\quad
        \\delta_i = \\phi_i'(v_i) \\odot W_{i+1}^T \\delta_{i+1}, \\quad
        \\nabla_{W_i}\\mathcal{L} = \\sum_b \\delta_i r_{i-1}^T, \\quad
        \\nabla_{b_i}\\mathcal{L} = \\sum_b \\delta_i

    (the 1/B is inside :math:`\\partial\\mathcal{L}/\\partial r_L`). A gradient: its negative is
    :func:`bp_update`. ``ff``: the feedforward ``(v, r)`` of ``X``, if already computed.
    """
    acts = activations(acts)
    X, v, r, dL = _output_gradient(weights, acts, X, y, loss, ff)
    L = len(v)
    deltas: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    deltas[-1] = dL * phi_prime(acts[-1], v[-1])
    for i in range(L - 2, -1, -1):
        deltas[i] = (deltas[i + 1] @ weights.W[i + 1]) * phi_prime(acts[i], v[i])
    return _from_deltas(deltas, X, r)


def bp_update(
    weights: Weights, acts: Acts, X: np.ndarray, y: np.ndarray, loss: str, target_stepsize: float = 1.0
) -> Update:
    """Backprop update :math:`-\\lambda\\,\\nabla_\\theta\\mathcal{L}` (the sign of the other updates)."""
    return [
        (-target_stepsize * dW, -target_stepsize * db) for dW, db in bp_gradient(weights, acts, X, y, loss)
    ]


def dfa_gradient(
    weights: Weights,
    acts: Acts,
    B_fb: Sequence[np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    loss: str,
    convention: str = "textbook",
    target_stepsize: float | None = None,
    ff: Feedforward | None = None,
) -> Update:
    """Direct feedback alignment: the output error reaches layer i through a fixed random :math:`B_i`.

    ``convention='textbook'``: BP with :math:`W_{i+1}^T\\delta_{i+1}` replaced by :math:`B_i e`,

    .. math::
        e = \\phi_L'(v_L) \\odot \\frac{\\partial\\mathcal{L}}{\\partial r_L}, \\qquad
        \\delta_i = \\phi_i'(v_i) \\odot B_i e \\;(i < L), \\qquad \\delta_L = e,

    and the gradient :math:`\\sum_b \\delta_i r_{i-1}^T`, :math:`\\sum_b \\delta_i` as in
    :func:`bp_gradient` (``B_fb[-1]`` is not used).

    ``convention='target'``: the authors' target-based form (spec section 2), with
    :math:`B_L = I` (``B_fb[-1]``) and :math:`\\lambda` = ``target_stepsize``. Output target
    :math:`r_L^* = r_L - \\lambda\\,\\partial\\mathcal{L}/\\partial r_L` (as DFC's), hidden targets
    :math:`h_i^* = h_i + B_i (r_L^* - r_L)`, and each layer descends its local squared error:

    .. math::
        g_{W_i} = \\frac{1}{B}\\sum_b 2\\,\\phi_i'(v_i) \\odot (h_i - h_i^*)\\, r_{i-1}^T, \\qquad
        g_{b_i} = \\frac{1}{B}\\sum_b 2\\,\\phi_i'(v_i) \\odot (h_i - h_i^*)

    With a linear output layer this is exactly :math:`2\\lambda/B` times the textbook gradient
    (with a nonlinear one the hidden layers miss the factor :math:`\\phi_L'`, as in the code).
    """
    acts = activations(acts)
    if convention not in ("textbook", "target"):
        raise ConfigError(f"DFA convention must be 'textbook' or 'target', got {convention!r}")
    if convention == "target" and target_stepsize is None:
        raise ConfigError("the target DFA convention needs target_stepsize (lambda)")
    X, v, r, dL = _output_gradient(weights, acts, X, y, loss, ff)
    if convention == "textbook":
        e = dL * phi_prime(acts[-1], v[-1])
        deltas = [(e @ B_fb[i].T) * phi_prime(acts[i], v[i]) for i in range(len(v) - 1)]
        deltas.append(e)
        return _from_deltas(deltas, X, r)
    B = X.shape[0]
    err = -target_stepsize * dL  # r_L* - r_L, formed without cancellation
    deltas = []
    for i in range(len(v)):
        h_minus_target = -(err @ B_fb[i].T)  # h_i - h_i* with h_i* = h_i + B_i (r_L* - r_L)
        deltas.append(2.0 * phi_prime(acts[i], v[i]) * h_minus_target / B)
    return _from_deltas(deltas, X, r)


# ----------------------------------------------------------------------------------------
# 6. The nonlinear-difference rule and the linearised steady state (DFC-SSA)
# ----------------------------------------------------------------------------------------


def nonlinear_difference(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    dv: Sequence[np.ndarray],
    basal1: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], Update]:
    """Propagate voltage perturbations and apply the nonlinear-difference rule.

    .. math::
        v_i^B = W_i r_{i-1} + b_i, \\quad v_i = v_i^B + \\Delta v_i, \\quad r_i = \\phi_i(v_i),
        \\quad r_0 = x

    .. math::
        \\Delta W_i = \\frac{1}{B}\\sum_b \\big(\\phi_i(v_i) - \\phi_i(v_i^B)\\big) r_{i-1}^T, \\qquad
        \\Delta b_i = \\frac{1}{B}\\sum_b \\big(\\phi_i(v_i) - \\phi_i(v_i^B)\\big)

    The basal voltage and the presynaptic rate are both taken at the *perturbed* (controlled)
    state, as in DFC-SS and DFC-SSA (spec section 2). ``basal1``: layer 1's basal voltage
    :math:`W_1 x + b_1` and rate, if already known (the feedforward :math:`(v_1^-, r_1^-)`).

    Returns
    -------
    v, r : lists over layers of (B, n_i), the perturbed voltages and rates
    update : Update, in the direction of the rule
    """
    acts = activations(acts)
    X = _input(weights, X)
    B = X.shape[0]
    v, r, upd = [], [], []
    prev = X
    for i, (W, b) in enumerate(zip(weights.W, weights.b, strict=True)):
        if i == 0 and basal1 is not None:
            vB, rB = basal1
        else:
            vB = prev @ W.T + b
            rB = phi(acts[i], vB)
        vi = vB + dv[i]
        ri = phi(acts[i], vi)
        d = ri - rB
        upd.append((d.T @ prev / B, d.sum(axis=0) / B))
        v.append(vi)
        r.append(ri)
        prev = ri
    return v, r, upd


def nonlinear_difference_update(
    weights: Weights, acts: Acts, X: np.ndarray, dv: Sequence[np.ndarray]
) -> Update:
    """The update of :func:`nonlinear_difference` alone."""
    return nonlinear_difference(weights, acts, X, dv)[2]


class SteadyState(NamedTuple):
    """The linearised steady state of the controlled network and its update (:func:`ssa`)."""

    u: np.ndarray  # (B, n_L) control signal u_ss
    JQ: np.ndarray | None  # (B, n_L, n_L); None where the low-rank route solved without forming it
    dv: list[np.ndarray]  # per layer (B, n_i): Delta v_i = Q_i u_ss
    v: list[np.ndarray]  # per layer (B, n_i): propagated target voltages
    r: list[np.ndarray]  # per layer (B, n_i): propagated target rates
    update: Update  # nonlinear-difference update (direction of the rule)


def _low_rank_holds(weights: Weights, acts: tuple[str, ...], Qs: Sequence[np.ndarray]) -> bool:
    """Whether :func:`ssa_control_low_rank` is exact here: a linear output layer below a hidden
    layer, and ``Q_L = I``."""
    n_L = Qs[-1].shape[0]
    return (
        acts[-1] == "linear"
        and len(weights.W) > 1
        and Qs[-1].shape == (n_L, n_L)
        and np.array_equal(Qs[-1], np.eye(n_L))
    )


def _identity_output_route(weights: Weights, acts: tuple[str, ...], Qs: Sequence[np.ndarray]) -> bool:
    """Whether :func:`ssa` takes :func:`ssa_control_low_rank`: it is exact and it pays, the last
    hidden layer being narrower than the output (the autoencoder: 256 < 784)."""
    return weights.W[-1].shape[1] < Qs[-1].shape[0] and _low_rank_holds(weights, acts, Qs)


def ssa_control_low_rank(
    weights: Weights,
    acts: Acts,
    v: Sequence[np.ndarray],
    Qs: Sequence[np.ndarray],
    delta: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """:math:`u_{ss} = (JQ + \\alpha I)^{-1}\\delta_L` without forming JQ, for a linear output
    layer with :math:`Q_L = I` (the autoencoder's DFC-SSA configs).

    There :math:`JQ = I + W_L R` with :math:`R = \\partial r_{L-1}/\\partial u`
    (:math:`n_{L-1} \\times n_L` per sample; :func:`jq`'s recursion stopped one layer short), so
    with :math:`c = 1 + \\alpha` the push-through identity
    :math:`(cI + W_L R)^{-1} = \\frac1c\\,[I - W_L (cI + R W_L)^{-1} R]` gives

    .. math::
        u_{ss} = \\frac1c\\,\\big(\\delta_L - W_L\\,y\\big), \\qquad (cI + P)\\,y = R\\,\\delta_L,
        \\qquad P = R\\,W_L ,

    a system of size :math:`n_{L-1}` instead of :math:`n_L`. P is pushed forward like
    :func:`jq`'s tangents but with :math:`Q_i W_L` (formed once per call) in place of
    :math:`Q_i`: :math:`P_1 = D_1 Q_1 W_L`, :math:`P_i = D_i (W_i P_{i-1} + Q_i W_L)`, and
    :math:`R\\delta_L` likewise with :math:`Q_i\\delta_L`. On the autoencoder (784-256-32-256-784)
    this is ~10 M multiply-adds per sample against ~320 M for JQ and its LU. The same
    :math:`u_{ss}` as the direct solve up to round-off (tested against ``ssa(exact=True)``).
    """
    acts = activations(acts)
    if not _low_rank_holds(weights, acts, Qs):
        raise ConfigError(
            "ssa_control_low_rank needs a linear output layer below a hidden layer and Q_L = I; "
            "use ssa() (it picks the route)"
        )
    W = weights.W
    L = len(W)
    W_L = W[-1]  # (n_L, n_{L-1})
    delta = np.asarray(delta, dtype=np.float64)
    dphi = [phi_prime(acts[i], np.asarray(v[i], dtype=np.float64)) for i in range(L - 1)]
    B = delta.shape[0]
    m = W_L.shape[1]  # n_{L-1}
    # Carried transposed, as in jq: PT[b] = P_i[b].T, (m, n_i), so each layer is one GEMM. The
    # (B, m, n_i) arrays are large (67 MB on the autoencoder): two buffers, written in place.
    QWT0 = (Qs[0] @ W_L).T  # (m, n_1)
    s = (delta @ Qs[0].T) * dphi[0]  # (B, n_1): R_1 delta
    if L == 2:  # one hidden layer: P = P_1
        PT = np.multiply(QWT0[None, :, :], dphi[0][:, None, :], out=np.empty((B, m, m)))  # C order
        return _low_rank_solve(PT, s, delta, W_L, alpha)
    size = B * m * max(Qs[i].shape[0] for i in range(1, L - 1))
    bufs = (np.empty(size), np.empty(size))
    # Layer 2 from layer 1 without forming P_1 (B x m x n_1): P_1[b].T W_2.T = QWT0 (D_1[b] W_2.T),
    # one GEMM over the (n_1, B, n_2) stack of the scaled D_1[b] W_2.T (the bottleneck is narrow)
    n_2 = Qs[1].shape[0]
    M = dphi[0].T[:, :, None] * W[1].T[:, None, :]  # (n_1, B, n_2)
    G = (QWT0 @ M.reshape(M.shape[0], B * n_2)).reshape(m, B, n_2)
    G += (Qs[1] @ W_L).T[:, None, :]
    G *= dphi[1][None, :, :]
    PT = bufs[1][: B * m * n_2].reshape(B, m, n_2)
    PT[...] = G.transpose(1, 0, 2)
    s = (s @ W[1].T + delta @ Qs[1].T) * dphi[1]
    for i in range(2, L - 1):
        n_i = Qs[i].shape[0]
        nxt = bufs[i % 2][: B * m * n_i].reshape(B * m, n_i)
        np.matmul(PT.reshape(B * m, -1), W[i].T, out=nxt)
        PT = nxt.reshape(B, m, n_i)
        PT += (Qs[i] @ W_L).T[None, :, :]
        PT *= dphi[i][:, None, :]
        s = (s @ W[i].T + delta @ Qs[i].T) * dphi[i]
    return _low_rank_solve(PT, s, delta, W_L, alpha)


def _low_rank_solve(
    PT: np.ndarray, s: np.ndarray, delta: np.ndarray, W_L: np.ndarray, alpha: float
) -> np.ndarray:
    r"""The last step of :func:`ssa_control_low_rank`: :math:`(cI + P)\,y = R\delta_L` per sample,
    then :math:`u = (\delta_L - W_L y)/c`; ``PT`` (B, m, m) holds :math:`P^T` and is overwritten.

    The diagonal is added in place (a transpose leaves it where it is) and A = cI + P is handed
    to LAPACK as the transposed view, whose column-major layout is PT's own memory: the copy
    LAPACK works on is then a contiguous one, no transposing copy is made.
    """
    B, m, _ = PT.shape
    c = 1.0 + alpha
    diag = np.arange(m)
    PT[:, diag, diag] += c  # in place whatever PT's layout (a reshape could copy)
    y = np.linalg.solve(PT.transpose(0, 2, 1), s[:, :, None])[:, :, 0]
    return (delta - y @ W_L.T) / c


def ssa(
    weights: Weights,
    acts: Acts,
    X: np.ndarray,
    delta: np.ndarray,
    alpha: float,
    Q: Feedback | None = None,
    ff: Feedforward | None = None,
    exact: bool = False,
) -> SteadyState:
    """DFC-SSA: the analytic linearised steady state, then the rule on the propagated targets.

    At the steady state of the linearised controlled network :math:`e = \\alpha u` and
    :math:`e = \\delta_L - J\\Delta v` with :math:`\\Delta v = Q u`, so per sample

    .. math::
        u_{ss} = (J Q + \\alpha I)^{-1}\\delta_L, \\quad \\Delta v_i = Q_i u_{ss}, \\quad
        v_i = W_i r_{i-1} + b_i + \\Delta v_i, \\quad
        \\Delta W_i = \\frac1B\\sum_b \\big(\\phi(v_i) - \\phi(W_i r_{i-1} + b_i)\\big) r_{i-1}^T

    with :math:`\\delta_L = r_L^* - r_L^-` (:func:`output_delta`), J at the feedforward pass, and
    the propagated target rates :math:`r_{i-1}` both in the difference and as presynaptic rates
    (spec section 2, :func:`nonlinear_difference`). :math:`J Q` by :func:`jq`, or, if ``exact``,
    as :math:`\\sum_i J_i Q_i` from the :func:`layer_jacobians` (equal to ~1e-13; layer 1's basal
    voltage is then recomputed instead of taken from ``ff``). With a linear output layer,
    :math:`Q_L = I` and :math:`n_{L-1} < n_L` (the autoencoder) and not ``exact``, :math:`u_{ss}`
    comes from :func:`ssa_control_low_rank` without forming JQ (``SteadyState.JQ`` is then
    None). ``ff``: the feedforward ``(v, r)`` of ``X`` if already computed.
    """
    v_ff, r_ff = feedforward(weights, acts, X) if ff is None else ff
    Qs = layer_Q(weights, Q)
    JQ = None
    if exact:
        blocks = layer_jacobians(weights, acts, v_ff)
        JQ = sum(np.matmul(blocks[i], Qs[i]) for i in range(len(Qs)))
    elif _identity_output_route(weights, activations(acts), Qs):
        u = ssa_control_low_rank(weights, acts, v_ff, Qs, delta, alpha)
    else:
        JQ = jq(weights, acts, v_ff, Qs)
    if JQ is not None:
        n_L = JQ.shape[-1]
        u = np.linalg.solve(JQ + alpha * np.eye(n_L), np.asarray(delta, dtype=np.float64)[:, :, None])[
            :, :, 0
        ]
    dv = [u @ q.T for q in Qs]
    v, r, upd = nonlinear_difference(weights, acts, X, dv, None if exact else (v_ff[0], r_ff[0]))
    return SteadyState(u=u, JQ=JQ, dv=dv, v=v, r=r, update=upd)


def ssa_update(
    weights: Weights, acts: Acts, X: np.ndarray, delta: np.ndarray, alpha: float, Q: Feedback | None = None
) -> Update:
    """The DFC-SSA update of :func:`ssa` alone."""
    return ssa(weights, acts, X, delta, alpha, Q).update


# ----------------------------------------------------------------------------------------
# 7. Ideal updates: Gauss-Newton and minimum norm
# ----------------------------------------------------------------------------------------


def _damped_solve(G: np.ndarray, rhs: np.ndarray, gamma: float) -> np.ndarray:
    """Per-sample :math:`(G + \\gamma I)^{-1} rhs`; pseudo-inverse when ``gamma == 0``."""
    if gamma > 0:
        n = G.shape[-1]
        return np.linalg.solve(G + gamma * np.eye(n), rhs[..., None])[..., 0]
    return np.einsum("bij,bj->bi", np.linalg.pinv(G), rhs)


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

    with :math:`J_W` the Jacobian of :math:`r_L` w.r.t. all weights (and biases), computed
    without forming :math:`J_W`: :math:`J_W J_W^T = \\sum_i (\\lVert r_{i-1}\\rVert^2 + 1) J_i J_i^T`
    (the 1 from the bias; dropped if ``bias`` is False), and with
    :math:`c = (J_W J_W^T+\\gamma I)^{-1}\\delta_L`, :math:`\\Delta W_i = (J_i^T c) r_{i-1}^T`,
    :math:`\\Delta b_i = J_i^T c`. With ``gamma = 0`` the Moore-Penrose pseudo-inverse is used
    (:math:`J_W^+ \\delta_L`).

    Parameters
    ----------
    delta : ndarray (B, n_L)
        Output error :math:`\\delta_L = r_L^* - r_L^-` (:func:`output_delta`).
    gamma : float
        Damping γ >= 0.
    bias : bool
        Include the biases in θ (else ``db`` is zero).
    """
    X = _input(weights, X)
    v, r = feedforward(weights, acts, X)
    Ji = layer_jacobians(weights, acts, v)
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


def minimum_norm_update(
    weights: Weights, acts: Acts, X: np.ndarray, delta: np.ndarray, gamma: float = 0.0
) -> Update:
    """Minimum-norm voltage update, turned into weights by the nonlinear-difference rule.

    Per sample

    .. math::
        \\Delta v^{MN} = J^T (J J^T + \\gamma I)^{-1} \\delta_L

    (:math:`J^+ \\delta_L` if γ = 0), split into layers :math:`\\Delta v_i^{MN}` and fed to
    :func:`nonlinear_difference`. This is exactly what DFC-SSA computes when :math:`Q = J^T`
    and :math:`\\alpha = \\gamma`.
    """
    J = jacobian(weights, acts, X)
    c = _damped_solve(J @ np.swapaxes(J, 1, 2), np.asarray(delta, dtype=np.float64), gamma)
    dv = np.einsum("bjn,bj->bn", J, c)
    return nonlinear_difference_update(weights, acts, X, split_layers(dv, [W.shape[0] for W in weights.W]))
