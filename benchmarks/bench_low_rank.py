"""Paired benchmark: DFC-SSA's low-rank control solve (the autoencoder) against an earlier commit's.

:func:`dfc_brian.model.mlp.ssa_control_low_rank` at the working tree is timed against the same
function at ``--baseline`` (default ``87da879``, before it stopped forming P_1 and copying the
(B, m, m) system twice), loaded from ``git show REV:dfc_brian/model/mlp.py`` into this process:

- ``solve``: the control u_ss of the first MNIST minibatch, ``mnist_autoencoder_dfc_ssa_fixed``;
- ``ssa_step``: one whole DFC-SSA (fixed) training step (``Method.train_step``: feedforward,
  target, steady state, update, Adam), the baseline with the earlier function patched in.

Alternating rounds (baseline, new, baseline, ...) so that a change in the machine's load hits both
sides; each figure is the ratio of the medians, in wall and CPU time. Equality is reported: u
(relative difference) and the weights after the two sides' steps.

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_low_rank.py [--rounds 5] [--baseline REV] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_autoencoder import _minibatch, _rel, machine_record  # noqa: E402

from dfc_brian.config import load_config  # noqa: E402
from dfc_brian.engines.methods import make_method  # noqa: E402
from dfc_brian.model import mlp  # noqa: E402


def _module_at(rev: str):
    """``dfc_brian/model/mlp.py`` as it was at ``rev``, imported as a module of its own."""
    src = subprocess.run(
        ["git", "show", f"{rev}:dfc_brian/model/mlp.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "mlp_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("mlp_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (baseline, new)")
    ap.add_argument("--baseline", default="87da879", help="git revision of the baseline")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_low_rank.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    old = _module_at(args.baseline)
    new_fn = mlp.ssa_control_low_rank
    X, source = _minibatch()
    cfg = load_config("table1/mnist_autoencoder_dfc_ssa_fixed")
    m = make_method(cfg, 0)
    w, acts, alpha = m.engine.weights, m.params.network, m.params.controller.alpha
    ff = mlp.feedforward(w, acts, X)
    delta = mlp.output_delta(ff[1][-1], X, "mse", m.params.controller.target_stepsize)
    Qs = mlp.layer_Q(w)

    def solve(fn):
        return fn(w, acts, ff[0], Qs, delta, alpha)

    def ssa_step(fn):
        mlp.ssa_control_low_rank = fn
        try:
            mm = make_method(cfg, 0)
            mm.train_step(X, X)
        finally:
            mlp.ssa_control_low_rank = new_fn
        return [x.copy() for x in mm.engine.weights.W]

    sides = {"baseline": old.ssa_control_low_rank, "new": new_fn}
    tasks = {"solve": solve, "ssa_step": ssa_step}
    times = {k: {s: [] for s in sides} for k in tasks}
    cpu = {k: {s: [] for s in sides} for k in tasks}
    outputs: dict[str, dict[str, object]] = {k: {} for k in tasks}
    for name, task in tasks.items():
        for fn in sides.values():  # warm-up
            task(fn)
        for _ in range(args.rounds):
            for side, fn in sides.items():
                t0, c0 = time.perf_counter(), time.process_time()
                outputs[name][side] = task(fn)
                times[name][side].append(time.perf_counter() - t0)
                cpu[name][side].append(time.process_time() - c0)

    def ratio(d, k):
        return float(np.median(d[k]["baseline"]) / np.median(d[k]["new"]))

    out = {
        "what": __doc__.splitlines()[0],
        "baseline": args.baseline,
        "new": sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else ""),
        "inputs": source,
        "rounds": args.rounds,
        "times_s": times,
        "cpu_times_s": cpu,
        "speedup": {k: ratio(times, k) for k in tasks},
        "speedup_cpu": {k: ratio(cpu, k) for k in tasks},
        "equality": {
            "solve_u_relative_difference": _rel(outputs["solve"]["new"], outputs["solve"]["baseline"]),
            "ssa_step_weights_max_relative_difference": max(
                _rel(a, b)
                for a, b in zip(outputs["ssa_step"]["new"], outputs["ssa_step"]["baseline"], strict=True)
            ),
        },
        "machine": machine_record(load_before),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for k in tasks:
        med = {s: float(np.median(times[k][s])) for s in sides}
        print(
            f"{k}: baseline {med['baseline'] * 1e3:.0f} ms, new {med['new'] * 1e3:.0f} ms: "
            f"{out['speedup'][k]:.2f}x wall, {out['speedup_cpu'][k]:.2f}x CPU"
        )
    print(json.dumps(out["equality"]))
    print(f"load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
