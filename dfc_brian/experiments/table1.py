"""Table 1 of Meulemans et al. (NeurIPS 2021): the published numbers and the tabulation of our runs.

:func:`collect_runs` reads every ``results.json`` under one or several runs folders (written by
``dfc-brian train`` or ``dfc-brian sweep``; a (row, column, seed) found in two folders is read from
the first given), :func:`aggregate` computes mean ± std over seeds with
n and the difference to the published mean in units of the published std, and
:func:`table_markdown`, :func:`table_csv` and :func:`plot_table` render it.

Runs that are not comparable to the paper's (fewer or more epochs than the paper's 100, 25 for the
autoencoder; or trained on at most ``max_batches`` minibatches per epoch) are kept apart, in rows
of their own marked e.g. ``DFC [1 epoch]`` or ``BP [100 epochs, 20 batches/epoch]``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Table 1 rows and columns, in the paper's order
ROWS = ("BP", "DFC", "DFC-SS", "DFC-SSA", "DFC-fixed", "DFC-SS-fixed", "DFC-SSA-fixed", "DFA")
COLUMNS = ("mnist", "fashion_mnist", "mnist_autoencoder", "mnist_trainloss")
COLUMN_TITLES = {
    "mnist": "MNIST (test error %)",
    "fashion_mnist": "Fashion-MNIST (test error %)",
    "mnist_autoencoder": "MNIST autoencoder (test loss)",
    "mnist_trainloss": "MNIST train loss",
}
#: epochs of the paper's runs, per column
PAPER_EPOCHS = {"mnist": 100, "fashion_mnist": 100, "mnist_autoencoder": 25, "mnist_trainloss": 100}
#: published Table 1 (spec section 4): (mean, std) in the column's unit
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "BP": {
        "mnist": (2.08, 0.15),
        "fashion_mnist": (10.60, 0.34),
        "mnist_autoencoder": (9.42e-2, 0.09e-2),
        "mnist_trainloss": (1.53e-7, 0.19e-7),
    },
    "DFC": {
        "mnist": (2.25, 0.094),
        "fashion_mnist": (11.17, 0.27),
        "mnist_autoencoder": (11.28e-2, 0.18e-2),
        "mnist_trainloss": (7.61e-8, 0.65e-8),
    },
    "DFC-fixed": {
        "mnist": (2.47, 0.12),
        "fashion_mnist": (11.62, 0.30),
        "mnist_autoencoder": (33.37e-2, 0.60e-2),
        "mnist_trainloss": (1.30e-6, 0.15e-6),
    },
    "DFA": {
        "mnist": (2.69, 0.11),
        "fashion_mnist": (11.38, 0.25),
        "mnist_autoencoder": (29.95e-2, 0.36e-2),
        "mnist_trainloss": (7.09e-7, 1.11e-7),
    },
}

NOTE = (
    "Ours: test error (%) or test loss at the epoch of best validation, MNIST train loss: running training "
    "loss of the last epoch (mean minibatch loss before each update, as the authors' code); "
    "mean ± std (numpy.std, ddof 0) over the n seeds (the mean alone for n=1). "
    "Published: Meulemans et al. 2021, Table 1. "
    "Δ/σ: (ours − published mean) / published std. Rows marked [...] ran fewer or more "
    "epochs than the paper (100; autoencoder 25) or at most N minibatches per epoch: not comparable."
)

#: why a cell of ours differs from the published one, where it was found out; printed under the table
#: when the cell has runs (the numbers come from committed runs and are checked in tests/test_table1.py)
CELL_NOTES: dict[tuple[str, str], str] = {
    ("BP", "mnist_trainloss"): (
        "BP, MNIST train loss: not our BP. PyTorch's BP (nn.Linear, tanh, CrossEntropyLoss, Adam; "
        "float64) from our initial weights on our minibatches takes the same steps (losses equal to "
        "9e−16 over the first 430) and ends on the same plateau (3.69e−4); with PyTorch's own "
        "initialisation and shuffling 7.45e−4 and 3.18e−4. The released learning rate is the cause: "
        "at lr ÷ 3 PyTorch's BP reaches 1.84e−7 and 9.61e−8 (seeds 0, 1), at lr ÷ 2 it stays on the "
        "plateau (7.22e−5). benchmarks/bp_torch_crosscheck.py, figures/README.md, figures/bp_trainloss.png. "
        "Run on to 150 epochs from their checkpoints, seeds 0 and 1 are still on the plateau (3.87e−4, "
        "6.83e−4; benchmarks/results/trainloss_extension)."
    ),
    ("DFA", "mnist_trainloss"): (
        "DFA, MNIST train loss: two populations, not one spread. A run's running loss falls slowly and "
        "noisily (1e−4 to 1e−2 from epoch 70 on) until, within two epochs, it drops by three orders of "
        "magnitude and keeps falling below 1e−6 (it leaves its plateau). Seeds 0 and "
        "1 leave at epochs 95 and 92 and end at 7.78e−7 and 5.50e−7 (published 7.09 ± 1.11 e−7); seeds "
        "2, 3 and 4 are still on it at epoch 100 (4.40e−3, 3.87e−4, 1.05e−3). Run on to 150 epochs from "
        "their checkpoints they leave at epochs 116, 102 and 111 and reach 1.99e−7, 2.79e−7 and "
        "2.02e−7 (benchmarks/results/trainloss_extension, figures/trainloss_plateau.png). The published "
        "cell had all five runs past their exit by epoch 100 (one on the plateau would put the mean above "
        "2e−5): theirs leave it earlier, for a reason not in the released config; the same direction as "
        "BP, whose published runs reach 1.5e−7 where ours never leave."
    ),
}


def format_cell(mean: float, std: float | None, column: str) -> str:
    """``mean ± std`` in the unit of a Table-1 column (%, e−2, or a power of ten).

    ``std`` None (one seed: no spread to report) gives the mean alone.
    """
    if column in ("mnist", "fashion_mnist"):
        scale, unit = 1.0, " %"
    elif column == "mnist_autoencoder":
        scale, unit = 100.0, " e−2"
    else:
        exp = int(np.floor(np.log10(abs(mean)))) if mean != 0 and np.isfinite(mean) else 0
        scale, unit = 10.0**-exp, f" e{exp}".replace("e-", "e−")
    spread = "" if std is None else f" ± {std * scale:.2f}"
    return f"{mean * scale:.2f}{spread}{unit}"


def row_label(row: str, column: str, epochs: int | None, max_batches: int | None) -> str:
    """The table row of a run: ``row`` itself, or ``row [...]`` when not comparable to the paper's."""
    marks = []
    if epochs is not None and epochs != PAPER_EPOCHS.get(column, epochs):
        marks.append(f"{epochs} epoch{'' if epochs == 1 else 's'}")
    if max_batches is not None:
        if not marks:
            marks.append(f"{epochs} epochs")
        marks.append(f"{max_batches} batches/epoch")
    return f"{row} [{', '.join(marks)}]" if marks else row


