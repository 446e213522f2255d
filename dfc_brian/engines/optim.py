"""Optimisers for lists of NumPy parameter tensors: Adam, SGD and per-tensor clipping.

Conventions (the authors' code, ``shared/spec/DFC_SPEC.md``):

- an optimiser *subtracts* a gradient: :math:`p \\leftarrow p - \\eta\\, \\mathrm{step}(g)`;
  for DFC the gradient is :math:`g_W = -2\\,\\Delta W^{DFC}` (the plasticity direction with
  the code's extra factor 2);
- weight decay is an L2 term added to the gradient, :math:`g \\leftarrow g + wd\\, p` (as
  ``torch.optim.Adam(weight_decay=...)``), used for the feedback weights Q;
- clipping acts per tensor on the forward weights,
  :math:`g \\leftarrow g \\min(1, c/(\\lVert g\\rVert + 10^{-6}))`, and jointly on the
  feedback weights (:func:`clip_joint`, one norm over every Q_i, as
  ``torch.nn.utils.clip_grad_norm_`` on a list). Clipping acts on the raw gradient; the
  optimiser adds the weight decay afterwards, inside its step (as torch: ``clip_grad_norm_``
  scales ``.grad``, ``Adam``/``SGD`` add ``weight_decay * p`` in ``step``).

Learning rate: the ``lr`` given here is the rate the optimiser applies. The spec's tables list
"effective" rates lr_eff = lr_code/λ: the authors' configs store lr_code and their
``normalize_lr`` flag divides it by the target step λ before building the optimiser, so the
optimiser runs with lr_eff. Pass lr_eff (the number in the spec) here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dfc_brian.model.params import ConfigError


def clip_per_tensor(g: np.ndarray, max_norm: float = 1.0) -> np.ndarray:
    """Scale ``g`` by :math:`\\min(1, c / (\\lVert g\\rVert_F + 10^{-6}))` (new array)."""
    norm = float(np.linalg.norm(g))
    return g * min(1.0, max_norm / (norm + 1e-6))


def clip_joint(grads: Sequence[np.ndarray], max_norm: float = 1.0) -> tuple[list[np.ndarray], float]:
    """Scale all ``grads`` by one factor :math:`\\min(1, c/(\\lVert g\\rVert + 10^{-6}))`.

    :math:`\\lVert g\\rVert` is the L2 norm of all tensors together (``clip_grad_norm_`` of a
    parameter list). Returns the new arrays and the norm before clipping.
    """
    norm = math.sqrt(sum(float(np.sum(np.square(g))) for g in grads))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


class SGD:
    """Plain gradient descent, :math:`p \\leftarrow p - \\eta (g + wd\\, p)`."""

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"SGD lr must be positive, got {lr!r}")
        if not (weight_decay >= 0):
            raise ConfigError(f"SGD weight_decay must be non-negative, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.t = 0

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update ``params`` in place."""
        _check_pairs(params, grads)
        self.t += 1
        for p, g in zip(params, grads, strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            p -= self.lr * g

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}t": np.array(self.t)}

    def load_state_dict(self, d: dict, prefix: str = "") -> None:
        self.t = int(d[f"{prefix}t"])


class Adam:
    """Adam (Kingma & Ba) as ``torch.optim.Adam``, with L2 weight decay added to the gradient.

    .. math::
        g &\\leftarrow g + wd\\, p, \\quad m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad
        s \\leftarrow \\beta_2 s + (1-\\beta_2) g^2 \\\\
        p &\\leftarrow p - \\frac{\\eta}{1-\\beta_1^t}\\,
            \\frac{m}{\\sqrt{s}/\\sqrt{1-\\beta_2^t} + \\epsilon}

    Defaults β = (0.99, 0.99) as in the authors' DFC configs.
    """

    def __init__(
        self,
        lr: float,
        betas: tuple[float, float] = (0.99, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"Adam lr must be positive, got {lr!r}")
        b1, b2 = (float(x) for x in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"Adam betas must lie in [0, 1), got {tuple(betas)!r}")
        if not (eps > 0):
            raise ConfigError(f"Adam eps must be positive, got {eps!r}")
        if not (weight_decay >= 0):
            raise ConfigError(f"Adam weight_decay must be non-negative, got {weight_decay!r}")
        self.lr, self.betas = float(lr), (b1, b2)
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.t = 0
        self.m: list[np.ndarray] | None = None
        self.s: list[np.ndarray] | None = None

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update ``params`` in place."""
        _check_pairs(params, grads)
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.s = [np.zeros_like(p) for p in params]
        self.t += 1
        b1, b2 = self.betas
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        for p, g, m, s in zip(params, grads, self.m, self.s, strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            # in place, in the order of the textbook expressions (the same numbers, two buffers)
            buf = np.multiply(g, 1.0 - b1)
            m *= b1
            m += buf
            np.multiply(g, 1.0 - b2, out=buf)
            buf *= g
            s *= b2
            s += buf
            denom = np.sqrt(s, out=buf)
            denom /= math.sqrt(bc2)
            denom += self.eps
            step = np.multiply(m, self.lr / bc1)
            step /= denom
            p -= step

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        d = {f"{prefix}t": np.array(self.t)}
        if self.m is not None:
            for k, (m, s) in enumerate(zip(self.m, self.s, strict=True)):
                d[f"{prefix}m{k}"] = m.copy()
                d[f"{prefix}s{k}"] = s.copy()
        return d

    def load_state_dict(self, d: dict, prefix: str = "") -> None:
        self.t = int(d[f"{prefix}t"])
        if f"{prefix}m0" in d:
            n = sum(1 for k in d if k.startswith(f"{prefix}m") and k[len(prefix) + 1 :].isdigit())
            self.m = [np.array(d[f"{prefix}m{k}"], dtype=np.float64) for k in range(n)]
            self.s = [np.array(d[f"{prefix}s{k}"], dtype=np.float64) for k in range(n)]
        else:
            self.m = self.s = None


def make_optimizer(
    kind: str,
    lr: float,
    betas: tuple[float, float] = (0.99, 0.99),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> Adam | SGD:
    """Build ``'adam'`` or ``'sgd'``."""
    if kind == "adam":
        return Adam(lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if kind == "sgd":
        return SGD(lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer {kind!r} is unknown; choose 'adam' or 'sgd'")


def _check_pairs(params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
    if len(params) != len(grads):
        raise ConfigError(f"got {len(params)} parameter tensors but {len(grads)} gradients")
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        if np.shape(p) != np.shape(g):
            raise ConfigError(f"gradient {k} has shape {np.shape(g)}, parameter has {np.shape(p)}")
