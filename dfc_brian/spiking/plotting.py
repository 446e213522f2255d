"""Figures of the spiking DFC network; every function returns a matplotlib Figure (no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def plot_demo(res: Mapping[str, Any], neurons: int = 2) -> Figure:
    """Raster of every layer; v_basal / v_apical / v_soma of a hidden and an output neuron; u,
    the filtered output r_L and its target r* (controller on after t_settle)."""
    L = len(res["params"]["sizes"]) - 1
    T = res["params"]["T_sample"]
    fig = Figure(figsize=(9, 9), layout="constrained")
    ax = fig.subplots(4, 1, sharex=True)
    offset = 0
    for k in range(L + 1):
        t, i = res[f"spike_t{k}"], res[f"spike_i{k}"]
        ax[0].plot(t, i + offset, "|", ms=2, color=f"C{k}", label="input" if k == 0 else f"layer {k}")
        offset += int(res["params"]["sizes"][k])
    ax[0].set_ylabel("neuron")
    ax[0].legend(loc="upper right", fontsize=7, ncol=L + 1)
    t = res["t_ms"]
    for row, layer in ((1, 1), (2, L)):
        for n in range(neurons):
            for v, ls in (("v_basal", ":"), ("v_apical", "--"), ("v_soma", "-")):
                ax[row].plot(t, res[f"{v}{layer}"][n], ls, color=f"C{n}", lw=0.8, label=f"{v} #{n}")
        ax[row].set_ylabel(f"layer {layer}")
        ax[row].legend(loc="upper right", fontsize=6, ncol=neurons)
    for n in range(min(3, res["ctrl_u"].shape[0])):
        ax[3].plot(t, res["ctrl_u"][n], color=f"C{n}", lw=0.8, label=f"u #{n}")
        ax[3].plot(t, res["ctrl_r_L"][n], ":", color=f"C{n}", lw=0.8)
        ax[3].plot(t, res["ctrl_r_star"][n], "--", color=f"C{n}", lw=0.8)
    ax[3].set_ylabel("u (solid), r_L (dotted), r* (dashed)")
    ax[3].set_xlabel("time (ms)")
    for a in ax:
        for k in range(int(t[-1] // T) + 1):
            a.axvline(k * T, color="0.7", lw=0.5)
    return fig


def plot_learning(res: Mapping[str, Any]) -> Figure:
    """Test loss (expected output of the learned weights) against samples: mean and range over seeds."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    s = res["samples"]
    for name, color in (("spiking", "C0"), ("rate", "C1")):
        key = f"{name}_test_loss"
        if key in res:
            y = np.asarray(res[key])
            ax.plot(s, y.mean(0), color=color, label=f"{name} DFC")
            ax.fill_between(s, y.min(0), y.max(0), color=color, alpha=0.25)
    u = np.asarray(res["untrained_test_loss"])
    ax.axhline(u.mean(), color="0.4", ls="--", label="untrained")
    ax.set_yscale("log")
    ax.set_xlabel("training samples (online)")
    ax.set_ylabel("test loss (MSE)")
    ax.legend()
    return fig


def plot_tradeoff(res: Mapping[str, Any]) -> Figure:
    """Test loss after n_train samples against rho_max, one line per time per sample."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    loss = np.asarray(res["test_loss"]).mean(-1)
    for c, T in enumerate(res["T_sample"]):
        ax.plot(res["rho_max"], loss[:, c], "o-", label=f"{T:.0f} ms / sample")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rho_max (Hz)")
    ax.set_ylabel(f"test loss after {int(res['n_train'])} samples")
    ax.legend()
    return fig


def plot_mnist(res: Mapping[str, Any]) -> Figure:
    """MNIST test accuracy (expected output of the learned weights) against online samples:
    the spiking network, the same with its hidden layer frozen, the rate network on the same
    protocol (keys ``rate_*``, if present) and the untrained network."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for tag, label, color in (
        ("full", "spiking DFC", "C0"),
        ("frozen_hidden", "hidden layer frozen", "C2"),
        ("rate", "rate DFC (same protocol)", "C1"),
    ):
        if f"{tag}_test_accuracy" in res:
            ax.plot(res[f"{tag}_samples"], res[f"{tag}_test_accuracy"], "o-", color=color, label=label)
    ax.axhline(float(np.asarray(res["full_test_accuracy"])[0]), color="0.4", ls="--", label="untrained")
    ax.set_xlabel("training samples (online, 150 ms each)")
    ax.set_ylabel("test accuracy (10 000 images)")
    ax.legend()
    return fig


