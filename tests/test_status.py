"""`dfc-brian status`: the state, progress, pace, ETA and value so far of run directories, read
from real training loops (the fake method of test_train) and from hand-written checkpoints."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

from dfc_brian import cli
from dfc_brian.experiments import status as S
from dfc_brian.experiments import train as T
from dfc_brian.experiments.guards import LOCK_FILE
from dfc_brian.experiments.results import RESULTS_JSON, json_array, save_checkpoint
from tests.test_train import FakeMethod, cls_cfg, cls_dataset, fake_factory, st_cfg


def _dead_pid() -> int:
    pid = 2**22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_finished_run_records_every_epoch_time_and_reports_its_value(tmp_path):
    summ = T.train(
        cls_cfg(3), 0, tmp_path / "r", progress=False, method_factory=fake_factory, dataset=cls_dataset()
    )
    side = json.loads((tmp_path / "r" / RESULTS_JSON).read_text())
    ew = side["epoch_wall_s"]
    assert len(ew["sleep_only"]) == 2 and len(ew["training"]) == 3  # epochs_fb 2, epochs 3
    assert all(t > 0 for t in ew["sleep_only"] + ew["training"])
    assert sum(ew["sleep_only"] + ew["training"]) <= side["wall_time_s"]  # + the epoch-0 evaluation

    r = S.run_status(tmp_path / "r")
    assert (r.config, r.seed, r.state) == ("fake_cls", 0, "finished")
    assert (r.fb_done, r.fb_epochs, r.done, r.epochs) == (2, 2, 3, 3)
    assert r.value == summ["reported"] and r.value_what.endswith(f"epoch {summ['best_epoch']}")
    assert r.pace_s == pytest.approx(float(np.median(ew["training"])), rel=1e-12) and r.pace_kind == "median"
    assert r.eta_s == 0.0 and r.wall_s == side["wall_time_s"]


def test_interrupted_run_is_stopped_with_its_progress(tmp_path):
    FakeMethod.crash_after = 9  # 4 minibatches per epoch: killed in training epoch 3
    try:
        with pytest.raises(KeyboardInterrupt):
            T.train(st_cfg(5), 1, tmp_path / "k", progress=False, method_factory=fake_factory)
    finally:
        FakeMethod.crash_after = None
    r = S.run_status(tmp_path / "k")
    assert (r.state, r.seed, r.fb_done, r.fb_epochs, r.done, r.epochs) == ("stopped", 1, 1, 1, 2, 5)
    assert r.pace_kind == "median" and r.eta_s == pytest.approx(3 * r.pace_s, rel=1e-12)
    assert r.value is not None and "test loss" in r.value_what and r.lock is None


def _write_checkpoint(run_dir, state, cfg, seed=4):
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        run_dir / "checkpoint.npz",
        {"loop": json_array({"id": {"seed": seed, "cfg": cfg, "max_batches": None}, "state": state})},
    )


def _state(**kw):
    st = {"fb_done": 2, "done": 6, "epochs": 10, "wall_time_s": 1000.0, "history": {}, "fb_history": {}}
    st["epoch_wall_s"] = {"sleep_only": [10.0, 12.0], "training": [50.0, 60.0, 70.0, 80.0, 90.0, 100.0]}
    st.update(kw)
    return st


def test_pace_is_the_median_of_the_last_five_epochs_and_the_lock_decides_the_state(tmp_path):
    cfg = {"name": "x", "training": {"method": "DFC-SSA", "q": "trained", "epochs_fb": 2}}
    d = tmp_path / "x" / "4"
    _write_checkpoint(d, _state(), cfg)
    r = S.run_status(d)
    assert (r.pace_s, r.eta_s, r.state) == (80.0, 320.0, "stopped")  # median(60..100), 4 epochs left

    (d / LOCK_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    assert S.run_status(d).state == "running"
    (d / LOCK_FILE).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    assert S.run_status(d).state == "stopped"  # a stale lock: the sweep or --resume takes it over
    (d / LOCK_FILE).write_text(f"{os.getpid()} elsewhere-{socket.gethostname()}\n")
    r = S.run_status(d)
    assert r.state == "locked" and r.lock_age_s < 60  # another host's process: its heartbeat tells
    assert f"| locked ({os.getpid()} elsewhere-{socket.gethostname()}; heartbeat " in S.status_markdown([r])
    assert "gone?" not in S.status_markdown([r])
    old = (d / LOCK_FILE).stat().st_mtime - 7200  # a job killed two hours ago left it
    os.utime(d / LOCK_FILE, (old, old))
    r = S.run_status(d)
    assert r.state == "locked" and 7190 < r.lock_age_s < 7300
    assert "; heartbeat 2.0 h ago: gone? a live run touches its lock every 30 s)" in S.status_markdown([r])

    # still in sleep-only pre-training: its pace, and an ETA for that part alone
    _write_checkpoint(d, _state(fb_done=1, done=0, epoch_wall_s={"sleep_only": [30.0], "training": []}), cfg)
    (d / LOCK_FILE).unlink()
    r = S.run_status(d)
    assert (r.fb_done, r.fb_epochs, r.pace_s, r.eta_s) == (1, 2, 30.0, 30.0)
    assert "| 1/2 | 0/10 | 17 min | 30 s/epoch (median) | 30 s + training |" in S.status_markdown([r])


def test_a_checkpoint_without_epoch_times_gives_the_mean_pace_and_the_shipped_epochs(tmp_path):
    """Checkpoints written before per-epoch times were recorded (the runs of session 5) store
    neither the epoch times nor training.epochs: the pace is the mean over every epoch so far,
    and the target comes from the shipped config of the run's name."""
    cfg = {"name": "mnist_dfc_ssa", "training": {"method": "DFC-SSA", "q": "trained", "epochs_fb": 10}}
    st = _state(fb_done=10, done=27, wall_time_s=16479.0)
    del st["epochs"], st["epoch_wall_s"]
    _write_checkpoint(tmp_path / "a", st, cfg)
    r = S.run_status(tmp_path / "a")
    assert r.epochs == 100 and r.pace_kind == "mean"
    assert r.pace_s == pytest.approx(16479.0 / 37) and r.eta_s == pytest.approx(16479.0 / 37 * 73)

    st.update(done=0, fb_done=20)  # sleep-only epochs only: no pace for training
    _write_checkpoint(tmp_path / "a", st, cfg)
    r = S.run_status(tmp_path / "a")
    assert r.pace_s is None and r.eta_s is None and r.value is None


