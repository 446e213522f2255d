"""Benchmark of the spiking DFC network (issue 11) on cpp_standalone: MNIST-size 784-256-10.

``nice -n 15 .venv/bin/python benchmarks/bench_spiking.py [n_samples]`` builds the network of
``models/spiking/mnist_784_256_10.yaml``, presents ``n_samples`` MNIST training images online
(plasticity on) and prints one line: compile + run wall time, simulation run time (without the
build), samples/s, synaptic events/s (forward spikes x fan-out, on_pre and on_post, plus the
continuous part of the rule: synapses x its steps) and writes benchmarks/results/bench_spiking.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(n_samples: int = 100) -> dict:
    import brian2 as b2

    from dfc_brian.spiking.experiments import init_student, load, load_mnist
    from dfc_brian.spiking.network import SpikingDFC

    p, cfg = load("mnist_784_256_10")
    xtr, ltr, _, _ = load_mnist(os.environ.get("DFC_DATA"))
    X, Y = xtr[:n_samples], np.eye(10)[ltr[:n_samples]]
    net = SpikingDFC(
        p, init_student(p.sizes, 0, 1.0), target="cpp_standalone", build_dir="/tmp/dfc_spk_bench"
    )
    mons = [b2.SpikeMonitor(g, record=False) for g in (net.inp, *net.layers)]
    net.net.add(*mons)
    t0 = time.perf_counter()
    net.run(X, Y, learn=True, control=True)
    wall = time.perf_counter() - t0
    run_s = float(b2.device._last_run_time)
    n_in, n_h, n_out = (int(m.num_spikes) for m in mons)
    s = p.sizes
    pre_events = n_in * s[1] + n_h * s[2]  # on_pre: one event per spike per outgoing synapse
    post_events = n_h * s[0] + n_out * s[1]  # on_post: spike term of the rule on every incoming synapse
    steps = n_samples * p.T_sample / p.dt_plasticity
    cont = steps * (s[0] * s[1] + s[1] * s[2])  # continuous part of the rule
    res = {
        "n_samples": n_samples,
        "sizes": list(s),
        "T_sample_ms": p.T_sample,
        "wall_s_build_and_run": wall,
        "run_s": run_s,
        "samples_per_s": n_samples / run_s,
        "spikes": {"input": n_in, "hidden": n_h, "output": n_out},
        "synaptic_events_per_s": (pre_events + post_events) / run_s,
        "plasticity_updates_per_s": cont / run_s,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.python_version()}",
    }
    print(
        f"spiking 784-256-10 cpp_standalone: {n_samples} samples x {p.T_sample:.0f} ms in {run_s:.2f} s run "
        f"({wall:.1f} s with build): {res['samples_per_s']:.2f} samples/s, "
        f"{res['synaptic_events_per_s']:.3g} synaptic events/s, "
        f"{res['plasticity_updates_per_s']:.3g} continuous rule updates/s"
    )
    out = Path(__file__).resolve().parent / "results" / "bench_spiking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