def plot_population(res: Mapping[str, Any]) -> Figure:
    """Population coding (n_pop neurons per unit): left, final test loss against n_pop (seeds as
    dots, mean as line) beside the rate limit; right, RMS residual r* - r_L under control against
    n_pop with the predicted filtered spike noise and a 1/sqrt(n_pop) guide."""
    n = np.asarray(res["n_pop"], float)
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots(1, 2)
    loss = np.stack([np.asarray(res[f"pop{int(k)}_final_test_loss"]) for k in n])  # (n_pop, seeds)
    ax[0].plot(n, loss.mean(1), "o-", color="C0", label="spiking DFC")
    for j in range(loss.shape[1]):
        ax[0].plot(n, loss[:, j], ".", color="C0", alpha=0.5)
    if "rate_final_test_loss" in res:
        ax[0].axhline(float(np.mean(res["rate_final_test_loss"])), color="C1", ls="--", label="rate DFC")
    ax[0].set_xscale("log", base=2)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("neurons per unit (n_pop)")
    ax[0].set_ylabel("final test loss (MSE)")
    ax[0].legend()
    rms = np.stack([np.asarray(res[f"pop{int(k)}_residual_rms"]) for k in n]).mean(1)
    pred = np.stack([np.asarray(res[f"pop{int(k)}_filter_noise_pred"]) for k in n]).mean(1)
    ax[1].plot(n, rms, "o-", color="C0", label="RMS of r* - r_L (measured)")
    ax[1].plot(n, pred, "s:", color="C3", label="sqrt(f / (2 N rho tau_r)) (filter noise)")
    ax[1].plot(n, rms[0] / np.sqrt(n / n[0]), "--", color="0.5", label="1/sqrt(N) from N = 1")
    if "rate_residual_rms" in res:
        ax[1].axhline(float(np.mean(res["rate_residual_rms"])), color="C1", ls="--", label="rate DFC")
    ax[1].set_xscale("log", base=2)
    ax[1].set_yscale("log")
    ax[1].set_xlabel("neurons per unit (n_pop)")
    ax[1].set_ylabel("residual under control")
    ax[1].legend(fontsize=7)
    return fig


def plot_sleep(res: Mapping[str, Any]) -> Figure:
    """Sleep phase: angle between Q and J^T, and between Q and the rate sleep phase's final Q,
    against sleep samples, for the spiking network and its rate limit."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    s = res["samples"]
    for mode, color in (("spiking", "C0"), ("rate", "C1")):
        if f"{mode}_angle_JT" in res:
            ax.plot(s, res[f"{mode}_angle_JT"], "-", color=color, label=f"{mode}: angle(Q, J^T)")
    if "spiking_angle_rate_final" in res:
        ax.plot(s, res["spiking_angle_rate_final"], ":", color="C0", label="spiking: angle(Q, Q_rate final)")
    ax.set_xlabel("sleep samples")
    ax.set_ylabel("angle (degrees)")
    ax.set_ylim(0, 90)
    ax.legend(fontsize=7)
    return fig


def plot_sleep_wake(res: Mapping[str, Any]) -> Figure:
    """Sleep interleaved with online learning: left, test loss against wake (training) samples
    for Q learned by sleep, Q fixed to the weight product, random Q never learned (mean and range
    over seeds) and the untrained network; right, the angle between Q and J^T along each run, the
    initial sleep phase at negative x (its sleep samples counted back from the first wake sample)."""
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots(1, 2)
    labels = {"learned": "Q learned by sleep (interleaved)", "fixed": "Q = weight product (fixed)",
              "random": "random Q, never learned"}  # fmt: skip
    for k, (v, label) in enumerate(labels.items()):
        if f"{v}_test_loss" not in res:
            continue
        s = np.asarray(res[f"{v}_samples"])
        x_angle = s.astype(float)
        if v == "learned" and "learned_schedule_samples" in res:  # initial sleep: x in [-n_sleep0, 0]
            g = np.asarray(res["learned_schedule_samples"], float)
            first = g <= float(res["n_sleep0"])
            x_angle[first] = g[first] - float(res["n_sleep0"])
        for a, key, x in ((ax[0], "test_loss", s), (ax[1], "angle_JT", x_angle)):
            y = np.asarray(res[f"{v}_{key}"])
            a.plot(x, y.mean(0), color=f"C{k}", label=label)
            a.fill_between(x, y.min(0), y.max(0), color=f"C{k}", alpha=0.2)
    ax[0].axhline(float(np.mean(res["untrained_test_loss"])), color="0.4", ls="--", label="untrained")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("training samples (online; sleep before and between)")
    ax[0].set_ylabel("test loss (MSE)")
    ax[0].legend(fontsize=7)
    ax[1].axvline(0.0, color="0.7", lw=0.8)
    ax[1].set_xlabel("training samples (< 0: initial sleep samples)")
    ax[1].set_ylabel("angle(Q, J^T) (degrees)")
    ax[1].set_ylim(0, 110)
    return fig
