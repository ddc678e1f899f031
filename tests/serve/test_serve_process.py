"""The service as a real process: `recforge serve` under uvicorn on a free loopback port.

Covers every route once over a real socket, a reload under concurrent load, and durability: kill -9 while clients
stream feedback, restart, and check that every acknowledged event is in the store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from recforge.models.popular import MostPopular
from recforge.serve.store import open_feedback_store

TOKEN = "process-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m recforge.cli serve ...`` on 127.0.0.1; waits for /health before returning."""

    def __init__(self, run: Path, db: Path, log: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "recforge.cli", "serve", str(run), "--port", str(self.port),
               "--feedback-db", str(db), "--admin-token", TOKEN, *extra]
        self.log = log
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server did not become healthy in 90 s: {log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_real_server_all_routes_and_reload_under_load(popular_run, serve_log, tmp_path):
    newer = tmp_path / "newer"
    MostPopular().fit(serve_log.with_rows(np.arange(len(serve_log)) % 3 != 0)).save(newer / "artifact")
    server = Server(popular_run, tmp_path / "fb.sqlite", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            old = c.get("/ready").json()["version"]
            assert c.post("/recommend", json={"user_id": "u1", "k": 3}).json()["model_version"] == old
            assert c.post("/recommend", json={"history": [1, "ghost"]}).json()["ignored"] == ["ghost"]
            assert c.post("/recommend", json={"user_id": "u1", "k": 5000}).status_code == 422
            assert c.post("/similar", json={"item_id": 1, "k": 3}).json()["method"] == "cooccurrence"
            assert c.post("/feedback", json={"user_id": "u1", "item_id": 1}).json()["id"] == 1
            assert c.get("/docs").status_code == 200
            assert c.post("/admin/reload", json={}).status_code == 401

            # Reload while 3 threads keep asking: no request may fail, and both versions must be seen.
            statuses: list[int] = []
            versions: set[str] = set()
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=server.url, timeout=10) as hc:
                    while not stop.is_set():
                        r = hc.post("/recommend", json={"user_id": "u2", "k": 10})
                        statuses.append(r.status_code)
                        versions.add(r.json().get("model_version", "?"))

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            bad = c.post("/admin/reload", json={"path": str(tmp_path / "missing")}, headers=auth)
            new = c.post("/admin/reload", json={"path": str(newer)}, headers=auth)
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
            assert bad.status_code == 409 and new.status_code == 200
            assert statuses and set(statuses) == {200}
            assert {old, new.json()["version"]} <= versions
            metrics = c.get("/metrics").text
            assert f'version="{new.json()["version"]}"' in metrics
            assert 'recforge_reloads_total{result="ok"} 1' in metrics
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_keeps_every_acknowledged_feedback_event(popular_run, tmp_path, backend, request):
    db = tmp_path / "fb.sqlite" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    server = Server(popular_run, db, tmp_path / "server.log")
    acked: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def stream(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            for n in range(100_000):
                user, item = f"w{worker}-{n}", n % 50 + 1
                try:
                    r = c.post("/feedback", json={"user_id": user, "item_id": item, "event": "click"})
                except httpx.TransportError:
                    return  # the server is gone: this event was never acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.append((r.json()["id"], user, item))

    workers = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 60
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.proc.pid, signal.SIGKILL)  # mid-stream: some requests are in flight
    server.proc.wait()
    for w in workers:
        w.join()
    assert len(acked) >= 150, f"only {len(acked)} events acknowledged before the deadline"

    restarted = Server(popular_run, db, tmp_path / "server2.log")
    try:
        with httpx.Client(base_url=restarted.url, timeout=5) as c:
            after = c.post("/feedback", json={"user_id": "after", "item_id": 1}).json()["id"]
        store = open_feedback_store(db)
        rows = {r[0]: (r[1], r[2]) for r in store.rows()}
        store.close()
        missing = [a for a in acked if rows.get(a[0]) != (a[1], a[2])]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert after > max(a[0] for a in acked)
    finally:
        restarted.stop()


@pytest.mark.parametrize("args", [["serve", "/definitely/missing/run"]])
def test_cli_process_refuses_bad_artifact_with_one_line(args, tmp_path):
    out = subprocess.run([sys.executable, "-m", "recforge.cli", *args], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "artifact not found" in lines[0]
