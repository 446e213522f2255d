"""GEMM-floor benchmark (issue 9): how close BP, DFA, DFC-SSA and the sleep phase run to their
matrix products, per MNIST minibatch, on one BLAS thread.

For each path the multiply-adds (MACs) of every matrix product it performs are counted
analytically from the shapes (the tables :func:`gemm_table` below, one row per product with the
place in the code where it happens). The real path is timed as the training loop calls it, and
in the same run the *tight NumPy GEMM count* is timed: the same list of GEMM shapes executed
back-to-back with ``np.matmul`` on preallocated, contiguous arrays. Real and floor alternate
over a few rounds, so that a change in the machine's load hits both. Reported per path: MACs,
the achieved GFLOP/s (2 MAC / time), the floor's GFLOP/s and the ratio real time / floor time
(the overhead beyond the unavoidable products), in wall time and in the process's CPU time.

Paths, per MNIST minibatch (B 128, the first minibatch of the fixed split, weights of
``make_method(cfg, 0)``):

- ``bp``, ``dfa``, ``dfc_ssa``: ``Method.train_step(X, y)`` with ``models/table1/mnist_{bp,dfa,
  dfc_ssa}.yaml`` (feedforward pass, loss, gradient, clipping and the Adam step; DFC-SSA runs
  with ``extra_sleep_mode: epoch``, so its train_step has no sleep phase);
- ``sleep``: one sleep phase ``engine.sleep_phase(X, rng=..., dtype=..., noise_method=...)``
  as ``DFCMethod._sleep`` calls it, with ``models/table1/mnist_dfc.yaml`` (T_fb = 48 stored
  states, 47 Euler steps; the same sleep settings as mnist_dfc_ssa.yaml).

Non-GEMM pieces that no implementation of these paths avoids are timed as well and reported
beside the floor (not in it): the 128 per-sample 10x10 solves of DFC-SSA
(``np.linalg.solve``), the optimiser step of ``train_step`` (clip and Adam on the forward
weights), and the sleep phase's normal draws (47 x 128 x 778 from ``rng.standard_normal``) and
its hidden layers' tanh (47 x 3 x 128 x 256).

The GEMM tables are checked at the start of every run against a trace of one real call of each
path (:func:`check_tables`: the products in which a weight takes part, logged with their shapes;
``table_matches_trace`` in the JSON).

On a loaded machine read the CPU-time columns: the wall time of a process that shares its core
includes the time it waits, the CPU time does not (both sides of a ratio are measured the same
way, so the wall-time ratio is only noisier).

Usage::

    DFC_DATA=/work/shared/datasets nice -n 5 .venv/bin/python benchmarks/bench_flops.py \\
        [--rounds 5] [--calls 20] [--methods bp,dfa,dfc_ssa,sleep] [--out FILE]

Output: JSON (default ``benchmarks/results/flops_threads1.json``) with the machine (CPU model,
cores, BLAS, threads, load average before and after), the GEMM tables, per-round times of both
sides; a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_speed import machine_info  # noqa: E402

from dfc_brian.engines.methods import make_method  # noqa: E402

B = 128
METHODS = ("bp", "dfa", "dfc_ssa", "sleep")
CONFIGS = {"bp": "mnist_bp", "dfa": "mnist_dfa", "dfc_ssa": "mnist_dfc_ssa", "sleep": "mnist_dfc"}

Gemm = tuple[int, int, int, int, str]
"""(M, K, N, count, where): ``count`` products (M x K) @ (K x N), M K N multiply-adds each."""


# ----------------------------------------------------------------------------- GEMM tables
def gemm_table(method: str, sizes: list[int], batch: int, t_fb: int = 48) -> list[Gemm]:
    """Every matrix product of one minibatch of ``method``, as (M, K, N, count, where).

    ``sizes`` are n_0..n_L, ``batch`` is B, ``t_fb`` the sleep phase's stored states (its loop
    runs T_fb - 1 steps). Layer index i = 1..L is the paper's.
    """
    n, L, nL = sizes, len(sizes) - 1, sizes[-1]
    rows: list[Gemm] = []
    # mlp.feedforward: v_i = r_{i-1} @ W_i.T + b_i (every path starts with it)
    ff = [(batch, n[i - 1], n[i], 1, f"mlp.feedforward: r_{i - 1} @ W_{i}.T") for i in range(1, L + 1)]
    # mlp._from_deltas: sum_b delta_i r_{i-1}^T = delta_i.T @ r_{i-1} (BP, DFA)
    outer = [
        (n[i], batch, n[i - 1], 1, f"mlp._from_deltas: delta_{i}.T @ r_{i - 1}") for i in range(1, L + 1)
    ]
    if method == "bp":
        rows += ff
        # mlp.bp_gradient: delta_i = (delta_{i+1} @ W_{i+1}) * phi'(v_i), i = L-1..1
        rows += [
            (batch, n[i + 1], n[i], 1, f"mlp.bp_gradient: delta_{i + 1} @ W_{i + 1}")
            for i in range(L - 1, 0, -1)
        ]
        rows += outer
    elif method == "dfa":
        rows += ff
        # mlp.dfa_gradient (target convention): h_i - h_i* = -(err @ B_i.T), i = 1..L (B_L = I)
        rows += [(batch, nL, n[i], 1, f"mlp.dfa_gradient: err @ B_{i}.T") for i in range(1, L + 1)]
        rows += outer
    elif method == "dfc_ssa":
        rows += ff  # DFCMethod.train_step -> BatchedDFC.feedforward -> mlp.feedforward
        # mlp.jq: tangents of all samples as one (B n_L, n_{i-1}) matrix, Z_i = R_{i-1} @ W_i.T, i = 2..L
        rows += [(batch * nL, n[i - 1], n[i], 1, f"mlp.jq: R_{i - 1} @ W_{i}.T") for i in range(2, L + 1)]
        # mlp.ssa: dv_i = u @ Q_i.T, i = 1..L
        rows += [(batch, nL, n[i], 1, f"mlp.ssa: u @ Q_{i}.T") for i in range(1, L + 1)]
        # mlp.nonlinear_difference: basal v_i^B = r_{i-1} @ W_i.T + b_i, i = 2..L (layer 1 from ff)
        rows += [
            (batch, n[i - 1], n[i], 1, f"mlp.nonlinear_difference: r_{i - 1} @ W_{i}.T")
            for i in range(2, L + 1)
        ]
        # mlp.nonlinear_difference: dW_i = d_i.T @ r_{i-1} / B, i = 1..L
        rows += [
            (n[i], batch, n[i - 1], 1, f"mlp.nonlinear_difference: d_{i}.T @ r_{i - 1}")
            for i in range(1, L + 1)
        ]
    elif method == "sleep":
        steps = t_fb - 1
        rows += ff  # BatchedDFC.sleep_phase -> feedforward
        # BatchedDFC._sleep_integrate, every step t = 0..T_fb-2:
        # S_Q[i] += vA[i].T @ u (anti-Hebbian sum), i = 1..L
        rows += [(n[i], batch, nL, steps, f"batched._sleep_integrate: vA_{i}.T @ u") for i in range(1, L + 1)]
        # fb[i] = u_fb @ (a g Q_i.T) (apical drive), i = 1..L
        rows += [
            (batch, nL, n[i], steps, f"batched._sleep_integrate: u_fb @ agQ_{i}.T") for i in range(1, L + 1)
        ]
        # tmp[i] = dr[i-1] @ (g W_i.T) (somatic drive; layer 1's basal input is constant), i = 2..L
        rows += [
            (batch, n[i - 1], n[i], steps, f"batched._sleep_integrate: dr_{i - 1} @ gW_{i}.T")
            for i in range(2, L + 1)
        ]
    else:
        raise SystemExit(f"unknown method {method!r}; choose from {METHODS}")
    return rows


def macs(rows: list[Gemm]) -> int:
    """Multiply-adds of a GEMM table."""
    return sum(m * k * nn * c for m, k, nn, c, _ in rows)


def floor_fn(rows: list[Gemm], dtype: np.dtype) -> Callable[[], None]:
    """The tight GEMM count: the table's products back-to-back on preallocated contiguous arrays."""
    rng = np.random.default_rng(0)
    ops = []
    for m, k, nn, c, _ in rows:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, nn)).astype(dtype)
        ops.append((a, b, np.empty((m, nn), dtype=dtype), c))

    def run() -> None:
        for a, b, out, c in ops:
            for _ in range(c):
                np.matmul(a, b, out=out)

    return run


