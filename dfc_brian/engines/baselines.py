"""Baselines on the same MLP: backpropagation (BP) and direct feedback alignment (DFA).

The training methods' view of the baselines: each function takes the
:class:`~dfc_brian.model.params.NetworkSpec` (its ``loss`` included) and returns the batch-mean
loss with the *gradient* that an optimiser subtracts, as ``(loss, gW, gb)``. The mathematics
(BP, the textbook DFA gradient and the authors' target-based DFA gradient, exactly
:math:`2\\lambda/B` times the textbook one with a linear output layer) is in
:mod:`dfc_brian.model.mlp`; this module adds the fixed random feedback :math:`B_i` of DFA.
Layer index 0..L-1 = paper layer 1..L.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dfc_brian.model import mlp
from dfc_brian.model.params import NetworkSpec
from dfc_brian.model.weights import Weights, xavier_normal


def forward(spec: NetworkSpec, weights: Weights, X: np.ndarray) -> mlp.Feedforward:
    """Feedforward pass, float64: lists of v_i and r_i (B, n_i) (:func:`~dfc_brian.model.mlp.feedforward`)."""
    return mlp.feedforward(weights, spec, X)


def _with_loss(
    spec: NetworkSpec,
    weights: Weights,
    X: np.ndarray,
    y: np.ndarray,
    gradient: Callable[[mlp.Feedforward], mlp.Update],
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """One feedforward pass, the batch-mean loss and ``gradient(ff)`` as ``(loss, gW, gb)``."""
    ff = mlp.feedforward(weights, spec, X)
    loss = mlp.loss_value(ff[1][-1], y, spec.loss)
    grad = gradient(ff)
    return loss, [gW for gW, _ in grad], [gb for _, gb in grad]


def bp_gradient(
    spec: NetworkSpec, weights: Weights, X: np.ndarray, y: np.ndarray
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Exact gradient of the batch-mean loss w.r.t. W_i and b_i (:func:`~dfc_brian.model.mlp.bp_gradient`).

    Returns
    -------
    loss, gW (list of (n_i, n_{i-1})), gb (list of (n_i,))
    """
    return _with_loss(spec, weights, X, y, lambda ff: mlp.bp_gradient(weights, spec, X, y, spec.loss, ff))


def dfa_feedback(spec: NetworkSpec, seed: int | np.random.SeedSequence) -> list[np.ndarray]:
    """Fixed random DFA feedback B_i (n_i x n_L), xavier-normal, seeded; B_L = I."""
    rng = np.random.default_rng(seed)
    n_L = spec.n_out
    Bs = [xavier_normal(rng, spec.sizes[i + 1], n_L) for i in range(spec.n_layers - 1)]
    return Bs + [np.eye(n_L)]


def dfa_gradient(
    spec: NetworkSpec,
    weights: Weights,
    B_fb: list[np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    convention: str = "textbook",
    target_stepsize: float | None = None,
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """DFA surrogate gradient, textbook or the authors' target-based form with B_L = I and
    lambda = ``target_stepsize`` (:func:`~dfc_brian.model.mlp.dfa_gradient`).

    Returns
    -------
    loss, gW (list of (n_i, n_{i-1})), gb (list of (n_i,))
    """
    return _with_loss(
        spec,
        weights,
        X,
        y,
        lambda ff: mlp.dfa_gradient(weights, spec, B_fb, X, y, spec.loss, convention, target_stepsize, ff),
    )
