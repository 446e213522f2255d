"""Paired speed benchmark (issue 9): today's engine against a baseline commit, in one run.

Every figure is a *ratio* measured in the same run, so it does not depend on the machine: the
baseline engine (default commit 54c366a) is checked out in a git worktree beside this one, and
both engines run in fresh subprocesses on the same weights, inputs and labels, alternating
rounds (base, new, base, new, ...) so that a change in the machine's load hits both sides.
Per MNIST minibatch (B 128, network 784-256-256-256-10, tanh x3 + linear, cross-entropy,
the authors' MNIST settings of ``models/table1/mnist_dfc.yaml``):

- ``ssa``: one DFC-SSA update (feedforward pass, output target, :meth:`BatchedDFC.ssa`);
- ``sleep``: one sleep phase (T_fb 48 stored states, noise from a seeded generator, dQ);
  ``sleep32``: the same with the whole engine in float32; ``sleep_bm``, ``sleep32_bm``: the
  same with today's ``noise_method='box_muller'`` (the baseline draws its own way);
- ``dfc``: one DFC controlled phase (T 1000, float64, time-averaged update);
- ``dfc_stat``: the same with today's stationary finish (``--stationary-tol``) against the
  baseline's full integration (angle of the updates reported);
- ``dfc_block``: the same with today's block summation of the update's second-order part
  (``exact=False``, the Table-1 DFC configs' ``exact_dfc: false``) against the baseline's exact
  sums; ``dfc32_block``: the same with the whole engine in float32 (the baseline in float32
  too), and ``dfc32_block_vs_base_float64`` against the baseline's float64 ``dfc`` (angle to
  the float64 update reported).

Equality is checked only where the mathematics is the same on both sides: the DFC-SSA update
and the DFC update (relative difference), and the sleep phase's trajectories with explicit
noise (the Q estimator changed after 54c366a, to the authors' T-1 pairs v_A[t] u[t+1]; the
check recomputes today's estimator from the baseline's recorded trajectory and compares it with
the dQ of the timed, non-recording path). Timings with a
generator are not comparable draw by draw (the draw order may differ), only in cost.

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_speed.py [--rounds 3] [--tasks ssa,sleep,dfc]
        [--threads N] [--base-commit 54c366a] [--base-dir /tmp/base54] [--out FILE]

Threads: today's engine runs its phases with ``BatchedDFC(threads=1)`` BLAS thread by default,
the baseline with whatever OpenBLAS starts (2 on the 2-core machine). With other jobs on the
machine 2 threads make the per-step products many times slower, with an idle machine ~1.3x
faster, so the default-threads ratio depends on the load; ``--threads 1`` puts both sides on
one thread and measures the algorithmic change alone. Report both.

Output: JSON in ``benchmarks/results/`` with the machine (CPU model, cores, BLAS and its
threads, load average before and after), the per-round times of both sides and the ratios
(baseline time / new time, the median over rounds of each side), in wall time and in the
process's CPU time (``speedup_cpu``; on a loaded machine a process gets a varying share of a
core, which the wall time includes and the CPU time does not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
B = 128
SIZES = [784, 256, 256, 256, 10]
ACTS = ["tanh", "tanh", "tanh", "linear"]
TASKS = ("ssa", "sleep", "sleep32", "sleep_bm", "sleep32_bm", "dfc", "dfc_stat", "dfc_block", "dfc32_block")
DFC_TASKS = ("dfc", "dfc_stat", "dfc_block", "dfc32_block")
REPEATS = {
    "ssa": 20,
    "sleep": 5,
    "sleep32": 5,
    "sleep_bm": 5,
    "sleep32_bm": 5,
    "dfc": 1,
    "dfc_stat": 1,
    "dfc_block": 1,
    "dfc32_block": 1,
}  # timed calls per worker (the minimum is kept)


# ----------------------------------------------------------------------------- configuration
def mnist_config(tmax: int) -> dict:
    """Model, controller, sleep and convergence sections of models/table1/mnist_dfc.yaml."""
    import yaml

    cfg = yaml.safe_load((ROOT / "models" / "table1" / "mnist_dfc.yaml").read_text())
    sleep = dict(cfg["sleep"])
    # the baseline has no sigma_output_fb; in the MNIST config it equals sigma (the same physics)
    s_out = sleep.pop("sigma_output_fb", None)
    if s_out is not None and s_out != sleep["sigma"]:
        raise SystemExit("mnist_dfc.yaml: sigma_output_fb != sigma, the baseline cannot run it")
    ctrl = dict(cfg["controller"], tmax=tmax)
    conv = dict(cfg["convergence"], include_nonconverged=True)  # the same samples on both sides
    return {"model": cfg["model"], "controller": ctrl, "sleep": sleep, "convergence": conv}


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    """Run the tasks with the engine under ``args.root``; write times and outputs."""
    sys.path.insert(0, str(Path(args.root).resolve()))
    import inspect

    import numpy as np

    import dfc_brian
    from dfc_brian.engines.batched import BatchedDFC
    from dfc_brian.model.params import ModelParams
    from dfc_brian.model.weights import Weights

    if Path(dfc_brian.__file__).resolve().parents[1] != Path(args.root).resolve():
        raise SystemExit(f"imported dfc_brian from {dfc_brian.__file__}, not from {args.root}")
    inp = np.load(args.inputs)
    L = len(SIZES) - 1
    w = Weights(
        [inp[f"W{i}"].copy() for i in range(L)],
        [inp[f"b{i}"].copy() for i in range(L)],
        [inp[f"Q{i}"].copy() for i in range(L)],
    )
    cfg = json.loads(str(inp["config"]))
    p = ModelParams.from_dict(cfg)
    X, y = inp["X"], inp["y"]
    eng = BatchedDFC(p, w)
    has_ff = "ff" in inspect.signature(eng.ssa).parameters
    times: dict[str, list[float]] = {}
    cpu_times: dict[str, list[float]] = {}
    steps: dict[str, int] = {}
    outputs: dict[str, np.ndarray] = {}

    def ssa_minibatch():
        ff = eng.feedforward(X)
        r_star = eng.output_target(ff[1][-1], y)
        return eng.ssa(X, r_star, ff=ff) if has_ff else eng.ssa(X, r_star)

    def timed(name, fn, n):
        fn()  # warm-up (BLAS threads, caches, first allocation)
        ts, cs = [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        times[name] = ts
        cpu_times[name] = cs

    tasks = args.tasks.split(",")
    if "ssa" in tasks:
        timed("ssa", ssa_minibatch, REPEATS["ssa"])
        res = ssa_minibatch()
        for i in range(L):
            outputs[f"ssa_dW{i}"], outputs[f"ssa_db{i}"] = res.dW_ssa[i], res.db_ssa[i]
    for task in ("sleep", "sleep32", "sleep_bm", "sleep32_bm"):
        if task not in tasks:
            continue
        e = BatchedDFC(p, w, dtype=np.float32) if "32" in task else eng  # the whole engine in float32
        kw = {}
        if task.endswith("_bm") and "noise_method" in inspect.signature(e.sleep_phase).parameters:
            kw["noise_method"] = "box_muller"  # the baseline has no such option: its own draws
        rng = np.random.default_rng(0)
        timed(task, lambda e=e, rng=rng, kw=kw: e.sleep_phase(X, rng=rng, **kw), REPEATS[task])
        T = p.sleep.tmax_fb
        nrng = np.random.default_rng(1)
        noise = [nrng.standard_normal((T - 1, B, n)) for n in SIZES[1:]]
        res = e.sleep_phase(X, noise=noise, record=True)
        fast = e.sleep_phase(X, noise=noise)  # the timed path (today: record=True takes the shared loop)
        outputs["sleep_u"] = res.u
        for i in range(L):
            outputs[f"sleep_vA{i}"] = res.v_apical[i]
            outputs[f"sleep_dQ{i}"] = fast.dQ[i]
    for task in DFC_TASKS:
        if task not in tasks:
            continue
        e = BatchedDFC(p, w, dtype=np.float32) if "32" in task else eng
        r_star = eng.output_target(eng.feedforward(X)[1][-1], y)
        kw = {}
        params = inspect.signature(e.controlled_phase).parameters
        if task == "dfc_stat" and "stationary_tol" in params:
            kw["stationary_tol"] = args.stationary_tol  # the baseline has no such option: exact
        if task.endswith("_block") and "exact" in params:
            kw["exact"] = False  # the baseline has no such option: exact sums
        box = {}

        def dfc(e=e, kw=kw, r_star=r_star, box=box):
            box["res"] = e.controlled_phase(X, r_star, **kw)

        ts, cs = [], []
        for _ in range(REPEATS[task]):  # no warm-up: 999 steps are warm enough
            t0, c0 = time.perf_counter(), time.process_time()
            dfc()
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        times[task] = ts
        cpu_times[task] = cs
        for i in range(L):
            outputs[f"dfc_dW{i}"] = box["res"].dW_dfc[i]
            outputs[f"dfc_db{i}"] = box["res"].db_dfc[i]
        steps[task] = box["res"].extra.get("steps_simulated", p.controller.tmax)
    blas = None
    try:
        from threadpoolctl import threadpool_info

        blas = [
            {
                k: d.get(k)
                for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")
            }
            for d in threadpool_info()
        ]
    except ImportError:
        pass
    np.savez(args.result + ".npz", **outputs)
    Path(args.result + ".json").write_text(
        json.dumps(
            {
                "times": times,
                "cpu_times": cpu_times,
                "steps": steps,
                "blas": blas,
                "engine_threads": getattr(eng, "threads", "attribute absent (BLAS default)"),
                "numpy": np.__version__,
            }
        )
    )


# ----------------------------------------------------------------------------- parent
def ensure_baseline(commit: str, where: Path) -> str:
    if not (where / "dfc_brian" / "engines" / "batched.py").exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit], check=True
        )
    head = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    want = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True, text=True
    ).stdout.strip()
    if head != want:
        raise SystemExit(f"{where} is at {head}, not at {commit} ({want}); remove it or pass --base-dir")
    return head


def make_inputs(path: Path, tmax: int) -> str:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from dfc_brian.model.params import ModelParams
    from dfc_brian.model.weights import init_weights

    cfg = mnist_config(tmax)
    p = ModelParams.from_dict(cfg)
    w = init_weights(p.network, seed=0, q_init="random")
    source = "random normal inputs (no MNIST found)"
    try:
        from dfc_brian.experiments.data import load_dataset

        ds = load_dataset("mnist")
        X, y = ds.train.X[:B].astype(np.float64), ds.train.y[:B].astype(np.int64)
        source = "MNIST training set, first minibatch of the fixed split"
    except Exception:  # noqa: BLE001 - any data problem: fall back to random inputs
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(B, SIZES[0])), rng.integers(0, SIZES[-1], B)
    arrays = {f"W{i}": w.W[i] for i in range(len(w.W))}
    arrays.update({f"b{i}": w.b[i] for i in range(len(w.b))})
    arrays.update({f"Q{i}": w.Q[i] for i in range(len(w.Q))})
    np.savez(path, X=X, y=y, config=np.array(json.dumps(cfg)), **arrays)
    return source


def run_side(root: Path, inputs: Path, tasks: str, result: str, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--root", str(root), "--inputs", str(inputs)]
    cmd += ["--tasks", tasks, "--result", result]
    subprocess.run(cmd, check=True, env=env, cwd=str(Path(tempfile.gettempdir())))
    return json.loads(Path(result + ".json").read_text())


def angle_deg(a, b) -> float:
    """Angle between two whole-network updates, 2 atan2(|x^ - y^|, |x^ + y^|) (exact near 0)."""
    import numpy as np

    x = np.concatenate([m.ravel() for m in a])
    y = np.concatenate([m.ravel() for m in b])
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(x - y), np.linalg.norm(x + y))))


def rel_diff(a, b) -> float:
    import numpy as np

    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma list of {', '.join(TASKS)}")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (base, new) per task")
    ap.add_argument("--tmax", type=int, default=1000, help="stored states T of the DFC controlled phase")
    ap.add_argument("--threads", default=None, help="BLAS threads of both sides (default: unset)")
    ap.add_argument("--stationary-tol", type=float, default=1e-7, help="dfc_stat: tolerance of the new side")
    ap.add_argument("--base-commit", default="54c366a")
    ap.add_argument("--base-dir", default="/tmp/base54")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/speed_<date>.json)")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np

    tasks = [t for t in args.tasks.split(",") if t]
    bad = sorted(set(tasks) - set(TASKS))
    if bad:
        raise SystemExit(f"--tasks: unknown {bad}; choose from {list(TASKS)}")
    load_before = os.getloadavg()
    t_start = time.time()
    base_head = ensure_baseline(args.base_commit, Path(args.base_dir))
    new_head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if args.threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    sides = {"base": Path(args.base_dir), "new": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        source = make_inputs(inputs, args.tmax)
        per_round: dict[str, dict[str, list[float]]] = {t: {"base": [], "new": []} for t in tasks}
        per_round_cpu: dict[str, dict[str, list[float]]] = {t: {"base": [], "new": []} for t in tasks}
        blas = {}
        last = {}
        steps_new: dict[str, int] = {}
        for task in tasks:
            for r in range(args.rounds):
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for side in order:
                    res = run_side(sides[side], inputs, task, f"{tmp}/{side}_{task}_{r}", env)
                    per_round[task][side].append(min(res["times"][task]))
                    if task in res.get("cpu_times", {}):
                        per_round_cpu[task][side].append(min(res["cpu_times"][task]))
                    blas[side] = {"library": res["blas"], "engine_threads": res.get("engine_threads")}
                    if side == "new":
                        steps_new.update(res.get("steps", {}))
                    last[(side, task)] = f"{tmp}/{side}_{task}_{r}.npz"
                print(
                    f"{task} round {r}: base {per_round[task]['base'][-1]:.4f} s, "
                    f"new {per_round[task]['new'][-1]:.4f} s",
                    flush=True,
                )
        checks = {}
        for task in tasks:
            a = np.load(last[("base", task)])
            b = np.load(last[("new", task)])
            if task == "ssa" or task in DFC_TASKS:
                checks[task] = {"max_rel_diff_update": max(rel_diff(b[k], a[k]) for k in a.files)}
                if task != "ssa":
                    checks[task]["angle_deg"] = angle_deg([a[k] for k in a.files], [b[k] for k in a.files])
                    checks[task]["steps_simulated_new"] = steps_new.get(task)
                if task == "dfc32_block" and ("base", "dfc") in last:  # against the float64 baseline
                    a64 = np.load(last[("base", "dfc")])
                    checks[task]["angle_deg_vs_base_float64"] = angle_deg(
                        [a64[k] for k in a64.files], [b[k] for k in a64.files]
                    )
                    rel64 = max(rel_diff(b[k], a64[k]) for k in a64.files)
                    checks[task]["max_rel_diff_vs_base_float64"] = rel64
            else:
                L = len(SIZES) - 1
                T = a["sleep_u"].shape[1]
                s2 = max(json.loads(str(np.load(inputs)["config"]))["sleep"]["sigma"], 0.01) ** 2
                traj = max(rel_diff(b[f"sleep_vA{i}"], a[f"sleep_vA{i}"]) for i in range(L))
                traj = max(traj, rel_diff(b["sleep_u"], a["sleep_u"]))
                dq = []
                for i in range(L):  # today's estimator (T-1 pairs v_A[t] u[t+1]) on the base trajectory
                    S = np.einsum("btn,btm->nm", a[f"sleep_vA{i}"][:, :-1], a["sleep_u"][:, 1:])
                    dq.append(rel_diff(b[f"sleep_dQ{i}"], -S / (s2 * B * (T - 1))))
                checks[task] = {"max_rel_diff_trajectory": traj, "max_rel_diff_dQ_same_estimator": max(dq)}
    ratios = {}
    for task in tasks:
        mb, mn = statistics.median(per_round[task]["base"]), statistics.median(per_round[task]["new"])
        ratios[task] = {"base_median_s": mb, "new_median_s": mn, "speedup": mb / mn}
        cb, cn = per_round_cpu[task]["base"], per_round_cpu[task]["new"]
        if cb and cn:  # CPU time of the process (all its threads): less sensitive to the load
            cb, cn = statistics.median(cb), statistics.median(cn)
            ratios[task].update(base_cpu_median_s=cb, new_cpu_median_s=cn, speedup_cpu=cb / cn)
    for ref, t32 in (("sleep", "sleep32"), ("sleep", "sleep32_bm"), ("dfc", "dfc32_block")):
        # today's float32 path against the float64 baseline
        if ref not in ratios or t32 not in ratios:
            continue
        key = f"{t32}_vs_base_float64"
        ratios[key] = {
            "base_median_s": ratios[ref]["base_median_s"],
            "new_median_s": ratios[t32]["new_median_s"],
            "speedup": ratios[ref]["base_median_s"] / ratios[t32]["new_median_s"],
        }
        if "speedup_cpu" in ratios[ref] and "speedup_cpu" in ratios[t32]:
            ratios[key]["speedup_cpu"] = ratios[ref]["base_cpu_median_s"] / ratios[t32]["new_cpu_median_s"]
    result = {
        "benchmark": "paired speed, baseline engine vs today's, per MNIST minibatch (issue 9)",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "network": SIZES,
        "activations": ACTS,
        "batch": B,
        "settings": f"models/table1/mnist_dfc.yaml (controller tmax {args.tmax} for dfc)",
        "inputs": source,
        "baseline": {"commit": base_head, "dir": args.base_dir},
        "new": {"commit": new_head, "uncommitted_changes": dirty},
        "timing": (
            f"per worker subprocess: minimum over {REPEATS} timed calls after one warm-up; per side: "
            f"median over {args.rounds} alternating rounds; speedup = base median / new median "
            "(wall time, perf_counter); speedup_cpu: the same with the process's CPU time "
            "(process_time, all threads), less sensitive to other jobs on the machine"
        ),
        "machine": dict(
            machine_info(),
            blas_new=blas.get("new"),
            blas_base=blas.get("base"),
            blas_threads_env=args.threads or "unset",
            load_average_before=list(load_before),
            load_average_after=list(os.getloadavg()),
            wall_s_total=time.time() - t_start,
        ),
        "ratios": ratios,
        "per_round_s": per_round,
        "per_round_cpu_s": per_round_cpu,
        "checks": checks,
    }
    out = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / f"speed_{time.strftime('%Y%m%d_%H%M')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"ratios": ratios, "checks": checks, "out": str(out)}, indent=2))


if __name__ == "__main__":
    main()