# ----------------------------------------------------------------------------- timing
def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Minimum wall and CPU time (s) of ``calls`` calls after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(calls):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def load_cfg(name: str) -> dict:
    return yaml.safe_load((ROOT / "models" / "table1" / f"{name}.yaml").read_text())


def minibatch() -> tuple[np.ndarray, np.ndarray, str]:
    """The first minibatch of MNIST's fixed training split (DFC_DATA)."""
    from dfc_brian.experiments.data import load_dataset

    ds = load_dataset("mnist")
    return ds.train.X[:B].astype(np.float64), ds.train.y[:B].astype(np.int64), "MNIST, first minibatch"


def real_fn(method: str, X: np.ndarray, y: np.ndarray) -> tuple[Callable[[], object], np.dtype, dict]:
    """The real path of ``method`` (as the training loop calls it), its dtype and its settings."""
    cfg = load_cfg(CONFIGS[method])
    m = make_method(cfg, 0)
    if method == "sleep":
        t = m.training
        dt = np.dtype(np.float32 if t["dtype_fb"] == "float32" else np.float64)
        info = {
            "config": CONFIGS[method],
            "T_fb": m.params.sleep.tmax_fb,
            "noise_method": t["noise_method_fb"],
        }

        def run() -> object:  # exactly the call of DFCMethod._sleep
            return m.engine.sleep_phase(X, rng=m.rng, dtype=dt, noise_method=t["noise_method_fb"])

        return run, dt, info
    dt = np.dtype(np.float32 if m.training["dtype"] == "float32" else np.float64)
    return (lambda: m.train_step(X, y)), dt, {"config": CONFIGS[method]}


