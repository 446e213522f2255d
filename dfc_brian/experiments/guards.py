"""Guards of a training run: nothing lost, nothing silent.

- :func:`check_out_dir`: the run directory can be created and written, checked before any work;
- :class:`RunLock`: one run per directory (an ``O_EXCL`` lock file holding the pid and host,
  touched every :data:`LOCK_HEARTBEAT_S` while held; a lock left by a killed run on this host is
  detected and taken over); :func:`wait_for_lock`: wait until a lock is released or its run is
  gone, also a run on another host (its heartbeat stops), as a task rescheduled onto another
  batch job does;
- :func:`guarded_step`: one minibatch step of a training method, stopped with
  :class:`TrainingDiverged` (method, phase, epoch, minibatch) as soon as the loss or any weight
  is non-finite or beyond :data:`LOSS_LIMIT` / :data:`WEIGHT_LIMIT`, or the engine reports a
  diverging trajectory. The loop then leaves the run
  directory's last checkpoint (the last finished epoch) untouched;
- :class:`ConvergenceMonitor`: counts the minibatches in which no sample converged (their
  forward update is zero) and warns once per epoch.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.engines.errors import DivergenceError

LOCK_FILE = ".lock"  # inside the run directory
LOCK_HEARTBEAT_S = 30.0  # a held lock's file is touched this often (its mtime is the heartbeat)
#: a lock from another host whose file has not changed for this long (watched from here, so
#: clocks need not agree) belongs to a run that is gone: a killed batch job, a lost node
LOCK_STALE_S = 300.0
LOSS_LIMIT = 1e30  # a loss above this has diverged (float64 overflow follows within a few steps)
WEIGHT_LIMIT = 1e15  # likewise for the magnitude of any weight


class RunDirError(RuntimeError):
    """The run directory cannot be used (not writable, or another run holds its lock)."""


class TrainingDiverged(RuntimeError):
    """A training step produced a non-finite loss or weight; names method, phase, epoch, minibatch."""

    def __init__(self, method: str, phase: str, epoch: int, minibatch: int, n_minibatches: int, what: str):
        self.method, self.phase, self.epoch, self.minibatch = method, phase, epoch, minibatch
        super().__init__(
            f"{method} diverged in {phase} epoch {epoch}, minibatch {minibatch}/{n_minibatches}: {what}. "
            "Nothing of this epoch was saved; the checkpoint of the last finished epoch is intact. "
            "Lower the learning rate (training.lr, or lr_fb for the sleep phase) or check the controller "
            "settings, then start again with another --out (or delete this run directory)"
        )


# ---------------------------------------------------------------------------------------------
# Run directory
# ---------------------------------------------------------------------------------------------


def check_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and check that a file can be written in it.

    Raises
    ------
    RunDirError
        Naming the directory and the OS error.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write_test.", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise RunDirError(
            f"run directory {str(out)!r} is not writable ({err.strerror or err}); "
            "choose another --out or fix its permissions"
        ) from None
    return out


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running. A zombie (killed, not yet reaped: a container whose
    init does not reap orphans keeps them) holds no lock, so it counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    try:  # Linux: the state letter follows the parenthesised command name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def parse_lock(text: str) -> tuple[int | None, str]:
    """(pid, host) written in a lock file by :class:`RunLock`; pid None if unreadable, host "" if absent."""
    parts = text.split()
    try:
        return int(parts[0]), parts[1] if len(parts) > 1 else ""
    except (ValueError, IndexError):
        return None, ""


class RunLock:
    """Exclusive lock on a run directory: ``<out>/.lock`` created with ``O_EXCL``, holding the pid.

    A lock whose process no longer runs on this host (a run killed with ``kill -9``) is stale
    and is taken over; left-over temporary files of an interrupted atomic write are removed
    then. A lock held by a process on another host cannot be checked from here: while held, a
    daemon thread touches the file every :data:`LOCK_HEARTBEAT_S` seconds, and
    :func:`wait_for_lock` takes a lock over once its file has not changed for
    :data:`LOCK_STALE_S`. Use as a context manager; the lock is released on exit, also after an
    exception.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.dir = Path(out)
        self.path = self.dir / LOCK_FILE
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _owner(self) -> tuple[int | None, str]:
        try:
            return parse_lock(self.path.read_text())
        except OSError:
            return None, ""

    def acquire(self) -> RunLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is None or (host == socket.gethostname() and not _pid_alive(pid)):
                    self._break_stale(pid)
                    continue
                raise RunDirError(
                    f"run directory {str(self.dir)!r} is in use by another run (pid {pid} on {host}, "
                    f"lock file {self.path}); wait for it to finish or choose another --out "
                    "(if that run no longer exists, delete the lock file)"
                ) from None
            except OSError as err:
                raise RunDirError(f"cannot create the lock file {self.path}: {err.strerror or err}") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            self._clean_temporaries()
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="dfc-run-lock", daemon=True)
            self._beat.start()
            return self
        raise RunDirError(f"cannot take the lock {self.path} (contended); try again")

    def _break_stale(self, pid: int | None) -> None:
        """Move the stale lock aside atomically (only one contender wins the rename), then drop it."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.rename(self.path, aside)
            os.unlink(aside)
        except FileNotFoundError:
            pass
        print(
            f"note: removed the stale lock of a run that no longer exists (pid {pid}) in {self.dir}",
            file=sys.stderr,
        )

    def _clean_temporaries(self) -> None:
        for p in self.dir.glob(".*.tmp"):  # atomic writes interrupted by a kill
            try:
                p.unlink()
            except OSError:
                pass

    def _heartbeat(self) -> None:
        """Touch the lock file every LOCK_HEARTBEAT_S while held (read at each beat, so that a test
        can shorten it): a run on another host sees the file change while this run lives."""
        while not self._stop.wait(LOCK_HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:  # removed by hand, or the filesystem is away: the next beat retries
                pass

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.held:
            pid, _ = self._owner()
            if pid == os.getpid():
                try:
                    self.path.unlink()
                except OSError:
                    pass
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_seen(path: Path) -> tuple[str, int] | None:
    """(text, mtime in ns) of a lock file, None if there is none."""
    try:
        st = path.stat()
        return path.read_text(), st.st_mtime_ns
    except OSError:
        return None


def wait_for_lock(out: str | os.PathLike, timeout_s: float, poll_s: float = 5.0) -> None:
    """Wait until the run directory ``out`` can be locked: its lock released, or its run gone.

    A rescheduled sweep task can start while its previous attempt still holds the lock: a worker
    that is closing, or a batch job killed at its walltime on another host. A lock of this host
    is free once its process has ended (:class:`RunLock` then takes it over); a lock of another
    host once its file has not changed (no heartbeat, same text) for :data:`LOCK_STALE_S`
    seconds of watching from here: it is then removed, with a note. Raises :class:`RunDirError`
    (naming the owner) if the lock is still alive after ``timeout_s``.
    """
    path = Path(out) / LOCK_FILE
    t0 = time.monotonic()
    seen = _lock_seen(path)
    since = t0  # when the lock was last seen to change
    while True:
        if seen is None:
            return
        pid, host = parse_lock(seen[0])
        if pid is None:
            return  # unreadable: RunLock treats it as stale
        now = time.monotonic()
        if host == socket.gethostname():
            if not _pid_alive(pid):
                return
        elif now - since >= LOCK_STALE_S:
            aside = path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
            try:
                if _lock_seen(path) == seen:  # not replaced meanwhile
                    os.rename(path, aside)
                    os.unlink(aside)
                    print(
                        f"note: removed the lock of pid {pid} on {host} in {out}: unchanged for "
                        f"{now - since:.0f} s (no heartbeat; its run is gone)",
                        file=sys.stderr,
                    )
            except FileNotFoundError:
                pass
            return
        if now - t0 >= timeout_s:
            raise RunDirError(
                f"run directory {str(out)!r} is still locked by pid {pid} on {host} after "
                f"{timeout_s:.0f} s of waiting (lock file {path}); another run is using it"
            )
        time.sleep(poll_s)
        new = _lock_seen(path)
        if new != seen:
            seen, since = new, time.monotonic()


def locked_run_dir(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a run function with an ``out_dir`` argument: check the directory, hold its lock.

    Before ``fn`` starts, ``out_dir`` is created and checked writable (:func:`check_out_dir`) and
    :class:`RunLock` is taken; the lock is released when ``fn`` returns or raises (also on
    Ctrl-C).
    """
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = sig.bind(*args, **kwargs).arguments["out_dir"]
        check_out_dir(out)
        with RunLock(out):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------
