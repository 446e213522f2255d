"""Online Brian2 training (experiments/online.py): exact resume and the results of the engine's loop."""

from __future__ import annotations

import numpy as np
import pytest

from dfc_brian.engines.brian2_engine import BrianDFC
from dfc_brian.experiments.online import OnlineDFC, train_online
from dfc_brian.model.params import ConfigError
from dfc_brian.model.weights import weight_product_Q
from tests.test_brian2_model import _net


def _setup():
    p, w = _net(tmax=10)
    w.Q = weight_product_Q(w.W)
    rng = np.random.default_rng(12)
    X, Y = rng.uniform(-1, 1, (12, 4)), rng.normal(size=(12, 2))
    return p, w, X, Y


def _ev(net):
    w = net.get_weights()
    return {"W0_norm": float(np.linalg.norm(w.W[0])), "Q0_norm": float(np.linalg.norm(w.Q[0]))}


def test_train_online_checkpoint_resume_is_identical(tmp_path):
    p, w, X, Y = _setup()
    kw = {"chunk_size": 5, "sleep_samples": 3, "evaluate": _ev, "progress": False}
    straight = BrianDFC(p, w, tau_W=0.5, seed=1)
    h1 = train_online(straight, X, Y, epochs=2, **kw)
    ck = tmp_path / "ck.npz"
    first = BrianDFC(p, w, tau_W=0.5, seed=1)
    train_online(first, X, Y, epochs=1, checkpoint=ck, **kw)
    resumed = BrianDFC(p, w, tau_W=0.5, seed=1)
    h2 = train_online(resumed, X, Y, epochs=2, checkpoint=ck, resume=True, **kw)
    assert h1 == h2 and len(h1) == 2
    for a, b in zip(
        straight.get_weights().W + straight.get_weights().Q, resumed.get_weights().W + resumed.get_weights().Q
    ):
        np.testing.assert_array_equal(a, b)
    assert np.abs(straight.get_weights().W[0] - w.W[0]).max() > 1e-4  # it did learn
    # the history of BrianDFC.train_online (the engine's own loop) at 4f868ea, same settings
    np.testing.assert_allclose([h["W0_norm"] for h in h1], [1.0912888251951207, 1.13626501254738], rtol=1e-12)
    np.testing.assert_allclose([h["Q0_norm"] for h in h1], [2.141848442688584, 2.139707434482298], rtol=1e-12)
    with pytest.raises(ConfigError, match="chunk_size"):
        train_online(straight, X, Y, chunk_size=13)
    with pytest.raises(ConfigError, match="cannot resume"):  # another sample order
        train_online(
            BrianDFC(p, w, seed=1), X, Y, epochs=2, checkpoint=ck, resume=True, **{**kw, "chunk_size": 4}
        )
    with pytest.raises(ConfigError, match="does not exist"):
        train_online(straight, X, Y, chunk_size=5, checkpoint=tmp_path / "none.npz", resume=True)


def test_online_method_state_round_trip_and_run_hook():
    p, w, X, Y = _setup()
    net = BrianDFC(p, w, tau_W=0.5, seed=1)
    m = OnlineDFC(net)
    np.testing.assert_allclose(m.predict(X[:2]), OnlineDFC(BrianDFC(p, w)).predict(X[:2]), rtol=0)
    calls = []

    def run(epoch, kind, n, fn):
        calls.append((epoch, kind, n))
        return fn()

    train_online(net, X, Y, epochs=1, chunk_size=5, sleep_samples=3, progress=False, run=run)
    assert calls == [(1, "sleep", 3), (1, "controlled", 5), (1, "controlled", 5)]  # 2 left over
    other = OnlineDFC(BrianDFC(p, w))
    other.load_state_dict(m.state_dict())
    assert other.net.n_builds == net.n_builds == 3
    for a, b in zip(other.weights.W + other.weights.Q, net.get_weights().W + net.get_weights().Q):
        np.testing.assert_array_equal(a, b)
