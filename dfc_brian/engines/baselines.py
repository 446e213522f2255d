"""Baselines on the same MLP: backpropagation (BP) and direct feedback alignment (DFA).

Both return the *gradient* of the batch-mean loss (BP exactly; DFA its feedback-alignment
surrogate), i.e. the quantity an optimiser subtracts. Layer index 0..L-1 = paper layer 1..L.

BP:

.. math::
    \\delta_L = \\phi_L'(v_L) \\odot \\frac{\\partial\\mathcal{L}}{\\partial r_L}, \\quad
    \\delta_i = \\phi_i'(v_i) \\odot W_{i+1}^T \\delta_{i+1}, \\quad
    \\frac{\\partial\\mathcal{L}}{\\partial W_i} = \\sum_b \\delta_i r_{i-1}^T

DFA, textbook form (:func:`dfa_gradient`): the output error reaches layer i through a fixed
random matrix :math:`B_i` (n_i x n_L), :math:`\\delta_i = \\phi_i'(v_i) \\odot B_i \\delta_L`
for i < L, the output layer using its own error (:math:`B_L = I`).

DFA, the authors' target-based form (:func:`dfa_target_gradient`, spec section 2): output
target :math:`r_L^* = r_L - \\lambda\\,\\partial\\mathcal{L}/\\partial r_L` (batch-mean loss, as
DFC), hidden targets :math:`h_i^* = h_i + B_i (r_L^* - r_L)`, and each layer descends its local
squared error,

.. math::
    g_{W_i} = \\frac{1}{B}\\sum_b 2\\,\\phi_i'(v_i) \\odot (h_i - h_i^*)\\, r_{i-1}^T, \\qquad
    g_{b_i} = \\frac{1}{B}\\sum_b 2\\,\\phi_i'(v_i) \\odot (h_i - h_i^*)

With a linear output layer this is exactly :math:`2\\lambda/B` times the textbook gradient
(with a nonlinear one the hidden layers miss the factor :math:`\\phi_L'`, as in the code).
"""

from __future__ import annotations

import numpy as np

from dfc_brian.engines.batched import loss_and_grad, phi, phi_prime
from dfc_brian.model.params import ConfigError, NetworkSpec
from dfc_brian.model.weights import Weights, xavier_normal


def forward(spec: NetworkSpec, weights: Weights, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Feedforward pass in float64: lists of v_i and r_i (B, n_i)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != spec.sizes[0]:
        raise ConfigError(f"X has shape {X.shape}, expected (B, {spec.sizes[0]})")
    if not np.all(np.isfinite(X)):
        raise ConfigError("X contains non-finite values (NaN or inf)")
    v, r = [], []
    prev = X
    for i in range(spec.n_layers):
        v.append(prev @ weights.W[i].T + weights.b[i])
        r.append(phi(spec.activations[i], v[-1]))
        prev = r[-1]
    return v, r


def _grads_from_deltas(
    deltas: list[np.ndarray], X: np.ndarray, r: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    gW, gb = [], []
    for i, d in enumerate(deltas):
        pre = X if i == 0 else r[i - 1]
        gW.append(d.T @ pre)
        gb.append(d.sum(axis=0))
    return gW, gb


def bp_gradient(
    spec: NetworkSpec, weights: Weights, X: np.ndarray, y: np.ndarray
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Exact gradient of the batch-mean loss w.r.t. W_i and b_i.

    Returns
    -------
    loss, gW (list of (n_i, n_{i-1})), gb (list of (n_i,))
    """
    X = np.asarray(X, dtype=np.float64)
    v, r = forward(spec, weights, X)
    loss, dL = loss_and_grad(r[-1], y, spec.loss)
    L = spec.n_layers
    deltas: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    deltas[-1] = dL * phi_prime(spec.activations[-1], v[-1])
    for i in range(L - 2, -1, -1):
        deltas[i] = (deltas[i + 1] @ weights.W[i + 1]) * phi_prime(spec.activations[i], v[i])
    gW, gb = _grads_from_deltas(deltas, X, r)
    return loss, gW, gb


def dfa_feedback(spec: NetworkSpec, seed: int) -> list[np.ndarray]:
    """Fixed random DFA feedback B_i (n_i x n_L), xavier-normal, seeded; B_L = I."""
    rng = np.random.default_rng(seed)
    n_L = spec.n_out
    Bs = [xavier_normal(rng, spec.sizes[i + 1], n_L) for i in range(spec.n_layers - 1)]
    return Bs + [np.eye(n_L)]


def dfa_gradient(
    spec: NetworkSpec, weights: Weights, B_fb: list[np.ndarray], X: np.ndarray, y: np.ndarray
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """DFA surrogate gradient: :math:`\\delta_i = \\phi'_i(v_i) \\odot B_i \\delta_L`."""
    X = np.asarray(X, dtype=np.float64)
    v, r = forward(spec, weights, X)
    loss, dL = loss_and_grad(r[-1], y, spec.loss)
    e = dL * phi_prime(spec.activations[-1], v[-1])
    deltas = [(e @ B_fb[i].T) * phi_prime(spec.activations[i], v[i]) for i in range(spec.n_layers - 1)]
    deltas.append(e)
    gW, gb = _grads_from_deltas(deltas, X, r)
    return loss, gW, gb


def dfa_target_gradient(
    spec: NetworkSpec,
    weights: Weights,
    B_fb: list[np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    target_stepsize: float,
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """The authors' target-based DFA gradient (module docstring), B_L = I.

    Returns
    -------
    loss, gW (list of (n_i, n_{i-1})), gb (list of (n_i,))
    """
    X = np.asarray(X, dtype=np.float64)
    v, r = forward(spec, weights, X)
    loss, dL = loss_and_grad(r[-1], y, spec.loss)
    B = X.shape[0]
    err = -target_stepsize * dL  # r_L* - r_L, formed without cancellation
    deltas = []
    for i in range(spec.n_layers):
        h_minus_target = -(err @ B_fb[i].T)  # h_i - h_i* with h_i* = h_i + B_i (r_L* - r_L)
        deltas.append(2.0 * phi_prime(spec.activations[i], v[i]) * h_minus_target / B)
    gW, gb = _grads_from_deltas(deltas, X, r)
    return loss, gW, gb
