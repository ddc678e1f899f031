"""The one artifact format: everything learned (models, bandit and CRS policies, reward models, tokenizers, indexes).

An artifact is a directory holding::

    meta.json            {"format", "table", "name", "config", "versions", "sha256", "extra"}
    weights.safetensors  named tensors (may be empty)

``table`` and ``name`` say which registry entry rebuilds it (``recforge.registry.resolve(table, name)``), ``config`` is
that entry's config as plain data, ``extra`` holds JSON-able state that is not a tensor (vocabularies, counters).
``sha256`` is the digest of the weights file: :func:`load_artifact` refuses a file that changed since it was written.
Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from recforge.errors import ArtifactError

FORMAT = "recforge-artifact/1"
META_FILE = "meta.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact: ``meta`` as written (see the module docstring) and the tensors, in torch's own memory."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def table(self) -> str:
        return self.meta["table"]

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.get("config", {})

    @property
    def extra(self) -> dict[str, Any]:
        return self.meta.get("extra", {})

    @property
    def version(self) -> str:
        """``name-<12 hex digits>`` of a digest over the name, config and weights: what serving reports as the model
        version. Two artifacts differing only in their config (e.g. a seed) get different versions."""
        identity = json.dumps([self.name, self.config, self.meta["sha256"]], sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def is_artifact(path: str | Path) -> bool:
    """True when ``path`` is a directory holding an artifact's two files."""
    path = Path(path)
    return (path / META_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def save_artifact(
    path: str | Path,
    *,
    table: str,
    name: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor | np.ndarray],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an artifact into directory ``path`` (created if needed) and return ``path``.

    ``tensors`` may mix torch tensors and numpy arrays (numpy arrays are stored as tensors of the same dtype).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: _as_tensor(v) for k, v in tensors.items()}
    # Written beside and renamed over the old file: a process that maps the old weights (load_artifact(mmap=True))
    # keeps reading the old inode instead of pages truncated under it.
    save_file(weights, str(path / (WEIGHTS_FILE + ".tmp")))
    os.replace(path / (WEIGHTS_FILE + ".tmp"), path / WEIGHTS_FILE)
    meta = {
        "format": FORMAT,
        "table": table,
        "name": name,
        "config": config,
        "versions": _versions(),
        "sha256": file_sha256(path / WEIGHTS_FILE),
        "extra": extra or {},
    }
    (path / META_FILE).write_text(json.dumps(meta, default=_json_default), encoding="utf-8")
    return path


def load_artifact(path: str | Path, table: str | None = None, *, mmap: bool = False) -> Artifact:
    """Read and verify an artifact; ``table`` (when given) must match the one it was saved from.

    ``mmap=False`` copies the tensors into torch's own (aligned) memory. ``mmap=True`` leaves them as copy-on-write
    views of the weights file's private mapping: every process that maps the same file shares its pages through the
    page cache (N serving workers hold one copy of the weights), and a write to a tensor stays private to the
    process. The views sit at the file's offsets (element-aligned, not 64-byte aligned), so BLAS results may differ
    from the copied load in the last bits. The file must be replaced by rename, never rewritten in place, while a
    process maps it (:func:`save_artifact` does so).

    Raises ArtifactError (a DataError: one line naming the path, exit 1) for a missing, corrupt, tampered or
    mismatched artifact.
    """
    path = Path(path)
    if not is_artifact(path):
        if not path.exists():
            raise ArtifactError(f"artifact not found: {path}")
        raise ArtifactError(f"not an artifact (need {META_FILE} and {WEIGHTS_FILE}): {path}")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"corrupt artifact metadata in {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"not a {FORMAT} artifact: {path / META_FILE}")
    missing = [k for k in ("table", "name", "sha256") if not isinstance(meta.get(k), str)]
    if missing:
        raise ArtifactError(f"corrupt artifact metadata in {path}: missing {missing}")
    if table is not None and meta["table"] != table:
        raise ArtifactError(f"{path} holds a {meta['table']} artifact, expected a {table}")
    digest = file_sha256(path / WEIGHTS_FILE)
    if digest != meta["sha256"]:
        raise ArtifactError(f"artifact weights changed since they were written (sha256 {digest[:12]} != "
                        f"recorded {meta['sha256'][:12]}): {path / WEIGHTS_FILE}")
    try:
        # Copies into torch's own (64-byte aligned) memory: safetensors hands out lazily mapped views at whatever
        # offset the header leaves. BLAS kernels take other code paths on misaligned data (a loaded model's ALS
        # fold-in differed from the saved model's in the last bits), and a serving process would otherwise fault
        # pages in request by request (resident memory creeping up over a soak).
        tensors = load_file(str(path / WEIGHTS_FILE))
        if not mmap:
            tensors = {k: t.clone() for k, t in tensors.items()}
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ArtifactError(f"corrupt artifact weights in {path}: {exc}") from None
    return Artifact(path=path, meta=meta, tensors=tensors)


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return t.detach().cpu().contiguous()


def file_sha256(file: str | Path) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in ("recforge", "torch", "numpy"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays inside ``config`` / ``extra`` become plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
