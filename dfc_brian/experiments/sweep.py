"""Resumable sweeps of (config, seed) training runs on Dask distributed (``dfc-brian sweep``).

Every (config, seed) is one Dask task that calls :func:`dfc_brian.experiments.train.train` with
``resume=True`` into its own run directory ``RUNS/<config name>/<seed>/``. Training checkpoints
every epoch, so a task that is retried (lost worker, killed batch job) or re-submitted by a
restarted sweep continues from its last checkpoint and ends with the result of an uninterrupted
run; a finished run (``results.json`` with all epochs of the same config) is skipped.

Where the tasks run:

- default: an embedded ``LocalCluster`` with one single-threaded worker process per core, BLAS
  and OpenMP threads pinned to 1 in each worker (``OMP/OPENBLAS/MKL_NUM_THREADS=1`` before the
  worker starts, and ``threadpoolctl`` inside each task where installed);
- ``scheduler="tcp://host:8786"``: an existing Dask scheduler;
- ``cluster="slurm" | "pbs" | "sge"``: a ``dask-jobqueue`` cluster whose keyword arguments
  (``cores``, ``memory``, ``walltime``, ``queue``, ...; ``jobs``: how many batch jobs) come
  from a small YAML file.

Dask is an optional dependency (``pip install dfc-brian[sweep]``): this module imports it only
when a sweep starts. The sweep's summary (status, error, reported value, wall time per task) is
written after every finished task to ``RUNS/sweeps/<start time>-<pid>.json``, its own file, and
copied to ``RUNS/sweep_summary.json`` (the summary of the sweep that wrote last): two sweeps
into one runs directory keep both summaries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import glob
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dfc_brian.config import MODELS_DIR, load_config, resolve_config_path
from dfc_brian.model.params import ConfigError

SUMMARY_JSON = "sweep_summary.json"  # the summary of the sweep that wrote last
SUMMARY_DIR = "sweeps"  # each sweep's own summary: sweeps/<start time>-<pid>.json
#: environment of every worker process, set before numpy is imported there
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: dask-jobqueue cluster classes by ``--cluster`` name
JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
JOBQUEUE_REQUIRED = ("cores", "memory", "walltime")
#: Dask's ``allowed-failures`` on the schedulers a sweep starts: how many workers may die while
#: running one task before the task is failed (Dask's default is 3). A task resumes from its
#: checkpoint, so a lost worker costs it at most one epoch; a run of 60 core-hours on batch jobs
#: of 24 h loses three. After this many the task is probably what kills them (memory).
ALLOWED_FAILURES = 10
#: workers of a batch job retire this long before its walltime (Dask's ``--lifetime``), so that
#: their tasks are rescheduled cleanly and the adaptive cluster submits a job in their place
LIFETIME_MARGIN_S = 300
LIFETIME_STAGGER_S = 120  # retirements spread by +- this (many workers do not stop at once)
#: how long a task waits for its run directory's lock (a previous attempt still closing, or
#: gone with its batch job: see :func:`~dfc_brian.experiments.guards.wait_for_lock`)
LOCK_WAIT_S = 900.0

TrainFn = Callable[..., dict]


# ---------------------------------------------------------------------------------------------
# What to run
# ---------------------------------------------------------------------------------------------


def parse_seeds(spec: str | int | Iterable[int]) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,7"``, ``"0-2,5"``, an int or a list; sorted, without repeats."""
    if isinstance(spec, int):
        items: list[int] = [spec]
    elif isinstance(spec, str):
        items = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1)
                    a, b = int(lo), int(hi)
                    if b < a:
                        raise ValueError
                    items.extend(range(a, b + 1))
                else:
                    items.append(int(part))
            except ValueError:
                raise ConfigError(f"--seeds {spec!r}: expected e.g. 0-4 or 0,2,5 (got {part!r})") from None
    else:
        items = [int(s) for s in spec]
    if not items or min(items) < 0:
        raise ConfigError(f"--seeds {spec!r}: seeds must be integers >= 0")
    return sorted(set(items))


