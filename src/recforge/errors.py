"""The recforge error tree.

Every error raised on purpose by recforge derives from :class:`RecforgeError`, so callers can catch one type.

- :class:`ConfigError`   a configuration value is invalid (unknown key, out of range, inconsistent). CLI exit code 2.
- :class:`DataError`     input data is malformed: names the file, line/column and the problem. CLI exit code 1.
- :class:`UnknownIdError` an external user/item id is not in the vocabulary (and the policy is "raise").
- :class:`NotFittedError` a model is used before ``fit`` (or ``load``).

Messages name the field, the expected and the actual value, e.g.
``ConfigError("n_heads must divide dim (dim=64, n_heads=3)")``.
"""

from __future__ import annotations


class RecforgeError(Exception):
    """Base class of all recforge errors."""

    exit_code: int = 1


class ConfigError(RecforgeError, ValueError):
    """Invalid configuration or usage (CLI exit code 2)."""

    exit_code = 2


class DataError(RecforgeError, ValueError):
    """Malformed input data. ``path``, ``line`` and ``column`` locate the problem when known."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, column: str | None = None):
        self.path, self.line, self.column = path, line, column
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ArtifactError(DataError):
    """A saved artifact that is missing, damaged, changed since it was written, or of another kind than expected."""


class UnknownIdError(RecforgeError, KeyError):
    """An external id is not in the vocabulary."""

    exit_code = 1

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown id"


class NotFittedError(RecforgeError, RuntimeError):
    """A model was used before ``fit`` or ``load``."""

    exit_code = 1
