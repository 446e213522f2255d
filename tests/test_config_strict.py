"""Bad input is rejected at load with the file, line and field: configs, checkpoints, data files."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dfc_brian import cli
from dfc_brian.config import MODELS_DIR, SECTIONS, _yaml_number, list_configs, load_config
from dfc_brian.experiments import data as D
from dfc_brian.experiments.guards import ConvergenceMonitor, RunDirError, RunLock, nonfinite
from dfc_brian.experiments.results import CheckpointError, load_checkpoint, save_checkpoint
from dfc_brian.model.params import ConfigError

DEMO = (MODELS_DIR / "toy" / "demo.yaml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln)


def test_misspelt_section_is_rejected_with_line(tmp_path):
    text = DEMO.replace("controller:", "controler:")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert f"c.yaml:{line_of(text, 'controler:')}: unknown section 'controler'" in str(e.value)


@pytest.mark.parametrize("where", ["top", "section"])
def test_duplicate_key_is_rejected_with_both_lines(tmp_path, where):
    if where == "top":
        text = DEMO + "\nname: other\n"
        first, second = line_of(DEMO, "name: demo"), len(text.splitlines())
        key = "'name'"
    else:
        text = DEMO.replace("  k_p: 1.5 ", "  k_p: 1.5\n  k_p: 3.0 ")
        first, second = line_of(text, "k_p: 1.5"), line_of(text, "k_p: 3.0")
        key = "'k_p'"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert f"c.yaml:{second}: duplicate key {key} (first given on line {first})" in str(e.value)


#: (section, field, line in demo.yaml to replace, replacement): numbers YAML reads as strings
STRING_NUMBERS = [
    ("controller", "k_p", "  k_p: 1.5", "  k_p: 2e-1"),
    ("controller", "alpha", "  alpha: 0.0015", "  alpha: 15e-4"),
    ("controller", "dt", "  dt: 0.02", "  dt: 2e-2"),
    ("controller", "tcr", "  tcr: 0.2", "  tcr: 2e-1"),
    ("controller", "tmax", "  tmax: 200", "  tmax: '200'"),
    ("sleep", "sigma", "  sigma: 0.01", "  sigma: 1e-2"),
    ("sleep", "tau_A", "  tau_A: 0.3", "  tau_A: 3e-1"),
    ("convergence", "tol", "  tol: 1.0e-5", "  tol: 1e-5"),
    ("training", "lr", "  lr: 1.0 ", "  lr: 1e0 "),
    ("training", "epochs", "  epochs: 5", "  epochs: five"),
    ("data", "n_train", "  n_train: 1000", "  n_train: 1e3"),
]


@pytest.mark.parametrize(
    "section, field, old, new", STRING_NUMBERS, ids=[f"{s}.{f}" for s, f, *_ in STRING_NUMBERS]
)
def test_number_written_as_string_is_rejected_with_field(tmp_path, section, field, old, new):
    assert old in DEMO
    text = DEMO.replace(old, new, 1)
    assert isinstance(yaml.safe_load(text)[section][field], str)  # what YAML 1.1 does
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    msg = str(e.value)
    assert f"c.yaml:{line_of(text, new.strip())}: {section}.{field} must be a number" in msg
    value = yaml.safe_load(text)[section][field]
    try:
        float(value)
        assert "write it as " in msg
    except ValueError:
        assert "write it as" not in msg


@pytest.mark.parametrize("value", ["true", "[1, 2]", "0.5"])
def test_wrong_kind_in_numeric_field(tmp_path, value):
    text = DEMO.replace("  tmax: 200", f"  tmax: {value}")  # an integer field
    with pytest.raises(ConfigError, match="controller.tmax must be"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("x", [0.2, 1.5e-3, 2.0, 1e-5, 3.17e-4, 1e12, 123.456])
def test_suggested_spelling_reads_back_as_the_number(x):
    s = _yaml_number(x)
    assert isinstance(yaml.safe_load(s), float) and yaml.safe_load(s) == pytest.approx(x, rel=1e-6)


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    p = write(tmp_path, DEMO.replace("  sigma: 0.01", "  sigma: 1e-2"))
    rc = cli.main(["train", str(p), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "sleep.sigma" in err and "2" in err
    assert not (tmp_path / "o").exists()  # nothing done, no directory made


def test_python_api_rejects_string_numbers(tmp_path):
    from dfc_brian.experiments.train import train

    cfg = yaml.safe_load(DEMO)
    cfg["controller"]["tcr"] = "2e-1"
    with pytest.raises(ConfigError, match="controller.tcr"):
        train(cfg, 0, tmp_path / "o")


def test_every_shipped_config_passes_the_strict_loader():
    names = list_configs()
    assert "toy/demo" in names and "table1/mnist_dfc" in names and len(names) >= 10
    for n in names:
        assert set(load_config(n)) <= set(SECTIONS)


def test_configs_command_lists_every_config(capsys):
    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "table1/mnist_dfc " in out and "DFC on mnist" in out and "INVALID" not in out
    assert len(out.strip().splitlines()) == len(list_configs())


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("how", ["missing", "empty", "random", "pickle", "truncated", "no_loop"])
def test_checkpoint_errors_name_the_file(tmp_path, how):
    p = tmp_path / "checkpoint.npz"
    good = {"loop": np.array("{}"), "rng": np.array("{}"), "w": np.ones(100)}
    if how != "missing":
        save_checkpoint(p, good if how != "no_loop" else {"w": np.ones(3)})
    data = p.read_bytes() if p.exists() else b""
    if how == "empty":
        p.write_bytes(b"")
    elif how == "random":
        p.write_bytes(np.random.default_rng(1).bytes(500))
    elif how == "pickle":
        np.save(open(p, "wb"), np.array([object()], dtype=object), allow_pickle=True)
    elif how == "truncated":
        p.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert str(p) in msg and "pickle" not in msg
    if how != "missing":
        assert "Delete it" in msg


# --------------------------------------------------------------------------- guards


def test_lock_refuses_live_owner_and_takes_over_dead_one(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunDirError, match=f"in use by another run \\(pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()
    import socket
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    (tmp_path / ".lock").write_text(f"{p.pid} {socket.gethostname()}\n")
    (tmp_path / ".checkpoint.npz.abc.tmp").write_bytes(b"half")
    with RunLock(tmp_path) as lock:
        assert lock.held and (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
        assert not (tmp_path / ".checkpoint.npz.abc.tmp").exists()


def test_held_lock_beats_and_a_waiting_task_takes_over_only_a_silent_lock(tmp_path, monkeypatch, capsys):
    """The heartbeat keeps another host's lock alive; once it stops, wait_for_lock takes it over."""
    import socket
    import threading

    from dfc_brian.experiments import guards as G

    monkeypatch.setattr(G, "LOCK_HEARTBEAT_S", 0.05)
    lock_file = tmp_path / ".lock"
    with RunLock(tmp_path):
        os.utime(lock_file, ns=(0, 0))
        time.sleep(0.3)
        assert lock_file.stat().st_mtime > time.time() - 5  # touched since
    assert not lock_file.exists()

    # a live lock of another host (its file keeps changing) is waited for, then refused
    monkeypatch.setattr(G, "LOCK_STALE_S", 0.4)
    lock_file.write_text(f"4242 elsewhere-{socket.gethostname()}\n")
    stop = threading.Event()

    def beat():
        while not stop.wait(0.05):
            os.utime(lock_file)

    t = threading.Thread(target=beat)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(RunDirError, match="still locked by pid 4242 on elsewhere-.* after 1 s"):
            G.wait_for_lock(tmp_path, timeout_s=1.0, poll_s=0.05)
        assert time.monotonic() - t0 >= 1.0
    finally:
        stop.set()
        t.join()
    assert lock_file.exists()
    with pytest.raises(RunDirError, match="in use by another run"):  # RunLock itself never waits
        RunLock(tmp_path).acquire()

    # the same lock, silent: removed after LOCK_STALE_S of watching, with a note; then lockable
    t0 = time.monotonic()
    G.wait_for_lock(tmp_path, timeout_s=30.0, poll_s=0.05)
    assert 0.4 <= time.monotonic() - t0 < 10 and not lock_file.exists()
    assert "removed the lock of pid 4242 on elsewhere-" in capsys.readouterr().err
    with RunLock(tmp_path) as lock:
        assert lock.held

    # this host: waited for while its process lives, free as soon as it has ended
    import subprocess

    p = subprocess.Popen(["sleep", "0.5"])
    lock_file.write_text(f"{p.pid} {socket.gethostname()}\n")
    t0 = time.monotonic()
    reaper = threading.Thread(target=p.wait)
    reaper.start()
    G.wait_for_lock(tmp_path, timeout_s=30.0, poll_s=0.05)
    reaper.join()
    assert 0.3 < time.monotonic() - t0 < 10
    with RunLock(tmp_path) as lock:  # the dead owner's lock is taken over
        assert lock.held
    G.wait_for_lock(tmp_path / "nothing", timeout_s=0.0)  # no lock: no wait