def expand_configs(specs: Sequence[str | Path]) -> list[Path]:
    """Config files from names (``table1/mnist_bp``), globs (``'table1/*'``) or paths, in order.

    A glob is matched in the working directory and under ``models/`` (``.yaml`` appended when the
    pattern has no suffix). Raises ConfigError for a name or glob that matches nothing.
    """
    out: list[Path] = []
    for spec in specs:
        s = str(spec)
        if any(ch in s for ch in "*?["):
            pats = [s] if s.endswith((".yaml", ".yml")) else [s, f"{s}.yaml"]
            found = sorted(
                {Path(p) for pat in pats for p in glob.glob(pat) if Path(p).is_file()}
                | {Path(p) for pat in pats for p in glob.glob(str(MODELS_DIR / pat)) if Path(p).is_file()}
            )
            if not found:
                raise ConfigError(f"config pattern {s!r} matches no file (looked here and in {MODELS_DIR})")
            out.extend(found)
        else:
            out.append(resolve_config_path(s))
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def _cost(cfg: Mapping[str, Any]) -> float:
    """Rough relative cost of a run, to start the long ones first."""
    tr = cfg.get("training") or {}
    try:
        epochs = float(tr.get("epochs", 1)) + float(tr.get("epochs_fb", 0))
        steps = (
            float((cfg.get("controller") or {}).get("tmax", 1))
            if str(tr.get("method")).startswith("DFC")
            else 1
        )
        return epochs * steps
    except (TypeError, ValueError):
        return 0.0


def make_tasks(
    configs: Sequence[str | Path],
    seeds: str | Iterable[int],
    runs_dir: str | Path,
    epochs: int | None = None,
) -> list[dict[str, Any]]:
    """One task dict per (config, seed): ``config`` (name), ``path``, ``seed``, ``run_dir``, ``cfg``.

    A config file that cannot be read gives tasks with ``cfg`` None and its ``error``: they fail
    alone. ``epochs`` overrides ``training.epochs`` of every config. Longest runs first.
    """
    seed_list = parse_seeds(seeds)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0):
        raise ConfigError(f"--epochs must be an integer >= 0, got {epochs!r}")
    tasks = []
    names: dict[str, Path] = {}
    for path in expand_configs(configs):
        cfg: dict[str, Any] | None
        err = None
        try:
            cfg = load_config(path)
            if epochs is not None:
                if not isinstance(cfg.get("training"), dict):
                    raise ConfigError("config is missing the required section 'training' (a mapping)")
                cfg["training"]["epochs"] = epochs
        except ConfigError as e:
            cfg, err = None, f"ConfigError: {e}"
        name = str((cfg or {}).get("name") or path.stem)
        if name in names:
            raise ConfigError(f"configs {names[name]} and {path} have the same name {name!r} (run folder)")
        names[name] = path
        for seed in seed_list:
            tasks.append(
                {
                    "config": name,
                    "path": str(path),
                    "seed": seed,
                    "run_dir": str(Path(runs_dir) / name / str(seed)),
                    "cfg": cfg,
                    "error": err,
                }
            )
    tasks.sort(key=lambda t: -_cost(t["cfg"] or {}))  # stable: config order, then seeds
    return tasks


def run_state(run_dir: str | Path, cfg: Mapping[str, Any] | None, max_batches: int | None) -> str:
    """``"finished"`` (results.json of this config, all epochs), ``"partial"`` (checkpoint) or ``"new"``."""
    from dfc_brian.experiments.results import CHECKPOINT, RESULTS_JSON

    d = Path(run_dir)
    if cfg is not None and (d / RESULTS_JSON).is_file():
        try:
            res = json.loads((d / RESULTS_JSON).read_text())
            summ = res.get("summary") or {}
            same_cfg = res.get("config") == json.loads(json.dumps(cfg, default=str))
            epochs = (cfg.get("training") or {}).get("epochs")
            if same_cfg and summ.get("epochs_done") == epochs and summ.get("max_batches") == max_batches:
                return "finished"
        except (OSError, ValueError, AttributeError):
            pass
    return "partial" if (d / CHECKPOINT).is_file() else "new"


