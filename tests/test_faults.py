"""Fault injection, end to end through the ``dfc-brian`` CLI in a temporary directory.

Each scenario runs ``python harness.py train ...`` (the CLI's ``main`` with a fault injected at
a chosen minibatch or checkpoint write) and asserts the exit code, the one-line message, and
that every result the run reported as written exists and is intact. Kills are real
``SIGKILL`` / ``SIGINT`` signals sent by the process to itself at a deterministic point.

Scenarios (9): two concurrent runs on one directory; kill -9 during feedback pre-training,
during training, and during a checkpoint write, each followed by ``--resume`` (bit-identical to
an uninterrupted run); Ctrl-C then ``--resume``; corrupted checkpoints (4 kinds); corrupted
data file; diverging learning rate (BP, DFC-SSA, DFC); unwritable ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dfc_brian.experiments.results import CHECKPOINT, RESULTS_JSON, RESULTS_NPZ, array_json, load_npz

HARNESS = r"""
import contextlib, os, signal, sys, time
import dfc_brian.experiments.results as R
import dfc_brian.experiments.train as T
from dfc_brian.cli import main

kind, _, rest = os.environ.get("FAULT", "").partition(":")
if kind in ("kill", "int", "slow"):
    step, n = rest.split(":")
    calls = [0]
    orig = T.guarded_step

    def guarded(method, name, *a, **k):
        if name == step:
            calls[0] += 1
            if kind == "slow":
                time.sleep(float(n))
            elif calls[0] == int(n):
                os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGINT)
                time.sleep(5)
        return orig(method, name, *a, **k)

    T.guarded_step = guarded
elif kind == "killwrite":  # SIGKILL with the n-th checkpoint half written
    calls = [0]
    orig_open = R._atomic_open

    @contextlib.contextmanager
    def killing_open(path, mode):
        with orig_open(path, mode) as fh:
            yield fh
            if path.name == "checkpoint.npz":
                calls[0] += 1
                if calls[0] == int(rest):
                    fh.flush()
                    fh.truncate(fh.tell() // 2)
                    os.kill(os.getpid(), signal.SIGKILL)

    R._atomic_open = killing_open
sys.exit(main(sys.argv[1:]))
"""


def toy_cfg(method: str = "DFC", **training) -> dict:
    tr = {
        "method": method,
        "lr": 0.01,
        "optimizer": "sgd",
        "lr_fb": 1.0e-3,
        "epochs": 3,
        "epochs_fb": 2 if method.startswith("DFC") else 0,
        "batch_size": 16,
        "extra_sleep": 1,
    }
    tr.update(training)
    cfg = {
        "name": f"toy_{method}",
        "model": {"sizes": [4, 3, 2], "activations": ["tanh", "linear"], "loss": "mse"},
        "training": tr,
        "data": {
            "dataset": "student_teacher",
            "n_in": 4,
            "n_out": 2,
            "n_train": 64,
            "n_val": 16,
            "n_test": 16,
        },
    }
    if method.startswith("DFC"):
        cfg["controller"] = {"k_p": 1.5, "alpha": 0.0015, "dt": 0.02, "tmax": 30, "tcr": 0.2}
        cfg["sleep"] = {"tmax_fb": 10}
        cfg["convergence"] = {"include_nonconverged": True}  # tmax 30 is too short to converge
    return cfg


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Folder with the harness, the toy config and one uninterrupted reference run."""
    d = tmp_path_factory.mktemp("faults")
    (d / "harness.py").write_text(HARNESS)
    (d / "toy.yaml").write_text(yaml.safe_dump(toy_cfg()))
    mnist = {
        "model": {"sizes": [784, 10], "activations": ["linear"], "loss": "ce"},
        "training": {"method": "BP", "lr": 0.01, "epochs": 1},
        "data": {"dataset": "mnist"},
    }
    (d / "mnist.yaml").write_text(yaml.safe_dump(mnist))
    r = cli(d, "train", "toy.yaml", "--out", "ref")
    assert r.returncode == 0, r.stderr
    return d


def cli(d: Path, *args: str, fault: str = "", wait: bool = True):
    env = {**os.environ, "FAULT": fault, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(d / "harness.py"), *args, *(["--quiet"] if args[0] == "train" else [])]
    p = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def one_line(err: str) -> str:
    lines = [
        ln for ln in err.strip().splitlines() if ln and not ln.startswith("note: removed the stale lock")
    ]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def assert_identical(a: Path, b: Path) -> None:
    """Two finished run directories hold bit-identical arrays and the same reported summary."""
    ra, rb = load_npz(a / RESULTS_NPZ), load_npz(b / RESULTS_NPZ)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k], err_msg=k)
    ja, jb = json.loads((a / RESULTS_JSON).read_text()), json.loads((b / RESULTS_JSON).read_text())
    assert ja["summary"] == jb["summary"] and ja["history"] == jb["history"]


