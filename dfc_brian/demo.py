"""The demo: a small student-teacher network learning online with DFC, simulated in Brian2.

``dfc-brian demo`` (or ``make demo``) needs no download. It

1. builds the 15-10-10-5 student of ``models/toy/demo.yaml`` and its teacher data,
2. alternates Brian2 sleep phases (noisy apical compartments, anti-Hebbian plasticity of Q)
   and controlled phases with continuous forward plasticity (minibatch of 1),
3. writes, into ``--out`` (default ``figures/demo``, ignored by git, so that ``make demo``
   never rewrites a tracked file), ``demo_compartments.png`` (v_basal, v_apical and v_soma of
   two neurons per layer, the control signal u and the output error e of one test sample,
   :func:`~dfc_brian.plotting.figures.plot_compartments`), ``demo_loss.png`` (test loss per
   epoch, :func:`~dfc_brian.plotting.figures.plot_training_curves`) and
   ``demo_results.npz`` + ``.json``.

The training loop is :func:`dfc_brian.experiments.online.train_online` (sample order, sleep
draws, chunks of ``CHUNK`` samples per Brian2 run). The progress bar counts samples (sleep
phase, then controlled phase) and moves at least once a second: within one Brian2 run it
advances at the measured rate, never past the end of that run.

Brian2-only parameters (the rate of the continuous plasticity) live in the config's optional
``brian2`` section; defaults below.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# Model parameters of the continuous-time plasticity (units of tau_u), overridable in YAML
TAU_W = 0.25  # forward plasticity time constant: effective lr ~ (T dt / tau_W) * lambda
TAU_Q = 20.0  # feedback plasticity time constant (anti-Hebbian rule)
BETA = 0.025  # weight decay of the feedback rule
EPOCHS = 4  # training epochs (each: sleep phase, then the controlled phase on every sample)
N_TRAIN = 300  # samples per epoch (QUICK: 100)
N_SLEEP = 100  # samples per sleep phase (QUICK: 40)
CHUNK = 50  # samples per Brian2 run (each run costs ~0.6 s of set-up with the numpy target)


def main(args: argparse.Namespace | None = None) -> int:
    """Run the demo; ``args`` has ``out`` (folder), ``target`` (Brian2 target), ``quick``."""
    from dfc_brian.analysis.theory import feedforward
    from dfc_brian.config import load_config
    from dfc_brian.engines.brian2_engine import BrianDFC
    from dfc_brian.experiments.data import student_teacher
    from dfc_brian.experiments.results import atomic_savez, atomic_write_text, run_metadata
    from dfc_brian.model.params import ModelParams
    from dfc_brian.model.weights import init_weights
    from dfc_brian.plotting import use_style
    from dfc_brian.plotting.figures import plot_compartments, plot_training_curves

    out = Path(getattr(args, "out", "figures/demo"))
    target = getattr(args, "target", "numpy")
    quick = bool(getattr(args, "quick", False))
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("toy/demo")
    params = ModelParams.from_dict(cfg)
    spec = params.network
    b2cfg = cfg.get("brian2", {}) or {}
    seed = int(cfg.get("seed", 0))
    n_train = 100 if quick else int(b2cfg.get("samples_per_epoch", N_TRAIN))
    n_sleep = 40 if quick else int(b2cfg.get("sleep_samples", N_SLEEP))
    epochs = 2 if quick else int(b2cfg.get("epochs", EPOCHS))
    d = cfg["data"]
    data = student_teacher(
        d["n_in"], d["n_out"], seed=seed, n_train=d["n_train"], n_val=d["n_val"], n_test=d["n_test"]
    )
    # the teacher's outputs are large (gain-3 ReLU layers); scale targets to unit std
    scale = float(data.train.y.std())
    Xtr, Ytr = data.train.X, data.train.y / scale
    Xte, Yte = data.test.X, data.test.y / scale
    w = init_weights(spec, seed=seed, q_init="random")
    net = BrianDFC(
        params,
        w,
        target=target,
        tau_W=float(b2cfg.get("tau_W", TAU_W)),
        tau_Q=float(b2cfg.get("tau_Q", TAU_Q)),
        beta=float(b2cfg.get("beta", BETA)),
        seed=seed,
    )

    def test_loss():
        return float(np.mean((feedforward(net.get_weights(), spec.activations, Xte)[1][-1] - Yte) ** 2))

    losses = [test_loss()]
    t0 = time.time()
    print(
        f"dfc-brian demo: {spec.sizes} student, Brian2 target '{target}', {epochs} epochs of {n_train} "
        f"samples x {params.controller.tmax} steps, each epoch after a sleep phase on {n_sleep} samples"
    )
    # online learning: continuous plasticity, one sample after another; a sleep phase (noisy
    # apical compartments, anti-Hebbian Q plasticity) before each epoch
    losses += _train_with_progress(net, Xtr[:n_train], Ytr[:n_train], epochs, n_sleep, seed, test_loss)
    wall = time.time() - t0
    # One controlled phase with recording, for the compartment figure
    rec = net.controlled_phase(
        Xte[:1],
        Yte[:1],
        plasticity="none",
        record=("v_soma", "v_basal", "v_apical", "u", "e"),
        neurons=[[0, 1]] * spec.n_layers,
    )
    use_style()
    traces = {
        f"L{i + 1} {var}": getattr(rec, var)[i][0]
        for i in range(spec.n_layers)
        for var in ("v_basal", "v_apical", "v_soma")
    }
    traces.update(u=rec.u[0], e=rec.e[0])
    title = "DFC in Brian2: one test sample, controlled phase (neurons 0, 1; no plasticity)"
    plot_compartments(rec.t, traces, title=title).savefig(out / "demo_compartments.png")
    loss_fig = plot_training_curves(
        {"online DFC (Brian2)": {"test_loss": np.asarray(losses)}},
        ["test_loss"],
        ["test MSE (targets scaled to unit std)"],
        xlabel="epoch (0 = before training)",
        logy=["test_loss"],
    )
    loss_fig.savefig(out / "demo_loss.png")
    meta = {"config": cfg, "seed": seed, **run_metadata()}
    meta.update({"losses": losses, "wall_s": wall, "target": target, "quick": quick})
    atomic_savez(
        out / "demo_results.npz",
        {
            "test_loss": np.array(losses),
            "t": rec.t,
            "u": rec.u[0],
            **{f"v_soma_layer{i + 1}": rec.v_soma[i][0] for i in range(spec.n_layers)},
        },
    )
    atomic_write_text(out / "demo_results.json", json.dumps(meta, indent=2, default=str))
    print(
        f"test loss {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.1f}x lower) in {wall:.1f} s"
    )
    print(f"wrote {out / 'demo_compartments.png'}, {out / 'demo_loss.png'}, {out / 'demo_results.npz'}")
    return 0


def _train_with_progress(net, X, Y, epochs: int, n_sleep: int, seed: int, test_loss) -> list[float]:
    """:func:`~dfc_brian.experiments.online.train_online` with a progress bar over samples that
    moves at least once a second; returns the test loss after every epoch.
    """
    import threading

    from tqdm.auto import tqdm

    from dfc_brian.experiments.online import train_online

    n = len(X)
    total = epochs * (n_sleep + n)
    with tqdm(total=total, unit="sample", desc="demo", dynamic_ncols=True) as bar:
        rate = [0.1]  # seconds per sample, updated from every finished run
        target = {"base": 0, "end": 0, "t0": time.perf_counter()}
        stop = threading.Event()

        def tick() -> None:  # advance within the running chunk at the measured rate
            while not stop.wait(0.5):
                guess = target["base"] + int((time.perf_counter() - target["t0"]) / rate[0])
                new = min(guess, target["end"] - 1)
                if new > bar.n:
                    bar.update(new - bar.n)

        def run(epoch: int, kind: str, n_samples: int, fn) -> None:
            bar.set_description(f"demo epoch {epoch}/{epochs}")
            done = max(bar.n, (epoch - 1) * (n_sleep + n))
            target.update(base=done, end=done + n_samples, t0=time.perf_counter())
            t0 = time.perf_counter()
            fn()
            rate[0] = max((time.perf_counter() - t0) / n_samples, 1e-4)
            bar.update(done + n_samples - bar.n)

        def evaluate(_net) -> dict[str, float]:
            loss = test_loss()
            bar.set_postfix(test_mse=f"{loss:.3g}")
            return {"test_loss": loss}

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            history = train_online(
                net,
                X,
                Y,
                epochs=epochs,
                chunk_size=min(CHUNK, n),
                sleep_samples=n_sleep,
                seed=seed,
                evaluate=evaluate,
                progress=False,
                run=run,
            )
        finally:
            stop.set()
            ticker.join()
    return [h["test_loss"] for h in history]


if __name__ == "__main__":
    raise SystemExit(main())