def extras(method: str, sizes: list[int], dtype: np.dtype, t_fb: int) -> dict[str, Callable[[], object]]:
    """Unavoidable non-GEMM work of a path, timed beside the floor (not in it).

    BP, DFA, DFC-SSA: the optimiser step as ``train_step`` runs it (``Method._apply_forward``:
    gradient norm, per-tensor clip, Adam) on a second method's weights; DFC-SSA also the 128
    per-sample 10 x 10 solves; sleep: the normal draws of its 47 steps (``standard_normal``,
    the default ``noise_method_fb: ziggurat``) and the hidden layers' tanh at each step.
    """
    rng = np.random.default_rng(0)
    nL = sizes[-1]
    out: dict[str, Callable[[], object]] = {}
    if method in ("bp", "dfa", "dfc_ssa"):
        m2 = make_method(load_cfg(CONFIGS[method]), 0)
        gW = [1e-3 * rng.standard_normal(W.shape) for W in m2.weights.W]
        gb = [1e-3 * rng.standard_normal(b.shape) for b in m2.weights.b]
        out["optimizer_step"] = lambda: m2._apply_forward(gW, gb)
    if method == "dfc_ssa":
        A = rng.standard_normal((B, nL, nL)) + 3 * np.eye(nL)
        rhs = rng.standard_normal((B, nL, 1))
        out["solve_10x10_x128"] = lambda: np.linalg.solve(A, rhs)
    if method == "sleep":
        buf = np.empty(B * sum(sizes[1:]), dtype=dtype)
        g = np.random.default_rng(1)

        def draws() -> None:
            for _ in range(t_fb - 1):
                g.standard_normal(dtype=dtype, out=buf)

        out["normal_draws"] = draws
        hid = [np.random.default_rng(2).standard_normal((B, k)).astype(dtype) for k in sizes[1:-1]]
        hid_out = [np.empty_like(a) for a in hid]

        def rates() -> None:  # the hidden layers' tanh at every step (the output layer is linear)
            for _ in range(t_fb - 1):
                for a, o in zip(hid, hid_out, strict=True):
                    np.tanh(a, out=o)

        out["tanh"] = rates
    return out


