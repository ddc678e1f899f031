"""Shipped presets: model settings for a dataset, each produced by ``recforge tune`` (the command is in the file).

A preset is a TOML file at ``recforge/presets/<preset>/<dataset>/<model>.toml``::

    refit = true                    # fit on train + validation with these settings (the tuned protocol)
    [preset]                        # where the settings come from; not part of the run config
    command = "recforge tune ease --data amazon-beauty ..."
    metric = "ndcg@10"
    valid = 0.0521                  # the chosen trial's validation figure
    [model]
    name = "ease"
    l2 = 120.5
    recency = 0.62

``recforge train MODEL --data D --preset tuned`` starts from the file's ``refit`` and ``[model]`` table; ``--set``
overrides still apply on top.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from recforge.errors import ConfigError


def _root() -> Path:
    return Path(str(resources.files("recforge"))) / "presets"


def dataset_key(data: str) -> str:
    """The preset folder of a dataset: its registered name, or a path's file stem."""
    return Path(data).stem if "/" in data else data


def preset_path(preset: str, model: str, data: str) -> Path:
    """Where the shipped ``preset`` for ``model`` on ``data`` lives (it may not exist)."""
    return _root() / preset / dataset_key(data) / f"{model}.toml"


def available(preset: str) -> list[tuple[str, str]]:
    """(dataset, model) pairs that ``preset`` has a file for, sorted."""
    folder = _root() / preset
    return sorted((p.parent.name, p.stem) for p in folder.glob("*/*.toml")) if folder.is_dir() else []


def read_preset(preset: str, model: str, data: str) -> dict[str, Any]:
    """The run-config sections of a shipped preset (``refit`` and ``model``); ConfigError naming what exists when
    there is no such preset."""
    path = preset_path(preset, model, data)
    if not path.is_file():
        have = ", ".join(f"{m} on {d}" for d, m in available(preset)) or "none"
        raise ConfigError(f"no {preset!r} preset for {model} on {dataset_key(data)} (shipped: {have})")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    if raw.get("model", {}).get("name") != model:
        raise ConfigError(f"preset {path.name}: its model table is not {model!r}")
    return {k: v for k, v in raw.items() if k != "preset"}


def preset_text(model: dict[str, Any], refit: bool, about: dict[str, Any]) -> str:
    """A preset file's TOML: ``refit``, the ``[preset]`` table ``about`` (command, metric, figures) and ``[model]``."""
    return tomli_w.dumps({"refit": refit, "preset": about, "model": model})
