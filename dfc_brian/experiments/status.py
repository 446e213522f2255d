"""Where every run under a runs folder stands: ``dfc-brian status RUNS``.

A sweep of Table 1 lasts days and outlives the process that started it; its run directories
are the only lasting record. This module reads them without loading any weights (only the
checkpoint's small ``loop`` entry and ``results.json``) and reports, per (config, seed):

- **state**: ``finished`` (``results.json`` with all configured epochs), ``running`` (its lock's
  process is alive on this host), ``locked`` (the lock names another host: its process cannot be
  seen from here; the lock's heartbeat, the age of its file, says whether it lives: a live run
  touches it every 30 s),
  ``stopped`` (a checkpoint and no live run: the same sweep or ``train --resume`` continues it),
  ``starting`` (locked, no checkpoint yet), ``unreadable`` (its files cannot be read: the reason is
  given, never dropped);
- **progress**: sleep-only pre-training epochs and training epochs done of those configured;
- **wall time** so far and the **pace**: the median wall time of the last five epochs of the
  current kind (sleep-only or training) where the run records epoch times, else the mean over all
  epochs so far, sleep-only ones included (marked ``mean``: a checkpoint older than per-epoch
  times; it gives no training pace before the first training epoch);
- the **ETA** at that pace, and the **value so far**: the number the run would report if it
  stopped now (test metric at the best validation epoch so far, or the last running training
  loss for the train-loss column), with its epoch.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.config import MODELS_DIR, load_config
from dfc_brian.experiments.guards import LOCK_FILE, LOCK_HEARTBEAT_S, LOCK_STALE_S, _pid_alive, parse_lock
from dfc_brian.experiments.results import CHECKPOINT, RESULTS_JSON, array_json
from dfc_brian.experiments.train import pretrain_epochs, summarize
from dfc_brian.model.params import ConfigError

PACE_WINDOW = 5  # epochs whose median wall time is the pace


@dataclass
class RunStatus:
    """One run directory's state (see the module docstring). Times in seconds."""

    run_dir: str
    config: str | None
    seed: int | None
    state: str
    lock: str | None  # "pid host" of the lock file, if any
    fb_done: int
    fb_epochs: int
    done: int
    epochs: int | None
    wall_s: float
    pace_s: float | None  # wall time per epoch of the current kind
    pace_kind: str | None  # "median" (recorded epoch times) or "mean" (total / epochs)
    eta_s: float | None
    value: float | None  # the value the run would report now
    value_what: str | None  # what value is, in words
    last_write_s: float | None  # seconds since the checkpoint or results were last written
    last_epoch_s: float | None = None  # wall time of the newest recorded epoch (either kind)
    problem: str | None = None  # a file of the run that could not be read, and why
    lock_age_s: float | None = None  # seconds since the lock file was last touched (its heartbeat)


def _configured_epochs(cfg: Mapping[str, Any]) -> int | None:
    """``training.epochs`` of a named shipped config with the run's name (old checkpoints do not
    store it); None when no unique config of that name exists."""
    name = cfg.get("name")
    if not name:
        return None
    hits = sorted(MODELS_DIR.rglob(f"{name}.yaml"))
    if len(hits) != 1:
        return None
    try:
        return (load_config(hits[0]).get("training") or {}).get("epochs")
    except Exception:  # an unreadable shipped config: the status is still useful without it
        return None


def _value_so_far(history: Mapping[str, list], cfg: Mapping[str, Any]) -> tuple[float | None, str | None]:
    if not history or not any(e > 0 for e in history.get("epoch", [])):
        return None, None
    task = "classification" if "val_error" in history else "regression"
    report = (cfg.get("data") or {}).get("report", "test_at_best_val")
    try:
        s = summarize(history, task, report)
    except (KeyError, ValueError, IndexError, TypeError):  # a history of another layout: no value
        return None, None
    if report == "final_train_loss":
        return s["reported"], f"{s['train_loss_kind']} train loss of epoch {int(history['epoch'][-1])}"
    what = "test error (%)" if task == "classification" else "test loss"
    return s["reported"], f"{what} at the best validation, epoch {s['best_epoch']}"


def _pace(times: list[float], n_done: int, wall: float) -> tuple[float | None, str | None]:
    if times:
        return statistics.median(times[-PACE_WINDOW:]), "median"
    if n_done:
        return wall / n_done, "mean"
    return None, None


