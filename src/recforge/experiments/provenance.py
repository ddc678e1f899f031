"""Reproducibility record: everything needed to tell whether two numbers are comparable."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from recforge.artifacts import file_sha256

LIBRARIES = ("recforge", "numpy", "scipy", "polars", "pyarrow", "torch", "safetensors", "faiss-cpu", "fastapi",
             "matplotlib", "rich")


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
    out: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
                           "cpu_model": _cpu_model(), "memory_gb": _memory_gb()}
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def _cpu_model() -> str | None:
    """CPU model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    """Physical memory in GiB (POSIX sysconf), None when unknown."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def dataset_files(info: dict[str, Any]) -> list[Path]:
    """The data files behind a loaded dataset's ``info`` (see recforge.data.datasets): the file itself for a path,
    the known files found in a dataset folder, or the bundled files of that dataset."""
    path = Path(str(info.get("path", "")))
    if not str(info.get("path", "")):
        return []
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    if info.get("origin") == "bundled":
        return sorted(p for p in path.glob(f"{info.get('dataset')}_*") if p.is_file())
    return sorted(p for name in info.get("checksums", {}) for p in [path / name] if p.is_file())


def provenance(
    seed: int | list[int] | None = None,
    data_files: list[str | Path] | None = None,
    split: Any = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seed(s), versions, git commit, hardware, command line, data file checksums and, when given, the split (name,
    hash, parameters, sizes, sha256 fingerprint of the full log) and the resolved config."""
    files = {str(p): file_sha256(p) for p in (data_files or []) if Path(p).is_file()}
    out: dict[str, Any] = {
        "seed": seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "argv": sys.argv,
        "data_sha256": files,
    }
    if split is not None:
        parts = {n: getattr(split, n) for n in ("train", "valid", "test", "fold_in") if getattr(split, n) is not None}
        out["split"] = {"name": split.name, "hash": split.hash, "params": dict(split.params),
                        "sizes": {n: len(p) for n, p in parts.items()},
                        "fingerprints": {n: p.fingerprint() for n, p in parts.items()}}
    if config is not None:
        out["config"] = config
    return out
