"""Command line interface: ``dfc-brian train | sweep | table | check-data | demo | configs``.

Examples
--------
::

    dfc-brian check-data --data-root ~/data
    dfc-brian train models/table1/mnist_dfc.yaml --seed 0 --out runs/mnist_dfc/seed0
    dfc-brian train table1/mnist_bp --epochs 2 --max-batches 20      # quick look
    dfc-brian train models/table1/mnist_dfc.yaml --seed 0 --resume   # continue a killed run
    dfc-brian sweep 'table1/*' --seeds 0-4 --runs runs                 # every cell, all cores
    dfc-brian table runs --out runs/table1.md             # also runs/table1.{json,csv,png}
    dfc-brian table runs benchmarks/results/table1        # yours, then the committed runs
    dfc-brian demo --out figures/demo --target numpy --quick
    dfc-brian configs                                                # the named configs

Errors print one line to stderr, never a traceback. Exit status: 2 for a bad config, data
file, checkpoint or run directory (or a directory in use by another run), 3 when training
diverged (non-finite loss or weights; the last checkpoint is kept), 130 after Ctrl-C (the
checkpoint of the last finished epoch is kept; continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfc_brian.model.params import ConfigError

# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _validate_config(cfg: dict[str, Any], source: str) -> None:
    """Every section the run reads, checked before any work; errors are prefixed with the file."""
    from dfc_brian.engines.methods import validate_training
    from dfc_brian.experiments.train import validate_data
    from dfc_brian.model.params import ModelParams

    try:
        ModelParams.from_dict(cfg)
        validate_training(cfg.get("training"), run=True)
        validate_data(cfg)
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


def _cmd_table(args: argparse.Namespace) -> int:
    from dfc_brian.experiments.table1 import write_table

    paths = write_table(args.runs_dir or ["runs"], args.out, figure=not args.no_figure)
    print(paths["md"].read_text())
    print("written " + ", ".join(str(p) for p in paths.values()))
    return 0


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    from dfc_brian.experiments.status import main_status

    return main_status(args.runs_dir, as_json=args.json)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dfc_brian.experiments.sweep import main_sweep

    return main_sweep(args)


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
    tb.add_argument(
        "runs_dir",
        nargs="*",
        help="folders searched for results.json (default: runs); a (row, column, seed) in two: the first's",
    )
    tb.add_argument(
        "--out",
        default=None,
        help="markdown file (default table1.md in the first folder; .json, .csv, .png beside)",
    )
    tb.add_argument("--no-figure", action="store_true", help="do not draw the .png figure")
    tb.set_defaults(func=_cmd_table)

    stp = sub.add_parser("status", help="where every run under a runs folder stands (progress, pace, ETA)")
    stp.add_argument("runs_dir", nargs="?", default="runs", help="folder searched for run directories")
    stp.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    stp.set_defaults(func=_cmd_status)

    sw = sub.add_parser("sweep", help="run many (config, seed) trainings on Dask, resumable")
    from dfc_brian.experiments.sweep import add_sweep_arguments

    add_sweep_arguments(sw)
    sw.set_defaults(func=_cmd_sweep)

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