def _lock(run_dir: Path, now: float) -> tuple[str | None, bool | None, float | None]:
    """(lock text, whether its process runs: True / False on this host, None on another, seconds
    since the lock file was last touched)."""
    try:
        text = (run_dir / LOCK_FILE).read_text().strip()
        age = max(now - (run_dir / LOCK_FILE).stat().st_mtime, 0.0)
    except OSError:
        return None, False, None
    pid, host = parse_lock(text)
    if pid is None:
        return text or None, False, age
    if host and host != socket.gethostname():
        return text, None, age
    return text, _pid_alive(pid), age


def _bare(
    d: Path, state: str, lock: str | None, lock_age: float | None, problem: str | None = None
) -> RunStatus:
    """A run directory with nothing readable in it (``starting`` or ``unreadable``)."""
    return RunStatus(str(d), None, None, state, lock, 0, 0, 0, None, 0.0, None, None, None, None, None, None,
                     problem=problem, lock_age_s=lock_age if lock else None)  # fmt: skip


def run_status(run_dir: str | Path, now: float | None = None) -> RunStatus | None:
    """The status of one run directory; None when it holds neither a checkpoint nor results."""
    d = Path(run_dir)
    now = time.time() if now is None else now
    ck, res = d / CHECKPOINT, d / RESULTS_JSON
    lock_text, alive, lock_age = _lock(d, now)
    if not ck.is_file() and not res.is_file():
        if alive is False:
            return None
        return _bare(d, "starting", lock_text, lock_age)
    st: dict[str, Any] = {}
    cfg: dict[str, Any] = {}
    seed = None
    mtime = None
    problems: list[str] = []
    if ck.is_file():
        try:
            with np.load(ck, allow_pickle=False) as z:
                loop = array_json(z["loop"])
            st, cfg, seed = loop["state"], loop["id"]["cfg"], loop["id"].get("seed")
            mtime = ck.stat().st_mtime
        except Exception as err:  # any damage (BadZipFile, EOFError, ...): reported, never a traceback
            problems.append(f"cannot read {ck.name} ({type(err).__name__}: {err})")
    finished = False
    if res.is_file():
        try:
            r = json.loads(res.read_text())
            r_mtime = res.stat().st_mtime
            if not isinstance(r, dict):
                raise ValueError(f"a JSON {type(r).__name__}, not an object")
        except (OSError, ValueError) as err:
            problems.append(f"cannot read {res.name} ({type(err).__name__}: {err})")
        else:
            summ = r.get("summary") or {}
            r_epochs = ((r.get("config") or {}).get("training") or {}).get("epochs")
            r_done = summ.get("epochs_done")
            # the results describe the run unless a checkpoint has gone further (an extended run)
            if isinstance(r_done, int) and (not st or int(st.get("done", 0)) <= r_done):
                finished = r_done == r_epochs
                cfg, seed = r.get("config") or {}, r.get("seed")
                st = {
                    "done": r_done,
                    "fb_done": summ.get("fb_epochs_done", 0),
                    "epochs": r_epochs,
                    "wall_time_s": r.get("wall_time_s") or 0.0,
                    "history": r.get("history") or {},
                    "epoch_wall_s": r.get("epoch_wall_s") or {},
                }
                mtime = r_mtime
    problem = "; ".join(problems) or None
    if not st:  # nothing readable: say so (a run must not vanish from the list)
        return _bare(d, "unreadable", lock_text, lock_age, problem)
    tr = cfg.get("training") or {}
    epochs = st.get("epochs") or tr.get("epochs") or _configured_epochs(cfg)
    try:  # the stored config is the validated one
        fb_epochs = pretrain_epochs(tr)
    except KeyError:
        fb_epochs = 0
    fb_epochs = max(int(fb_epochs or 0), int(st.get("fb_done", 0)))
    done, fb_done = int(st.get("done", 0)), int(st.get("fb_done", 0))
    wall = float(st.get("wall_time_s") or 0.0)
    ew = st.get("epoch_wall_s") or {}
    if alive:
        state = "running"
    elif alive is None:
        state = "locked"
    else:
        state = "finished" if finished else "stopped"
    if fb_done < fb_epochs:
        pace, kind = _pace(list(ew.get("sleep_only", [])), fb_done + done, wall)
        eta = None  # the training epochs' pace is not known yet
        if pace is not None and kind == "median":
            eta = pace * (fb_epochs - fb_done)  # the sleep-only part only
    else:
        pace, kind = _pace(list(ew.get("training", [])), fb_done + done, wall)
        if kind == "mean" and done == 0:
            pace = None  # only sleep-only epochs so far: a training epoch's pace is not known
        eta = pace * max(epochs - done, 0) if pace is not None and epochs is not None else None
    if state == "finished":
        eta = 0.0
    newest = ew.get("training" if done else "sleep_only") or []
    value, what = _value_so_far(st.get("history") or {}, cfg)
    return RunStatus(
        run_dir=str(d),
        config=cfg.get("name"),
        seed=None if seed is None else int(seed),
        state=state,
        lock=lock_text,
        fb_done=fb_done,
        fb_epochs=fb_epochs,
        done=done,
        epochs=None if epochs is None else int(epochs),
        wall_s=wall,
        pace_s=pace,
        pace_kind=kind,
        eta_s=eta,
        value=value,
        value_what=what,
        last_write_s=None if mtime is None else max(now - mtime, 0.0),
        last_epoch_s=float(newest[-1]) if newest else None,
        problem=problem,
        lock_age_s=lock_age if lock_text else None,
    )