def ck_state(run: Path) -> dict:
    return array_json(load_npz(run / CHECKPOINT)["loop"])["state"]


# ---------------------------------------------------------------------------------------------


def test_two_concurrent_runs_never_share_a_directory(bench):
    first = cli(
        bench, "train", "toy.yaml", "--seed", "3", "--out", "conc", fault="slow:train_step:1.0", wait=False
    )  # 12 steps of 1 s: the second run's start-up (seconds on a loaded machine) falls inside the first
    lock = bench / "conc" / ".lock"
    t0 = time.time()
    while not lock.exists() and time.time() - t0 < 60:
        time.sleep(0.02)
    second = cli(bench, "train", "toy.yaml", "--seed", "5", "--out", "conc")
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 2 and "in use by another run" in one_line(second.stderr)
    assert "results in conc" in out1 and "results in" not in second.stdout
    res = json.loads((bench / "conc" / RESULTS_JSON).read_text())
    assert res["seed"] == 3 and not lock.exists()
    # once finished, a new run without --resume is refused, not silently overwritten
    third = cli(bench, "train", "toy.yaml", "--seed", "5", "--out", "conc")
    assert third.returncode == 2 and "already holds a run" in one_line(third.stderr)
    assert json.loads((bench / "conc" / RESULTS_JSON).read_text())["seed"] == 3


@pytest.mark.parametrize(
    "fault, name",
    [
        ("kill:pretrain_feedback_step:6", "pretraining"),  # epoch 2 of feedback pre-training
        ("kill:train_step:6", "training"),  # epoch 2, minibatch 2
        ("killwrite:4", "checkpoint_write"),  # checkpoint after training epoch 1, half written
    ],
)
def test_kill9_then_resume_is_bit_identical(bench, fault, name):
    run = f"kill_{name}"
    r = cli(bench, "train", "toy.yaml", "--out", run, fault=fault)
    assert r.returncode == -9 and not (bench / run / RESULTS_JSON).exists()
    before = ck_state(bench / run)  # the last good checkpoint is readable
    assert (before["fb_done"], before["done"]) == {"pretraining": (1, 0), "training": (2, 1)}.get(
        name, (2, 0)
    )
    assert (bench / run / ".lock").exists()  # left by the killed run
    r = cli(bench, "train", "toy.yaml", "--out", run, "--resume")
    assert r.returncode == 0, r.stderr
    assert "removed the stale lock" in r.stderr and f"results in {run}" in r.stdout
    assert_identical(bench / "ref", bench / run)
    assert not list((bench / run).glob(".*.tmp")) and not (bench / run / ".lock").exists()


def test_ctrl_c_keeps_checkpoint_and_resumes(bench):
    r = cli(bench, "train", "toy.yaml", "--out", "ctrlc", fault="int:train_step:10")
    assert r.returncode == 130
    msg = one_line(r.stderr)
    assert "interrupted" in msg and "--resume" in msg and "ctrlc" in msg
    assert ck_state(bench / "ctrlc")["done"] == 2 and not (bench / "ctrlc" / ".lock").exists()
    r = cli(bench, "train", "toy.yaml", "--out", "ctrlc", "--resume")
    assert r.returncode == 0, r.stderr
    assert_identical(bench / "ref", bench / "ctrlc")


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:  # one flipped byte inside an array: caught by the zip CRC
        i = len(data) // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])