def _checkpoint_epoch(run_dir: Path) -> int | None:
    """Training epochs done in the run's checkpoint (None without one)."""
    import numpy as np

    from dfc_brian.experiments.results import CHECKPOINT, array_json

    try:
        with np.load(run_dir / CHECKPOINT, allow_pickle=False) as z:
            return int(array_json(z["loop"])["state"]["done"])
    except (OSError, KeyError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# One task (runs on a worker)
# ---------------------------------------------------------------------------------------------


def run_task(
    task: Mapping[str, Any],
    data_root: str | None = None,
    max_batches: int | None = None,
    train_fn: TrainFn | None = None,
) -> dict[str, Any]:
    """Train one (config, seed) into its run directory, resuming from its checkpoint.

    Config and data errors are returned as ``status: "failed"`` (retrying cannot help); any
    other exception propagates, so that Dask retries the task.
    """
    from dfc_brian.experiments.data import DataError

    out: dict[str, Any] = {k: task[k] for k in ("config", "path", "seed", "run_dir")}
    out.update(host=socket.gethostname(), pid=os.getpid())
    if task.get("cfg") is None:
        return {**out, "status": "failed", "error": task.get("error") or "no config"}
    run_dir = Path(task["run_dir"])
    if run_state(run_dir, task["cfg"], max_batches) == "finished":
        res = json.loads((run_dir / "results.json").read_text())
        return {**out, "status": "skipped", "summary": res.get("summary"), "wall_s": 0.0}
    if train_fn is None:
        from dfc_brian.experiments.train import train as train_fn
    from dfc_brian.experiments.guards import wait_for_lock

    # a previous attempt of this task may still hold the lock: a worker closing here, or a job
    # killed at its walltime on another host (its lock is gone once its heartbeat has stopped)
    wait_for_lock(run_dir, LOCK_WAIT_S)
    resumed = _checkpoint_epoch(run_dir)
    t0 = time.perf_counter()
    with _blas_single_thread():
        try:
            summary = train_fn(
                copy.deepcopy(task["cfg"]),
                task["seed"],
                run_dir,
                data_root=data_root,
                resume=True,
                max_batches=max_batches,
                progress=False,
            )
        except (ConfigError, DataError) as err:
            return {**out, "status": "failed", "error": f"{type(err).__name__}: {err}"}
    return {
        **out,
        "status": "done",
        "summary": summary,
        "resumed_from_epoch": resumed,
        "wall_s": time.perf_counter() - t0,
    }


def _blas_single_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "dfc-brian sweep needs Dask distributed: pip install 'dfc-brian[sweep]' "
            "(or pip install 'dask[distributed]' dask-jobqueue)"
        ) from None
    return distributed


def make_local_cluster(n_workers: int | None = None, dashboard_address: str | None = ":8787"):
    """``LocalCluster``: ``n_workers`` (default: cores) single-threaded worker processes, BLAS pinned to 1."""
    distributed = _require_dask()
    import dask

    n = n_workers or os.cpu_count() or 1
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV}
    conf = {
        "distributed.nanny.pre-spawn-environ": env,
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    }
    with dask.config.set(conf):
        return distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard_address,
        )


def load_cluster_config(path: str | Path) -> dict[str, Any]:
    """Read a jobqueue cluster YAML (``cores``, ``memory``, ``walltime``, ``jobs``, ...)."""
    import yaml

    p = Path(path)
    try:
        spec = yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError(f"cluster config {str(p)!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"cluster config {p}: invalid YAML: {err}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"cluster config {p}: top level must be a mapping (cores, memory, walltime, ...)")
    return spec


