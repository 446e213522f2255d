"""Tests of the Table-1 aggregation: mean, std, n, Δ/σ against the published numbers, marked rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dfc_brian import cli
from dfc_brian.experiments import table1 as T1
from dfc_brian.experiments.results import RESULTS_JSON
from dfc_brian.model.params import ConfigError


def write_run(runs: Path, folder: str, seed: int, row: str, column: str, value: float, **kw) -> None:
    epochs = kw.get("epochs", T1.PAPER_EPOCHS[column])
    side = {
        "seed": seed,
        "config": {"table1": {"row": row, "column": column}, "training": {"epochs": epochs}},
        "summary": {
            "reported": value,
            "epochs_done": kw.get("epochs_done", epochs),
            "max_batches": kw.get("max_batches"),
        },
    }
    if "wall_time_s" in kw:
        side["wall_time_s"] = kw["wall_time_s"]
    d = runs / folder / str(seed)
    d.mkdir(parents=True)
    (d / RESULTS_JSON).write_text(json.dumps(side))


@pytest.fixture
def runs(tmp_path) -> Path:
    r = tmp_path / "runs"
    for seed, (v, w) in enumerate([(2.0, 3600.0), (2.2, 7200.0), (2.3, 5400.0)]):  # DFC MNIST, paper length
        write_run(r, "mnist_dfc", seed, "DFC", "mnist", v, wall_time_s=w)
    for seed, v in enumerate([0.10, 0.12]):  # BP autoencoder, paper length (25 epochs); seed 1 no wall time
        write_run(
            r,
            "mnist_autoencoder_bp",
            seed,
            "BP",
            "mnist_autoencoder",
            v,
            **({} if seed else {"wall_time_s": 900}),
        )
    write_run(r, "short", 0, "DFC", "mnist", 5.5, epochs=1)  # shorter than the paper's
    write_run(r, "cut", 0, "BP", "mnist", 3.0, max_batches=20)  # paper epochs, cut minibatches
    write_run(r, "cut_short", 0, "BP", "mnist", 4.0, epochs=2, max_batches=20)
    write_run(r, "unfinished", 0, "DFC", "mnist", 50.0, epochs_done=7)  # skipped
    write_run(r, "z_copy_of_mnist_dfc", 0, "DFC", "mnist", 99.0)  # same cell and seed, later path: skipped
    write_run(r, "ssa", 0, "DFC-SSA", "fashion_mnist", 12.0)  # no published value
    (r / "junk" / "0").mkdir(parents=True)
    (r / "junk" / "0" / RESULTS_JSON).write_text("{not json")
    return r


def test_aggregate_numbers(runs):
    data = T1.aggregate(T1.collect_runs(runs, verbose=False))
    e = data["rows"]["DFC"]["mnist"]
    assert e["values"] == [2.0, 2.2, 2.3] and e["seeds"] == [0, 1, 2] and e["n_seeds"] == 3
    assert e["mean"] == pytest.approx(6.5 / 3, abs=1e-14)
    assert e["std"] == pytest.approx(
        np.sqrt(((2.0 - 6.5 / 3) ** 2 + (2.2 - 6.5 / 3) ** 2 + (2.3 - 6.5 / 3) ** 2) / 3)
    )
    assert e["published"] == [2.25, 0.094]
    assert e["diff_in_published_std"] == pytest.approx((6.5 / 3 - 2.25) / 0.094)
    a = data["rows"]["BP"]["mnist_autoencoder"]
    assert (a["mean"], a["std"], a["n_seeds"]) == (pytest.approx(0.11), pytest.approx(0.01), 2)
    assert a["diff_in_published_std"] == pytest.approx((0.11 - 9.42e-2) / 0.09e-2)
    # marked rows: own rows, no comparison with the published number
    assert data["rows"]["DFC [1 epoch]"]["mnist"]["values"] == [5.5]
    assert data["rows"]["BP [100 epochs, 20 batches/epoch]"]["mnist"]["values"] == [3.0]
    assert data["rows"]["BP [2 epochs, 20 batches/epoch]"]["mnist"]["values"] == [4.0]
    for r in ("DFC [1 epoch]", "BP [100 epochs, 20 batches/epoch]"):
        assert data["rows"][r]["mnist"]["marked"] and data["rows"][r]["mnist"]["published"] is None
    assert not data["rows"]["DFC"]["mnist"]["marked"]
    # unpublished row with runs; published rows without runs are still listed
    s = data["rows"]["DFC-SSA"]["fashion_mnist"]
    assert s["values"] == [12.0] and s["published"] is None and s["diff_in_published_std"] is None
    assert data["rows"]["DFA"]["mnist"]["values"] == [] and data["rows"]["DFA"]["mnist"]["published"] == [
        2.69,
        0.11,
    ]
    assert list(data["rows"])[:5] == ["BP", "DFC", "DFC-SSA", "DFC-fixed", "DFA"]


def test_markdown_csv_and_figure_from_cli(runs, tmp_path, capsys):
    out = tmp_path / "t" / "table1.md"
    assert cli.main(["table", str(runs), "--out", str(out)]) == 0
    md = out.read_text()
    dfc_line = next(line for line in md.splitlines() if line.startswith("| DFC |"))
    d = (6.5 / 3 - 2.25) / 0.094
    assert f"| 2.17 ± 0.12 % (n=3) | 2.25 ± 0.09 % | {d:+.1f} |" in dfc_line and f"{d:+.1f}" == "-0.9"
    assert "| 11.00 ± 1.00 e−2 (n=2) | 9.42 ± 0.09 e−2 | +17.6 |" in md
    assert "| DFC [1 epoch] | 5.50 % (n=1) | — | — |" in md  # one seed: no spread
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    r = next(x for x in rows if x["row"] == "DFC" and x["column"] == "mnist")
    assert (r["n"], r["seeds"], r["marked"]) == ("3", "0;1;2", "0")
    assert float(r["mean"]) == pytest.approx(6.5 / 3) and float(r["diff_in_published_std"]) == pytest.approx(
        d
    )
    assert float(r["published_std"]) == 0.094 and [float(v) for v in r["values"].split(";")] == [
        2.0,
        2.2,
        2.3,
    ]
    m = next(x for x in rows if x["row"] == "BP [100 epochs, 20 batches/epoch]")
    assert m["marked"] == "1" and m["published_mean"] == ""
    assert not any(x["row"] == "DFC-SS" for x in rows)  # neither runs nor a published value
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["rows"]["DFC"]["mnist"]["n_seeds"] == 3
    png = out.with_suffix(".png")
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "written" in capsys.readouterr().out
    # wall times: a table of their own, hours, mean (min–max) (n); CSV per seed, empty where none
    wall = md[md.index("**Wall time per run**") :]
    assert "| DFC | 1.50 (1.00–2.00) (n=3) | — | — | — |" in wall
    assert "| BP | — | — | 0.25 (n=1) | — |" in wall
    assert "DFC-SSA" not in wall and "DFC [1 epoch]" not in wall  # no run there recorded a wall time
    assert [float(t) for t in r["wall_time_s"].split(";")] == [3600.0, 7200.0, 5400.0]
    a = next(x for x in rows if x["row"] == "BP" and x["column"] == "mnist_autoencoder")
    assert a["wall_time_s"] == "900.0;"
    assert data["rows"]["DFC"]["mnist"]["wall_time_s"] == [3600.0, 7200.0, 5400.0]


def test_wall_times_follow_the_runs_read(runs):
    """The wall times are those of the runs whose values are tabulated (same skips, same seeds)."""
    values, walls = T1.collect(runs, verbose=False)
    assert walls["DFC"]["mnist"] == {0: 3600.0, 1: 7200.0, 2: 5400.0}  # not the skipped z_copy or unfinished
    assert walls["BP"]["mnist_autoencoder"] == {0: 900.0, 1: None}
    assert set(walls) == set(values) and values == T1.collect_runs(runs, verbose=False)
    assert "wall_time_s" not in T1.aggregate(T1.collect_runs(runs, verbose=False))["rows"]["DFC"]["mnist"]
    assert T1.wall_time_markdown(T1.aggregate(T1.collect_runs(runs, verbose=False))) == ""


def test_figure_panels():
    data = T1.aggregate({"DFC": {"mnist": {0: 2.0, 1: 2.4}}, "BP [1 epoch]": {"mnist": [9.0]}})
    fig = T1.plot_table(data)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [T1.COLUMN_TITLES[c] for c in T1.COLUMNS]
    bars = {round(p.get_height(), 6) for p in axes[0].patches}
    assert {2.2, 2.25, 2.08, 9.0} <= bars  # ours (mean), published DFC and BP, marked run


def test_format_cell():
    assert T1.format_cell(2.08, 0.15, "mnist") == "2.08 ± 0.15 %"
    assert T1.format_cell(9.42e-2, 0.09e-2, "mnist_autoencoder") == "9.42 ± 0.09 e−2"
    assert T1.format_cell(7.61e-8, 0.65e-8, "mnist_trainloss") == "7.61 ± 0.65 e−8"
    assert T1.format_cell(2.43, None, "mnist") == "2.43 %"  # one seed: no spread
    assert T1.format_cell(0.2963, None, "mnist_autoencoder") == "29.63 e−2"
    assert T1.format_cell(1.79e-4, None, "mnist_trainloss") == "1.79 e−4"


def test_cell_note_printed_only_with_runs(runs):
    md = T1.table_markdown(T1.aggregate(T1.collect_runs(runs, verbose=False)))
    assert "Where ours differs" not in md  # no BP train-loss run in the fixture
    md = T1.table_markdown(T1.aggregate({"BP": {"mnist_trainloss": {0: 3e-4}}}))
    assert "**Where ours differs, and why:**\n\n- BP, MNIST train loss: not our BP." in md


def test_cell_note_numbers_are_the_committed_crosscheck_runs():
    """The BP train-loss note quotes the final running losses of the committed PyTorch runs."""
    xc = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bp_torch_crosscheck"
    note = T1.CELL_NOTES["BP", "mnist_trainloss"]
    for name in (
        "mnist_trainloss_bp_seed0",
        "mnist_trainloss_bp_native_seed0",
        "mnist_trainloss_bp_native_seed1",
        "mnist_trainloss_bp_native_seed0_lr_third",
        "mnist_trainloss_bp_native_seed1_lr_third",
        "mnist_trainloss_bp_native_seed0_lr_half",
    ):
        res = json.loads((xc / f"{name}.json").read_text())
        assert len(res["torch"]["epoch"]) == 100
        last = f"{res['torch']['running_loss'][-1]:.2e}".replace("e-0", "e−")
        assert last in note, (name, last)
    lock = json.loads((xc / "mnist_trainloss_bp_seed0.json").read_text())["lockstep"]
    assert lock["steps"] == 430 and lock["max_rel_loss_diff"] < 9e-16


def test_plateau_exit_epoch():
    h = {"epoch": [0, 1, 2, 3, 4, 5], "step/loss": [None, 1e-3, 2e-6, 3e-4, 4e-6, 9e-7]}
    assert T1.plateau_exit_epoch(h) == 4.0  # epoch 2 dipped below, epoch 3 came back
    assert T1.plateau_exit_epoch(h, below=1e-6) == 5.0
    assert T1.plateau_exit_epoch({**h, "step/loss": [None, 1e-3, 2e-6, 3e-4, 4e-6, 2e-5]}) is None


def test_dfa_trainloss_note_numbers_are_the_committed_runs():
    """The DFA train-loss note quotes each seed's last-epoch loss and plateau exit, at 100 and 150 epochs."""
    res = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    note = T1.CELL_NOTES["DFA", "mnist_trainloss"]

    def fmt(x: float) -> str:
        return f"{x:.2e}".replace("e-0", "e−")

    def hist(kind: str, cell: str, seed: int) -> dict:
        return json.loads((res / kind / cell / str(seed) / "results.json").read_text())["history"]

    h100 = [hist("table1", "mnist_trainloss_dfa", s) for s in range(5)]
    h150 = [hist("trainloss_extension", "mnist_trainloss_dfa", s) for s in (2, 3, 4)]
    assert all(h["epoch"][-1] == 100 for h in h100) and all(h["epoch"][-1] == 150 for h in h150)
    e100 = [T1.plateau_exit_epoch(h) for h in h100]
    assert e100[2:] == [None, None, None]
    assert (
        f"leave at epochs {e100[0]:.0f} and {e100[1]:.0f} and end at {fmt(h100[0]['step/loss'][-1])} and "
        in note
    )
    last = [fmt(h["step/loss"][-1]) for h in h100[2:]]
    assert f"still on it at epoch 100 ({last[0]}, {last[1]}, {last[2]})" in note
    e150 = [f"{T1.plateau_exit_epoch(h):.0f}" for h in h150]
    l150 = [fmt(h["step/loss"][-1]) for h in h150]
    assert f"leave at epochs {e150[0]}, {e150[1]} and {e150[2]} and reach {l150[0]}, {l150[1]} and" in note
    assert l150[2] in note and fmt(h100[1]["step/loss"][-1]) in note
    for seed in (0, 1):  # BP at the released lr: still on the plateau at epoch 150
        h = hist("trainloss_extension", "mnist_trainloss_bp", seed)
        assert h["epoch"][-1] == 150 and T1.plateau_exit_epoch(h) is None
        assert fmt(h["step/loss"][-1]) in T1.CELL_NOTES["BP", "mnist_trainloss"]


