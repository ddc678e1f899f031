"""The one run folder, for every paradigm (recommenders, bandit simulations and OPE, conversational policies, ...).

Every run folder holds::

    config.toml      the resolved config (re-runnable)
    run.json         {"kind", "name", "created", "timings", "provenance", ...}: provenance = seed, versions, git commit,
                     hardware, command line, data sha256, split name/hash/sizes (when there is a split), config
    metrics.json     {"<part>": {"<metric>": {"mean", "ci_low", "ci_high"}, ..., "_info": {...}}, ...}
    artifact/        what was learned, in the one artifact format (recforge.artifacts); absent when nothing was
    train.log        the log of the run (INFO and up)

plus whatever the paradigm adds (per-user parquet, curves, plots).

A failed command never modifies an existing run: a run is written into a staging folder next to ``out``
(``.NAME.partial-PID``) and moved into place only when :meth:`RunFolder.finish` was called. A run that fails keeps its
staging folder as ``out`` only when ``out`` did not exist and something worth keeping was written (checkpoints for
``--resume``, the fitted artifact); otherwise the staging folder is removed. ``in_place=True`` (resuming a run from
its checkpoints) writes into ``out`` directly.

Usage::

    with RunFolder.create(out, kind="bandit-simulate", name="linucb", config=cfg, seed=0) as run:
        ...                                   # logging from recforge goes to run.path / "train.log"
        policy.save(run.artifact_dir)
        run.write_metrics({"test": {...}})
        run.finish(data_files=[...], split=None, extra={"timings": {...}})
    # the finished run is now at run.out
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from recforge.config import dump_toml, to_dict
from recforge.errors import ConfigError
from recforge.experiments.provenance import provenance

log = logging.getLogger(__name__)

#: What a failed run keeps (anything else it wrote is removed when it created the folder).
KEEP_ON_FAILURE = ("checkpoints", "artifact")


class RunFolder:
    """A run folder being written. Use :meth:`create` as a context manager; call :meth:`finish` once at the end.

    ``path`` is where files go while the run is written; ``out`` is where the finished run lives."""

    def __init__(self, out: Path, path: Path, kind: str, name: str, config: Any, seed: int | list[int] | None):
        self.out, self.path, self.kind, self.name, self.seed = out, path, kind, name, seed
        self.config = to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
        self.finished = False
        self._handler: logging.Handler | None = None

    @classmethod
    def create(cls, out: str | Path, *, kind: str, name: str, config: Any, seed: int | list[int] | None = None,
               in_place: bool = False) -> Self:
        """Open a run of ``kind`` (e.g. "recommender", "bandit-simulate", "crs-train") named ``name`` (the model or
        policy) that will live at ``out``; ``config`` is a config dataclass or a plain mapping."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"the run folder {out} is a file")
        if in_place:
            out.mkdir(parents=True, exist_ok=True)
            return cls(out, out, kind, name, config, seed)
        stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        return cls(out, stage, kind, name, config, seed)

    @property
    def artifact_dir(self) -> Path:
        """Where the learned artifact goes (``recforge.artifacts`` format)."""
        return self.path / "artifact"

    @property
    def checkpoint_dir(self) -> Path:
        """Where a trainer keeps its checkpoints (``--resume`` continues from them)."""
        return self.path / "checkpoints"

    def __enter__(self) -> Self:
        self._handler = logging.FileHandler(self.path / "train.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("recforge")
        root.addHandler(self._handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        dump_toml(self.config, self.path / "config.toml")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._handler is not None:
            logging.getLogger("recforge").removeHandler(self._handler)
            self._handler.close()
        if self.path == self.out:
            return
        if self.finished and exc_type is None:
            if self.out.exists():
                shutil.rmtree(self.out)
            self.path.rename(self.out)
        elif not self.out.exists() and any((self.path / n).exists() for n in KEEP_ON_FAILURE):
            self.path.rename(self.out)  # checkpoints or a fitted artifact: worth a --resume or a look
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json`` ({part: {metric: {"mean", "ci_low", "ci_high"}, "_info": {...}}})."""
        file = self.path / "metrics.json"
        file.write_text(json.dumps(metrics, indent=2, default=_plain), encoding="utf-8")
        return file

    def finish(self, *, data_files: list[str | Path] | None = None, split: Any = None,
               extra: dict[str, Any] | None = None) -> Path:
        """Write ``run.json`` with the full provenance record and mark the run complete. ``extra`` adds fields
        (timings, dataset info, the split summary, ...) next to kind, name, created and provenance."""
        meta = {
            "kind": self.kind,
            "name": self.name,
            **(extra or {}),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "provenance": provenance(seed=self.seed, data_files=data_files, split=split, config=self.config),
        }
        if split is not None:
            meta.setdefault("split_hash", split.hash)
        file = self.path / "run.json"
        file.write_text(json.dumps(meta, indent=2, default=_plain), encoding="utf-8")
        self.finished = True
        log.info("%s run written to %s", self.kind, self.out)
        return file


def _plain(value: Any) -> Any:
    """numpy scalars/arrays, paths and other objects inside metrics or meta -> JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)
