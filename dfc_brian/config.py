"""Read YAML experiment/model configs with strict checks and clear errors.

Configs live in ``models/`` of the source tree; an installed package (``pip install .`` or a
wheel) carries the same files as package data in ``dfc_brian/models`` (see ``setup.py``).
:data:`MODELS_DIR` is whichever of the two exists.

:func:`load_config` is strict, so that a typo never falls back silently to a default:

- a top-level section not in :data:`SECTIONS` is rejected (``controler:``);
- a key given twice in one mapping is rejected (YAML would keep the last value);
- every numeric field of the known sections must be a YAML number: PyYAML reads ``2e-1``
  (no dot) as the *string* ``'2e-1'``, so such values are rejected with the advice to write
  ``2.0e-1``.

Every message names the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dfc_brian.model.params import (
    ConfigError,
    ControllerParams,
    ConvergenceParams,
    ModelParams,
    SleepParams,
)

_PACKAGE_MODELS = Path(__file__).resolve().parent / "models"  # installed: package data
_SOURCE_MODELS = Path(__file__).resolve().parent.parent / "models"  # source tree / editable
#: folder of the named configs (``table1/mnist_dfc`` -> ``MODELS_DIR/table1/mnist_dfc.yaml``)
MODELS_DIR = _PACKAGE_MODELS if _PACKAGE_MODELS.is_dir() else _SOURCE_MODELS

#: top-level sections a config may have
SECTIONS = (
    "name",
    "table1",
    "model",
    "controller",
    "sleep",
    "convergence",
    "training",
    "data",
    "curves",  # toy figure configs: which curves to record
    "analysis",  # toy figure configs: gn_damping, the damping of the GN / MN reference updates
    "spiking",  # spiking DFC configs (models/spiking): rates, filters, controller, plasticity
    "brian2",  # demo: Brian2-only plasticity parameters (read by dfc_brian.demo)
    "seed",  # demo: its seed
)

#: numeric fields of the training section and their kind ('float', 'int'; '?' = may be null)
_TRAINING_NUMERIC = {
    "lr": "float",
    "adam_eps": "float",
    "adam_eps_fb": "float",
    "lr_fb": "float",
    "lr_fb_pretrain": "float?",
    "wd_fb": "float",
    "epochs": "int",
    "epochs_fb": "int",
    "batch_size": "int",
    "clip": "float?",
    "clip_fb": "float?",
    "extra_sleep": "int",
}
_DATA_NUMERIC = {
    "n_in": "int",
    "n_out": "int",
    "n_train": "int",
    "n_val": "int",
    "n_test": "int",
    "split_seed": "int",
    "teacher_seed": "int?",
}


def _dataclass_numeric(cls: type) -> dict[str, str]:
    """Numeric fields of a params dataclass from its annotations (``float``, ``int``, ``| None``)."""
    out = {}
    for f in dataclasses.fields(cls):
        ann = str(f.type).replace(" ", "")
        optional = "None" in ann
        base = ann.replace("|None", "").replace("None|", "")
        if base in ("float", "int"):
            out[f.name] = base + ("?" if optional else "")
    return out


#: section -> {field: kind}; checked by :func:`check_numeric_types`
NUMERIC_FIELDS: dict[str, dict[str, str]] = {
    "controller": _dataclass_numeric(ControllerParams),
    "sleep": _dataclass_numeric(SleepParams),
    "convergence": _dataclass_numeric(ConvergenceParams),
    "training": _TRAINING_NUMERIC,
    "data": _DATA_NUMERIC,
}


# ---------------------------------------------------------------------------------------------
# Locating configs
# ---------------------------------------------------------------------------------------------


def resolve_config_path(path: str | Path) -> Path:
    """Accept a path, or a bare name of a config in ``models/`` (with or without .yaml)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (MODELS_DIR / p, MODELS_DIR / f"{p}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(
        f"config file {str(path)!r} not found (looked in the working directory and {MODELS_DIR}); "
        "`dfc-brian configs` lists the named configs"
    )