def test_runs_not_finished_are_listed_under_the_table(runs, tmp_path):
    """The 7-of-100-epochs run is not in the table but named under it, and so is a run that has only
    a checkpoint (`status.scan`), and the unreadable results.json with the reason."""
    from tests.test_status import _state, _write_checkpoint

    cfg = {"name": "mnist_dfc_ssa", "training": {"method": "DFC-SSA", "q": "trained", "epochs_fb": 10}}
    hist = {"epoch": [0, 1, 2], "val_error": [90.0, 5.0, 4.0], "test_error": [91.0, 4.5, 4.25]}
    hist["train_loss"] = [2.3, 0.2, 0.1]
    _write_checkpoint(
        runs / "mnist_dfc_ssa" / "0", _state(fb_done=10, done=2, epochs=100, history=hist), cfg, seed=0
    )
    paths = T1.write_table(runs, tmp_path / "out" / "t.md", figure=False)
    md = paths["md"].read_text()
    tail = md.split("**Runs not in the table**")[1].strip().splitlines()[2:]
    assert tail == [
        f"- {runs / 'junk' / '0'} seed None: unreadable, 0/? epochs; cannot read results.json "
        "(JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "- mnist_dfc_ssa seed 0: stopped, 2/100 epochs, 10/10 sleep-only epochs; so far 4.25 test error (%) "
        "at the best validation, epoch 2",
        f"- {runs / 'unfinished' / '0'} seed 0: stopped, 7/100 epochs",
    ]
    data = json.loads(paths["json"].read_text())
    assert [(u["config"], u["done"]) for u in data["unfinished"]] == [
        (None, 0),
        ("mnist_dfc_ssa", 2),
        (None, 7),
    ]
    assert 50.0 not in data["rows"]["DFC"]["mnist"]["values"]
    (runs / "unfinished").rename(tmp_path / "moved")
    (runs / "mnist_dfc_ssa").rename(tmp_path / "moved2")
    (runs / "junk").rename(tmp_path / "moved3")
    assert (
        "Runs not in the table"
        not in T1.write_table(runs, tmp_path / "o2" / "t.md", figure=False)["md"].read_text()
    )