#: one runs folder, or several read in order (the first holding a (row, column, seed) wins)
RunsDirs = str | Path | Sequence[str | Path]


def runs_folders(runs_dirs: RunsDirs) -> list[Path]:
    """The folders of ``runs_dirs`` (one path or a sequence of paths), in order; ConfigError
    naming the first that is not a folder, or when none is given."""
    from dfc_brian.model.params import ConfigError

    dirs = [Path(runs_dirs)] if isinstance(runs_dirs, (str, Path)) else [Path(d) for d in runs_dirs]
    if not dirs:
        raise ConfigError("no runs folder given")
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"runs folder {str(d)!r} does not exist")
    return dirs


class _Run(NamedTuple):
    """One finished run as tabulated: its cell, seed, reported value and wall time (s, or None)."""

    label: str
    column: str
    seed: int
    value: float
    wall_time_s: float | None


def _scan_runs(runs_dir: RunsDirs, verbose: bool = True) -> list[_Run]:
    """One :class:`_Run` for every comparable run under runs_dir (a folder or several, in order).

    Reads every ``results.json`` under each folder in turn. Row and column come from the config's ``table1``
    section (``row``, ``column``). The value is :func:`~dfc_brian.experiments.train.summarize` of
    the stored history (so a run written before a change of the reporting convention is read with
    the current one), else the stored ``summary['reported']``; the wall time is the run's
    ``wall_time_s``. Runs without a reported value, or that did not finish their configured epochs,
    are skipped; a second run of the same (row label, column, seed), in folder order and then path
    order, is skipped with a warning. The row label is marked (see :func:`row_label`) for runs not
    comparable to the paper's.
    """
    from dfc_brian.experiments.results import RESULTS_JSON

    records: list[_Run] = []
    seen: dict[tuple[str, str, int], Path] = {}
    paths = [p for d in runs_folders(runs_dir) for p in sorted(d.rglob(RESULTS_JSON))]
    for p in paths:
        try:
            res = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            if verbose:
                print(f"skipping unreadable {p}", file=sys.stderr)
            continue
        cfg = res.get("config") or {}
        cell = cfg.get("table1") or {}
        row, col = cell.get("row"), cell.get("column")
        summ = res.get("summary") or {}
        epochs = (cfg.get("training") or {}).get("epochs")
        if row is None or col is None or summ.get("reported") is None:
            continue
        if epochs is not None and summ.get("epochs_done") != epochs:
            if verbose:
                print(
                    f"skipping unfinished {p} ({summ.get('epochs_done')} of {epochs} epochs)", file=sys.stderr
                )
            continue
        label = row_label(row, col, epochs, summ.get("max_batches"))
        n_before = sum(1 for r in records if r.label == label and r.column == col)
        seed = int(res.get("seed", n_before))
        if (label, col, seed) in seen:
            if verbose:
                print(
                    f"skipping {p}: {label} / {col} seed {seed} already read from {seen[label, col, seed]}",
                    file=sys.stderr,
                )
            continue
        seen[label, col, seed] = p
        wall = res.get("wall_time_s")
        wall = float(wall) if isinstance(wall, (int, float)) and np.isfinite(wall) else None
        records.append(_Run(label, col, seed, _reported(res, summ), wall))
    return records