def list_configs() -> list[str]:
    """Names of the shipped configs (``table1/mnist_dfc``, ``toy/demo``, ...), sorted."""
    return sorted(p.relative_to(MODELS_DIR).with_suffix("").as_posix() for p in MODELS_DIR.rglob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# Strict YAML
# ---------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (naming the key and both lines)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                continue
            if first is not None:
                raise ConfigError(
                    f"{self.name}:{line}: duplicate key {key!r} (first given on line {first}); "
                    "YAML would silently keep the last value: delete one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _key_lines(node: yaml.Node | None) -> dict[tuple, int]:
    """Line (1-based) of every key of the top-level mapping and of its sub-mappings."""
    out: dict[tuple, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return out
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            continue
        out[(k.value,)] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            for k2, _ in v.value:
                if isinstance(k2, yaml.ScalarNode):
                    out[(k.value, k2.value)] = k2.start_mark.line + 1
    return out


def _where(source: str, lines: Mapping[tuple, int], *key: str) -> str:
    line = lines.get(tuple(key))
    return f"{source}:{line}" if line else source


def check_sections(cfg: Mapping[str, Any], source: str = "config", lines: Mapping[tuple, int] = {}) -> None:
    """ConfigError (with file and line) for a top-level section not in :data:`SECTIONS`."""
    for key in cfg:
        if key not in SECTIONS:
            raise ConfigError(
                f"{_where(source, lines, key)}: unknown section {key!r}; known sections: "
                f"{', '.join(SECTIONS)} (a misspelt section would otherwise be ignored)"
            )


def check_numeric_types(
    cfg: Mapping[str, Any], source: str = "config", lines: Mapping[tuple, int] = {}
) -> None:
    """ConfigError naming file, line and field for a numeric field that is not a number.

    Integers are accepted for float fields; booleans and strings never are. A string that
    parses as a number (``'2e-1'``, read as text by YAML 1.1) gets the advice to write it
    with a dot and a signed exponent (``2.0e-1``).
    """
    for section, fields in NUMERIC_FIELDS.items():
        sec = cfg.get(section)
        if not isinstance(sec, Mapping):
            continue
        for key, kind in fields.items():
            if key not in sec:
                continue
            value = sec[key]
            if value is None and kind.endswith("?"):
                continue
            _check_number(f"{section}.{key}", value, kind.rstrip("?"), _where(source, lines, section, key))
    tr = cfg.get("training")
    if isinstance(tr, Mapping) and isinstance(tr.get("adam_betas"), (list, tuple)):
        for k, b in enumerate(tr["adam_betas"]):
            _check_number(
                f"training.adam_betas[{k}]", b, "float", _where(source, lines, "training", "adam_betas")
            )
    model = cfg.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("sizes"), (list, tuple)):
        for k, n in enumerate(model["sizes"]):
            _check_number(f"model.sizes[{k}]", n, "int", _where(source, lines, "model", "sizes"))


def _check_number(field: str, value: Any, kind: str, where: str) -> None:
    if isinstance(value, str):
        hint = ""
        try:
            x = float(value)
            if math.isfinite(x):
                hint = f"; YAML reads a number like {value!r} as text: write it as {_yaml_number(x)}"
        except ValueError:
            pass
        raise ConfigError(f"{where}: {field} must be a number, got the string {value!r}{hint}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {field} must be a number, got {value!r} ({type(value).__name__})")
    if kind == "int" and (not math.isfinite(value) or int(value) != value):
        raise ConfigError(f"{where}: {field} must be an integer, got {value!r}")


def _yaml_number(x: float) -> str:
    """``x`` spelt so that YAML 1.1 reads it as a float (``2.0e-1``)."""
    mant, _, exp = f"{x:.6e}".partition("e")
    mant = mant.rstrip("0")
    mant = mant + "0" if mant.endswith(".") else mant
    return f"{mant}e{int(exp):+d}"


def load_config(path: str | Path) -> dict[str, Any]:
    """Load a YAML config into a dict; raise ConfigError naming the file (and line) on any problem.

    See the module docstring for what is checked.
    """
    p = resolve_config_path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read ({err})") from None
    loader = _StrictLoader(text)
    loader.name = str(p)
    try:
        node = loader.get_single_node()
        cfg = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: invalid YAML: {err}") from None
    finally:
        loader.dispose()
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    lines = _key_lines(node)
    check_sections(cfg, str(p), lines)
    check_numeric_types(cfg, str(p), lines)
    cfg.setdefault("name", p.stem)
    return cfg


def load_model_params(path: str | Path) -> ModelParams:
    """Load a config file and build its validated :class:`ModelParams`."""
    cfg = load_config(path)
    try:
        return ModelParams.from_dict(cfg)
    except ConfigError as err:
        raise ConfigError(f"{resolve_config_path(path)}: {err}") from None
