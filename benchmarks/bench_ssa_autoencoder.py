"""Paired benchmark: DFC-SSA on the MNIST autoencoder, low-rank solve against the direct one.

The autoencoder's output layer is linear and its Q_L is the identity, so
:func:`dfc_brian.model.mlp.ssa` solves for the control in the 256-wide last hidden layer
(:func:`~dfc_brian.model.mlp.ssa_control_low_rank`) instead of forming the 784 x 784 matrix
JQ per sample and factorising it. The baseline is that direct route, which the code took on
every network before the low-rank route existed: :func:`~dfc_brian.model.mlp.jq` and
``np.linalg.solve``. Both run in this process on the same weights and minibatch, in
alternating rounds (direct, low-rank, direct, ...), so a change in the machine's load hits
both sides; the figure is the ratio of the medians.

Timed, per minibatch of 128 (``models/table1/mnist_autoencoder_dfc_ssa_fixed.yaml``, seed 0):

- ``solve``: the control u_ss alone (direct: jq + LU; low-rank: ssa_control_low_rank);
- ``train_step``: one whole DFC-SSA (fixed) training step, ``Method.train_step`` (feedforward,
  target, steady state, nonlinear-difference update, Adam), with the low-rank route switched
  off for the baseline side (``mlp._identity_output_route`` patched to False).

Equality is reported, not assumed: the relative difference of u, and of the weights after
the two sides' train steps from the same state.

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_ssa_autoencoder.py [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from dfc_brian.config import load_config  # noqa: E402
from dfc_brian.engines.methods import make_method  # noqa: E402
from dfc_brian.model import mlp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "table1/mnist_autoencoder_dfc_ssa_fixed"
B = 128


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _minibatch() -> tuple[np.ndarray, str]:
    try:
        from dfc_brian.experiments.data import load_dataset

        ds = load_dataset("mnist_autoencoder")
        return ds.train.X[:B].astype(
            np.float64
        ), "MNIST (autoencoder preprocessing), first training minibatch"
    except Exception:  # noqa: BLE001 - any data problem: fall back to random inputs
        return np.random.default_rng(0).normal(size=(B, 784)), "random normal inputs (no MNIST found)"


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (direct, low-rank)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_ssa_autoencoder.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    cfg = load_config(CONFIG)
    X, source = _minibatch()

    def fresh():
        return make_method(cfg, 0)

    m = fresh()
    w, acts, alpha = m.engine.weights, m.params.network, m.params.controller.alpha
    ff = mlp.feedforward(w, acts, X)
    delta = mlp.output_delta(ff[1][-1], X, "mse", m.params.controller.target_stepsize)
    Qs = mlp.layer_Q(w)
    n_L = delta.shape[1]

    def direct():
        JQ = mlp.jq(w, acts, ff[0], Qs)
        return np.linalg.solve(JQ + alpha * np.eye(n_L), delta[:, :, None])[:, :, 0]

    def low_rank():
        return mlp.ssa_control_low_rank(w, acts, ff[0], Qs, delta, alpha)

    real_route = mlp._identity_output_route

    def step(route_on: bool):
        mm = fresh()
        mlp._identity_output_route = real_route if route_on else (lambda *a: False)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            mm.train_step(X, X)
            return time.perf_counter() - t0, time.process_time() - c0, mm.engine.weights
        finally:
            mlp._identity_output_route = real_route

    times: dict[str, list[float]] = {
        k: [] for k in ("solve_direct", "solve_low_rank", "step_direct", "step_low_rank")
    }
    cpu: dict[str, list[float]] = {k: [] for k in times}
    direct(), low_rank()  # warm-up
    for _ in range(args.rounds):
        for name, fn in (("solve_direct", direct), ("solve_low_rank", low_rank)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        for name, on in (("step_direct", False), ("step_low_rank", True)):
            t, c, wts = step(on)
            times[name].append(t)
            cpu[name].append(c)
            if on:
                w_new = wts
            else:
                w_old = wts
    u_rel = _rel(low_rank(), direct())
    w_rel = max(_rel(a, b) for a, b in zip(w_new.W, w_old.W, strict=True))

    def ratio(d, a, b):
        return float(np.median(d[a]) / np.median(d[b]))

    out = {
        "what": __doc__.splitlines()[0],
        "config": CONFIG,
        "inputs": source,
        "batch": B,
        "rounds": args.rounds,
        "times_s": times,
        "cpu_times_s": cpu,
        "speedup_solve": ratio(times, "solve_direct", "solve_low_rank"),
        "speedup_solve_cpu": ratio(cpu, "solve_direct", "solve_low_rank"),
        "speedup_train_step": ratio(times, "step_direct", "step_low_rank"),
        "speedup_train_step_cpu": ratio(cpu, "step_direct", "step_low_rank"),
        "u_relative_difference": u_rel,
        "weights_after_step_relative_difference": w_rel,
        "machine": {
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "platform": platform.platform(),
            "numpy": np.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"solve {out['speedup_solve']:.1f}x (cpu {out['speedup_solve_cpu']:.1f}x), train step "
        f"{out['speedup_train_step']:.1f}x (cpu {out['speedup_train_step_cpu']:.1f}x); u differs by "
        f"{u_rel:.1e}, weights after one step by {w_rel:.1e}; "
        f"load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
