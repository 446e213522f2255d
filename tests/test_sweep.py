"""Tests of the Dask sweep: same results as serial runs, exact resume after a killed worker or a
killed driver, failures kept per task, the jobqueue cluster's arguments, and BLAS threads pinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dfc_brian import cli
from dfc_brian.config import load_config
from dfc_brian.experiments import sweep as S
from dfc_brian.experiments.results import CHECKPOINT, RESULTS_JSON, RESULTS_NPZ, load_npz
from dfc_brian.experiments.train import train
from dfc_brian.model.params import ConfigError

ROOT = Path(__file__).resolve().parents[1]


# --- tiny configs and their serial results ----------------------------------------------------


def tiny_configs(folder: Path) -> dict[str, Path]:
    """A DFC (with feedback pre-training) and a BP student-teacher config, 2 epochs, 128 samples."""
    dfc = load_config("toy/demo")
    dfc["controller"]["tmax"] = 30
    dfc["data"].update(n_train=128, n_val=32, n_test=32)
    dfc["training"].update(epochs=2, epochs_fb=1, batch_size=32)
    dfc["name"] = "tiny_dfc"
    bp = load_config("toy/fig3_bp")
    bp["data"].update(n_train=128, n_val=32, n_test=32)
    bp["training"].update(epochs=2, batch_size=32)
    bp["name"] = "tiny_bp"
    bad = {**bp, "name": "tiny_bad", "data": {"dataset": "cifar"}}
    paths = {}
    for cfg in (dfc, bp, bad):
        paths[cfg["name"]] = folder / f"{cfg['name']}.yaml"
        paths[cfg["name"]].write_text(yaml.safe_dump(cfg))
    paths["broken"] = folder / "tiny_broken.yaml"
    paths["broken"].write_text("model: [unclosed\n")
    return paths


@pytest.fixture(scope="module")
def cfgs(tmp_path_factory) -> dict[str, Path]:
    return tiny_configs(tmp_path_factory.mktemp("cfgs"))


@pytest.fixture(scope="module")
def serial(cfgs, tmp_path_factory) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """results.npz of serial train() in this process, per (config, seed).

    With one BLAS thread, as in the workers: with two, OpenBLAS sums the logged step loss in another
    order (last-bit differences; the weights agree bit for bit all the same).
    """
    threadpoolctl = pytest.importorskip("threadpoolctl")
    out = {}
    root = tmp_path_factory.mktemp("serial")
    with threadpoolctl.threadpool_limits(1):
        for name in ("tiny_dfc", "tiny_bp"):
            for seed in (0, 1):
                d = root / name / str(seed)
                train(load_config(cfgs[name]), seed, d, progress=False)
                out[name, seed] = load_npz(d / RESULTS_NPZ)
    return out


def assert_same_run(run_dir: Path, ref: dict[str, np.ndarray]) -> None:
    got = load_npz(run_dir / RESULTS_NPZ)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert np.array_equal(got[k], ref[k], equal_nan=True), k  # bit-identical


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = S.make_local_cluster(2, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


# --- helpers that run on the workers (importable as tests.test_sweep) ----------------------------


def _epoch_of(arrays) -> int:
    from dfc_brian.experiments.results import array_json

    return int(array_json(arrays["loop"])["state"]["done"])


def killing_train(cfg, seed, out_dir, **kw):
    """train(), but the first attempt SIGKILLs its own worker process in epoch 2 (before its checkpoint)."""
    import dfc_brian.experiments.train as T

    marker = Path(out_dir) / "killed.marker"
    if not marker.exists():
        orig = T.save_checkpoint

        def save(path, arrays):
            if _epoch_of(arrays) == 2:
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(path, arrays)

        T.save_checkpoint = save
    return T.train(cfg, seed, out_dir, **kw)


def slow_train(cfg, seed, out_dir, **kw):
    """train() that sleeps 0.4 s after each checkpoint: a window to kill the driver in."""
    import dfc_brian.experiments.train as T

    orig = T.save_checkpoint

    def save(path, arrays):
        out = orig(path, arrays)
        time.sleep(0.4)
        return out

    T.save_checkpoint = save
    return T.train(cfg, seed, out_dir, **kw)


def attempt_train(cfg, seed, out_dir, **kw):
    """train() that appends its worker's pid to attempts.txt; the first attempt then takes 60 s
    for the epoch after its first checkpoint (a long epoch for a retiring worker to interrupt)."""
    import dfc_brian.experiments.train as T

    log = Path(out_dir) / "attempts.txt"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    first = not log.exists()
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    orig = T.save_checkpoint

    def save(path, arrays):
        out = orig(path, arrays)
        if first:
            time.sleep(60.0)
        return out

    T.save_checkpoint = save
    try:
        return T.train(cfg, seed, out_dir, **kw)
    finally:
        T.save_checkpoint = orig


def data_root_train(cfg, seed, out_dir, data_root=None, **kw):
    """train() that writes the data root it was given to data_root.txt."""
    import dfc_brian.experiments.train as T

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "data_root.txt").write_text(repr(data_root))
    return T.train(cfg, seed, out_dir, data_root=data_root, **kw)


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- cluster tests ---------------------------------------------------------------------------


def test_sweep_matches_serial_skips_finished_and_isolates_failures(client, cfgs, serial, tmp_path):
    runs = tmp_path / "runs"
    summary = S.run_sweep(list(cfgs.values()), "0-1", runs, client=client, progress=False)
    by = {(t["config"], t["seed"]): t for t in summary["tasks"]}
    assert summary["counts"] == {"done": 4, "failed": 4}
    for name in ("tiny_dfc", "tiny_bp"):
        for seed in (0, 1):
            assert by[name, seed]["status"] == "done" and by[name, seed]["epochs_done"] == 2
            assert_same_run(runs / name / str(seed), serial[name, seed])
    # an invalid config fails alone, in its worker, with the field named; a broken YAML in the driver
    assert "data.dataset" in by["tiny_bad", 0]["error"] and "ConfigError" in by["tiny_bad", 1]["error"]
    assert "invalid YAML" in by["tiny_broken", 0]["error"]
    assert json.loads((runs / S.SUMMARY_JSON).read_text()) == summary
    # re-submission: finished runs are skipped, their files untouched
    mtime = (runs / "tiny_dfc" / "0" / RESULTS_JSON).stat().st_mtime_ns
    again = S.run_sweep([cfgs["tiny_dfc"], cfgs["tiny_bp"]], [0, 1], runs, client=client, progress=False)
    assert again["counts"] == {"skipped": 4}
    assert (runs / "tiny_dfc" / "0" / RESULTS_JSON).stat().st_mtime_ns == mtime
    # a longer training.epochs is not "finished": the run resumes from its checkpoint
    third = S.run_sweep([cfgs["tiny_bp"]], "0", runs, client=client, progress=False, epochs=3)
    assert third["tasks"][0]["status"] == "done" and third["tasks"][0]["resumed_from_epoch"] == 2
    # each sweep keeps its own summary; sweep_summary.json is the last one's
    own = sorted((runs / S.SUMMARY_DIR).glob("*.json"))
    assert [json.loads(p.read_text()) for p in own] == [summary, again, third]
    assert [Path(x["summary_file"]) for x in (summary, again, third)] == own
    assert json.loads((runs / S.SUMMARY_JSON).read_text()) == third


def test_local_cluster_pins_blas_threads(client):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def info():
        import numpy  # noqa: F401 - load BLAS

        return os.environ.get("OPENBLAS_NUM_THREADS"), threadpoolctl.threadpool_info()

    res = client.run(info)
    assert len(res) == 2
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    assert allowed == S.ALLOWED_FAILURES
    for env, pools in res.values():
        assert env == "1" and pools, pools
        assert all(p["num_threads"] == 1 for p in pools), pools


def test_workers_get_the_data_root_the_driver_sees(client, cfgs, tmp_path, monkeypatch):
    """A worker in a batch job has neither the driver's $DFC_DATA nor its directory: the sweep
    resolves the data root in the driver and passes it, absolute, to every task."""
    monkeypatch.setenv("DFC_DATA", str(tmp_path / "driver_data"))  # the workers started without it
    runs = tmp_path / "runs"
    S.run_sweep([cfgs["tiny_bp"]], "0", runs, client=client, progress=False, train_fn=data_root_train)
    assert (runs / "tiny_bp" / "0" / "data_root.txt").read_text() == repr(str(tmp_path / "driver_data"))
    monkeypatch.delenv("DFC_DATA")
    monkeypatch.chdir(tmp_path)
    S.run_sweep([cfgs["tiny_bp"]], "1", runs, client=client, progress=False, train_fn=data_root_train)
    assert (runs / "tiny_bp" / "1" / "data_root.txt").read_text() == repr(str(tmp_path / "data"))


def test_killed_worker_resumes_from_checkpoint(client, cfgs, serial, tmp_path):
    runs = tmp_path / "runs"
    summary = S.run_sweep(
        [cfgs["tiny_dfc"]], "0-1", runs, client=client, progress=False, train_fn=killing_train
    )
    assert summary["counts"] == {"done": 2}
    for t in summary["tasks"]:
        d = Path(t["run_dir"])
        killed_pid = int((d / "killed.marker").read_text())
        assert t["pid"] != killed_pid  # finished by another worker process
        assert t["resumed_from_epoch"] == 1  # epoch 2 was lost with the worker and recomputed
        assert_same_run(d, serial["tiny_dfc", t["seed"]])


def test_a_retiring_worker_is_replaced_and_its_task_resumes(cfgs, serial, tmp_path):
    """What a batch job reaching its walltime does (its workers retire at --lifetime): the task
    goes back to the scheduler without counting as a failure, the adaptive cluster starts a
    worker in its place, and the task resumes there from its checkpoint, after the retiring
    process (which may still be computing) has let go of the run's lock."""
    import threading

    distributed = pytest.importorskip("distributed")
    cluster = S.make_local_cluster(1, dashboard_address=None)
    cluster.adapt(minimum=1, maximum=1, interval="200ms")
    client = distributed.Client(cluster)
    runs = tmp_path / "runs"
    d = runs / "tiny_dfc" / "0"
    retired: list = []

    def retire_after_first_checkpoint():
        t_end = time.time() + 120
        while time.time() < t_end:
            if (d / CHECKPOINT).exists():
                busy = list(client.scheduler_info()["workers"])  # the one worker, running the task
                retired.extend(client.retire_workers(workers=busy, close_workers=True))
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=retire_after_first_checkpoint)
    watcher.start()
    try:
        summary = S.run_sweep(
            [cfgs["tiny_dfc"]], "0", runs, client=client, progress=False, train_fn=attempt_train, retries=0
        )
    finally:
        watcher.join()
        client.close()
        cluster.close()
    assert retired, "no worker was retired"
    (t,) = summary["tasks"]
    assert t["status"] == "done", t
    pids = [int(x) for x in (d / "attempts.txt").read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1] == t["pid"]  # a second worker process finished it
    assert t["resumed_from_epoch"] is not None  # from the first attempt's checkpoint, not from scratch
    assert_same_run(d, serial["tiny_dfc", 0])