# Finite-loss / finite-update guard
# ---------------------------------------------------------------------------------------------


def _weights(method: Any) -> list[tuple[str, np.ndarray]]:
    w = getattr(method, "weights", None)
    out: list[tuple[str, np.ndarray]] = []
    if w is None:
        return out
    for name in ("W", "b", "Q"):
        for i, a in enumerate(getattr(w, name, None) or []):
            if a is not None:
                out.append((f"{name}_{i + 1}", np.asarray(a)))
    return out


def nonfinite(method: Any, stats: Mapping[str, Any] | None) -> str | None:
    """What has diverged after a step (``'loss = nan'``, ``'non-finite weights W_2'``), else None.

    Diverged: a non-finite loss or weight, a loss above :data:`LOSS_LIMIT`, or a weight of
    magnitude above :data:`WEIGHT_LIMIT`.
    """
    loss = (stats or {}).get("loss")
    if loss is not None:
        try:
            x = float(loss)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x):
            return f"loss = {loss}"
        if x > LOSS_LIMIT:
            return f"loss = {x:.3g} > {LOSS_LIMIT:.0e}"
    weights = [(name, a) for name, a in _weights(method) if a.dtype.kind in "fc"]
    bad = [name for name, a in weights if not np.isfinite(a).all()]
    if bad:
        return f"non-finite weights {', '.join(bad)}"
    big = [name for name, a in weights if a.size and float(np.abs(a).max()) > WEIGHT_LIMIT]
    if big:
        return f"weights {', '.join(big)} exceed {WEIGHT_LIMIT:.0e} in magnitude"
    return None


