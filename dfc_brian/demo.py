"""The demo: a small student-teacher network learning online with DFC, simulated in Brian2.

``dfc-brian demo`` (or ``make demo``) needs no download. It

1. builds the 15-10-10-5 student of ``models/toy/demo.yaml`` and its teacher data,
2. alternates Brian2 sleep phases (noisy apical compartments, anti-Hebbian plasticity of Q)
   and controlled phases with continuous forward plasticity (minibatch of 1),
3. writes ``figures/demo_compartments.png`` (v_basal, v_apical, v_soma of two neurons per
   layer and the control signal u during one controlled phase), ``figures/demo_loss.png``
   (test loss per epoch) and ``figures/demo_results.npz`` + ``.json``.

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


def main(args: argparse.Namespace | None = None) -> int:
    """Run the demo; ``args`` has ``out`` (folder), ``target`` (Brian2 target), ``quick``."""
    from dfc_brian.analysis.theory import feedforward
    from dfc_brian.config import load_config
    from dfc_brian.engines.brian2_engine import BrianDFC
    from dfc_brian.experiments.data import student_teacher
    from dfc_brian.experiments.results import run_metadata
    from dfc_brian.model.params import ModelParams
    from dfc_brian.model.weights import init_weights
    from dfc_brian.plotting import use_style

    out = Path(getattr(args, "out", "figures"))
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
    history = net.train_online(
        Xtr[:n_train],
        Ytr[:n_train],
        epochs=epochs,
        chunk_size=n_train,
        sleep_samples=n_sleep,
        seed=seed,
        evaluate=lambda _: {"test_loss": test_loss()},
    )
    losses += [h["test_loss"] for h in history]
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
    _plot_compartments(rec, spec, out / "demo_compartments.png")
    _plot_loss(losses, out / "demo_loss.png")
    meta = {"config": cfg, "seed": seed, **run_metadata()}
    meta.update({"losses": losses, "wall_s": wall, "target": target, "quick": quick})
    np.savez(
        out / "demo_results.npz",
        test_loss=np.array(losses),
        t=rec.t,
        u=rec.u[0],
        **{f"v_soma_layer{i + 1}": rec.v_soma[i][0] for i in range(spec.n_layers)},
    )
    (out / "demo_results.json").write_text(json.dumps(meta, indent=2, default=str))
    print(
        f"test loss {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.1f}x lower) in {wall:.1f} s"
    )
    print(f"wrote {out / 'demo_compartments.png'}, {out / 'demo_loss.png'}, {out / 'demo_results.npz'}")
    return 0


def _plot_compartments(rec, spec, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L = spec.n_layers
    fig, axes = plt.subplots(L + 1, 2, figsize=(9, 2.2 * (L + 1)), sharex=True)
    for i in range(L):
        for col in range(2):
            ax = axes[i, col]
            ax.plot(rec.t, rec.v_basal[i][0, :, col], label="v_basal", color="tab:blue")
            ax.plot(rec.t, rec.v_apical[i][0, :, col], label="v_apical", color="tab:orange")
            ax.plot(rec.t, rec.v_soma[i][0, :, col], label="v_soma", color="k", lw=1.2)
            ax.set_title(f"layer {i + 1}, neuron {col}")
    axes[0, 0].legend(loc="best")
    for col in range(2):
        ax = axes[L, col]
        ax.plot(rec.t, rec.u[0, :, col], label="u", color="tab:green")
        ax.plot(rec.t, rec.e[0, :, col], label="e = r_L* - r_L", color="tab:red", ls="--")
        ax.set_title(f"controller unit {col}")
        ax.set_xlabel("time (units of $\\tau_u$)")
    axes[L, 0].legend(loc="best")
    fig.suptitle("DFC in Brian2: compartments during a controlled phase")
    fig.savefig(path)
    plt.close(fig)


def _plot_loss(losses, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.semilogy(np.arange(len(losses)), losses, "o-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test MSE")
    ax.set_title("online DFC learning (Brian2)")
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
