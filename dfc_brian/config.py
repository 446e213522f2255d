"""Read YAML experiment/model configs from ``models/`` with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dfc_brian.model.params import ConfigError, ModelParams

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def resolve_config_path(path: str | Path) -> Path:
    """Accept a path, or a bare name of a config in ``models/`` (with or without .yaml)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (MODELS_DIR / p, MODELS_DIR / f"{p}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(
        f"config file {str(path)!r} not found (looked in the working directory and {MODELS_DIR})"
    )


def load_config(path: str | Path) -> dict[str, Any]:
    """Load a YAML config into a dict; raise ConfigError naming the file on any problem."""
    p = resolve_config_path(path)
    try:
        with open(p) as fh:
            cfg = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: invalid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    cfg.setdefault("name", p.stem)
    return cfg


def load_model_params(path: str | Path) -> ModelParams:
    """Load a config file and build its validated :class:`ModelParams`."""
    cfg = load_config(path)
    try:
        return ModelParams.from_dict(cfg)
    except ConfigError as err:
        raise ConfigError(f"{resolve_config_path(path)}: {err}") from None
