"""Paired benchmark: the MNIST autoencoder's shortcuts against the routes they replace.

The autoencoder (784-256-32-256-784) has a linear output layer and Q_L = I in every Table-1
config, and the engine uses both facts:

- ``solve``: DFC-SSA solves for the control in the 256-wide last hidden layer
  (:func:`dfc_brian.model.mlp.ssa_control_low_rank`) instead of forming the 784 x 784 matrix
  JQ per sample and factorising it (baseline: :func:`~dfc_brian.model.mlp.jq` and
  ``np.linalg.solve``);
- ``ssa_step``: one whole DFC-SSA (fixed) training step, ``Method.train_step`` (feedforward,
  target, steady state, update, Adam), baseline with the low-rank route switched off;
- ``sleep``: one sleep phase (``mnist_autoencoder_dfc_ssa.yaml``, T_fb 60, seeded noise) and
  ``controlled``: one DFC controlled phase (``mnist_autoencoder_dfc.yaml``, block-summed update,
  ``--tmax`` stored states; the cost per step is what the ratio measures), both feeding u
  itself to the output layer's apical compartments instead of a GEMM with the identity
  (``BatchedDFC._identity_feedback``); baseline with that switched off.

Each baseline is the code path the engine took before its shortcut, run in this process on
the same weights and minibatch, in alternating rounds (baseline, new, baseline, ...) so that a
change in the machine's load hits both sides; each figure is the ratio of the medians, in wall
and in CPU time. Equality is reported, not assumed: u (relative difference), the weights after
the two sides' train steps, and the phases' outputs (bit for bit: maximum absolute difference).

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_autoencoder.py [--rounds 3] [--tmax 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_speed import machine_info  # noqa: E402

from dfc_brian.config import load_config  # noqa: E402
from dfc_brian.engines.batched import BatchedDFC  # noqa: E402
from dfc_brian.engines.methods import make_method  # noqa: E402
from dfc_brian.model import mlp  # noqa: E402

B = 128


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


def _maxabs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


class _Shortcuts:
    """Switch the engine's autoencoder shortcuts off (the baseline side) and back on."""

    route = mlp._identity_output_route
    eye = BatchedDFC._identity_feedback

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        if not self.on:
            mlp._identity_output_route = lambda *a: False
            BatchedDFC._identity_feedback = lambda self: [False] * self.L
        return self

    def __exit__(self, *exc):
        mlp._identity_output_route = _Shortcuts.route
        BatchedDFC._identity_feedback = _Shortcuts.eye


def machine_record(load_before: tuple[float, float, float]) -> dict:
    """The machine of a paired benchmark: CPU, BLAS threads, load average before and after, numpy."""
    return {
        **machine_info(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "numpy": np.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (baseline, new)")
    ap.add_argument("--tmax", type=int, default=200, help="stored states of the timed controlled phase")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_autoencoder.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    X, source = _minibatch()

    # --- DFC-SSA (fixed): the solve and a whole training step
    cfg_ssa = load_config("table1/mnist_autoencoder_dfc_ssa_fixed")
    m = make_method(cfg_ssa, 0)
    w, acts, alpha = m.engine.weights, m.params.network, m.params.controller.alpha
    ff = mlp.feedforward(w, acts, X)
    delta = mlp.output_delta(ff[1][-1], X, "mse", m.params.controller.target_stepsize)
    Qs = mlp.layer_Q(w)

    def solve():
        if not mlp._identity_output_route(w, mlp.activations(acts), Qs):
            JQ = mlp.jq(w, acts, ff[0], Qs)
            return np.linalg.solve(JQ + alpha * np.eye(JQ.shape[-1]), delta[:, :, None])[:, :, 0]
        return mlp.ssa_control_low_rank(w, acts, ff[0], Qs, delta, alpha)

    def ssa_step():
        mm = make_method(cfg_ssa, 0)
        mm.train_step(X, X)
        return [x.copy() for x in mm.engine.weights.W]

    # --- the phases: sleep (trained-Q DFC-SSA config) and controlled (DFC config)
    m_sleep = make_method(load_config("table1/mnist_autoencoder_dfc_ssa"), 0)
    cfg_dfc = load_config("table1/mnist_autoencoder_dfc")
    cfg_dfc["controller"]["tmax"] = args.tmax
    m_dfc = make_method(cfg_dfc, 0)
    r_star = m_dfc.engine.output_target(m_dfc.engine.feedforward(X)[1][-1], X)

    def sleep():
        return m_sleep.engine.sleep_phase(X, rng=np.random.default_rng(5)).dQ

    def controlled():
        return m_dfc.engine.controlled_phase(X, r_star, accumulate=True, exact=False).dW_dfc

    tasks = {"solve": solve, "ssa_step": ssa_step, "sleep": sleep, "controlled": controlled}
    times: dict[str, dict[str, list[float]]] = {k: {"baseline": [], "new": []} for k in tasks}
    cpu: dict[str, dict[str, list[float]]] = {k: {"baseline": [], "new": []} for k in tasks}
    outputs: dict[str, dict[str, object]] = {k: {} for k in tasks}
    for name, fn in tasks.items():
        for on in (False, True):  # warm-up
            with _Shortcuts(on):
                fn()
        for _ in range(args.rounds):
            for side, on in (("baseline", False), ("new", True)):
                with _Shortcuts(on):
                    t0, c0 = time.perf_counter(), time.process_time()
                    outputs[name][side] = fn()
                    times[name][side].append(time.perf_counter() - t0)
                    cpu[name][side].append(time.process_time() - c0)
        med = {side: float(np.median(v)) for side, v in times[name].items()}
        print(f"{name}: baseline {med['baseline']:.3f} s, new {med['new']:.3f} s")

    def ratio(d, k):
        return float(np.median(d[k]["baseline"]) / np.median(d[k]["new"]))

    equal = {
        "solve_u_relative_difference": _rel(outputs["solve"]["new"], outputs["solve"]["baseline"]),
        "ssa_step_weights_max_relative_difference": max(
            _rel(a, b)
            for a, b in zip(outputs["ssa_step"]["new"], outputs["ssa_step"]["baseline"], strict=True)
        ),
        "sleep_dQ_max_abs_difference": _maxabs(outputs["sleep"]["new"], outputs["sleep"]["baseline"]),
        "controlled_dW_max_abs_difference": _maxabs(
            outputs["controlled"]["new"], outputs["controlled"]["baseline"]
        ),
    }
    out = {
        "what": __doc__.splitlines()[0],
        "inputs": source,
        "batch": B,
        "rounds": args.rounds,
        "controlled_tmax": args.tmax,
        "times_s": times,
        "cpu_times_s": cpu,
        "speedup": {k: ratio(times, k) for k in tasks},
        "speedup_cpu": {k: ratio(cpu, k) for k in tasks},
        "equality": equal,
        "machine": machine_record(load_before),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for k in tasks:
        print(f"{k}: {out['speedup'][k]:.2f}x wall, {out['speedup_cpu'][k]:.2f}x CPU")
    print(json.dumps(equal))
    print(f"load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