def test_cli_status_table_json_and_errors(tmp_path, capsys):
    T.train(cls_cfg(2), 0, tmp_path / "runs" / "fake_cls" / "0", progress=False, method_factory=fake_factory,
            dataset=cls_dataset())  # fmt: skip
    (tmp_path / "runs" / "empty").mkdir()
    assert cli.main(["status", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[2].startswith("| fake_cls | 0 | finished | 2/2 | 2/2 |")
    assert cli.main(["status", str(tmp_path / "runs"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["config"], x["done"], x["epochs"]) for x in rows] == [("fake_cls", 2, 2)]
    assert cli.main(["status", str(tmp_path / "nothing")]) == 2
    assert "runs folder" in capsys.readouterr().err


def test_sweep_reports_each_checkpointed_epoch_once_with_its_time_value_and_eta(tmp_path):
    from dfc_brian.experiments.sweep import _EpochWatch

    cfg = {"name": "x", "training": {"method": "DFC-SSA", "q": "trained", "epochs_fb": 2, "epochs": 10}}
    d = tmp_path / "x" / "4"
    task = {"config": "x", "seed": 4, "run_dir": str(d)}
    watch = _EpochWatch([task])
    assert watch.poll([task]) == []  # nothing written yet
    _write_checkpoint(d, _state(fb_done=1, done=0, epoch_wall_s={"sleep_only": [30.0], "training": []}), cfg)
    assert watch.poll([task]) == ["x seed 4: sleep-only epoch 1/2 checkpointed (30 s; ETA 30 s + training)"]
    assert watch.poll([task]) == []  # the same checkpoint is reported once
    hist = {"epoch": [0, 1], "val_error": [90.0, 5.0], "test_error": [91.0, 4.5], "train_loss": [2.0, 0.1]}
    ew = {"sleep_only": [30.0, 31.0], "training": [450.0]}
    _write_checkpoint(d, _state(fb_done=2, done=1, history=hist, epoch_wall_s=ew), cfg)
    os.utime(d / "checkpoint.npz", ns=(1, 10**18))  # a distinct mtime whatever the clock's resolution
    assert watch.poll([task]) == [
        "x seed 4: epoch 1/10 checkpointed (8 min; 4.5 test error (%) at the best validation, epoch 1; "
        "ETA 1.1 h)"
    ]


def test_a_damaged_checkpoint_is_listed_with_the_reason_not_dropped(tmp_path):
    d = tmp_path / "runs" / "x" / "0"
    d.mkdir(parents=True)
    (d / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    (r,) = S.scan(tmp_path / "runs")
    assert r.state == "unreadable" and r.problem.startswith("cannot read checkpoint.npz (")
    assert r.problem in S.status_markdown([r])
    assert r.lock_age_s is None  # no lock, no heartbeat
    (d / LOCK_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    old = (d / LOCK_FILE).stat().st_mtime - 600
    os.utime(d / LOCK_FILE, (old, old))
    (r,) = S.scan(tmp_path / "runs")
    assert r.state == "unreadable" and 590 < r.lock_age_s < 700  # a bare row keeps its lock's heartbeat