def collect(
    runs_dir: RunsDirs, verbose: bool = True
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, dict[str, dict[int, float | None]]]]:
    """``({row label: {column: {seed: reported value}}}, {… : wall time in s or None})`` of the runs
    under runs_dir, read once; which runs, and how their value and row label are found:
    :func:`_scan_runs`. The two go to :func:`aggregate`."""
    values: dict[str, dict[str, dict[int, float]]] = {}
    walls: dict[str, dict[str, dict[int, float | None]]] = {}
    for r in _scan_runs(runs_dir, verbose):
        values.setdefault(r.label, {}).setdefault(r.column, {})[r.seed] = r.value
        walls.setdefault(r.label, {}).setdefault(r.column, {})[r.seed] = r.wall_time_s
    return values, walls


def collect_runs(runs_dir: RunsDirs, verbose: bool = True) -> dict[str, dict[str, dict[int, float]]]:
    """``{row label: {column: {seed: reported value}}}`` from every ``results.json`` under runs_dir
    (the values of :func:`collect`)."""
    return collect(runs_dir, verbose)[0]


def _reported(res: Mapping[str, Any], summ: Mapping[str, Any]) -> float:
    """The run's number under the current convention: ``summarize`` of its history (JSON null -> NaN)."""
    from dfc_brian.experiments.train import summarize

    hist = res.get("history")
    if not isinstance(hist, Mapping) or "train_loss" not in hist or summ.get("report") is None:
        return float(summ["reported"])
    h = {k: [np.nan if v is None else v for v in vals] for k, vals in hist.items() if isinstance(vals, list)}
    task = "classification" if summ.get("metric") == "error" else "regression"
    return float(summarize(h, task, summ["report"])["reported"])


