"""Forward weights W_i, biases b_i and feedback weights Q_i as validated NumPy arrays.

Conventions (used by every engine):
- ``W[i]`` has shape (n_{i+1}, n_i) = (n_post, n_pre), ``b[i]`` shape (n_{i+1},);
- ``Q[i]`` has shape (n_{i+1}, n_L): it maps the controller output u to layer i+1's apical
  compartment; the last one, Q_L, is the identity at initialisation (authors' code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfc_brian.model.params import ConfigError, NetworkSpec


@dataclass
class Weights:
    """Parameters of a DFC network (lists indexed by layer 1..L as 0..L-1)."""

    W: list[np.ndarray]
    b: list[np.ndarray]
    Q: list[np.ndarray]

    def copy(self) -> Weights:
        return Weights([w.copy() for w in self.W], [x.copy() for x in self.b], [q.copy() for q in self.Q])

    def validate(self, spec: NetworkSpec) -> Weights:
        """Check shapes and finiteness against ``spec``; raise ConfigError naming the array."""
        L = spec.n_layers
        for name, arrs in (("W", self.W), ("b", self.b), ("Q", self.Q)):
            if len(arrs) != L:
                raise ConfigError(f"{name} must hold {L} arrays (one per layer), got {len(arrs)}")
        for i in range(L):
            n_post, n_pre = spec.sizes[i + 1], spec.sizes[i]
            self.W[i] = _check(f"W[{i}]", self.W[i], (n_post, n_pre))
            self.b[i] = _check(f"b[{i}]", self.b[i], (n_post,))
            self.Q[i] = _check(f"Q[{i}]", self.Q[i], (n_post, spec.n_out))
        return self

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        out = {}
        for i in range(len(self.W)):
            out[f"W{i}"], out[f"b{i}"], out[f"Q{i}"] = self.W[i], self.b[i], self.Q[i]
        return out

    @classmethod
    def from_npz_dict(cls, d, n_layers: int) -> Weights:
        try:
            return cls(
                [np.asarray(d[f"W{i}"], float) for i in range(n_layers)],
                [np.asarray(d[f"b{i}"], float) for i in range(n_layers)],
                [np.asarray(d[f"Q{i}"], float) for i in range(n_layers)],
            )
        except KeyError as err:
            raise ConfigError(f"weights file lacks array {err.args[0]!r}") from None


def _check(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} is not a numeric array") from None
    if arr.shape != shape:
        raise ConfigError(f"{name} has shape {arr.shape}, expected {shape} (n_post, n_pre)")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def xavier_normal(rng: np.random.Generator, n_out: int, n_in: int, gain: float = 1.0) -> np.ndarray:
    """Glorot/Xavier normal initialisation, std = gain * sqrt(2 / (n_in + n_out))."""
    return rng.normal(0.0, gain * np.sqrt(2.0 / (n_in + n_out)), size=(n_out, n_in))


def weight_product_Q(W: list[np.ndarray]) -> list[np.ndarray]:
    """Fixed feedback Q_i = W_{i+1}^T ... W_L^T (Q_L = I), the paper's "DFC (fixed)"."""
    L = len(W)
    n_out = W[-1].shape[0]
    Q = [np.eye(n_out)]
    for i in range(L - 2, -1, -1):
        Q.insert(0, W[i + 1].T @ Q[0])
    return Q


def init_weights(spec: NetworkSpec, seed: int = 0, q_init: str = "random", bias: bool = True) -> Weights:
    """Initialise a network: xavier-normal W, zero b, Q random (xavier-normal) or weight product.

    ``q_init``: ``random`` (xavier normal, Q_L = I) or ``weight_product`` (Q_i = W_{i+1}^T..W_L^T).
    """
    rng = np.random.default_rng(seed)
    L = spec.n_layers
    W = [xavier_normal(rng, spec.sizes[i + 1], spec.sizes[i]) for i in range(L)]
    b = [np.zeros(spec.sizes[i + 1]) for i in range(L)]
    if q_init == "random":
        Q = [xavier_normal(rng, spec.sizes[i + 1], spec.n_out) for i in range(L - 1)] + [np.eye(spec.n_out)]
    elif q_init == "weight_product":
        Q = weight_product_Q(W)
    else:
        raise ConfigError(f"q_init = {q_init!r} is unknown; choose 'random' or 'weight_product'")
    return Weights(W, b, Q).validate(spec)
