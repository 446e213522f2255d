"""Tests of the training loop (exact resume), results files and the CLI, with a fake method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dfc_brian import cli
from dfc_brian.experiments import train as T
from dfc_brian.experiments.data import Dataset, Split, student_teacher
from dfc_brian.experiments.results import RESULTS_JSON, RESULTS_NPZ, load_checkpoint, load_npz
from dfc_brian.model.params import ConfigError
from dfc_brian.model.weights import Weights


class FakeMethod:
    """A one-layer softmax/linear model trained by noisy SGD: tests the loop, not the learning rule.

    Its own RNG (for the noise) is part of its state, as the real methods' is.
    """

    crash_after: int | None = None  # raise KeyboardInterrupt after this many train steps

    def __init__(self, cfg: dict, seed: int) -> None:
        n_in, n_out = cfg["model"]["sizes"]
        self.rng = np.random.default_rng(seed)
        self.W = self.rng.normal(0, 0.1, (n_out, n_in))
        self.Q = self.rng.normal(0, 0.1, (n_out, n_out))
        self.step = 0
        self.ce = cfg["model"]["loss"] == "ce"

    def pretrain_feedback_step(self, X: np.ndarray) -> dict:
        self.Q += 0.01 * self.rng.normal(size=self.Q.shape) - 0.01 * self.Q
        return {"q_norm": float(np.linalg.norm(self.Q))}

    def feedback_step(self, X: np.ndarray) -> dict:
        self.n_fb = getattr(self, "n_fb", 0) + 1
        return self.pretrain_feedback_step(X)

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        if FakeMethod.crash_after is not None and self.step >= FakeMethod.crash_after:
            raise KeyboardInterrupt("simulated kill")
        out = self.predict(X)
        if self.ce:
            p = np.exp(out - out.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(y)), y] -= 1.0
            g = p
        else:
            g = 2 * (out - y) / y.shape[1]
        self.W -= 0.1 * (g.T @ X) / len(X) + 1e-3 * self.rng.normal(size=self.W.shape)
        self.step += 1
        return {"loss": float(np.mean(g**2)), "n_nonconverged": 0, "label": "ignored"}

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.W.T

    @property
    def weights(self) -> Weights:
        return Weights([self.W.copy()], [np.zeros(self.W.shape[0])], [self.Q.copy()])

    def state_dict(self) -> dict:
        return {
            "W": self.W.copy(),
            "Q": self.Q.copy(),
            "step": np.array(self.step),
            "rng": json.dumps(self.rng.bit_generator.state),
        }

    def load_state_dict(self, d: dict) -> None:
        assert isinstance(d["rng"], str)
        self.W, self.Q, self.step = np.array(d["W"]), np.array(d["Q"]), int(d["step"])
        self.rng.bit_generator.state = json.loads(d["rng"])


def fake_factory(cfg: dict, seed: int) -> FakeMethod:
    return FakeMethod(cfg, seed)


def cls_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(130, 6))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return Dataset(
        "mnist",
        "classification",
        Split(X[:90], y[:90]),
        Split(X[90:110], y[90:110]),
        Split(X[110:], y[110:]),
        6,
        3,
    )


def cls_cfg(epochs: int = 3) -> dict:
    return {
        "name": "fake_cls",
        "model": {"sizes": [6, 3], "activations": ["linear"], "loss": "ce"},
        "training": {
            "method": "DFC",
            "q": "trained",
            "lr": 0.1,
            "epochs": epochs,
            "epochs_fb": 2,
            "batch_size": 16,
        },
        "data": {"dataset": "mnist"},
    }


def st_cfg(epochs: int = 3) -> dict:
    return {
        "name": "fake_st",
        "model": {"sizes": [4, 2], "activations": ["linear"], "loss": "mse"},
        "training": {
            "method": "DFC-SS",
            "lr": 0.1,
            "epochs": epochs,
            "epochs_fb": 1,
            "batch_size": 32,
            "extra_sleep": 1,
            "extra_sleep_mode": "epoch",
        },
        "data": {
            "dataset": "student_teacher",
            "n_in": 4,
            "n_out": 2,
            "n_train": 100,
            "n_val": 30,
            "n_test": 30,
        },
    }


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = load_npz(a / RESULTS_NPZ), load_npz(b / RESULTS_NPZ)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k], err_msg=k)
    ja, jb = json.loads((a / RESULTS_JSON).read_text()), json.loads((b / RESULTS_JSON).read_text())
    assert ja["history"] == jb["history"] and ja["summary"] == jb["summary"]


# --- training loop ---------------------------------------------------------------------------


def test_resume_gives_identical_result(tmp_path):
    ds = cls_dataset()
    s_full = T.train(
        cls_cfg(3), 0, tmp_path / "full", progress=False, method_factory=fake_factory, dataset=ds
    )
    T.train(cls_cfg(2), 0, tmp_path / "part", progress=False, method_factory=fake_factory, dataset=ds)
    s_res = T.train(
        cls_cfg(3), 0, tmp_path / "part", resume=True, progress=False, method_factory=fake_factory, dataset=ds
    )
    assert s_full == s_res and s_full["epochs_done"] == 3
    assert_same_run(tmp_path / "full", tmp_path / "part")
    res = load_npz(tmp_path / "full" / RESULTS_NPZ)
    np.testing.assert_array_equal(res["history/epoch"], [0, 1, 2, 3])
    assert res["weights/W0"].shape == (3, 6) and "fb_history/q_norm" in res
    assert np.all(np.isfinite(res["history/step/loss"][1:])) and "history/step/label" not in res


def test_killed_run_resumes_to_identical_result(tmp_path):
    T.train(st_cfg(3), 1, tmp_path / "full", progress=False, method_factory=fake_factory)
    FakeMethod.crash_after = 9  # 4 batches per epoch: dies inside epoch 3, after its sleep epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            T.train(st_cfg(3), 1, tmp_path / "killed", progress=False, method_factory=fake_factory)
    finally:
        FakeMethod.crash_after = None
    ck = load_checkpoint(tmp_path / "killed" / "checkpoint.npz")
    assert "method/W" in ck and ck["method/rng"].dtype.kind == "U"
    assert not (tmp_path / "killed" / RESULTS_JSON).exists()
    T.train(st_cfg(3), 1, tmp_path / "killed", resume=True, progress=False, method_factory=fake_factory)
    assert_same_run(tmp_path / "full", tmp_path / "killed")
    side = json.loads((tmp_path / "full" / RESULTS_JSON).read_text())
    assert side["seed"] == 1 and side["config"]["name"] == "fake_st"
    assert set(side["versions"]) >= {"python", "numpy", "brian2", "dfc_brian"}
    assert side["git_sha"] and side["summary"]["metric"] == "loss"
    assert "val_error" not in side["history"] and len(side["history"]["sleep/q_norm"]) == 4


def test_extra_sleep_epochs(tmp_path):
    made = []

    def factory(cfg, seed):
        made.append(FakeMethod(cfg, seed))
        return made[-1]

    T.train(st_cfg(2), 0, tmp_path / "a", progress=False, method_factory=factory)
    assert made[0].n_fb == 2 * 2 * 4  # per epoch: 1 sleep epoch + 1 extra sleep epoch, 4 batches each
    cfg = st_cfg(2)
    cfg["training"]["extra_sleep_mode"] = "minibatch"
    T.train(cfg, 0, tmp_path / "b", progress=False, method_factory=factory)
    assert not hasattr(made[1], "n_fb")


class LoggingMethod(FakeMethod):
    """FakeMethod that logs the order of its calls and the rows of X each call sees."""

    def __init__(self, cfg: dict, seed: int) -> None:
        super().__init__(cfg, seed)
        self.log: list[tuple[str, np.ndarray]] = []

    def feedback_step(self, X: np.ndarray) -> dict:
        self.log.append(("sleep", X[:, 0].copy()))
        return super().feedback_step(X)

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        self.log.append(("train", X[:, 0].copy()))
        out = super().train_step(X, y)
        out["n_nonconverged"] = 2
        return out


def test_epoch_order_is_the_authors(tmp_path):
    """extra_sleep_mode epoch: per epoch a whole sleep-only epoch, a whole forward epoch, then
    extra_sleep whole sleep-only epochs; each pass in its own shuffled order."""
    made = []

    def factory(cfg, seed):
        made.append(LoggingMethod(cfg, seed))
        return made[-1]

    cfg = st_cfg(2)
    cfg["training"]["extra_sleep"] = 2
    T.train(cfg, 0, tmp_path / "a", progress=False, method_factory=factory)
    log = made[0].log
    kinds = [k for k, _ in log]
    nb = 4  # 100 samples, batch 32
    epoch = ["sleep"] * nb + ["train"] * nb + ["sleep"] * (2 * nb)
    assert kinds == epoch * 2
    passes = [np.concatenate([x for _, x in log[j * nb : (j + 1) * nb]]) for j in range(len(log) // nb)]
    assert len(passes[0]) == 100 and len(np.unique(passes[0])) == 100
    for p in passes:  # every pass visits every training sample once
        np.testing.assert_array_equal(np.sort(p), np.sort(passes[0]))
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[2], passes[3])
    hist = load_npz(tmp_path / "a" / RESULTS_NPZ)
    np.testing.assert_array_equal(hist["history/step/n_nonconverged_epoch"][1:], [2 * nb, 2 * nb])
    assert np.isnan(hist["history/step/n_nonconverged_epoch"][0])


def test_max_batches_and_existing_run_and_changed_config(tmp_path):
    ds = cls_dataset()
    s = T.train(
        cls_cfg(1), 0, tmp_path / "r", max_batches=2, progress=False, method_factory=fake_factory, dataset=ds
    )
    assert s["n_train_batches"] == 2
    with pytest.raises(ConfigError, match="already holds a run"):
        T.train(cls_cfg(1), 0, tmp_path / "r", progress=False, method_factory=fake_factory, dataset=ds)
    with pytest.raises(ConfigError, match="max_batches"):
        T.train(
            cls_cfg(2),
            0,
            tmp_path / "r",
            resume=True,
            progress=False,
            method_factory=fake_factory,
            dataset=ds,
        )
    cfg = cls_cfg(2)
    cfg["training"]["batch_size"] = 8
    with pytest.raises(ConfigError, match="cfg"):
        T.train(
            cfg,
            0,
            tmp_path / "r",
            resume=True,
            max_batches=2,
            progress=False,
            method_factory=fake_factory,
            dataset=ds,
        )


def test_feedback_pretraining_skipped_for_bp_and_fixed_q(tmp_path):
    calls = []

    class Counting(FakeMethod):
        def pretrain_feedback_step(self, X):
            calls.append(1)
            return {}

    for method, q in (("BP", "trained"), ("DFC", "fixed")):
        cfg = cls_cfg(1)
        cfg["training"].update(method=method, q=q)
        T.train(
            cfg, 0, tmp_path / f"{method}{q}", progress=False, method_factory=Counting, dataset=cls_dataset()
        )
    assert calls == []


def test_summary_takes_test_at_best_validation():
    hist = {
        "epoch": [0, 1, 2, 3],
        "train_loss": [9, 3, 2, 1],
        "val_error": [1.0, 5.0, 2.0, 2.0],
        "test_error": [0.5, 4.0, 3.0, 1.0],
    }
    s = T.summarize(hist, "classification")
    assert s["best_epoch"] == 2 and s["reported"] == 3.0  # epoch 0 excluded, ties -> earliest
    s = T.summarize(hist, "classification", "final_train_loss")
    assert s["reported"] == 1.0
    hist = {
        "epoch": [0, 1, 2],
        "train_loss": [1, 1, 1],
        "val_loss": [1, np.nan, 0.5],
        "test_loss": [1, 0, 0.7],
    }
    assert T.summarize(hist, "regression")["reported"] == 0.7


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"data": {"dataset": "cifar"}}, "data.dataset"),
        ({"data": {"dataset": "student_teacher", "n_in": 4}}, "data.n_out"),
        ({"data": {"dataset": "mnist", "bogus": 1}}, "bogus"),
        ({"data": {"dataset": "mnist", "n_in": 3}}, "data.n_in"),
        ({"training": {"method": "XYZ", "epochs": 1}}, "training.method"),
        ({"training": {"method": "DFC", "epochs": 1.5}}, "training.epochs"),
        ({"training": {"method": "DFC", "epochs": 1, "q": "frozen"}}, "training.q"),
        ({"training": {"method": "DFC"}}, "training.epochs"),
    ],
)
def test_config_errors_name_the_field(tmp_path, patch, field):
    cfg = st_cfg()
    cfg.update(patch)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        T.train(cfg, 0, tmp_path, progress=False, method_factory=fake_factory)


def test_shape_mismatch_is_a_config_error(tmp_path):
    cfg = st_cfg()
    cfg["model"]["sizes"] = [5, 2]
    with pytest.raises(ConfigError, match=r"model\.sizes\[0\]"):
        T.train(cfg, 0, tmp_path, progress=False, method_factory=fake_factory)


# --- integration with the real methods (once they exist) -------------------------------------


def test_bp_integration_resume(tmp_path):
    methods = pytest.importorskip("dfc_brian.engines.methods")
    cfg = {
        "name": "bp_tiny",
        "model": {"sizes": [4, 8, 2], "activations": ["tanh", "linear"], "loss": "mse"},
        "training": {
            "method": "BP",
            "q": "trained",
            "optimizer": "adam",
            "lr": 1e-2,
            "adam_eps": 1e-8,
            "adam_betas": [0.99, 0.99],
            "epochs": 2,
            "epochs_fb": 0,
            "batch_size": 32,
            "clip": 1.0,
        },
        "data": {
            "dataset": "student_teacher",
            "n_in": 4,
            "n_out": 2,
            "n_train": 96,
            "n_val": 32,
            "n_test": 32,
        },
    }
    ds = student_teacher(4, 2, 0, 96, 32, 32)
    s = T.train(cfg, 0, tmp_path / "a", progress=False, method_factory=methods.make_method, dataset=ds)
    cfg1 = {**cfg, "training": {**cfg["training"], "epochs": 1}}
    T.train(cfg1, 0, tmp_path / "b", progress=False, method_factory=methods.make_method, dataset=ds)
    T.train(
        cfg, 0, tmp_path / "b", resume=True, progress=False, method_factory=methods.make_method, dataset=ds
    )
    assert_same_run(tmp_path / "a", tmp_path / "b")
    hist = load_npz(tmp_path / "a" / RESULTS_NPZ)["history/train_loss"]
    assert hist[-1] < hist[0] and np.isfinite(s["reported"])


# --- CLI -------------------------------------------------------------------------------------


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_missing_config_is_one_line(capsys):
    rc, _, err = run_cli(["train", "no/such/config.yaml"], capsys)
    assert rc == 2 and "not found" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_bad_config_names_field(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({**st_cfg(), "data": {"dataset": "cifar"}}))
    rc, _, err = run_cli(["train", str(p), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 2 and "data.dataset" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["train", str(p), "--epochs", "-1"], capsys)
    assert rc == 2 and "--epochs" in err


def test_cli_missing_data_is_one_line(tmp_path, capsys):
    p = tmp_path / "m.yaml"
    cfg = {
        "model": {"sizes": [784, 10], "activations": ["linear"], "loss": "ce"},
        "training": {"method": "BP", "epochs": 1, "lr": 0.01},
        "data": {"dataset": "mnist"},
    }
    p.write_text(yaml.safe_dump(cfg))
    rc, _, err = run_cli(
        ["train", str(p), "--data-root", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")], capsys
    )
    assert rc == 2 and "missing data file" in err and "pip install torchvision" in err
    rc, out, err = run_cli(["check-data", "--data-root", str(tmp_path / "nodata")], capsys)
    assert rc == 2 and "8 of 8" in err and out.count("PROBLEM") == 8


def test_cli_table(tmp_path, capsys):
    for seed, val in enumerate([2.0, 2.2]):
        d = tmp_path / "runs" / "mnist_dfc" / f"seed{seed}"
        d.mkdir(parents=True)
        side = {
            "seed": seed,
            "config": {"table1": {"row": "DFC", "column": "mnist"}, "training": {"epochs": 100}},
            "summary": {"reported": val, "epochs_done": 100},
        }
        (d / RESULTS_JSON).write_text(json.dumps(side))
    short = tmp_path / "runs" / "short" / "seed0"
    short.mkdir(parents=True)
    (short / RESULTS_JSON).write_text(
        json.dumps(
            {
                "config": {"table1": {"row": "DFC", "column": "mnist"}, "training": {"epochs": 1}},
                "summary": {"reported": 5.5, "epochs_done": 1},
            }
        )
    )
    unfinished = tmp_path / "runs" / "x" / "seed0"
    unfinished.mkdir(parents=True)
    (unfinished / RESULTS_JSON).write_text(
        json.dumps(
            {
                "config": {"table1": {"row": "DFC", "column": "mnist"}, "training": {"epochs": 9}},
                "summary": {"reported": 50.0, "epochs_done": 1},
            }
        )
    )
    rc, out, _ = run_cli(["table", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md")], capsys)
    assert rc == 0
    md = (tmp_path / "t.md").read_text()
    assert "2.10 ± 0.10 % (n=2)" in md and "2.25 ± 0.09 %" in md and "9.42 ± 0.09 e−2" in md
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["rows"]["DFC"]["mnist"]["values"] == [2.0, 2.2]
    assert data["rows"]["DFC [1 epoch]"]["mnist"]["values"] == [5.5]  # not mixed with full runs
    assert data["rows"]["BP"]["mnist_trainloss"]["published"] == [1.53e-7, 0.19e-7]
    rc, _, err = run_cli(["table", str(tmp_path / "nothing")], capsys)
    assert rc == 2 and "does not exist" in err


def test_cli_parser_has_demo_and_options():
    args = cli.build_parser().parse_args(["demo", "--target", "cython", "--quick"])
    assert args.func is cli._cmd_demo and args.out == "figures/demo" and args.quick
    args = cli.build_parser().parse_args(["train", "x.yaml", "--seed", "3", "--resume", "--max-batches", "5"])
    assert (args.seed, args.resume, args.max_batches, args.epochs) == (3, True, 5, None)


@pytest.mark.parametrize("mode", ["minibatch", "epoch"])
def test_dfc_integration_resume(tmp_path, mode):
    """The real DFC method (sleep noise, optimiser on Q, extra sleep epochs) also resumes exactly,
    in both sleep orders (epoch: the authors' sleep epoch, forward epoch, extra sleep epochs)."""
    methods = pytest.importorskip("dfc_brian.engines.methods")
    from dfc_brian.config import load_config

    cfg = load_config("toy/fig3_dfc")
    cfg["controller"]["tmax"] = 50
    cfg["data"].update(n_train=64, n_val=16, n_test=16)
    cfg["training"].update(epochs=2, epochs_fb=1, batch_size=32, extra_sleep_mode=mode)
    cfg.setdefault("convergence", {})["include_nonconverged"] = True  # T = 50: let W move too
    T.train(cfg, 0, tmp_path / "a", progress=False, method_factory=methods.make_method)
    cfg1 = {**cfg, "training": {**cfg["training"], "epochs": 1}}
    T.train(cfg1, 0, tmp_path / "b", progress=False, method_factory=methods.make_method)
    T.train(cfg, 0, tmp_path / "b", resume=True, progress=False, method_factory=methods.make_method)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    res = load_npz(tmp_path / "a" / RESULTS_NPZ)
    assert f"history/{'sleep' if mode == 'epoch' else 'step'}/sleep_dQ_norm" in res
    assert res["history/train_loss"][2] != res["history/train_loss"][1]  # the run does train


def test_provenance_is_taken_when_the_run_starts(tmp_path, monkeypatch):
    """results.json names the code that ran (git SHA at the start), not the tree at the end."""
    seen = {"n": 0}

    def meta():
        seen["n"] += 1
        return {"git_sha": f"call{seen['n']}", "git_dirty": False}

    monkeypatch.setattr(T, "run_metadata", meta)

    def factory(cfg, seed):  # runs after the start: a commit made during the run
        monkeypatch.setattr(T, "run_metadata", lambda: {"git_sha": "at-the-end", "git_dirty": True})
        return fake_factory(cfg, seed)

    T.train(cls_cfg(1), 0, tmp_path / "r", progress=False, method_factory=factory, dataset=cls_dataset())
    res = json.loads((tmp_path / "r" / RESULTS_JSON).read_text())
    assert (res["git_sha"], res["git_dirty"]) == ("call1", False)