def walltime_seconds(walltime: Any) -> int:
    """Seconds of a batch walltime ``HH:MM:SS`` or SLURM's ``D-HH:MM:SS``.

    Other forms are refused (a bare number is minutes to SLURM and seconds to PBS and SGE).
    """
    import re

    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", str(walltime).strip())
    if m is None:
        raise ConfigError(
            f"cluster config: walltime {walltime!r} is not HH:MM:SS (or D-HH:MM:SS); write it so, "
            "or give lifetime: (e.g. '23h') for the workers to retire before it"
        )
    d, h, mi, sec = (int(x) if x else 0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + sec


def make_jobqueue_cluster(kind: str, spec: Mapping[str, Any], submit: bool = True):
    """A dask-jobqueue cluster of ``kind`` (slurm, pbs, sge) from ``spec``, kept at ``spec['jobs']`` jobs.

    ``spec`` needs ``cores``, ``memory`` and ``walltime``; ``jobs`` (default 1) is the number of
    batch jobs; ``processes`` defaults to ``cores`` (one single-threaded worker per core); every
    other key goes to the cluster class unchanged (``queue``, ``account``, ``job_extra_directives``,
    ...). The job script exports ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` before the workers start.

    Runs outlive batch jobs (a DFC run takes tens of core-hours), so the cluster is adaptive with
    ``jobs`` as its minimum and maximum: a job that ends is replaced by a new one. Its workers
    retire :data:`LIFETIME_MARGIN_S` before the walltime (Dask's ``--lifetime``, staggered by
    :data:`LIFETIME_STAGGER_S`): their tasks go back to the scheduler without counting as
    failures, and resume from their checkpoints in the next job. ``lifetime`` in ``spec`` (a Dask
    duration such as ``'23h'``) sets it explicitly, ``lifetime: null`` leaves it out (a
    ``--lifetime`` in ``worker_extra_args`` is kept as given). ``allowed_failures`` (default
    :data:`ALLOWED_FAILURES`) is Dask's count of workers that may die under one task.
    ``submit=False`` submits no job (``cluster.job_script()`` shows what would be submitted).
    """
    if kind not in JOBQUEUE_CLASSES:
        raise ConfigError(f"--cluster {kind!r} is unknown; choose one of {sorted(JOBQUEUE_CLASSES)}")
    missing = [k for k in JOBQUEUE_REQUIRED if k not in spec]
    if missing:
        raise ConfigError(
            f"cluster config is missing {', '.join(missing)} (needs {', '.join(JOBQUEUE_REQUIRED)})"
        )
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("--cluster needs dask-jobqueue: pip install 'dfc-brian[sweep]'") from None
    import dask
    from dask.utils import parse_timedelta

    kw = dict(spec)
    jobs = kw.pop("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"cluster config: jobs must be an integer >= 1, got {jobs!r}")
    allowed = kw.pop("allowed_failures", ALLOWED_FAILURES)
    if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 0:
        raise ConfigError(f"cluster config: allowed_failures must be an integer >= 0, got {allowed!r}")
    extra = [str(a) for a in kw.get("worker_extra_args") or []]
    given = "--lifetime" in extra
    if "lifetime" in kw:
        lifetime = kw.pop("lifetime")
        if lifetime is not None and given:
            raise ConfigError("cluster config: give lifetime or a --lifetime in worker_extra_args, not both")
        if lifetime is not None:
            try:
                lifetime_s = parse_timedelta(lifetime)
            except (ValueError, TypeError, KeyError):
                lifetime_s = None
            if not lifetime_s or lifetime_s <= 0:
                raise ConfigError(f"cluster config: lifetime {lifetime!r} is not a duration such as '23h'")
            extra += ["--lifetime", f"{lifetime_s:.0f}s"]
    elif not given:
        wall = walltime_seconds(kw["walltime"])
        if wall < 3 * LIFETIME_MARGIN_S:
            raise ConfigError(
                f"cluster config: walltime {kw['walltime']!r} is too short (workers retire "
                f"{LIFETIME_MARGIN_S // 60} min before it; give at least {3 * LIFETIME_MARGIN_S // 60} min)"
            )
        extra += ["--lifetime", f"{wall - LIFETIME_MARGIN_S}s"]
        extra += ["--lifetime-stagger", f"{LIFETIME_STAGGER_S}s"]
    kw["worker_extra_args"] = extra
    kw.setdefault("processes", kw["cores"])
    prologue = [f"export {k}={v}" for k, v in WORKER_ENV.items()]
    kw["job_script_prologue"] = prologue + list(kw.get("job_script_prologue") or [])
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed}):  # read by its scheduler
        cluster = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])(**kw)
    if submit:
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)  # a job that ends is replaced
    return cluster


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def _entry(task: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    e = {k: task[k] for k in ("config", "path", "seed", "run_dir")}
    e.update(kw)
    summ = e.pop("summary", None) or {}
    for k in ("reported", "report", "best_epoch", "epochs_done", "max_batches"):
        if k in summ:
            e[k] = summ[k]
    return e


def _line(e: Mapping[str, Any]) -> str:
    head = f"{e['config']} seed {e['seed']}: {e['status']}"
    if e["status"] == "failed":
        return f"{head}: {e.get('error')}"
    parts = []
    if e.get("wall_s"):
        parts.append(f"{e['wall_s']:.1f} s")
    if e.get("resumed_from_epoch"):
        parts.append(f"resumed from epoch {e['resumed_from_epoch']}")
    if e.get("reported") is not None:
        # the epoch the number comes from: best validation, or the last (the train-loss column)
        at = "last epoch" if e.get("report") == "final_train_loss" else f"epoch {e.get('best_epoch')}"
        parts.append(f"{e.get('report')} = {e['reported']:.6g} ({at})")
    return head + (f" ({', '.join(parts)})" if parts else "")


def _write_summary(paths: Sequence[Path], meta: Mapping[str, Any], entries: Mapping[int, dict]) -> dict:
    """Write the summary to each of ``paths`` (atomically) and return it."""
    from dfc_brian.experiments.results import atomic_write_text

    tasks = [entries[i] for i in sorted(entries)]
    counts: dict[str, int] = {}
    for e in tasks:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    side = {**meta, "counts": counts, "tasks": tasks}
    text = json.dumps(side, indent=1, default=str) + "\n"
    for path in paths:
        atomic_write_text(path, text)
    return json.loads(text)


def run_sweep(
    configs: Sequence[str | Path],
    seeds: str | Iterable[int],
    runs_dir: str | Path = "runs",
    *,
    client: Any = None,
    scheduler: str | None = None,
    cluster: str | None = None,
    cluster_config: str | Path | Mapping[str, Any] | None = None,
    n_workers: int | None = None,
    data_root: str | Path | None = None,
    max_batches: int | None = None,
    epochs: int | None = None,
    retries: int = 2,
    progress: bool = True,
    dashboard_address: str | None = ":8787",
    train_fn: TrainFn | None = None,
    poll_s: float = 5.0,
) -> dict[str, Any]:
    """Run every (config, seed) as one Dask task; return this sweep's summary (also in
    ``RUNS/sweeps/<start time>-<pid>.json`` and, as the latest, ``RUNS/sweep_summary.json``).

    Parameters
    ----------
    configs : sequence of str or path
        Config names (``table1/mnist_bp``), globs (``'table1/*'``) or YAML paths.
    seeds : str or iterable of int
        ``"0-4"``, ``"0,3"`` or a list.
    runs_dir : path
        Run directories are ``runs_dir/<config name>/<seed>/``.
    client : distributed.Client, optional
        Use this client (and its cluster); nothing is started or closed.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    cluster : {'slurm', 'pbs', 'sge'}, optional
        Start a dask-jobqueue cluster from ``cluster_config`` (a YAML path or a mapping).
    n_workers : int, optional
        Worker processes of the default LocalCluster (default: one per core).
    data_root, max_batches, epochs
        Passed to every run (``epochs`` overrides ``training.epochs``). The data root is resolved
        here, in the driver (``data_root``, else ``$DFC_DATA``, else ``./data``), to an absolute
        path: workers in batch jobs need neither the driver's environment nor its directory.
    retries : int
        Dask retries of a task that raised (config and data errors are not retried).
    progress : bool
        tqdm bar over tasks, one line per finished task and one per finished epoch of a running
        task (stderr; epochs are read from the checkpoints every ``poll_s`` seconds, where the
        driver sees the run directories).
    train_fn : callable, optional
        Replaces :func:`dfc_brian.experiments.train.train` (tests); must be importable on the workers.

    Returns
    -------
    dict
        ``counts`` by status and ``tasks``: one entry per (config, seed) with ``status``
        (done, skipped, failed, or cancelled when interrupted), ``error``, ``reported``, ``wall_s``...
    """
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ConfigError(f"--max-batches must be an integer >= 1, got {max_batches!r}")
    if sum(x is not None for x in (client, scheduler, cluster)) > 1:
        raise ConfigError("give at most one of --scheduler and --cluster")
    if cluster is not None:
        if cluster not in JOBQUEUE_CLASSES:
            raise ConfigError(f"--cluster {cluster!r} is unknown; choose one of {sorted(JOBQUEUE_CLASSES)}")
        if cluster_config is None:
            raise ConfigError(
                f"--cluster {cluster} needs --cluster-config FILE.yaml (cores, memory, walltime)"
            )
        spec = (
            dict(cluster_config)
            if isinstance(cluster_config, Mapping)
            else load_cluster_config(cluster_config)
        )
    tasks = make_tasks(configs, seeds, runs_dir, epochs=epochs)
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    from dfc_brian.experiments.data import data_root as resolve_data_root

    dr = str(resolve_data_root(data_root).absolute())  # as the driver sees it, for every worker
    t_start = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t_start)) + f".{int(t_start % 1 * 1e6):06d}"
    own_name = f"{stamp}-{os.getpid()}.json"  # UTC start to the microsecond, and the driver's pid
    (runs / SUMMARY_DIR).mkdir(exist_ok=True)
    summary_paths = [runs / SUMMARY_DIR / own_name, runs / SUMMARY_JSON]
    meta: dict[str, Any] = {
        "runs_dir": str(runs),
        "configs": [str(c) for c in configs],
        "seeds": parse_seeds(seeds),
        "max_batches": max_batches,
        "epochs": epochs,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)),
        "summary_file": str(summary_paths[0]),
    }
    entries: dict[int, dict[str, Any]] = {}
    todo = []
    for i, t in enumerate(tasks):
        if t["cfg"] is None:
            entries[i] = _entry(t, status="failed", error=t["error"])
        elif run_state(t["run_dir"], t["cfg"], max_batches) == "finished":
            res = json.loads((Path(t["run_dir"]) / "results.json").read_text())
            entries[i] = _entry(t, status="skipped", summary=res.get("summary"))
        else:
            todo.append(i)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="sweep", unit="run", disable=not progress, file=sys.stderr)
    bar.update(len(entries))
    for i in sorted(entries):
        if progress:
            tqdm.write(_line(entries[i]), file=sys.stderr)
    _write_summary(summary_paths, meta, entries)

    own: list[Any] = []  # what this call started and must close
    try:
        if todo:
            if client is None:
                distributed = _require_dask()
                if scheduler is not None:
                    client = distributed.Client(scheduler)
                else:
                    if cluster is not None:
                        cl = make_jobqueue_cluster(cluster, spec)
                    else:
                        cl = make_local_cluster(n_workers, dashboard_address)
                    own.append(cl)
                    client = distributed.Client(cl)
                own.insert(0, client)
            _print_dashboard(client, progress)
            futures = {}
            for i in todo:
                t = tasks[i]
                fut = client.submit(
                    run_task,
                    t,
                    dr,
                    max_batches,
                    train_fn,
                    key=f"dfc-{t['config']}-{t['seed']}-{time.time_ns()}",
                    retries=retries,
                    priority=len(todo) - len(futures),
                    pure=False,
                )
                futures[fut] = i
            from distributed import wait

            pending = set(futures)
            watch = _EpochWatch([tasks[i] for i in todo]) if progress else None
            while pending:
                try:
                    done = wait(list(pending), timeout=poll_s, return_when="FIRST_COMPLETED").done
                except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
                    done = set()
                if watch is not None:
                    for msg in watch.poll([tasks[futures[f]] for f in pending if f not in done]):
                        tqdm.write(msg, file=sys.stderr)
                for fut in done:
                    pending.discard(fut)
                    i = futures[fut]
                    if fut.status == "finished":
                        entries[i] = _entry(tasks[i], **fut.result())
                    elif fut.status == "cancelled":
                        entries[i] = _entry(tasks[i], status="cancelled", error="cancelled by Dask")
                    else:
                        exc = fut.exception()
                        entries[i] = _entry(tasks[i], status="failed", error=f"{type(exc).__name__}: {exc}")
                    bar.update()
                    if progress:
                        tqdm.write(_line(entries[i]), file=sys.stderr)
                    _write_summary(summary_paths, meta, entries)
    finally:
        for i in todo:
            entries.setdefault(i, _entry(tasks[i], status="cancelled"))
        meta["wall_s"] = time.time() - t_start
        summary = _write_summary(summary_paths, meta, entries)
        bar.close()
        for obj in own:
            with contextlib.suppress(Exception):
                obj.close()
    return summary  # this sweep's own (the file RUNS/sweep_summary.json may be another's by now)