def guarded_step(
    method: Any,
    step: str,
    *args: Any,
    phase: str,
    epoch: int,
    minibatch: int,
    n_minibatches: int,
) -> dict:
    """``getattr(method, step)(*args)``, then check the loss and every weight for finiteness.

    Parameters
    ----------
    method : Method
        Training method (its ``weights`` are checked; its ``name`` is reported).
    step : str
        ``'train_step'``, ``'pretrain_feedback_step'`` or ``'feedback_step'``.
    phase : str
        Words for the message, e.g. ``'training'``, ``'feedback pre-training'``.
    epoch, minibatch, n_minibatches : int
        1-based position of the step, for the message.

    Raises
    ------
    TrainingDiverged
        Non-finite loss or weights, or a :class:`DivergenceError` (or floating-point error)
        of the engine.
    """
    name = str(getattr(method, "name", type(method).__name__))
    fn: Callable[..., dict] = getattr(method, step)
    try:
        stats = fn(*args)
    except (DivergenceError, FloatingPointError) as err:
        raise TrainingDiverged(name, phase, epoch, minibatch, n_minibatches, str(err)) from None
    what = nonfinite(method, stats)
    if what is not None:
        raise TrainingDiverged(name, phase, epoch, minibatch, n_minibatches, what)
    return stats


# ---------------------------------------------------------------------------------------------
# Convergence of the controlled phase
# ---------------------------------------------------------------------------------------------


class ConvergenceMonitor:
    """Counts minibatches in which no sample converged (``frac_nonconverged == 1``).

    With ``include_nonconverged`` (every sample contributes its update) nothing is counted.
    """

    def __init__(self, include_nonconverged: bool = False) -> None:
        self.off = bool(include_nonconverged)
        self.epoch_count = 0
        self.epoch_steps = 0

    def add(self, stats: Mapping[str, Any] | None) -> None:
        frac = (stats or {}).get("frac_nonconverged")
        if frac is None or self.off:
            return
        self.epoch_steps += 1
        if float(frac) >= 1.0:
            self.epoch_count += 1

    def end_epoch(self, method_name: str, epoch: int) -> dict[str, float]:
        """Warn (stderr) if some minibatch had no converged sample; return the history entry."""
        n, steps = self.epoch_count, self.epoch_steps
        self.epoch_count = self.epoch_steps = 0
        if steps == 0:
            return {}
        if n:
            print(
                f"warning: {method_name} epoch {epoch}: no sample converged in {n} of {steps} minibatches "
                "(their forward update is zero; see convergence.tol / controller settings)",
                file=sys.stderr,
            )
        return {"minibatches_none_converged": float(n)}