def test_several_runs_folders_first_wins_and_the_rest_fill_in(runs, tmp_path, capsys):
    """Your runs first, then the committed ones: a (row, column, seed) in both is read from the
    first folder (with a warning naming both files); cells and seeds only in the second are added."""
    mine = tmp_path / "mine"
    write_run(mine, "mnist_dfc", 1, "DFC", "mnist", 2.6, wall_time_s=60.0)  # seed 1 rerun: replaces 2.2
    write_run(mine, "mnist_dfc", 7, "DFC", "mnist", 2.9)  # a seed the other folder lacks
    write_run(mine, "fashion_mnist_bp", 0, "BP", "fashion_mnist", 10.5)  # a cell the other folder lacks
    write_run(mine, "unfinished_ssa", 0, "DFC-SSA", "mnist", 9.0, epochs_done=3)
    values, walls = T1.collect([mine, runs])
    err = capsys.readouterr().err
    assert values["DFC"]["mnist"] == {0: 2.0, 1: 2.6, 2: 2.3, 7: 2.9}
    assert walls["DFC"]["mnist"] == {0: 3600.0, 1: 60.0, 2: 5400.0, 7: None}
    assert values["BP"]["fashion_mnist"] == {0: 10.5} and values["BP"]["mnist_autoencoder"] == {
        0: 0.10,
        1: 0.12,
    }
    skipped = runs / "mnist_dfc" / "1" / RESULTS_JSON
    assert (
        f"skipping {skipped}: DFC / mnist seed 1 already read from {mine / 'mnist_dfc' / '1' / RESULTS_JSON}"
        in err
    )
    # the other order: the committed value wins
    assert T1.collect_runs([runs, mine], verbose=False)["DFC"]["mnist"][1] == 2.2
    # both folders' unfinished runs are listed, the first folder's first
    assert [u["run_dir"] for u in T1.unfinished_runs([mine, runs])][:2] == [
        str(mine / "unfinished_ssa" / "0"),
        str(runs / "junk" / "0"),
    ]
    # the CLI: several folders, the table written into the first by default
    assert cli.main(["table", str(mine), str(runs), "--no-figure"]) == 0
    md = (mine / "table1.md").read_text()
    mean = np.mean([2.0, 2.6, 2.3, 2.9])
    assert f"| {mean:.2f} ± {np.std([2.0, 2.6, 2.3, 2.9]):.2f} % (n=4) |" in md
    assert "unfinished_ssa" in md.split("**Runs not in the table**")[1]


def test_table_names_a_missing_runs_folder(runs, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli.main(["table", str(runs), str(missing)]) == 2
    assert f"runs folder {str(missing)!r} does not exist" in capsys.readouterr().err
    assert not (runs / "table1.md").exists()  # nothing written
    with pytest.raises(ConfigError, match="no runs folder"):
        T1.collect([])
