"""Schema-driven fuzzing of a live server: schemathesis with every check, 2 worker processes sharing one store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_serve_process import TOKEN, Server

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def two_workers(popular_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two-workers")
    server = Server(popular_run, tmp / "fb.sqlite", tmp / "server.log", "--workers", "2")
    yield server
    server.stop()


def test_two_workers_share_the_feedback_store(two_workers):
    with httpx.Client(base_url=two_workers.url, timeout=30) as c:
        assert c.post("/feedback", json={"user_id": "new-user", "item_id": 3}).status_code == 200
        answers = [c.post("/recommend", json={"user_id": "new-user", "k": 3}).json() for _ in range(8)]
    assert all(a["source"] == "history" and not a["fallback"] for a in answers)  # whichever worker answered
    assert "/" not in c.base_url.path.strip("/") and httpx.get(f"{two_workers.url}/ready").json().get("source") is None


@pytest.mark.skipif(shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None,
                    reason="schemathesis is not installed (it is in the dev extra)")
def test_schemathesis_all_checks_clean(two_workers, tmp_path):
    cli = str(Path(sys.executable).parent / "schemathesis")
    proc = subprocess.run(
        [cli, "--config-file", str(HERE / "schemathesis.toml"), "run", f"{two_workers.url}/openapi.json",
         "--checks", "all", "-n", "30", "--generation-deterministic", "-H", f"Authorization: Bearer {TOKEN}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # it writes a .schemathesis/ cache there
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "passed" in proc.stdout
