"""Cost of every Table-1 cell on this machine, from timed minibatches of the real protocol.

For each ``models/table1/*.yaml`` the script builds the method exactly as ``dfc-brian train``
does (:func:`dfc_brian.engines.methods.make_method`, seed 0), loads the cell's dataset and times
``--k`` minibatches of each step the cell's protocol runs:

- ``train_step`` (the forward minibatch: BP/DFA gradient, DFC-SSA solve, or the DFC / DFC-SS
  controlled phase together with the sleep phases that ``extra_sleep_mode: minibatch`` puts in it);
- ``feedback_step`` (one sleep phase; cells whose Q is trained);
- ``pretrain_feedback_step`` (one pre-training sleep phase; cells with ``epochs_fb`` > 0);
- one evaluation, as after every training epoch (:func:`dfc_brian.experiments.train.evaluate`);
- with ``--memory``: the peak memory allocated during one train step (+ one sleep step), from
  :mod:`tracemalloc` (NumPy reports its buffers to it), measured after the timings.

From these it projects the paper protocol (``experiments/train.py``): per epoch
``nb · t_train`` plus, in the authors' epoch order, ``(1 + extra_sleep) · nb · t_sleep``, plus
the evaluation; the run is ``epochs_fb · nb · t_pretrain + epochs · epoch``. The projection is
checked against the measured wall time per training epoch of every run of the cell found under
``--runs``, finished or still running (the column ``measured epoch``; ``--markdown`` refreshes it
without timing anything), so its error on this machine is a number, not a claim.

These are absolute times: they depend on the machine and its load, which the output records
(CPU model, cores, load average before and after). They are meant for sizing a sweep (how
many core-hours a cell needs), not as speed claims; speed claims are the paired ratios of
``benchmarks/bench_speed.py``.

Usage::

    nice -n 10 .venv/bin/python benchmarks/cell_cost.py [--k 2] [--cells 'mnist_*'] \
        [--runs runs/table1] [--out benchmarks/results/cell_cost.json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from dfc_brian.config import load_config  # noqa: E402
from dfc_brian.engines.methods import make_method, validate_training  # noqa: E402
from dfc_brian.experiments.data import n_batches  # noqa: E402
from dfc_brian.experiments.train import evaluate, load_task  # noqa: E402


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _timed(fn, k: int) -> float:  # noqa: ANN001
    """Median seconds of ``k`` calls of ``fn(i)``."""
    ts = []
    for i in range(k):
        t0 = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _measured_epoch(runs: list[Path], name: str) -> float | None:
    """Mean over this cell's runs (any seed; finished or not, under any of ``runs``) of each run's
    wall seconds per forward-training epoch: its pace as ``dfc-brian status`` reports it (the median
    of its last recorded epoch times, ``epoch_wall_s['training']``: a trained-Q epoch with its sleep
    epochs, evaluation included), else, for runs that recorded none and ran no sleep-only epochs,
    wall time / epochs."""
    from dfc_brian.experiments.status import scan

    per_epoch = []
    for root in runs:
        if not (root / name).is_dir():
            continue
        for s in scan(root / name):
            if not s.done:
                continue
            if s.pace_kind == "median":
                per_epoch.append(float(s.pace_s))
            elif not s.fb_done:
                per_epoch.append(s.wall_s / s.done)
    return float(np.mean(per_epoch)) if per_epoch else None


def cell_cost(
    path: Path, k: int, data_root: str, cache: dict, runs: list[Path], memory: bool = False
) -> dict:
    cfg = load_config(str(path))
    tr = validate_training(cfg["training"])
    key = json.dumps(cfg["data"], sort_keys=True)
    if key not in cache:
        cache[key] = load_task(cfg, 0, data_root)
    ds = cache[key]
    method = make_method(cfg, 0)
    bs = tr["batch_size"]
    X, y = ds.train.X, ds.train.y
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(X), size=bs, replace=False) for _ in range(k)]
    nb = n_batches(len(X), bs)
    q_trained = tr["method"] not in ("BP", "DFA") and tr["q"] == "trained"
    epoch_order = q_trained and tr["extra_sleep_mode"] == "epoch"

    out: dict = {"cell": path.stem, "method": tr["method"], "q": tr["q"], "n_minibatches": nb}
    if q_trained and tr["epochs_fb"]:
        out["t_pretrain_s"] = _timed(lambda i: method.pretrain_feedback_step(X[idx[i]]), k)
    if epoch_order:
        out["t_sleep_s"] = _timed(lambda i: method.feedback_step(X[idx[i]]), k)
    out["t_train_s"] = _timed(lambda i: method.train_step(X[idx[i]], y[idx[i]]), k)

    out["t_eval_s"] = _timed(lambda _: evaluate(method, ds), 1)
    if memory:  # after the timings: tracemalloc slows allocation; numpy reports its buffers to it
        tracemalloc.start()
        method.train_step(X[idx[0]], y[idx[0]])
        if epoch_order:
            method.feedback_step(X[idx[0]])
        out["peak_step_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    sleeps = (1 + tr["extra_sleep"]) if epoch_order else 0
    epoch = nb * (out["t_train_s"] + sleeps * out.get("t_sleep_s", 0.0)) + out["t_eval_s"]
    pre = tr["epochs_fb"] * nb * out.get("t_pretrain_s", 0.0) if q_trained else 0.0
    out.update(
        epochs=tr["epochs"],
        epochs_fb=tr["epochs_fb"] if q_trained else 0,
        projected_epoch_s=epoch,
        projected_run_h=(pre + tr["epochs"] * epoch) / 3600.0,
        measured_epoch_s=_measured_epoch(runs, path.stem),
    )
    return out


def _finished_cells(runs: list[Path]) -> set[str]:
    """Cells with at least one finished run (``<runs>/<cell>/<seed>/results.json``)."""
    return {p.parent.parent.name for root in runs for p in root.glob("*/*/results.json")}


def markdown(result: dict, done: set[str] | None = None) -> str:
    """The cost table: one row per cell with its sweep command (``done``: cells with a finished run)."""
    m = result["machine"]
    ref = result.get("measured_refreshed")
    refreshed = f"; refreshed {ref['date'][:10]} from {', '.join(ref['runs'])}" if ref else ""
    lines = [
        "# Cost of each Table-1 cell on the development machine",
        "",
        f"Measured {m['date']} with `{m['command']}` on {m['cores']} cores ({m['cpu']}), BLAS threads "
        f"{m['blas_threads']}, load average {m['loadavg_before'][0]:.0f} before and "
        f"{m['loadavg_after'][0]:.0f} after (a shared machine: times grow several-fold with the load). "
        "Per cell: the "
        f"median of {result['k']} timed minibatches of each step, projected to the paper protocol "
        "(`benchmarks/cell_cost.py` docstring); `measured` is the wall time per training epoch of the cell's "
        "runs (finished or running; sleep epochs and evaluation included, under the load of their own run"
        f"{refreshed}), the check on the projection; `peak` is the "
        "memory allocated during one train + sleep step (tracemalloc). Core-hours scale to a cluster: "
        "one task per core, one BLAS thread each.",
        "",
        "| cell | method | train step (s) | sleep step (s) | epoch (s) | measured epoch (s) | epochs | "
        "run (core-h) | peak (MiB) | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["cells"]:
        meas = f"{r['measured_epoch_s']:.0f}" if r.get("measured_epoch_s") else "–"
        sleep = f"{r['t_sleep_s']:.2f}" if "t_sleep_s" in r else "–"
        name = r["cell"] + (" (run)" if done and r["cell"] in done else "")
        fb = f" + {r['epochs_fb']} fb" if r.get("epochs_fb") else ""
        peak = f"{r['peak_step_mib']:.0f}" if "peak_step_mib" in r else "–"
        lines.append(
            f"| {name} | {r['method']}{' (fixed)' if r['q'] == 'fixed' else ''} | {r['t_train_s']:.3f} | "
            f"{sleep} | {r['projected_epoch_s']:.0f} | {meas} | {r['epochs']}{fb} | "
            f"{r['projected_run_h']:.1f} | {peak} | `dfc-brian sweep table1/{r['cell']} --seeds 0-4` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=2, help="timed minibatches per step (median)")
    ap.add_argument("--cells", default="*", help="glob over models/table1 names")
    ap.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        default=[Path("runs/table1")],
        help="folders of runs (finished or running) whose epoch times check the projection",
    )
    ap.add_argument("--data-root", default=os.environ.get("DFC_DATA", "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/cell_cost.json"))
    ap.add_argument("--memory", action="store_true", help="also the peak memory of one train + sleep step")
    ap.add_argument(
        "--markdown",
        action="store_true",
        help="time nothing: rewrite the .md table from --out, its measured column refreshed from --runs",
    )
    a = ap.parse_args(argv)
    if a.markdown:
        result = json.loads(Path(a.out).read_text())
        for row in result["cells"]:  # a cell with no run under --runs keeps its stored measurement
            row["measured_epoch_s"] = _measured_epoch(a.runs, row["cell"]) or row.get("measured_epoch_s")
        result["measured_refreshed"] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": [str(r) for r in a.runs],
        }
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
        Path(a.out).with_suffix(".md").write_text(markdown(result, _finished_cells(a.runs)))
        print(f"wrote {Path(a.out).with_suffix('.md')}")
        return 0
    paths = sorted(p for p in (ROOT / "models/table1").glob("*.yaml") if fnmatch.fnmatch(p.stem, a.cells))
    if not paths:
        print(f"no Table-1 config matches {a.cells!r}", file=sys.stderr)
        return 2
    machine = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "loadavg_before": os.getloadavg(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["benchmarks/cell_cost.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    rows, cache = [], {}
    for p in paths:
        row = cell_cost(p, a.k, a.data_root, cache, a.runs, a.memory)
        rows.append(row)
        meas = row["measured_epoch_s"]
        print(
            f"{row['cell']:32s} train {row['t_train_s']:8.3f} s  sleep {row.get('t_sleep_s', 0):7.3f} s  "
            f"epoch {row['projected_epoch_s']:8.0f} s  run {row['projected_run_h']:7.1f} h"
            + (f"  (measured epoch {meas:.0f} s)" if meas else "")
            + (f"  peak {row['peak_step_mib']:.0f} MiB" if "peak_step_mib" in row else ""),
            flush=True,
        )
    machine["loadavg_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "k": a.k, "cells": rows}
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    Path(a.out).with_suffix(".md").write_text(markdown(result, _finished_cells(a.runs)))
    print(f"wrote {a.out} and its .md table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
