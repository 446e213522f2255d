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
    the spiking network, the same with its hidden layer frozen, and the untrained network."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for tag, label, color in (("full", "spiking DFC", "C0"), ("frozen_hidden", "hidden layer frozen", "C2")):
        if f"{tag}_test_accuracy" in res:
            ax.plot(res[f"{tag}_samples"], res[f"{tag}_test_accuracy"], "o-", color=color, label=label)
    ax.axhline(float(np.asarray(res["full_test_accuracy"])[0]), color="0.4", ls="--", label="untrained")
    ax.set_xlabel("training samples (online, 150 ms each)")
    ax.set_ylabel("test accuracy (10 000 images)")
    ax.legend()
    return fig
