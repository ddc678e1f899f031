"""Config is data: frozen dataclasses <-> TOML, with ``--set a.b=c`` overrides. Unknown keys are errors."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from recforge.errors import ConfigError

T = TypeVar("T")


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML literal (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``); fall back to a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=c`` override applied (nested keys separated by dots)."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override must look like key=value, got {item!r}")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        node[parts[-1]] = parse_value(raw.strip())
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check/convert ``value`` to annotation ``tp`` (int->float allowed, list->tuple allowed)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {tp}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{name}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, name) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return from_dict(tp, value, prefix=f"{name}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp in (int, float, str) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{name}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a dict; unknown keys and wrong types raise :class:`ConfigError`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)} for {cls.__name__} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    for k, v in data.items():  # a nested table overrides the field's own default, not its class's defaults
        default = _field_default(fields[k]) if isinstance(v, dict) else None
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            kwargs[k] = dataclasses.replace(default, **{name: getattr(kwargs[k], name) for name in v})
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _field_default(f: dataclasses.Field) -> Any:
    """The default value of dataclass field ``f`` (a fresh one from its factory), or ``dataclasses.MISSING``."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def check_choices(obj: Any, prefix: str = "") -> None:
    """Check every ``Literal``-typed field of dataclass instance ``obj`` (call it from ``__post_init__``, so that a
    config built directly, not through :func:`from_dict`, is checked too). ConfigError names field, expected, actual."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if typing.get_origin(hints[f.name]) is typing.Literal:
            _coerce(getattr(obj, f.name), hints[f.name], prefix + f.name)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists; ``None`` values are dropped since TOML has no null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(obj))


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with a :class:`ConfigError` naming the file on failure."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None


def dump_toml(data: dict[str, Any], path: str | Path) -> None:
    """Write a dict as TOML."""
    Path(path).write_text(tomli_w.dumps(data), encoding="utf-8")
