"""benchmarks/cell_cost.py checks its projection against the cell's runs: the measured epoch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dfc_brian.experiments.results import RESULTS_JSON
from tests.test_status import _state, _write_checkpoint

_spec = importlib.util.spec_from_file_location(
    "cell_cost", Path(__file__).resolve().parent.parent / "benchmarks" / "cell_cost.py"
)
cell_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cell_cost)


def _results(run_dir: Path, wall: float, epochs: int, fb_done: int = 0) -> None:
    """A finished run written before epoch times were recorded (no ``epoch_wall_s``)."""
    run_dir.mkdir(parents=True)
    res = {
        "config": {"name": "c", "training": {"epochs": epochs}},
        "seed": int(run_dir.name),
        "wall_time_s": wall,
        "summary": {"epochs_done": epochs, "fb_epochs_done": fb_done},
        "history": {},
    }
    (run_dir / RESULTS_JSON).write_text(json.dumps(res))


def test_measured_epoch_counts_running_and_trained_q_runs(tmp_path):
    cfg = {"name": "c", "training": {"method": "DFC-SSA", "q": "trained", "epochs_fb": 2, "epochs": 10}}
    # a trained-Q run still running: 2 sleep-only epochs (10, 12 s) then 6 training epochs 50..100 s;
    # its pace is the median of the last five training epochs, 80 s (not wall / epochs, 1000 / 6)
    _write_checkpoint(tmp_path / "a" / "c" / "0", _state(), cfg, seed=0)
    _results(tmp_path / "b" / "c" / "1", wall=400.0, epochs=20)  # an old finished run: 20 s per epoch
    _results(tmp_path / "b" / "c" / "2", wall=999.0, epochs=20, fb_done=3)  # mixed epochs, no times: skipped
    assert cell_cost._measured_epoch([tmp_path / "a"], "c") == pytest.approx(80.0, rel=1e-12)
    assert cell_cost._measured_epoch([tmp_path / "b"], "c") == pytest.approx(20.0, rel=1e-12)
    assert cell_cost._measured_epoch([tmp_path / "a", tmp_path / "b"], "c") == pytest.approx(50.0, rel=1e-12)
    assert cell_cost._measured_epoch([tmp_path / "a", tmp_path / "nowhere"], "other") is None
    assert cell_cost._finished_cells([tmp_path / "a", tmp_path / "b"]) == {"c"}


def test_markdown_refresh_keeps_a_measurement_with_no_run_and_says_when(tmp_path):
    _results(tmp_path / "runs" / "c" / "0", wall=300.0, epochs=10)
    row = {"method": "DFC-SSA", "q": "fixed", "t_train_s": 0.02, "projected_epoch_s": 11.0, "epochs": 10}
    out = tmp_path / "cost.json"
    machine = {"date": "d", "command": "x", "cores": 2, "cpu": "cpu", "blas_threads": "1"}
    machine.update(loadavg_before=[4.0, 4.0, 4.0], loadavg_after=[4.0, 4.0, 4.0])
    cells = [
        dict(row, cell="c", projected_run_h=0.1, measured_epoch_s=None),
        dict(row, cell="d", projected_run_h=0.1, measured_epoch_s=17.0),
    ]
    out.write_text(json.dumps({"machine": machine, "k": 2, "cells": cells}))
    assert cell_cost.main(["--markdown", "--out", str(out), "--runs", str(tmp_path / "runs")]) == 0
    got = {c["cell"]: c["measured_epoch_s"] for c in json.loads(out.read_text())["cells"]}
    assert got == {"c": 30.0, "d": 17.0}
    md = out.with_suffix(".md").read_text()
    assert "| c (run) | DFC-SSA (fixed) | 0.020 | – | 11 | 30 | 10 |" in md
    assert "| d | DFC-SSA (fixed) | 0.020 | – | 11 | 17 | 10 |" in md
    assert (
        f"refreshed {json.loads(out.read_text())['measured_refreshed']['date'][:10]} from {tmp_path / 'runs'}"
        in md
    )