def scan(runs_dir: str | Path, now: float | None = None) -> list[RunStatus]:
    """:func:`run_status` of every run directory under runs_dir (one holding a checkpoint,
    results or a lock), sorted by path."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"runs folder {str(runs_dir)!r} does not exist")
    dirs = {p.parent for name in (CHECKPOINT, RESULTS_JSON, LOCK_FILE) for p in root.rglob(name)}
    out = [run_status(d, now) for d in sorted(dirs)]
    return [s for s in out if s is not None]


def _hours(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


def _ago(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def epoch_line(r: RunStatus) -> str:
    """The sweep's line for a run's newest checkpoint, e.g. ``epoch 28/100 checkpointed (512 s;
    2.15 test error (%) at the best validation, epoch 17; ETA 10.3 h)``."""
    if r.fb_done < r.fb_epochs or (r.done == 0 and r.fb_done):
        head = f"sleep-only epoch {r.fb_done}/{r.fb_epochs} checkpointed"
    else:
        head = f"epoch {r.done}/{'?' if r.epochs is None else r.epochs} checkpointed"
    parts = [] if r.last_epoch_s is None else [_hours(r.last_epoch_s)]
    if r.value is not None:
        parts.append(f"{r.value:.4g} {r.value_what}")
    if r.eta_s is not None and r.state != "finished":
        parts.append(f"ETA {_hours(r.eta_s)}" + (" + training" if r.fb_done < r.fb_epochs else ""))
    return head + (f" ({'; '.join(parts)})" if parts else "")


def status_markdown(rows: list[RunStatus]) -> str:
    """A markdown table of :func:`scan`'s rows (one line per run)."""
    head = (
        "| run | seed | state | sleep-only epochs | epochs | wall | pace | ETA | so far | last write |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        state = r.state + (f" ({r.lock})" if r.state in ("running", "locked") and r.lock else "")
        if r.state == "locked" and r.lock_age_s is not None:
            state = state[:-1] + f"; heartbeat {_ago(r.lock_age_s)}"
            if r.lock_age_s > LOCK_STALE_S:
                state += f": gone? a live run touches its lock every {LOCK_HEARTBEAT_S:.0f} s"
            state += ")"
        pace = "?" if r.pace_s is None else f"{r.pace_s:.0f} s/epoch ({r.pace_kind})"
        if r.eta_s is None:
            eta = "?"
        elif r.fb_done < r.fb_epochs:
            eta = f"{_hours(r.eta_s)} + training"
        else:
            eta = _hours(r.eta_s) if r.state != "finished" else "–"
        so_far = "" if r.value is None else f"{r.value:.4g}: {r.value_what}"
        if r.problem:
            so_far = f"{so_far}; {r.problem}" if so_far else r.problem
        fb = f"{r.fb_done}/{r.fb_epochs}" if r.fb_epochs else "–"
        ep = f"{r.done}/{'?' if r.epochs is None else r.epochs}"
        lines.append(
            f"| {r.config or r.run_dir} | {'' if r.seed is None else r.seed} | {state} | {fb} | {ep} | "
            f"{_hours(r.wall_s)} | {pace} | {eta} | {so_far} | {_ago(r.last_write_s)} |"
        )
    return head + "\n".join(lines) + ("\n" if lines else "")


def main_status(runs_dir: str | Path, as_json: bool = False) -> int:
    """``dfc-brian status``: print the table (or JSON lines); exit 0."""
    rows = scan(runs_dir)
    if as_json:
        for r in rows:
            print(json.dumps(asdict(r)))
    elif rows:
        print(status_markdown(rows), end="")
    else:
        print(f"no run directories under {runs_dir}")
    return 0