@pytest.mark.parametrize("how", ["empty", "truncated", "random", "bitflip"])
def test_corrupted_checkpoint_is_named_and_results_untouched(bench, how, tmp_path):
    run = bench / f"corrupt_{how}"
    r = cli(bench, "train", "toy.yaml", "--out", run.name, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    results = (run / RESULTS_JSON).read_bytes()
    _corrupt(run / CHECKPOINT, how)
    r = cli(bench, "train", "toy.yaml", "--out", run.name, "--resume", "--epochs", "2")
    msg = one_line(r.stderr)
    assert r.returncode == 2 and str(run.name) in msg and CHECKPOINT in msg and "Delete it" in msg
    assert "pickle" not in msg
    assert (run / RESULTS_JSON).read_bytes() == results  # the reported result is intact


def test_corrupted_data_file_is_named(bench):
    raw = bench / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b" + bytes(100))
    r = cli(bench, "train", "mnist.yaml", "--data-root", "data", "--out", "mnist_run")
    msg = one_line(r.stderr)
    assert (
        r.returncode == 2 and str(bad.relative_to(bench)) in msg and "corrupt" in msg and "delete it" in msg
    )
    assert not (bench / "mnist_run" / RESULTS_JSON).exists()


@pytest.mark.parametrize("method", ["BP", "DFC-SSA", "DFC"])
def test_diverging_learning_rate_stops_with_location(bench, method):
    (bench / f"div_{method}.yaml").write_text(
        yaml.safe_dump(toy_cfg(method, lr=1.0e8, clip=None, epochs_fb=0))
    )
    r = cli(bench, "train", f"div_{method}.yaml", "--out", f"div_{method}")
    msg = one_line(r.stderr)
    assert r.returncode == 3, r.stderr
    assert f"{method} diverged in training epoch 1, minibatch " in msg and "checkpoint" in msg
    assert not (bench / f"div_{method}" / RESULTS_JSON).exists()
    state = ck_state(bench / f"div_{method}")  # the last good checkpoint: epoch 0, finite weights
    assert state["done"] == 0
    ck = load_npz(bench / f"div_{method}" / CHECKPOINT)
    assert all(np.isfinite(v).all() for k, v in ck.items() if k.startswith("method/W"))


def test_no_converged_sample_is_warned_and_counted(bench):
    cfg = toy_cfg(epochs=1, epochs_fb=0)
    cfg["convergence"] = {"include_nonconverged": False}  # T = 30 steps: no sample converges
    (bench / "nonconv.yaml").write_text(yaml.safe_dump(cfg))
    r = cli(bench, "train", "nonconv.yaml", "--out", "nonconv")
    assert r.returncode == 0, r.stderr
    assert "DFC epoch 1: no sample converged in 4 of 4 minibatches" in r.stderr
    res = json.loads((bench / "nonconv" / RESULTS_JSON).read_text())
    assert res["summary"]["minibatches_none_converged"] == 4
    assert res["history"]["minibatches_none_converged"] == [None, 4.0]  # epoch 0 has no steps
    # with a converging controller nothing is reported
    ref = json.loads((bench / "ref" / RESULTS_JSON).read_text())
    assert ref["summary"]["minibatches_none_converged"] == 0


def test_unwritable_out_is_refused_before_any_work(bench):
    (bench / "a_file").write_text("")
    # the data root does not exist either: the directory error must come first
    r = cli(bench, "train", "mnist.yaml", "--data-root", "nowhere", "--out", "a_file/run")
    msg = one_line(r.stderr)
    assert r.returncode == 2 and "a_file/run" in msg and "not writable" in msg


def test_results_are_world_readable_and_record_the_tree_state(bench):
    for f in (RESULTS_JSON, RESULTS_NPZ, CHECKPOINT):
        assert (bench / "ref" / f).stat().st_mode & 0o777 == 0o666 & ~_umask(), f
    res = json.loads((bench / "ref" / RESULTS_JSON).read_text())
    assert "git_dirty" in res and res["git_dirty"] in (True, False, None)


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_a_zombie_process_holds_no_lock():
    """A killed run not yet reaped by init (a zombie) must not keep its run directory locked."""
    from dfc_brian.experiments.guards import _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:  # exited but not waited for: a zombie
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    assert state == "Z"
    assert _pid_alive(os.getpid()) and not _pid_alive(child.pid)
    child.wait()
    assert not _pid_alive(child.pid)
