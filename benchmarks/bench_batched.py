"""Benchmark: one MNIST-size DFC minibatch in the batched NumPy engine.

Network 784-256-256-256-10 (tanh, tanh, tanh, linear), 128 random samples, T = 1000,
dt = 0.02, tcr = 0.2 (the spec's MNIST DFC controller), time-averaged DFC update. Compares

(a) a straightforward full-trajectory computation: integrate, store v_soma, v_basal and r of
    every layer at every step, then form the update from the stored trajectories;
(b) :class:`~dfc_brian.engines.batched.BatchedDFC` in float64 (accumulate while integrating);
(c) the same in float32;

reporting wall time, peak traced memory (tracemalloc, a separate run) and the angle of the
(b) and (c) updates to (a). Also one DFC-SSA minibatch, times 430 minibatches per epoch.

Usage::

    .venv/bin/python benchmarks/bench_batched.py [--T 1000] [--repeat 2] [--threads N]
        [--out benchmarks/results/batched.json]

``--threads N`` sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS before NumPy is
imported (on a loaded machine one BLAS thread is often faster than spinning ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path


def _threads_from_argv(argv: list[str]) -> str | None:
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


_THREADS = _threads_from_argv(sys.argv)
if _THREADS is not None:  # must happen before NumPy loads its BLAS
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _THREADS

import numpy as np  # noqa: E402

from dfc_brian.engines.batched import BatchedDFC, phi  # noqa: E402
from dfc_brian.model.params import ModelParams  # noqa: E402
from dfc_brian.model.weights import init_weights  # noqa: E402

# ----------------------------------------------------------------------------- parameters
SIZES = [784, 256, 256, 256, 10]  # MNIST network of Table 1
ACTS = ["tanh", "tanh", "tanh", "linear"]
B = 128  # minibatch size
BATCHES_PER_EPOCH = 430  # ceil(55000 / 128)


def make_config(T: int) -> dict:
    return {
        "model": {"sizes": SIZES, "activations": ACTS, "loss": "ce"},
        "controller": {
            "k_p": 2.0,
            "alpha": 1.39e-3,
            "dt": 0.02,
            "tmax": T,
            "tcr": 0.2,
            "target_stepsize": 0.0779,
            "proactive": True,
            "instantaneous": True,
        },
        "convergence": {"include_nonconverged": True},  # compare the same samples in (a), (b), (c)
    }


# ----------------------------------------------------------------------------- (a) naive
def naive_full_trajectory(p: ModelParams, w, X: np.ndarray, r_star: np.ndarray) -> list[np.ndarray]:
    """Integrate storing every state, then average the update over the stored trajectory."""
    c = p.controller
    T, dt, tcr = c.tmax, c.dt, c.tcr
    L = len(w.W)
    v, vB, r = [], [], []
    prev = X
    for i in range(L):
        vB.append(prev @ w.W[i].T + w.b[i])
        v.append(vB[i].copy())
        r.append(phi(ACTS[i], v[i]))
        prev = r[i]
    u = np.zeros_like(r_star)
    u_int = np.zeros_like(r_star)
    traj_v, traj_vB, traj_r = [[x.copy()] for x in v], [[x.copy()] for x in vB], [[x.copy()] for x in r]
    for _ in range(T - 1):
        e = r_star - r[-1]
        u_int = u_int + dt * (e - c.alpha * u)
        u = u_int + c.k_p * e
        prev = X
        for i in range(L):
            vB[i] = prev @ w.W[i].T + w.b[i]
            vA = u @ w.Q[i].T
            v[i] = v[i] + dt / tcr * (vA + vB[i] - v[i])
            r[i] = phi(ACTS[i], v[i])
            prev = r[i]
            traj_v[i].append(v[i])
            traj_vB[i].append(vB[i])
            traj_r[i].append(r[i])
    dW = []
    for i in range(L):
        V, VB = np.stack(traj_v[i]), np.stack(traj_vB[i])  # (T, B, n_i)
        delta = phi(ACTS[i], V) - phi(ACTS[i], VB)
        pre = np.broadcast_to(X, (T,) + X.shape) if i == 0 else np.stack(traj_r[i - 1])
        dW.append(np.einsum("tbn,tbm->nm", delta, pre, optimize=True) / (B * T))
    return dW


def angle_deg(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Angle between two whole-network updates, 2 atan2(|x^ - y^|, |x^ + y^|) (exact near 0)."""
    x = np.concatenate([m.ravel() for m in a])
    y = np.concatenate([m.ravel() for m in b])
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(x - y), np.linalg.norm(x + y))))