def _values(cell: Mapping[int, float] | list[float]) -> tuple[list[int] | None, list[float]]:
    if isinstance(cell, Mapping):
        seeds = sorted(cell)
        return seeds, [float(cell[s]) for s in seeds]
    return None, [float(v) for v in cell]


def plateau_exit_epoch(history: Mapping[str, Any], below: float = 1e-5) -> float | None:
    """The first epoch from which the running training loss (``history['step/loss']``) stays below
    ``below`` to the end of the run, or None if its last epoch is not below it.

    In the MNIST train-loss column a run's running loss stays for tens of epochs between 1e−4
    and 1e−2 (a few hard samples fitted and lost again), then drops within one or two epochs by
    three orders of magnitude and keeps falling: the reported last-epoch loss depends on whether
    the run has left this plateau by then (figures/README.md, figures/trainloss_plateau.png).
    """
    loss = [np.nan if v is None else float(v) for v in history["step/loss"]]
    epochs = history["epoch"]
    first = None
    for e, x in zip(epochs, loss, strict=True):
        if x < below:  # NaN (no training before epoch 1) is not below
            first = e if first is None else first
        else:
            first = None
    return None if first is None else float(first)


def aggregate(
    runs: Mapping[str, Mapping[str, Mapping[int, float] | list[float]]],
    wall_times: Mapping[str, Mapping[str, Mapping[int, float | None]]] | None = None,
) -> dict[str, Any]:
    """Mean, std (ddof 0), n and Δ/σ_published of every (row, column); published rows always included.

    Returns ``{"columns": [...], "rows": {label: {column: entry}}}`` with ``entry`` holding
    ``values``, ``seeds``, ``n_seeds``, ``mean``, ``std`` (absent without runs), ``published``
    (``[mean, std]`` or None; only for unmarked rows), ``diff_in_published_std`` and ``marked``;
    with ``wall_times`` (the second part of :func:`collect`) also ``wall_time_s``, the runs' wall times in
    the order of ``seeds`` (None where a run recorded none).
    """
    labels = [r for r in ROWS if r in runs or r in PUBLISHED] + sorted(set(runs) - set(ROWS))
    data: dict[str, Any] = {"columns": list(COLUMNS), "rows": {}}
    for r in labels:
        data["rows"][r] = {}
        for c in COLUMNS:
            seeds, vals = _values(runs.get(r, {}).get(c, []))
            entry: dict[str, Any] = {
                "values": vals,
                "seeds": seeds,
                "n_seeds": len(vals),
                "marked": r not in ROWS,
            }
            if vals:
                entry.update(mean=float(np.mean(vals)), std=float(np.std(vals)))
            if wall_times is not None:
                walls = wall_times.get(r, {}).get(c, {})
                entry["wall_time_s"] = [walls.get(s) for s in seeds] if seeds is not None else []
            pub = PUBLISHED.get(r, {}).get(c)
            entry["published"] = list(pub) if pub else None
            entry["diff_in_published_std"] = (entry["mean"] - pub[0]) / pub[1] if (pub and vals) else None
            data["rows"][r][c] = entry
    return data