def test_a_jobqueue_sweep_outlives_its_jobs(cfgs, serial, tmp_path, monkeypatch):
    """The whole batch-cluster path with dask-jobqueue's own machinery, jobs run as local
    processes (its LocalCluster): the job script's worker retires at its --lifetime (here 8 s,
    standing in for a walltime) while the run is in an epoch, the job ends, the adaptive cluster
    submits another job, and the run resumes there from its checkpoint, bit-identical."""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.local import LocalCluster as JobQueueLocalCluster

    monkeypatch.setattr(dask_jobqueue, "JobQueueLocalCluster", JobQueueLocalCluster, raising=False)
    monkeypatch.setitem(S.JOBQUEUE_CLASSES, "local", "JobQueueLocalCluster")
    # dask-jobqueue's local jobs run the script's words as one command: no prologue lines
    monkeypatch.setattr(S, "WORKER_ENV", {})
    spec = {"cores": 1, "memory": "2GB", "walltime": "00:15:00", "lifetime": "8s", "jobs": 1}
    runs = tmp_path / "runs"

    def stuck(*_):  # without a new job the sweep would wait for ever
        pytest.fail("the sweep did not finish in 180 s: no job replaced the one that ended")

    old_handler = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(180)
    try:
        summary = S.run_sweep(
            [cfgs["tiny_dfc"]], "0", runs, cluster="local", cluster_config=spec, progress=False,
            train_fn=attempt_train, retries=0, poll_s=0.5,
        )  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
    (t,) = summary["tasks"]
    assert t["status"] == "done", t
    d = runs / "tiny_dfc" / "0"
    pids = [int(x) for x in (d / "attempts.txt").read_text().split()]
    assert len(pids) >= 2 and pids[0] != pids[-1] == t["pid"]  # finished in a later job
    assert t["resumed_from_epoch"] is not None
    assert_same_run(d, serial["tiny_dfc", 0])


