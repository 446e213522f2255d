"""Brian2 cpp_standalone throughput of the DFC network, written to benchmarks/results/brian2.json.

Measures, for online learning with per-step plasticity of W (minibatch of 1):
- the MNIST net 784-256-256-256-10 at T = 100 Euler steps per sample;
- the toy net 15-10-10-5 at its default T.
Each configuration is built and compiled once; the timed runs re-run the compiled binary
with new inputs and weights (``device.run(run_args=...)``), as training does.

Usage: python benchmarks/bench_brian2.py [--samples-big 200] [--samples-toy 20000] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dfc_brian import ControllerParams, ModelParams, NetworkSpec, init_weights
from dfc_brian.engines.brian2_engine import BrianDFC


def bench(sizes, acts, T, n_samples, repeats, loss="ce", dtype="float64", threads=0):
    spec = NetworkSpec(sizes, acts, loss=loss)
    params = ModelParams(
        spec, ControllerParams(k_p=2.0, alpha=1.39e-3, dt=0.02, tmax=T, tcr=0.2, target_stepsize=0.0779)
    )
    w = init_weights(spec, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, sizes[0]))
    y = rng.integers(0, sizes[-1], n_samples) if loss == "ce" else rng.normal(size=(n_samples, sizes[-1]))
    net = BrianDFC(
        params,
        w,
        target="cpp_standalone",
        tau_W=1e4,
        dtype=dtype,
        threads=threads,
        directory=tempfile.mkdtemp(prefix="dfc_bench_"),
    )
    t0 = time.perf_counter()
    net.controlled_phase(X, y, plasticity="online")  # build, compile, first run
    build_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.controlled_phase(X, y, plasticity="online")  # re-run, no rebuild
        times.append(time.perf_counter() - t0)
    best = min(times)
    n_syn = sum(sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1))
    n_syn_fb = sum(sizes[i + 1] * sizes[-1] for i in range(len(sizes) - 1))
    steps = n_samples * T + 1
    return {
        "sizes": list(sizes),
        "dtype": dtype,
        "T": T,
        "n_samples": n_samples,
        "forward_synapses": n_syn,
        "feedback_synapses": n_syn_fb,
        "build_and_first_run_s": build_s,
        "run_s": times,
        "best_run_s": best,
        "samples_per_s": n_samples / best,
        "ns_per_synapse_per_step": best / steps / (n_syn + n_syn_fb) * 1e9,
        "ns_per_forward_synapse_per_step": best / steps / n_syn * 1e9,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples-big", type=int, default=200)
    ap.add_argument("--samples-toy", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="*", default=[2], help="OpenMP thread counts to try")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "brian2.json"))
    a = ap.parse_args()
    res = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
        },
        "load_average_before": os.getloadavg(),
    }
    big = ((784, 256, 256, 256, 10), ("tanh", "tanh", "tanh", "linear"), 100, a.samples_big, a.repeats)
    res["mnist_784_256_256_256_10"] = bench(*big)
    res["mnist_784_256_256_256_10_float32"] = bench(*big, dtype="float32")
    for n in a.threads:
        res[f"mnist_784_256_256_256_10_openmp{n}"] = bench(*big, threads=n)
    toy = ((15, 10, 10, 5), ("tanh", "tanh", "linear"), 100, a.samples_toy, a.repeats)
    res["toy_15_10_10_5"] = bench(*toy, loss="mse")
    res.update(
        {
            "targets": {"mnist_ns_per_synapse_per_step_max": 1.0, "toy_samples_per_s_min": 10000},
            "load_average_after": os.getloadavg(),
        }
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
