"""Reproducibility record: everything needed to tell whether two numbers are comparable."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("recforge", "numpy", "scipy", "polars", "pyarrow", "torch", "safetensors", "faiss-cpu", "fastapi")


def versions() -> dict[str, str]:
    """Python and library versions (only installed ones)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the recforge source tree (with a ``-dirty`` suffix when it has changes), if it is a checkout."""
    root = Path(path) if path else Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> dict[str, Any]:
    """CPU/GPU facts of this machine."""
    out: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(seed: int | list[int] | None = None, data_files: list[str | Path] | None = None) -> dict[str, Any]:
    """Seed(s), versions, git commit, hardware, command line and data file checksums."""
    files = {str(p): file_sha256(p) for p in (data_files or []) if Path(p).is_file()}
    return {
        "seed": seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "argv": sys.argv,
        "data_sha256": files,
    }
