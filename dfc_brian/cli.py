"""Command line interface: ``dfc-brian train | table | check-data | demo | configs``.

Examples
--------
::

    dfc-brian check-data --data-root ~/data
    dfc-brian train models/table1/mnist_dfc.yaml --seed 0 --out runs/mnist_dfc/seed0
    dfc-brian train table1/mnist_bp --epochs 2 --max-batches 20      # quick look
    dfc-brian train models/table1/mnist_dfc.yaml --seed 0 --resume   # continue a killed run
    dfc-brian table runs --out runs/table1.md                        # also writes runs/table1.json
    dfc-brian demo --out figures/demo --target numpy --quick
    dfc-brian configs                                                # the named configs

Errors print one line to stderr, never a traceback. Exit status: 2 for a bad config, data
file, checkpoint or run directory (or a directory in use by another run), 3 when training
diverged (non-finite loss or weights; the last checkpoint is kept), 130 after Ctrl-C (the
checkpoint of the last finished epoch is kept; continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.model.params import ConfigError

#: Table 1 rows and columns, in the paper's order
ROWS = ("BP", "DFC", "DFC-SS", "DFC-SSA", "DFC-fixed", "DFC-SS-fixed", "DFC-SSA-fixed", "DFA")
COLUMNS = ("mnist", "fashion_mnist", "mnist_autoencoder", "mnist_trainloss")
COLUMN_TITLES = {
    "mnist": "MNIST (test error %)",
    "fashion_mnist": "Fashion-MNIST (test error %)",
    "mnist_autoencoder": "MNIST autoencoder (test loss)",
    "mnist_trainloss": "MNIST train loss",
}
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


def _fmt(mean: float, std: float, column: str) -> str:
    if column in ("mnist", "fashion_mnist"):
        return f"{mean:.2f} ± {std:.2f} %"
    if column == "mnist_autoencoder":
        return f"{mean * 100:.2f} ± {std * 100:.2f} e−2"
    exp = int(np.floor(np.log10(abs(mean)))) if mean != 0 and np.isfinite(mean) else 0
    return f"{mean / 10**exp:.2f} ± {std / 10**exp:.2f} e{exp}".replace("e-", "e−")


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _validate_config(cfg: dict[str, Any], source: str) -> None:
    """Every section the run reads, checked before any work; errors are prefixed with the file."""
    from dfc_brian.engines.methods import validate_training as validate_method
    from dfc_brian.experiments.train import validate_data, validate_training
    from dfc_brian.model.params import ModelParams

    try:
        ModelParams.from_dict(cfg)
        validate_training(cfg)
        validate_data(cfg)
        validate_method(cfg.get("training"))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    from dfc_brian.config import load_config, resolve_config_path
    from dfc_brian.experiments.train import train

    cfg = load_config(args.config)
    if args.epochs is not None:
        if args.epochs < 0:
            raise ConfigError(f"--epochs must be >= 0, got {args.epochs}")
        cfg.setdefault("training", {})["epochs"] = args.epochs
    if getattr(args, "epochs_fb", None) is not None:
        if args.epochs_fb < 0:
            raise ConfigError(f"--epochs-fb must be >= 0, got {args.epochs_fb}")
        cfg.setdefault("training", {})["epochs_fb"] = args.epochs_fb
    if args.max_batches is not None and args.max_batches < 1:
        raise ConfigError(f"--max-batches must be >= 1, got {args.max_batches}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    _validate_config(cfg, str(resolve_config_path(args.config)))
    out = Path(args.out) if args.out else Path("runs") / str(cfg.get("name", "run")) / f"seed{args.seed}"
    args.run_dir = out  # for the Ctrl-C message
    summary = train(
        cfg,
        args.seed,
        out,
        data_root=args.data_root,
        resume=args.resume,
        max_batches=args.max_batches,
        progress=not args.quiet,
    )
    print(
        f"{cfg.get('name')} seed {args.seed}: reported {summary['report']} = {summary['reported']:.6g} "
        f"(best epoch {summary['best_epoch']}); results in {out}"
    )
    if summary.get("minibatches_none_converged"):
        print(
            f"warning: in {summary['minibatches_none_converged']} minibatches no sample converged "
            "(zero forward update); see history 'minibatches_none_converged' in results.json",
            file=sys.stderr,
        )
    return 0


# ---------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------


# epochs of the paper's runs, per column
PAPER_EPOCHS = {"mnist": 100, "fashion_mnist": 100, "mnist_autoencoder": 25, "mnist_trainloss": 100}


def collect_runs(runs_dir: str | Path) -> dict[str, dict[str, list[float]]]:
    """``{row: {column: [reported value per seed]}}`` from every ``results.json`` under runs_dir.

    Row and column come from the config's ``table1`` section (``row``, ``column``); runs
    without it, or that did not finish their configured epochs, are skipped. Runs shorter or
    longer than the paper's (100 epochs, 25 for the autoencoder) get a row of their own,
    e.g. ``DFC [1 epoch]``.
    """
    from dfc_brian.experiments.results import RESULTS_JSON

    out: dict[str, dict[str, list[float]]] = {}
    for p in sorted(Path(runs_dir).rglob(RESULTS_JSON)):
        try:
            res = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            print(f"skipping unreadable {p}", file=sys.stderr)
            continue
        cell = (res.get("config") or {}).get("table1") or {}
        row, col = cell.get("row"), cell.get("column")
        summ = res.get("summary") or {}
        epochs = ((res.get("config") or {}).get("training") or {}).get("epochs")
        if row is None or col is None or summ.get("reported") is None:
            continue
        if epochs is not None and summ.get("epochs_done") != epochs:
            continue
        if epochs is not None and epochs != PAPER_EPOCHS.get(col, epochs):
            row = f"{row} [{epochs} epoch{'' if epochs == 1 else 's'}]"  # not comparable to the paper's
        out.setdefault(row, {}).setdefault(col, []).append(float(summ["reported"]))
    return out


def make_table(runs: dict[str, dict[str, list[float]]]) -> tuple[str, dict[str, Any]]:
    """Markdown Table 1 (ours, mean ± std over seeds, beside the published numbers) and its JSON.

    The std is the population standard deviation (``numpy.std``, ddof = 0).
    """
    rows = [r for r in ROWS if r in runs or r in PUBLISHED] + sorted(set(runs) - set(ROWS))
    head = "| method | " + " | ".join(f"{COLUMN_TITLES[c]} ours | published" for c in COLUMNS) + " |"
    lines = [head, "|---" * (1 + 2 * len(COLUMNS)) + "|"]
    data: dict[str, Any] = {"columns": list(COLUMNS), "rows": {}}
    for r in rows:
        cells = [r]
        data["rows"][r] = {}
        for c in COLUMNS:
            vals = runs.get(r, {}).get(c, [])
            entry: dict[str, Any] = {"values": vals}
            if vals:
                m, s = float(np.mean(vals)), float(np.std(vals))
                entry.update(mean=m, std=s, n_seeds=len(vals))
                cells.append(f"{_fmt(m, s, c)} (n={len(vals)})")
            else:
                cells.append("—")
            pub = PUBLISHED.get(r, {}).get(c)
            entry["published"] = list(pub) if pub else None
            cells.append(_fmt(*pub, c) if pub else "—")
            data["rows"][r][c] = entry
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nOurs: test error (%) or test loss at the epoch of best validation, MNIST train loss: training "
        "loss after the last epoch; mean ± std (numpy.std) over seeds. Published: Meulemans et al. 2021, "
        "Table 1.\n"
    )
    return "\n".join(lines) + "\n" + note, data


def _cmd_table(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"runs directory {str(runs_dir)!r} does not exist")
    md, data = make_table(collect_runs(runs_dir))
    out = Path(args.out) if args.out else runs_dir / "table1.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(md)
    print(f"written {out} and {out.with_suffix('.json')}")
    return 0


# ---------------------------------------------------------------------------------------------
# check-data
# ---------------------------------------------------------------------------------------------


def _cmd_check_data(args: argparse.Namespace) -> int:
    from dfc_brian.experiments.data import FOLDERS, DataError, check_files, data_root, fetch

    root = data_root(args.data_root)
    if args.download:
        for name in FOLDERS:
            fetch(name, root)
    status = check_files(root)
    bad = {k: v for k, v in status.items() if v != "ok"}
    for k, v in status.items():
        print(f"{'ok     ' if v == 'ok' else 'PROBLEM'} {root / k}")
    if bad:
        first = next(iter(bad.values()))
        raise DataError(f"{len(bad)} of {len(status)} data files missing or corrupt; first: {first}")
    print(f"all {len(status)} files present with correct md5 under {root}")
    return 0


# ---------------------------------------------------------------------------------------------
# demo  (dfc_brian/demo.py is written separately; this is only its entry point)
# ---------------------------------------------------------------------------------------------


def _cmd_configs(args: argparse.Namespace) -> int:
    """List the named configs (usable as ``dfc-brian train <name>``) with their method and data."""
    from dfc_brian.config import MODELS_DIR, list_configs, load_config

    names = list_configs()
    if not names:
        raise ConfigError(f"no configs found in {MODELS_DIR} (broken installation?)")
    for name in names:
        if args.names_only:
            print(name)
            continue
        try:
            cfg = load_config(name)
            tr, d = cfg.get("training") or {}, cfg.get("data") or {}
            fixed = " (fixed Q)" if tr.get("q") == "fixed" else ""
            desc = f"{tr.get('method', '?')}{fixed} on {d.get('dataset', '?')}"
        except ConfigError as err:
            desc = f"INVALID: {err}"
        print(f"{name:40s} {desc}")
    print(f"{len(names)} configs in {MODELS_DIR}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the Brian2 demo: ``dfc_brian.demo.main(args)`` (options --out, --target, --quick)."""
    import dfc_brian.demo

    rc = dfc_brian.demo.main(args)
    return int(rc) if rc is not None else 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``dfc-brian``."""
    p = argparse.ArgumentParser(prog="dfc-brian", description="Deep Feedback Control in Brian2 and NumPy")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one config with one seed")
    t.add_argument("config", help="YAML config path, or a name under models/ (e.g. table1/mnist_dfc)")
    t.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    t.add_argument("--out", default=None, help="run directory (default runs/<name>/seed<N>)")
    t.add_argument("--data-root", default=None, help="data root (default $DFC_DATA, else ./data)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    t.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    t.add_argument(
        "--epochs-fb",
        type=int,
        default=None,
        help="override training.epochs_fb (feedback pre-training epochs)",
    )
    t.add_argument("--max-batches", type=int, default=None, help="at most N minibatches per epoch")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    tb = sub.add_parser("table", help="assemble finished runs into the paper's Table 1")
    tb.add_argument("runs_dir", nargs="?", default="runs", help="folder searched for results.json")
    tb.add_argument("--out", default=None, help="markdown file (default RUNS_DIR/table1.md; JSON beside)")
    tb.set_defaults(func=_cmd_table)

    c = sub.add_parser("check-data", help="check the MNIST / Fashion-MNIST files and their md5 sums")
    c.add_argument("--data-root", default=None, help="data root (default $DFC_DATA, else ./data)")
    c.add_argument("--download", action="store_true", help="download first (needs torchvision + internet)")
    c.set_defaults(func=_cmd_check_data)

    # --- demo: entry point only; the demo itself lives in dfc_brian/demo.py -------------------
    d = sub.add_parser("demo", help="run the Brian2 demo and write its figures")
    d.add_argument(
        "--out", default="figures/demo", help="output folder (default figures/demo, ignored by git)"
    )
    d.add_argument(
        "--target",
        default="numpy",
        choices=("numpy", "cython", "cpp_standalone"),
        help="Brian2 code generation target",
    )
    d.add_argument("--quick", action="store_true", help="shorter simulation")
    d.set_defaults(func=_cmd_demo)

    cf = sub.add_parser("configs", help="list the named configs shipped with the package")
    cf.add_argument("--names-only", action="store_true", help="names only, one a line")
    cf.set_defaults(func=_cmd_configs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dfc-brian`` console script; returns the exit status."""
    from dfc_brian.engines.errors import DivergenceError
    from dfc_brian.experiments.data import DataError
    from dfc_brian.experiments.guards import RunDirError, TrainingDiverged
    from dfc_brian.experiments.results import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, CheckpointError, RunDirError) as err:
        print(f"dfc-brian {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (TrainingDiverged, DivergenceError) as err:
        print(f"dfc-brian {args.command}: training stopped: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        where = getattr(args, "run_dir", None)
        kept = (
            f"; {where} keeps the checkpoint of the last finished epoch: continue with --resume"
            if where is not None
            else ""
        )
        print(f"\ndfc-brian {args.command}: interrupted (Ctrl-C){kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