def table_markdown(data: Mapping[str, Any]) -> str:
    """Markdown table of :func:`aggregate`'s output: per column ours (n), published, Δ/σ."""
    cols = data["columns"]
    head = "| method | " + " | ".join(f"{COLUMN_TITLES[c]} ours | published | Δ/σ" for c in cols) + " |"
    lines = [head, "|---" * (1 + 3 * len(cols)) + "|"]
    for r, row in data["rows"].items():
        cells = [r]
        for c in cols:
            e = row[c]
            std = e["std"] if e["n_seeds"] > 1 else None  # one seed has no spread
            cells.append(f"{format_cell(e['mean'], std, c)} (n={e['n_seeds']})" if e["values"] else "—")
            cells.append(format_cell(*e["published"], c) if e["published"] else "—")
            d = e["diff_in_published_std"]
            cells.append(f"{d:+.1f}" if d is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {text}"
        for (r, c), text in CELL_NOTES.items()
        if r in data["rows"] and c in cols and data["rows"][r][c]["values"]
    ]
    notes_md = "\n**Where ours differs, and why:**\n\n" + "\n".join(notes) + "\n" if notes else ""
    return (
        "\n".join(lines)
        + "\n\n"
        + NOTE
        + "\n"
        + notes_md
        + wall_time_markdown(data)
        + unfinished_markdown(data)
    )


def unfinished_runs(runs_dir: RunsDirs) -> list[dict[str, Any]]:
    """The run directories under runs_dir (a folder or several) that are not in the table because
    they have not finished their configured epochs (:func:`dfc_brian.experiments.status.scan`), as
    dicts."""
    from dataclasses import asdict

    from dfc_brian.experiments.status import scan

    return [asdict(r) for d in runs_folders(runs_dir) for r in scan(d) if r.state != "finished"]


def unfinished_markdown(data: Mapping[str, Any]) -> str:
    """A list of :func:`unfinished_runs` for under the table (empty when every run finished)."""
    from dfc_brian.experiments.status import RunStatus

    rows = [RunStatus(**r) for r in data.get("unfinished") or []]
    if not rows:
        return ""
    lines = []
    for r in rows:
        fb = f", {r.fb_done}/{r.fb_epochs} sleep-only epochs" if r.fb_epochs else ""
        so_far = f"; so far {r.value:.4g} {r.value_what}" if r.value is not None else ""
        so_far += f"; {r.problem}" if r.problem else ""
        lines.append(
            f"- {r.config or r.run_dir} seed {r.seed}: {r.state}, {r.done}/{r.epochs or '?'} epochs{fb}"
            f"{so_far}"
        )
    return (
        "\n**Runs not in the table** (not finished; `dfc-brian status` gives their pace and ETA):\n\n"
        + "\n".join(lines)
        + "\n"
    )


def wall_time_markdown(data: Mapping[str, Any]) -> str:
    """Markdown table of the runs' wall times per (row, column): mean, min–max and n, in hours.

    Empty when :func:`aggregate` was given no wall times or no run recorded one.
    """
    cols = data["columns"]
    lines = []
    for r, row in data["rows"].items():
        cells, any_wall = [r], False
        for c in cols:
            w = [t for t in row[c].get("wall_time_s") or [] if t is not None]
            if w:
                any_wall = True
                h = np.asarray(w) / 3600.0
                spread = f" ({h.min():.2f}–{h.max():.2f})" if len(h) > 1 else ""
                cells.append(f"{h.mean():.2f}{spread} (n={len(h)})")
            else:
                cells.append("—")
        if any_wall:
            lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| method | " + " | ".join(COLUMN_TITLES[c] for c in cols) + " |"
    return (
        "\n**Wall time per run** (hours: mean (min–max) over the n runs; each run's `wall_time_s`, "
        "measured on the machine it ran on, beside whatever else ran there):\n\n"
        + "\n".join([head, "|---" * (1 + len(cols)) + "|", *lines])
        + "\n"
    )


CSV_FIELDS = (
    "row",
    "column",
    "marked",
    "n",
    "mean",
    "std",
    "published_mean",
    "published_std",
    "diff_in_published_std",
    "seeds",
    "values",
    "wall_time_s",
)


