"""Figure functions: compartments, controller (Fig. 1D), Fig. 2, training curves (Fig. 3), Figs. S2-S4.

Each function builds a :class:`matplotlib.figure.Figure` without pyplot (safe with the Agg
backend, no global figure state) and returns it; save with ``fig.savefig(path)``. Time is
in units of :math:`\\tau_u` unless the caller's ``t`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dfc_brian.analysis.fig2 import Fig2Result

__all__ = ["plot_angle_panels", "plot_compartments", "plot_controller", "plot_fig2", "plot_training_curves"]


def _as_samples(a: np.ndarray) -> np.ndarray:
    """(S, T) or (S, T, n) -> (S * n, T) lines; a 1-D (T,) array is one line."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 3:
        return np.moveaxis(a, 2, 1).reshape(-1, a.shape[1])
    return a


def plot_compartments(t: np.ndarray, traces: Mapping[str, np.ndarray], title: str | None = None) -> Figure:
    """One panel per compartment (e.g. ``v_basal``, ``v_apical``, ``v_soma``), shared time axis.

    Parameters
    ----------
    t : ndarray (T,)
        Time points.
    traces : dict name -> ndarray (T, n)
        One line per column (neuron); a (T,) array is one line.
    title : str, optional
        Figure title.
    """
    names = list(traces)
    fig = Figure(figsize=(6.4, 1.6 * max(len(names), 1) + 0.4), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        y = np.asarray(traces[name], dtype=np.float64)
        ax.plot(t, y.reshape(len(t), -1))
        ax.set_ylabel(name.replace("_", " "))
    axes[-1].set_xlabel(r"t ($\tau_u$)")
    if title:
        fig.suptitle(title)
    return fig


def plot_controller(t: np.ndarray, r_L: np.ndarray, r_star: np.ndarray, u: np.ndarray) -> Figure:
    """Fig. 1D: network output against its target (top) and the control signal (bottom).

    Parameters
    ----------
    t : ndarray (T,)
    r_L : ndarray (S, T) or (S, T, n_L)
        Output rates of S samples (the engines' layout, samples first).
    r_star : ndarray (S,) or (S, n_L)
        Output targets :math:`r_L^*` (drawn dashed in the colour of their sample).
    u : ndarray, same layout as ``r_L``
        Controller output u(t).
    """
    lines_r = _as_samples(r_L)
    lines_u = _as_samples(u)
    targets = np.asarray(r_star, dtype=np.float64).reshape(-1)
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax_r, ax_u = fig.subplots(2, 1, sharex=True)
    for k, (yr, yu) in enumerate(zip(lines_r, lines_u, strict=True)):
        color = f"C{k % 10}"
        ax_r.plot(t, yr, color=color, label=r"$r_L(t)$" if k == 0 else None)
        ax_r.axhline(targets[k], color=color, ls="--", lw=1.0, label=r"$r_L^*$" if k == 0 else None)
        ax_u.plot(t, yu, color=color)
    ax_r.set_ylabel("output")
    ax_r.legend(loc="best")
    ax_u.set_ylabel(r"control $u(t)$")
    ax_u.set_xlabel(r"t ($\tau_u$)")
    return fig


def plot_fig2(result: Fig2Result, ax: Axes | None = None) -> Figure:
    """Fig. 2: PCA(2) of normalised random stable :math:`Q = J^T M` with the references.

    Random Q are dots coloured by their angle to :math:`J^+`; the damped pseudo-inverses
    :math:`J^T (JJ^T + \\gamma I)^{-1}` are a line from small γ (near :math:`J^+`) to large γ
    (towards :math:`J^T`); :math:`J^T` and :math:`J^+` are marked.
    """
    if ax is None:
        fig = Figure(figsize=(4.5, 3.8), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    P = result.proj_Q
    sc = ax.scatter(
        P[:, 0],
        P[:, 1],
        s=3,
        c=result.angle_to_pinv,
        cmap="viridis",
        alpha=0.6,
        linewidths=0,
        rasterized=True,
    )
    fig.colorbar(sc, ax=ax, label=r"angle to $J^+$ (deg)")
    if result.proj_damped is not None:
        D = result.proj_damped
        ax.plot(D[:, 0], D[:, 1], "-", color="0.3", lw=1.0, label=r"$J^T(JJ^T+\gamma I)^{-1}$")
        ax.scatter(D[:, 0], D[:, 1], s=8, color="0.3", zorder=3)
    markers = {"J^T": ("*", "C1", r"$J^T$"), "J^+": ("D", "C3", r"$J^+$")}
    for name, p in result.proj_refs.items():
        m, c, lab = markers.get(name, ("o", "k", name))
        ax.scatter(
            [p[0]], [p[1]], marker=m, s=80, color=c, edgecolors="k", linewidths=0.6, zorder=4, label=lab
        )
    evr = result.explained_variance_ratio
    ax.set_xlabel(f"PC 1 ({100 * evr[0]:.0f} %)")
    ax.set_ylabel(f"PC 2 ({100 * evr[1]:.0f} %)")
    ax.set_title(r"stable $Q = J^T M$")
    ax.legend(loc="best")
    return fig


def plot_training_curves(
    history: Mapping[str, Mapping[str, np.ndarray]],
    metrics: Sequence[str],
    ylabels: Sequence[str] | None = None,
    xlabel: str = "epoch",
    logy: Sequence[str] = (),
    ncols: int = 3,
) -> Figure:
    """Fig. 3-style panels: one metric per panel against epoch, one line per method.

    Parameters
    ----------
    history : dict method -> dict metric -> ndarray
        A metric is (E,) for one run or (n_seeds, E): then the mean is drawn with a
        ± std band. Methods lacking a metric are skipped in that panel.
    metrics : sequence of str
        Metric names, one panel each (six give the 2 x 3 grid of Fig. 3).
    ylabels : sequence of str, optional
        Y labels (default: the metric names).
    logy : sequence of str
        Metrics drawn on a log y axis.
    ncols : int
        Panels per row.
    """
    ylabels = list(metrics) if ylabels is None else list(ylabels)
    n = len(metrics)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for k, (metric, ylabel) in enumerate(zip(metrics, ylabels, strict=True)):
        ax = axes[k]
        for j, (method, hist) in enumerate(history.items()):
            if metric not in hist:
                continue
            y = np.asarray(hist[metric], dtype=np.float64)
            color = f"C{j % 10}"
            if y.ndim == 2:
                mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
                x = np.arange(mean.size)
                ax.plot(x, mean, color=color, label=method)
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            else:
                ax.plot(np.arange(y.size), y, color=color, label=method)
        if metric in logy:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
    for ax in axes[n:]:
        ax.set_visible(False)
    legend: dict[str, object] = {}
    for ax in axes[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    handles, labels = list(legend.values()), list(legend)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    return fig


def plot_angle_panels(
    x: np.ndarray,
    panels: Mapping[str, Mapping[str, np.ndarray]],
    ylabel: str,
    xlabel: str = "epoch",
    title: str | None = None,
) -> Figure:
    """Figs. S2-S4: one panel per network variant, one line per curve, shared y axis.

    Parameters
    ----------
    x : ndarray (K,)
        X values (e.g. sleep-only epochs 0..E).
    panels : dict panel title -> dict curve label -> ndarray (K,)
        Curves are drawn in their order with a sequential colour map (they are ordered by the
        varied parameter).
    ylabel, xlabel, title : str
    """
    from matplotlib import colormaps

    names = list(panels)
    fig = Figure(figsize=(3.4 * max(len(names), 1), 2.8), layout="constrained")
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    cmap = colormaps["viridis"]
    for ax, name in zip(axes, names, strict=True):
        curves = panels[name]
        n = max(len(curves) - 1, 1)
        for k, (label, y) in enumerate(curves.items()):
            ax.plot(x, np.asarray(y, dtype=np.float64), color=cmap(0.9 * k / n), label=label)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
