"""Run results and checkpoints on disk.

A finished run directory holds

- ``results.npz``: arrays (metric history per epoch, final weights), loadable with
  ``np.load(path, allow_pickle=False)``;
- ``results.json``: the side-car with the config, seed, git SHA, package versions, wall time,
  the metric history and the reported number;
- ``checkpoint.npz`` (while training): everything needed for an exact resume.

Nothing here uses pickle: non-array state (configs, RNG states, histories) is stored as JSON
text inside 0-d unicode arrays, see :func:`json_array`. Files are written atomically (a
temporary file in the same folder, then :func:`os.replace`), so a run killed mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_NPZ = "results.npz"
RESULTS_JSON = "results.json"
CHECKPOINT = "checkpoint.npz"


def json_array(obj: Any) -> np.ndarray:
    """Encode a JSON-serialisable object as a 0-d unicode array (storable without pickle)."""
    return np.array(json.dumps(obj, sort_keys=True, default=_json_default))


def array_json(a: np.ndarray | str) -> Any:
    """Decode an array made by :func:`json_array`."""
    return json.loads(str(a[()]) if isinstance(a, np.ndarray) else a)


def _finite_or_none(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively, so that the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _git(args: list[str], where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _package_tracked(where: Path) -> bool:
    """Whether this package's files are tracked by the git repository around ``where``.

    False for an installed copy that happens to sit inside some repository (a .venv in a clone).
    """
    return _git(["ls-files", "--error-unmatch", str(Path(__file__).resolve())], where) is not None


def git_sha(cwd: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the package's repository, or ``'unknown'``."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    if cwd is None and not _package_tracked(where):
        return "unknown"
    out = _git(["rev-parse", "HEAD"], where)
    return (out or "").strip() or "unknown"


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """True if tracked files of the package's repository have uncommitted changes; None if unknown."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    if cwd is None and not _package_tracked(where):
        return None
    out = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return None if out is None else bool(out.strip())


def versions() -> dict[str, str]:
    """Versions of python, numpy, brian2 and dfc_brian (from the installed metadata)."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist, key in (("brian2", "brian2"), ("dfc-brian", "dfc_brian")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    if out["dfc_brian"] == "not installed":
        import dfc_brian

        out["dfc_brian"] = dfc_brian.__version__
    return out


def run_metadata() -> dict[str, Any]:
    """Provenance of a run: git SHA, whether the tree had uncommitted changes, versions, platform."""
    return {
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "versions": versions(),
        "platform": platform.platform(),
    }


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` to ``path`` as an uncompressed npz, atomically.

    Values must be arrays (or convertible without object dtype); object arrays are refused so
    that the file loads with ``allow_pickle=False``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; store it with json_array() instead")
        clean[k] = a
    with _atomic_open(path, "wb") as fh:
        np.savez(fh, **clean)
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an npz file (``allow_pickle=False``) into a dict."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (temporary file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_open(path, "w") as fh:
        fh.write(text)
    return path


def _file_mode() -> int:
    """Mode of a new file under the current umask (0o644 with the usual umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str):
    """Open a temporary file beside ``path``; on success it replaces ``path`` (os.replace).

    The file gets the permissions of an ordinary new file (``mkstemp`` would leave it 0600,
    unreadable by the group).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Save a checkpoint (npz only, atomic). See :func:`atomic_savez`."""
    return atomic_savez(path, arrays)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read; the message names the file and what to do."""


def load_checkpoint(
    path: str | os.PathLike, required: tuple[str, ...] = ("loop", "rng")
) -> dict[str, np.ndarray]:
    """Load a checkpoint written by :func:`save_checkpoint` (no pickle).

    Every array is read (so a truncated or bit-flipped file fails here, by its zip CRC), and
    the JSON arrays named in ``required`` must be present and decodable.

    Raises
    ------
    CheckpointError
        Naming the file, what is wrong with it and what to do.
    """
    path = Path(path)
    advice = (
        "it is not a checkpoint written by dfc-brian, or it was damaged after writing (checkpoints are "
        "written atomically, a killed run cannot truncate one). Delete it to start the run again, or "
        "restore it from a backup"
    )
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if magic != b"PK\x03\x04":
        what = "an empty file" if not magic else "not an npz (zip) file"
        raise CheckpointError(f"checkpoint {path} is {what}: {advice}")
    try:
        arrays = load_npz(path)
        for key in required:
            if key not in arrays:
                raise KeyError(key)
            array_json(arrays[key])
    except KeyError as err:
        raise CheckpointError(f"checkpoint {path} lacks the entry {err.args[0]!r}: {advice}") from None
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({type(err).__name__}: {err}): {advice}"
        ) from None
    return arrays


def save_results(
    out_dir: str | os.PathLike,
    *,
    cfg: Mapping[str, Any],
    seed: int,
    history: Mapping[str, list],
    arrays: Mapping[str, np.ndarray] | None = None,
    summary: Mapping[str, Any] | None = None,
    wall_time_s: float | None = None,
    epoch_wall_s: Mapping[str, list[float]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``results.npz`` (history as ``history/<key>`` arrays + ``arrays``) and ``results.json``.

    ``wall_time_s`` is the run's total wall time; ``epoch_wall_s`` (JSON only) the wall time of
    each finished epoch by kind (``sleep_only`` pre-training, ``training``).

    Returns
    -------
    (Path, Path)
        Paths of the npz file and of the JSON side-car.
    """
    out = Path(out_dir)
    npz = {f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in history.items()}
    for k, v in (arrays or {}).items():
        npz[k] = v
    p_npz = atomic_savez(out / RESULTS_NPZ, npz)
    side = {
        "name": cfg.get("name"),
        "seed": int(seed),
        "config": dict(cfg),
        "summary": dict(summary or {}),
        "history": {k: list(v) for k, v in history.items()},  # NaN -> null in the JSON
        "wall_time_s": wall_time_s,
        **({"epoch_wall_s": {k: list(v) for k, v in epoch_wall_s.items()}} if epoch_wall_s else {}),
        **(dict(meta) if meta is not None else run_metadata()),
    }
    side = _finite_or_none(json.loads(json.dumps(side, default=_json_default)))
    p_json = atomic_write_text(out / RESULTS_JSON, json.dumps(side, indent=1) + "\n")
    return p_npz, p_json


def load_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read a run's ``results.json`` side-car."""
    return json.loads((Path(run_dir) / RESULTS_JSON).read_text())