class _EpochWatch:
    """Reports the epochs a running task has checkpointed, read from its run directory by
    :func:`~dfc_brian.experiments.status.run_status`: sleep-only pre-training and training
    epochs, that epoch's wall time, the ETA at the run's pace and the value it would report now."""

    def __init__(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        self.seen: dict[str, tuple[int, tuple[int, int] | None]] = {}
        for t in tasks:
            st = self._read(t)
            self.seen[t["run_dir"]] = (self._mtime(t), None if st is None else (st.fb_done, st.done))

    @staticmethod
    def _mtime(t: Mapping[str, Any]) -> int:
        from dfc_brian.experiments.results import CHECKPOINT

        try:
            return (Path(t["run_dir"]) / CHECKPOINT).stat().st_mtime_ns
        except OSError:
            return 0

    @staticmethod
    def _read(t: Mapping[str, Any]):
        from dfc_brian.experiments.status import run_status

        try:
            return run_status(t["run_dir"])
        except Exception:  # a half-visible file on a network filesystem: report at the next poll
            return None

    def poll(self, running: Iterable[Mapping[str, Any]]) -> list[str]:
        from dfc_brian.experiments.status import epoch_line

        out = []
        for t in running:
            m = self._mtime(t)
            last_m, last = self.seen.get(t["run_dir"], (0, None))
            if m == last_m:
                continue
            st = self._read(t)
            if st is None:
                continue
            now = (st.fb_done, st.done)
            self.seen[t["run_dir"]] = (m, now)
            if now != last and (st.fb_done or st.done):
                out.append(f"{t['config']} seed {t['seed']}: {epoch_line(st)}")
        return out


def _print_dashboard(client: Any, progress: bool) -> None:
    import importlib.util

    if not progress:
        return
    link = getattr(client, "dashboard_link", None)
    if not link:
        print("Dask dashboard: none", file=sys.stderr)
        return
    note = (
        ""
        if importlib.util.find_spec("bokeh")
        else " (needs bokeh on the scheduler: pip install 'bokeh>=3.1')"
    )
    print(f"Dask dashboard: {link}{note}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``dfc-brian sweep``."""
    p.add_argument("configs", nargs="+", help="config names (table1/mnist_bp), globs ('table1/*') or paths")
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0-4 or 0,2 (default 0)")
    p.add_argument("--runs", default="runs", help="runs folder: RUNS/<config>/<seed>/ (default runs)")
    p.add_argument("--data-root", default=None, help="data root (default $DFC_DATA, else ./data)")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs of every config")
    p.add_argument("--max-batches", type=int, default=None, help="at most N minibatches per epoch")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    where.add_argument(
        "--cluster", choices=sorted(JOBQUEUE_CLASSES), default=None, help="dask-jobqueue cluster"
    )
    p.add_argument(
        "--cluster-config", default=None, help="YAML for --cluster: cores, memory, walltime, jobs, ..."
    )
    p.add_argument(
        "--job-script", action="store_true", help="with --cluster: print the batch job script, submit nothing"
    )
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    p.add_argument("--retries", type=int, default=2, help="Dask retries of a task that raised (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def main_sweep(args: argparse.Namespace) -> int:
    """``dfc-brian sweep``: 0 when every task finished or was skipped, 1 when some failed."""
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.job_script:
        if args.cluster is None or args.cluster_config is None:
            raise ConfigError("--job-script needs --cluster and --cluster-config")
        cluster = make_jobqueue_cluster(args.cluster, load_cluster_config(args.cluster_config), submit=False)
        try:
            print(cluster.job_script())
        finally:
            cluster.close()
        return 0
    summary = run_sweep(
        args.configs,
        args.seeds,
        args.runs,
        scheduler=args.scheduler,
        cluster=args.cluster,
        cluster_config=args.cluster_config,
        n_workers=args.workers,
        data_root=args.data_root,
        max_batches=args.max_batches,
        epochs=args.epochs,
        retries=args.retries,
        progress=not args.quiet,
    )
    counts = summary["counts"]
    print(
        f"sweep: {len(summary['tasks'])} runs: "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + f"; summary in {summary['summary_file']}"
    )
    bad = [t for t in summary["tasks"] if t["status"] != "done" and t["status"] != "skipped"]
    for t in bad:
        print(f"  {t['config']} seed {t['seed']}: {t['status']}: {t.get('error')}", file=sys.stderr)
    return 1 if bad else 0