class _FakeWeights:
    def __init__(self, W):
        self.W, self.b, self.Q = W, [np.zeros(2)], []


class _Fake:
    name = "X"

    def __init__(self, W):
        self.weights = _FakeWeights(W)


def test_nonfinite_guard_names_what_diverged():
    assert nonfinite(_Fake([np.ones((2, 2))]), {"loss": 1.0}) is None
    assert nonfinite(_Fake([np.ones((2, 2))]), {"loss": float("nan")}) == "loss = nan"
    assert "1.65e+132" in nonfinite(_Fake([np.ones((2, 2))]), {"loss": 1.65e132})
    assert nonfinite(_Fake([np.array([[1.0, np.inf]])]), {"loss": 1.0}) == "non-finite weights W_1"
    assert "W_1" in nonfinite(_Fake([np.full((2, 2), 1e16)]), {})


def test_convergence_monitor_counts_only_minibatches_without_any_converged_sample():
    m = ConvergenceMonitor()
    for f in (1.0, 0.5, 1.0, 0.0):
        m.add({"frac_nonconverged": f})
    assert m.end_epoch("DFC", 1) == {"minibatches_none_converged": 2.0}
    off = ConvergenceMonitor(include_nonconverged=True)
    off.add({"frac_nonconverged": 1.0})
    assert off.end_epoch("DFC", 1) == {}


# --------------------------------------------------------------------------- data files

REAL = Path(os.environ.get("DFC_DATA", "/work/shared/datasets")) / "MNIST" / "raw"


@pytest.mark.skipif(
    not (REAL / "t10k-images-idx3-ubyte.gz").is_file(), reason="needs the MNIST files ($DFC_DATA)"
)
def test_uncompressed_file_with_one_corrupted_pixel_is_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(gzip.decompress((REAL / f"{stem}.gz").read_bytes()))
    images, labels = D.load_raw("mnist", "test", tmp_path)  # intact: loads, md5 of MD5_RAW matches
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    p = raw / "t10k-images-idx3-ubyte"
    data = bytearray(p.read_bytes())
    data[16 + 28 * 14 + 14] ^= 0x40  # one pixel in the middle of the first image
    p.write_bytes(bytes(data))
    with pytest.raises(D.DataError, match="t10k-images-idx3-ubyte is corrupt.*delete it"):
        D.load_raw("mnist", "test", tmp_path)