def table_csv(data: Mapping[str, Any]) -> str:
    """One line per (row, column) with runs or a published value; seeds, values, wall times ';'-separated."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r, row in data["rows"].items():
        for c in data["columns"]:
            e = row[c]
            if not e["values"] and not e["published"]:
                continue
            pub = e["published"] or ["", ""]
            d = e["diff_in_published_std"]
            w.writerow(
                [
                    r,
                    c,
                    int(e["marked"]),
                    e["n_seeds"],
                    repr(e["mean"]) if e["values"] else "",
                    repr(e["std"]) if e["values"] else "",
                    repr(pub[0]) if e["published"] else "",
                    repr(pub[1]) if e["published"] else "",
                    repr(d) if d is not None else "",
                    ";".join(str(s) for s in (e["seeds"] or [])),
                    ";".join(repr(v) for v in e["values"]),
                    ";".join("" if t is None else repr(t) for t in e.get("wall_time_s") or []),
                ]
            )
    return buf.getvalue()


def plot_table(data: Mapping[str, Any]) -> Figure:
    """One panel per column: our mean ± std (with the seeds as dots) beside the published bars."""
    from matplotlib.figure import Figure

    cols = data["columns"]
    fig = Figure(figsize=(4.2 * len(cols), 4.0), constrained_layout=True)
    axes = fig.subplots(1, len(cols), squeeze=False)[0]
    for ax, c in zip(axes, cols):
        labels = [r for r, row in data["rows"].items() if row[c]["values"] or row[c]["published"]]
        x = np.arange(len(labels))
        for i, r in enumerate(labels):
            e = data["rows"][r][c]
            if e["published"]:
                ax.bar(i - 0.2, e["published"][0], 0.4, yerr=e["published"][1], color="0.75", capsize=3)
            if e["values"]:
                color = "tab:orange" if e["marked"] else "tab:blue"
                yerr = e["std"] if e["n_seeds"] > 1 else None  # one seed: no error bar
                ax.bar(i + 0.2, e["mean"], 0.4, yerr=yerr, color=color, capsize=3)
                ax.plot(np.full(len(e["values"]), i + 0.2), e["values"], "k.", ms=3)
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(COLUMN_TITLES[c], fontsize=9)
        if c == "mnist_trainloss":
            ax.set_yscale("log")
    from matplotlib.patches import Patch

    axes[0].legend(
        handles=[
            Patch(color="0.75", label="published"),
            Patch(color="tab:blue", label="ours"),
            Patch(color="tab:orange", label="ours, not paper length"),
        ],
        fontsize=7,
    )
    return fig


def write_table(runs_dir: RunsDirs, out: str | Path | None = None, figure: bool = True) -> dict[str, Path]:
    """Aggregate the runs under runs_dir (a folder, or several read in order: :func:`collect`) and
    write ``.md``, ``.json``, ``.csv`` and ``.png`` beside ``out``.

    ``out`` is the markdown path (default ``table1.md`` in the first folder). Returns the written
    paths by suffix.
    """
    from dfc_brian.experiments.results import atomic_write_text

    data = aggregate(*collect(runs_dir))
    data["unfinished"] = unfinished_runs(runs_dir)
    md = Path(out) if out else runs_folders(runs_dir)[0] / "table1.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    paths = {"md": md, "json": md.with_suffix(".json"), "csv": md.with_suffix(".csv")}
    atomic_write_text(paths["md"], table_markdown(data))
    atomic_write_text(paths["json"], json.dumps(data, indent=1) + "\n")
    atomic_write_text(paths["csv"], table_csv(data))
    if figure:
        from dfc_brian.plotting import use_style

        use_style()
        paths["png"] = md.with_suffix(".png")
        plot_table(data).savefig(paths["png"])
    return paths


def make_table(
    runs: Mapping[str, Mapping[str, Mapping[int, float] | list[float]]],
) -> tuple[str, dict[str, Any]]:
    """Markdown Table 1 and its data (:func:`aggregate`) of the output of :func:`collect_runs`."""
    data = aggregate(runs)
    return table_markdown(data), data
