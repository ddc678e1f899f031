"""Serving fixtures: a small synthetic log, saved run folders and two test-only models.

``CoocModel`` scores histories by item co-occurrence (so live feedback visibly changes recommendations) and
``DotModel`` is an ``Embedder`` (retriever and /similar-by-vectors paths). Both are built
in the test and passed to ``create_app`` as objects; they are not registered models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.models.base import HistoryScoring, Recommender
from recforge.models.popular import MostPopular


@dataclass(frozen=True)
class DotConfig:
    """Random user and item vectors of size ``dim``."""

    dim: int = 8
    seed: int = 0


class DotModel(Recommender):
    """score = U[u] . V[i] with seeded random vectors: an Embedder without training."""

    name = "dot-test"
    config_class = DotConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        g = torch.Generator().manual_seed(self.config.seed)
        self.user_vecs = torch.randn(train.n_users + 1, self.config.dim, generator=g)
        self.item_vecs = torch.randn(train.n_items + 1, self.config.dim, generator=g)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self.user_vecs[torch.from_numpy(users)] @ self.item_vecs.T

    def item_embeddings(self) -> torch.Tensor:
        return self.item_vecs

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        return self.user_vecs[torch.from_numpy(np.asarray(users, dtype=np.int64))]


@dataclass(frozen=True)
class CoocConfig:
    """Item-item co-occurrence counts; nothing to tune."""


class CoocModel(HistoryScoring):
    """score(history) = sum of co-occurrence rows of its items: a history-aware model whose output depends on input."""

    name = "cooc-test"
    config_class = CoocConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = train.to_csr(binary=True)
        sim = (x.T @ x).toarray().astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        self.sim = torch.from_numpy(sim)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((self.seen_[users] @ self.sim.numpy()).astype(np.float32))

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((self.histories_to_csr(items, offsets) @ self.sim.numpy()).astype(np.float32))


@pytest.fixture(scope="session")
def serve_log() -> Interactions:
    """60 users "u0".."u59" with 10 events each over integer items 1..80 (popularity skewed)."""
    rng = np.random.default_rng(7)
    users = np.repeat([f"u{i}" for i in range(60)], 10)
    items = (rng.zipf(1.3, len(users)) % 80) + 1
    return Interactions.from_arrays(users, items, time=np.arange(len(users)))


@pytest.fixture(scope="session")
def popular_run(serve_log: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run-folder-shaped directory holding a saved MostPopular in artifact/."""
    run = tmp_path_factory.mktemp("popular-run")
    MostPopular().fit(serve_log).save(run / "artifact")
    return run


@pytest.fixture(scope="session")
def cooc_model(serve_log: Interactions) -> CoocModel:
    return CoocModel().fit(serve_log)


@pytest.fixture(scope="session")
def dot_model(serve_log: Interactions) -> DotModel:
    return DotModel().fit(serve_log)


def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session (Debian's `postgresql` package, started with initdb + pg_ctl on a
    free loopback port, as the `postgres` user when the tests run as root). Skipped with the reason when the
    server binaries or psycopg are missing."""
    import os
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    pytest.importorskip("psycopg", reason="psycopg is not installed (the postgres extra)")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package `postgresql`)")
    root = Path(tempfile.mkdtemp(prefix="recforge-pg-"))  # pytest's own temp root is private to root
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        for path in (root, sock):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   capture_output=True)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