def timed(fn, *args, repeat: int = 1):
    """Result of the last call and the best wall time over ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return out, best


def peak_mb(fn, *args) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "batched.json"))
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs for (b), (c), SSA")
    ap.add_argument("--threads", default=None, help="BLAS threads (set before NumPy is imported)")
    ap.add_argument("--label", default="", help="free text stored with the result (machine name)")
    ap.add_argument("--skip-naive-memory", action="store_true", help="skip the traced run of (a)")
    args = ap.parse_args()

    p = ModelParams.from_dict(make_config(args.T))
    w = init_weights(p.network, seed=0, q_init="weight_product")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(B, SIZES[0]))
    y = rng.integers(0, SIZES[-1], B)
    eng64 = BatchedDFC(p, w, dtype=np.float64)
    eng32 = BatchedDFC(p, w, dtype=np.float32)
    r_star = eng64.output_target(eng64.feedforward(X)[1][-1], y)

    eng64.controlled_phase(X[:8], r_star[:8])  # warm-up (BLAS threads, caches)
    dW_a, t_a = timed(naive_full_trajectory, p, w, X, r_star)
    res_b, t_b = timed(eng64.controlled_phase, X, r_star, repeat=args.repeat)
    res_c, t_c = timed(eng32.controlled_phase, X, r_star, repeat=args.repeat)
    _, t_ssa = timed(eng64.ssa, X, r_star, repeat=max(args.repeat, 3))

    mem_a = None if args.skip_naive_memory else peak_mb(naive_full_trajectory, p, w, X, r_star)
    mem_b = peak_mb(eng64.controlled_phase, X, r_star)
    mem_c = peak_mb(eng32.controlled_phase, X, r_star)

    result = {
        "benchmark": "one MNIST DFC minibatch, time-averaged update",
        "network": SIZES,
        "activations": ACTS,
        "batch": B,
        "T": args.T,
        "dt": 0.02,
        "tcr": 0.2,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "load_average_1min": os.getloadavg()[0],
            "blas_threads": _THREADS or "default",
            "label": args.label,
        },
        "timing": f"wall time, best of {args.repeat} for (b), (c); one run for (a)",
        "a_naive_full_trajectory": {"wall_s": t_a, "peak_traced_MB": mem_a},
        "b_batched_float64": {
            "wall_s": t_b,
            "peak_traced_MB": mem_b,
            "angle_to_a_deg": angle_deg(res_b.dW_dfc, dW_a),
            "speedup_vs_a": t_a / t_b,
            "speedup_vs_9s": 9.0 / t_b,
        },
        "c_batched_float32": {
            "wall_s": t_c,
            "peak_traced_MB": mem_c,
            "angle_to_a_deg": angle_deg(res_c.dW_dfc, dW_a),
            "speedup_vs_a": t_a / t_c,
            "speedup_vs_9s": 9.0 / t_c,
        },
        "nonconverged_samples_b": int(res_b.n_nonconverged),
        "dfc_ssa": {
            "minibatch_s": t_ssa,
            "epoch_estimate_s": t_ssa * BATCHES_PER_EPOCH,
            "batches_per_epoch": BATCHES_PER_EPOCH,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
