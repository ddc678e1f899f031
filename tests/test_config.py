"""Config: TOML <-> dataclasses, overrides, strict keys (table-driven errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from recforge.config import apply_overrides, dump_toml, from_dict, load_toml, parse_value, to_dict
from recforge.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    epochs: int = 3
    lr: float = 0.1


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    dims: tuple[int, ...] = (8, 4)
    kind: Literal["a", "b"] = "a"
    flag: bool = False
    ratio: float | None = None
    inner: Inner = field(default_factory=Inner)


def test_round_trip(tmp_path):
    cfg = from_dict(Outer, {"name": "y", "dims": [1, 2], "inner": {"lr": 1}})
    assert cfg.dims == (1, 2) and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    dump_toml(to_dict(cfg), tmp_path / "c.toml")
    assert from_dict(Outer, load_toml(tmp_path / "c.toml")) == cfg


def test_overrides_nested_and_typed():
    d = apply_overrides({"inner": {"epochs": 1}}, ["inner.epochs=5", "name=hello", "dims=[3, 4]", "flag=true"])
    cfg = from_dict(Outer, d)
    assert (cfg.inner.epochs, cfg.name, cfg.dims, cfg.flag) == (5, "hello", (3, 4), True)
    assert parse_value("0.5") == 0.5 and parse_value("abc") == "abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nmae": "x"}, "unknown config key"),
        ({"inner": {"epoch": 1}}, r"inner\.epoch"),
        ({"inner": {"epochs": "many"}}, "inner.epochs: expected int"),
        ({"kind": "c"}, "expected one of"),
        ({"flag": 1}, "expected true/false"),
        ({"dims": 3}, "expected a list"),
        ({"inner": 3}, "expected a table"),
        ({"ratio": "high"}, "ratio"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


@pytest.mark.parametrize("bad", ["novalue", "=3", "inner.epochs"])
def test_bad_override_syntax(bad):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, [bad])


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("a = = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(tmp_path / "bad.toml")


def test_a_nested_table_overrides_the_fields_own_default():
    """A model whose trainer defaults differ from the trainer's class defaults keeps them when a config table sets
    only some trainer fields (the run seed alone, say)."""
    from recforge.models.bpr import BPRConfig
    from recforge.train.trainer import TrainConfig

    own = BPRConfig().train
    assert own.batch_size != TrainConfig().batch_size  # the premise: BPR's trainer defaults are its own
    cfg = from_dict(BPRConfig, {"train": {"seed": 3, "lr": 0.02}})
    assert (cfg.train.seed, cfg.train.lr) == (3, 0.02)
    assert (cfg.train.batch_size, cfg.train.clip, cfg.train.patience) == (own.batch_size, own.clip, own.patience)
    with pytest.raises(ConfigError, match=r"train\.lrr"):
        from_dict(BPRConfig, {"train": {"lrr": 0.02}})
