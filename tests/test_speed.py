"""Fast engine paths (issue 9) against the exact ones they replace.

Each fast path is checked against its ``exact`` counterpart, which the other test files check
against ``tests/reference.py`` and the analytic results.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.model.params import ModelParams
from dfc_brian.model.weights import init_weights

SIZES = [7, 9, 8, 6, 4]
ACTS = ["tanh", "relu", "tanh", "linear"]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _setup(B: int = 5, seed: int = 2, sleep: dict | None = None, acts: list[str] = ACTS):
    cfg = {
        "model": {"sizes": SIZES, "activations": acts, "loss": "ce"},
        "controller": {"k_p": 1.5, "alpha": 0.01, "dt": 0.05, "tmax": 60, "tcr": 0.2, "target_stepsize": 0.5},
    }
    if sleep is not None:
        cfg["sleep"] = sleep
    p = ModelParams.from_dict(cfg)
    w = init_weights(p.network, seed=seed, q_init="random")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, SIZES[0]))
    y = rng.integers(0, SIZES[-1], B)
    return p, w, X, y


# ------------------------------------------------------------------ DFC-SSA
def test_jq_forward_push_equals_jacobian_times_q():
    p, w, X, _ = _setup()
    eng = BatchedDFC(p, w)
    v, _ = eng.feedforward(X)
    J = eng.jacobian(v=v, stacked=False)
    expect = sum(np.matmul(J[i], w.Q[i]) for i in range(len(J)))
    got = eng.jq(v)
    assert got.shape == (len(X), SIZES[-1], SIZES[-1])
    assert _rel(got, expect) < 1e-13


@pytest.mark.parametrize("acts", [ACTS, ["tanh", "tanh", "tanh", "tanh"]])
def test_ssa_fast_equals_exact(acts):
    p, w, X, y = _setup(acts=acts)
    eng = BatchedDFC(p, w)
    ff = eng.feedforward(X)
    r_star = eng.output_target(ff[1][-1], y)
    a = eng.ssa(X, r_star, exact=True)
    b = eng.ssa(X, r_star)
    c = eng.ssa(X, r_star, ff=ff)
    assert _rel(b.u, a.u) < 1e-10 and np.abs(a.u).max() > 1e-3
    for i in range(len(acts)):
        assert _rel(b.dW_ssa[i], a.dW_ssa[i]) < 1e-10
        assert _rel(b.db_ssa[i], a.db_ssa[i]) < 1e-10
        assert _rel(b.r_last[i], a.r_last[i]) < 1e-12
        np.testing.assert_array_equal(c.dW_ssa[i], b.dW_ssa[i])
