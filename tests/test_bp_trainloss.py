"""The "MNIST train loss" column: the number reported is the authors' running training loss.

The authors' code (``utils/train.py``, ``train`` and ``train_bp``) never evaluates the trained
network on the training set: its training loss of an epoch is the mean, over the epoch's
minibatches, of each minibatch's mean loss computed on the forward pass *before* that minibatch's
update (``loss_train_last`` for the last epoch). These tests pin that convention down in
``summarize``, in the training loop (against losses recomputed here from the model's own outputs
before each step) and in the Table-1 tabulation of stored runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfc_brian.engines.methods import make_method
from dfc_brian.experiments import train as T
from dfc_brian.experiments.data import Dataset, Split
from dfc_brian.experiments.table1 import collect_runs


def _ce(out: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy, written out independently of the package."""
    z = out - out.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def _history(step_loss: list[float] | None) -> dict[str, list[float]]:
    h = {
        "epoch": [0, 1, 2],
        "train_loss": [2.3, 0.5, 0.25],
        "val_error": [90.0, 10.0, 8.0],
        "test_error": [90.0, 11.0, 9.0],
    }
    if step_loss is not None:
        h["step/loss"] = step_loss
    return h


def test_final_train_loss_is_the_running_loss_of_the_last_epoch():
    s = T.summarize(_history([np.nan, 0.7, 0.4]), "classification", "final_train_loss")
    assert s["reported"] == 0.4 and s["final_train_loss"] == 0.4
    assert s["train_loss_kind"] == "running" and s["final_train_loss_evaluated"] == 0.25
    # the test-error report is untouched by the convention
    assert T.summarize(_history([np.nan, 0.7, 0.4]), "classification")["reported"] == 9.0


@pytest.mark.parametrize("step_loss", [None, [np.nan, np.nan, np.nan]])
def test_without_step_losses_the_evaluated_loss_is_reported_and_said_so(step_loss):
    s = T.summarize(_history(step_loss), "classification", "final_train_loss")
    assert s["reported"] == 0.25 and s["train_loss_kind"] == "evaluated"


class _Recorder:
    """Wraps a real method; records the loss of its own outputs just before each train step."""

    def __init__(self, method) -> None:
        self.m = method
        self.before: list[float] = []
        self.returned: list[float] = []

    def train_step(self, X, y):
        self.before.append(_ce(self.m.predict(X), y))
        stats = self.m.train_step(X, y)
        self.returned.append(stats["loss"])
        return stats

    def __getattr__(self, name):
        return getattr(self.m, name)


def _tiny_mnist_like() -> Dataset:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 8))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.3)
    return Dataset("mnist", "classification", Split(X[:100], y[:100]), Split(X[100:125], y[100:125]),
                   Split(X[125:], y[125:]), 8, 3)  # fmt: skip


@pytest.mark.parametrize("method", ["BP", "DFA"])
def test_training_loop_reports_the_mean_minibatch_loss_before_each_update(tmp_path, method):
    cfg = {
        "name": "tiny_trainloss",
        "model": {"sizes": [8, 7, 3], "activations": ["tanh", "linear"], "loss": "ce"},
        "controller": {"target_stepsize": 1e-3},
        "training": {"method": method, "lr": 3e-2, "clip": None, "epochs": 2, "batch_size": 32},
        "data": {"dataset": "mnist", "report": "final_train_loss"},
    }
    rec: list[_Recorder] = []

    def factory(c, seed):
        rec.append(_Recorder(make_method(c, seed)))
        return rec[-1]

    s = T.train(cfg, 0, tmp_path / "run", progress=False, method_factory=factory, dataset=_tiny_mnist_like())
    r = rec[0]
    np.testing.assert_allclose(r.returned, r.before, rtol=1e-12)  # the step's loss is pre-update
    last_epoch = r.before[-4:]  # 100 samples / 32 = 4 minibatches, the last one of 4 samples
    assert len(r.before) == 8
    np.testing.assert_allclose(s["reported"], np.mean(last_epoch), rtol=1e-12)
    assert s["train_loss_kind"] == "running"
    # and it is not the loss of the trained model over the training set (the old convention)
    assert abs(s["reported"] - s["final_train_loss_evaluated"]) > 1e-6


def test_table1_reads_stored_runs_with_the_current_convention(tmp_path):
    """A results.json written under the old convention (evaluated loss) is re-read from its history."""
    hist = _history([None, 0.7, 0.4])  # JSON null for the epoch-0 row
    res = {
        "seed": 0,
        "config": {"table1": {"row": "BP", "column": "mnist_trainloss"}, "training": {"epochs": 100}},
        "summary": {"metric": "error", "report": "final_train_loss", "reported": 0.25, "epochs_done": 100},
        "history": hist,
    }
    d = tmp_path / "mnist_trainloss_bp" / "0"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))
    assert collect_runs(tmp_path, verbose=False) == {"BP": {"mnist_trainloss": {0: 0.4}}}
    # a summary without a history keeps its stored number
    del res["history"]
    (d / "results.json").write_text(json.dumps(res))
    assert collect_runs(tmp_path, verbose=False) == {"BP": {"mnist_trainloss": {0: 0.25}}}