def check_tables(X: np.ndarray, y: np.ndarray) -> dict[str, bool]:
    """Trace the matrix products of one real call of each path and compare them with the tables.

    The weights (and, for the sleep phase, the engine's transposed weights) are wrapped in an
    ndarray subclass that logs every ``matmul`` it takes part in, with its (M, K, N). The sleep
    phase's ``vA_i.T @ u`` involve no weight and are not traced (they are left out of its check).
    """
    from collections import Counter

    from dfc_brian.engines import batched

    log: Counter = Counter()

    class Traced(np.ndarray):
        def __array_ufunc__(self, uf, method, *inputs, out=None, **kw):  # noqa: ANN001, ANN002, ANN003, ANN204
            ins = [np.asarray(x) if isinstance(x, Traced) else x for x in inputs]
            if out is not None:
                kw["out"] = tuple(np.asarray(o) if isinstance(o, Traced) else o for o in out)
            if uf is np.matmul and method == "__call__":
                a, b = ins[0], ins[1]
                log[(a.shape[-2] * (a.shape[0] if a.ndim == 3 else 1), a.shape[-1], b.shape[-1])] += 1
            res = getattr(uf, method)(*ins, **kw)
            if out is not None:
                return out[0] if len(out) == 1 else out
            return res.view(Traced) if isinstance(res, np.ndarray) else res

    ok = {}
    for meth in METHODS:
        cfg = load_cfg(CONFIGS[meth])
        m = make_method(cfg, 0)
        m.weights.W = [a.view(Traced) for a in m.weights.W]
        m.weights.Q = [a.view(Traced) for a in m.weights.Q]
        if meth == "dfa":
            m.B_fb = [a.view(Traced) for a in m.B_fb]
        log.clear()
        if meth == "sleep":
            mats = batched.BatchedDFC._mats
            batched.BatchedDFC._mats = lambda self, dtype=None, mats=mats: tuple(
                [a.view(Traced) for a in part] for part in mats(self, dtype)
            )
            try:
                m.engine.sleep_phase(X, rng=m.rng)
            finally:
                batched.BatchedDFC._mats = mats
        else:
            m.train_step(X, y)
        table: Counter = Counter()
        t_fb = cfg.get("sleep", {}).get("tmax_fb", 48)
        for mm, k, nn, c, where in gemm_table(meth, cfg["model"]["sizes"], B, t_fb):
            if not (meth == "sleep" and "vA_" in where):
                table[(mm, k, nn)] += c
        ok[meth] = dict(log) == dict(table)
        if not ok[meth]:
            print(f"{meth}: traced products {dict(log)} differ from the table {dict(table)}", flush=True)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (real, floor)")
    ap.add_argument("--calls", type=int, default=20, help="timed calls per side and round (sleep: calls/4)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "flops_threads1.json"))
    args = ap.parse_args()
    methods = [s for s in args.methods.split(",") if s]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; choose from {list(METHODS)}")
    from threadpoolctl import threadpool_info, threadpool_limits

    load_before = os.getloadavg()
    t_start = time.time()
    X, y, source = minibatch()
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        blas = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for d in threadpool_info()
            if d.get("user_api") == "blas"
        ]
        tables_ok = check_tables(X, y)
        for meth in methods:
            cfg = load_cfg(CONFIGS[meth])
            t_fb = cfg.get("sleep", {}).get("tmax_fb", 48)
            real, dt, info = real_fn(meth, X, y)
            rows = gemm_table(meth, cfg["model"]["sizes"], B, t_fb)
            floor = floor_fn(rows, dt)
            ext = extras(meth, cfg["model"]["sizes"], dt, t_fb)
            calls = max(3, args.calls // 4) if meth == "sleep" else args.calls
            per: dict[str, list[float]] = {"real": [], "floor": [], "real_cpu": [], "floor_cpu": []}
            per_ext: dict[str, list[float]] = {f"{k}{c}": [] for k in ext for c in ("", "_cpu")}
            for r in range(args.rounds):
                order = ("real", "floor") if r % 2 == 0 else ("floor", "real")
                for side in order:
                    w, c = timed(real if side == "real" else floor, calls)
                    per[side].append(w)
                    per[f"{side}_cpu"].append(c)
                for k, fn in ext.items():
                    w, c = timed(fn, calls)
                    per_ext[k].append(w)
                    per_ext[f"{k}_cpu"].append(c)
            mac = macs(rows)
            med = {k: statistics.median(v) for k, v in per.items()}
            med_ext = {k: statistics.median(v) for k, v in per_ext.items()}
            ext_wall = sum(med_ext[k] for k in ext)
            ext_cpu = sum(med_ext[f"{k}_cpu"] for k in ext)
            ratio = statistics.median([a / b for a, b in zip(per["real"], per["floor"], strict=True)])
            ratio_cpu = statistics.median(
                [a / b for a, b in zip(per["real_cpu"], per["floor_cpu"], strict=True)]
            )
            results[meth] = dict(
                info,
                dtype=str(dt),
                macs=mac,
                table_matches_trace=tables_ok[meth],
                gemm_table=[
                    {"M": m_, "K": k_, "N": n_, "count": c_, "macs": m_ * k_ * n_ * c_, "where": w_}
                    for m_, k_, n_, c_, w_ in rows
                ],
                real_s=med["real"],
                floor_s=med["floor"],
                real_cpu_s=med["real_cpu"],
                floor_cpu_s=med["floor_cpu"],
                real_gflops=2 * mac / med["real"] / 1e9,
                floor_gflops=2 * mac / med["floor"] / 1e9,
                real_gflops_cpu=2 * mac / med["real_cpu"] / 1e9,
                floor_gflops_cpu=2 * mac / med["floor_cpu"] / 1e9,
                ratio_real_over_floor=ratio,
                ratio_real_over_floor_cpu=ratio_cpu,
                extras_s=med_ext,
                ratio_real_over_floor_plus_extras=med["real"] / (med["floor"] + ext_wall),
                ratio_real_over_floor_plus_extras_cpu=med["real_cpu"] / (med["floor_cpu"] + ext_cpu),
                per_round_s=per,
                per_round_extras_s=per_ext,
            )
            print(
                f"{meth}: real {med['real'] * 1e3:.2f} ms (CPU {med['real_cpu'] * 1e3:.2f}), "
                f"floor {med['floor'] * 1e3:.2f} ms (CPU {med['floor_cpu'] * 1e3:.2f}), "
                f"ratio {ratio:.2f} (CPU {ratio_cpu:.2f})",
                flush=True,
            )
    out = {
        "benchmark": "GEMM floor per MNIST minibatch, 1 BLAS thread (issue 9)",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "inputs": source,
        "batch": B,
        "timing": (
            f"per round: minimum over {args.calls} calls (sleep: {max(3, args.calls // 4)}) after one "
            f"warm-up, real path and floor alternating, then the extras; median over {args.rounds} "
            "rounds; ratio: median over rounds of real/floor (same round); GFLOP/s = 2 MAC / median "
            "time; *_cpu: the same with the process's CPU time (process_time), which a loaded "
            "machine's time-sharing does not inflate; floor_plus_extras: floor + the extras' medians"
        ),
        "machine": dict(
            machine_info(),
            blas=blas,
            blas_threads=1,
            numpy=np.__version__,
            load_average_before=list(load_before),
            load_average_after=list(os.getloadavg()),
            wall_s_total=time.time() - t_start,
        ),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(markdown(out))
    print(f"\nout: {args.out}")


def markdown(out: dict) -> str:
    """The short markdown report of a result dict (the table of the README)."""
    mi = out["machine"]
    blas = mi["blas"][0] if mi["blas"] else {}
    lines = [
        f"{mi['cpu_model']}, {mi['cpus_usable']} cores, {blas.get('internal_api')} {blas.get('version')} "
        f"({blas.get('architecture')}), 1 BLAS thread, load average "
        f"{mi['load_average_before'][0]:.1f} before, {mi['load_average_after'][0]:.1f} after",
        "",
        "| per MNIST minibatch (B 128) | GEMM MAC | real, CPU ms | real GFLOP/s (CPU) "
        "| tight GEMM, CPU ms | tight GEMM GFLOP/s (CPU) | real / GEMM, CPU (wall) "
        "| non-GEMM extras, CPU ms | real / (GEMM + extras), CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for meth, r in out["results"].items():
        ext = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in r["extras_s"].items() if k.endswith("_cpu")).replace(
            "_cpu", ""
        )
        lines.append(
            f"| {meth} ({r['dtype']}) | {r['macs'] / 1e6:.1f} M | {r['real_cpu_s'] * 1e3:.2f} "
            f"| {r['real_gflops_cpu']:.1f} | {r['floor_cpu_s'] * 1e3:.2f} | {r['floor_gflops_cpu']:.1f} "
            f"| {r['ratio_real_over_floor_cpu']:.2f} ({r['ratio_real_over_floor']:.2f}) | {ext or '-'} "
            f"| {r['ratio_real_over_floor_plus_extras_cpu']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