def test_killed_driver_restarts_and_resumes(client, cfgs, serial, tmp_path):
    runs = tmp_path / "runs"
    code = (
        "from dfc_brian.experiments.sweep import run_sweep; from tests.test_sweep import slow_train; "
        f"run_sweep([{str(cfgs['tiny_dfc'])!r}], '0', {str(runs)!r}, n_workers=1, progress=False, "
        "dashboard_address=None, train_fn=slow_train)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    ckpt, kids = runs / "tiny_dfc" / "0" / CHECKPOINT, []
    try:
        t_end = time.time() + 120
        while time.time() < t_end and proc.poll() is None:
            if ckpt.exists() and S._checkpoint_epoch(ckpt.parent) == 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        kids = _children(proc.pid)
        proc.kill()
        proc.wait()
        t_end = time.time() + 20
        while time.time() < t_end and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not any(_alive(k) for k in kids), "worker processes outlived the killed driver"
    finally:
        if proc.poll() is None:
            proc.kill()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
    assert not (runs / "tiny_dfc" / "0" / RESULTS_JSON).exists()
    summary = S.run_sweep([cfgs["tiny_dfc"]], "0", runs, client=client, progress=False)
    (t,) = summary["tasks"]
    assert t["status"] == "done" and t["resumed_from_epoch"] == 1
    assert_same_run(runs / "tiny_dfc" / "0", serial["tiny_dfc", 0])


# --- no cluster needed -----------------------------------------------------------------------


def test_parse_seeds():
    assert S.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert S.parse_seeds("3,0-1,3") == [0, 1, 3]
    assert S.parse_seeds(2) == [2] and S.parse_seeds([1, 0]) == [0, 1]
    for bad in ("", "a", "4-2", "-1", "1,,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            S.parse_seeds(bad)


def test_expand_configs_names_globs_paths(cfgs, monkeypatch):
    t1 = S.expand_configs(["table1/*"])
    assert len(t1) == 32 and all(p.parent.name == "table1" for p in t1)
    assert [p.name for p in S.expand_configs(["table1/mnist_bp", "table1/mnist_bp.yaml"])] == [
        "mnist_bp.yaml"
    ]
    assert [p.name for p in S.expand_configs(["table1/fashion_mnist_*_fixed"])] == [
        "fashion_mnist_dfc_fixed.yaml",
        "fashion_mnist_dfc_ss_fixed.yaml",
        "fashion_mnist_dfc_ssa_fixed.yaml",
    ]
    monkeypatch.chdir(cfgs["tiny_bp"].parent)
    assert {p.name for p in S.expand_configs(["tiny_b*"])} == {
        "tiny_bp.yaml",
        "tiny_bad.yaml",
        "tiny_broken.yaml",
    }
    with pytest.raises(ConfigError, match="matches no file"):
        S.expand_configs(["table1/nothing_*"])
    with pytest.raises(ConfigError, match="not found"):
        S.expand_configs(["table1/nothing"])


def test_make_tasks_long_runs_first_and_run_dirs(tmp_path):
    tasks = S.make_tasks(["table1/mnist_bp", "table1/mnist_dfc"], "0-1", tmp_path)
    assert [(t["config"], t["seed"]) for t in tasks] == [
        ("mnist_dfc", 0),
        ("mnist_dfc", 1),
        ("mnist_bp", 0),
        ("mnist_bp", 1),
    ]
    assert tasks[0]["run_dir"] == str(tmp_path / "mnist_dfc" / "0")
    assert S.make_tasks(["table1/mnist_bp"], "0", tmp_path, epochs=1)[0]["cfg"]["training"]["epochs"] == 1


class FakeJobQueueCluster:
    made: list = []

    def __init__(self, **kw):
        import dask

        self.kw, self.adapted = kw, None
        self.allowed_failures = dask.config.get("distributed.scheduler.allowed-failures")
        FakeJobQueueCluster.made.append(self)

    def adapt(self, **kw):
        self.adapted = kw


@pytest.mark.parametrize(
    "kind,cls", [("slurm", "SLURMCluster"), ("pbs", "PBSCluster"), ("sge", "SGECluster")]
)
def test_jobqueue_cluster_class_and_kwargs(kind, cls, monkeypatch, tmp_path):
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    monkeypatch.setattr(dask_jobqueue, cls, FakeJobQueueCluster)
    p = tmp_path / "cluster.yaml"
    p.write_text("cores: 8\nmemory: 16GB\nwalltime: '12:00:00'\nqueue: short\njobs: 4\n")
    c = S.make_jobqueue_cluster(kind, S.load_cluster_config(p))
    assert isinstance(c, FakeJobQueueCluster)
    assert c.adapted == {"minimum_jobs": 4, "maximum_jobs": 4}  # a job that ends is replaced
    assert c.allowed_failures == 10  # the scheduler it starts lets a task outlive 10 lost workers
    assert c.kw == {
        "cores": 8,
        "memory": "16GB",
        "walltime": "12:00:00",
        "queue": "short",
        "processes": 8,  # one single-threaded worker per core
        "job_script_prologue": [
            "export OMP_NUM_THREADS=1",
            "export OPENBLAS_NUM_THREADS=1",
            "export MKL_NUM_THREADS=1",
        ],
        # workers retire 5 min before the walltime (12 h = 43200 s), +- 2 min
        "worker_extra_args": ["--lifetime", "42900s", "--lifetime-stagger", "120s"],
    }
    base = {"cores": 4, "memory": "1GB", "walltime": "1-00:00:00"}

    def extra(**kw):
        return S.make_jobqueue_cluster(kind, {**base, **kw}).kw["worker_extra_args"]

    assert extra() == ["--lifetime", "86100s", "--lifetime-stagger", "120s"]  # SLURM's D-HH:MM:SS
    assert extra(lifetime="23h") == ["--lifetime", "82800s"]
    assert extra(lifetime=None) == []
    assert extra(worker_extra_args=["--lifetime", "1h"]) == ["--lifetime", "1h"]  # the user's own
    assert S.make_jobqueue_cluster(kind, {**base, "allowed_failures": 2}).allowed_failures == 2
    with pytest.raises(ConfigError, match="missing memory, walltime"):
        S.make_jobqueue_cluster(kind, {"cores": 4})
    with pytest.raises(ConfigError, match="jobs must be"):
        S.make_jobqueue_cluster(kind, {**base, "jobs": 0})
    with pytest.raises(ConfigError, match="walltime '90' is not HH:MM:SS"):
        S.make_jobqueue_cluster(kind, {**base, "walltime": "90"})  # minutes to SLURM, seconds to PBS
    with pytest.raises(ConfigError, match="too short"):
        S.make_jobqueue_cluster(kind, {**base, "walltime": "00:10:00"})
    with pytest.raises(ConfigError, match="not both"):
        S.make_jobqueue_cluster(kind, {**base, "lifetime": "1h", "worker_extra_args": ["--lifetime", "2h"]})
    for bad in ("soon", 0):
        with pytest.raises(ConfigError, match="lifetime .* is not a duration"):
            S.make_jobqueue_cluster(kind, {**base, "lifetime": bad})
    with pytest.raises(ConfigError, match="allowed_failures must be"):
        S.make_jobqueue_cluster(kind, {**base, "allowed_failures": -1})


def test_real_slurm_job_script_retires_workers_before_the_walltime(monkeypatch):
    """The installed dask-jobqueue writes the lifetime into the job script and its scheduler
    takes allowed-failures (nothing is submitted: adapt is recorded, not run)."""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")

    class Recorded(dask_jobqueue.SLURMCluster):
        def adapt(self, **kw):
            self.adapted = kw

    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", Recorded)
    spec = {"cores": 2, "memory": "4GB", "walltime": "02:00:00", "jobs": 3}
    c = S.make_jobqueue_cluster("slurm", {**spec, "scheduler_options": {"dashboard_address": None}})
    try:
        script = c.job_script()
        assert "#SBATCH -t 02:00:00" in script and "export OPENBLAS_NUM_THREADS=1" in script
        assert "--nworkers 2" in script and "--lifetime 6900s --lifetime-stagger 120s" in script
        assert c.scheduler.allowed_failures == S.ALLOWED_FAILURES
        assert c.adapted == {"minimum_jobs": 3, "maximum_jobs": 3}
    finally:
        c.close()


def test_the_shipped_slurm_example_makes_a_job_script():
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    spec = S.load_cluster_config(ROOT / "docs" / "slurm.yaml")
    assert {k: spec[k] for k in ("cores", "walltime", "jobs")} == {
        "cores": 32,
        "walltime": "24:00:00",
        "jobs": 5,
    }
    c = S.make_jobqueue_cluster(
        "slurm", {**spec, "scheduler_options": {"dashboard_address": None}}, submit=False
    )
    try:
        assert isinstance(c, dask_jobqueue.SLURMCluster)
        assert "--nworkers 32" in c.job_script() and "--lifetime 86100s" in c.job_script()
    finally:
        c.close()


def test_cli_prints_the_job_script_and_submits_nothing(tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    p = tmp_path / "slurm.yaml"
    p.write_text("cores: 4\nmemory: 8GB\nwalltime: '1-00:00:00'\njobs: 2\naccount: lab\n")
    args = ["sweep", "table1/mnist_dfc", "--runs", str(tmp_path / "runs"), "--cluster", "slurm"]
    assert cli.main([*args, "--cluster-config", str(p), "--job-script"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/usr/bin/env bash") and "#SBATCH -A lab" in out
    assert "#SBATCH -t 1-00:00:00" in out
    assert "--nworkers 4" in out and "--lifetime 86100s --lifetime-stagger 120s" in out
    assert not (tmp_path / "runs").exists()  # nothing run, nothing written
    assert cli.main([*args[:4], "--job-script"]) == 2
    assert "--job-script needs --cluster and --cluster-config" in capsys.readouterr().err


def test_cli_sweep_arguments_and_errors(tmp_path, capsys):
    args = cli.build_parser().parse_args(
        [
            "sweep",
            "table1/*",
            "--seeds",
            "0-4",
            "--runs",
            "r",
            "--cluster",
            "slurm",
            "--cluster-config",
            "c.yaml",
        ]
    )
    assert args.func is cli._cmd_sweep and args.configs == ["table1/*"] and args.seeds == "0-4"
    assert (args.runs, args.cluster, args.cluster_config, args.retries) == ("r", "slurm", "c.yaml", 2)
    rc = cli.main(["sweep", "table1/mnist_bp", "--seeds", "x", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "--seeds" in err and len(err.strip().splitlines()) == 1
    rc = cli.main(["sweep", "table1/mnist_bp", "--cluster", "slurm", "--runs", str(tmp_path), "--quiet"])
    assert rc == 2 and "--cluster-config" in capsys.readouterr().err
    rc = cli.main(
        [
            "sweep",
            "table1/mnist_bp",
            "--cluster",
            "pbs",
            "--cluster-config",
            str(tmp_path / "no.yaml"),
            "--runs",
            "x",
        ]
    )
    assert rc == 2 and "no.yaml" in capsys.readouterr().err and not Path("x").exists()


def test_progress_line_names_the_epoch_of_the_number():
    """The best-validation epoch for test_at_best_val; the last epoch for the train-loss column."""
    task = {"config": "c", "path": "p", "seed": 3, "run_dir": "r"}
    best = S._entry(
        task,
        status="done",
        wall_s=2.0,
        summary={"report": "test_at_best_val", "reported": 2.5, "best_epoch": 7},
    )
    last = S._entry(
        task, status="done", summary={"report": "final_train_loss", "reported": 3e-4, "best_epoch": 71}
    )
    assert S._line(best) == "c seed 3: done (2.0 s, test_at_best_val = 2.5 (epoch 7))"
    assert S._line(last) == "c seed 3: done (final_train_loss = 0.0003 (last epoch))"
