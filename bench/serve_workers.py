"""`recforge serve --workers 1` vs `--workers 2`, side by side: throughput, latency and /health under load.

Trains EASE on ML-latest-small once (`recforge train`), then for each worker count starts the server on loopback and
runs closed-loop /recommend load (random known users, top-10) at each concurrency for a fixed time, while a prober
sends GET /health every 20 ms on its own connection. Reports requests/s, p50/p99 of /recommend and /health, server
CPU seconds per request (all server processes, from /proc) and the load average before each run (other processes on
the machine compete for the same cores).

    RECFORGE_DATA_DIR=../shared/data python bench/serve_workers.py --duration 15 --out bench/results/serve_workers.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECFORGE = [sys.executable, "-m", "recforge.cli"]


class Conn:
    """One keep-alive HTTP/1.1 connection with just enough HTTP for JSON requests (cheap on the client side)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await self.reader.readexactly(length)
        return int(header.split(b" ", 2)[1])


async def load(port: int, users: list, concurrency: int, seconds: float) -> dict:
    """Closed loop: ``concurrency`` connections each sending the next /recommend as soon as the last one answered."""
    rng = np.random.default_rng(concurrency)
    latencies: list[float] = []
    health: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        conn = Conn(port)
        while time.perf_counter() < stop:
            body = json.dumps({"user_id": users[int(rng.integers(len(users)))], "k": 10}).encode()
            t0 = time.perf_counter()
            status = await conn.request("POST", "/recommend", body)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200

    async def prober() -> None:
        conn = Conn(port)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await conn.request("GET", "/health")
            health.append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)

    t0 = time.perf_counter()
    await asyncio.gather(prober(), *(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat, hl = np.array(latencies) * 1e3, np.array(health) * 1e3
    return {"concurrency": concurrency, "requests": len(lat), "errors": errors, "rps": len(lat) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "health_p50_ms": float(np.percentile(hl, 50)), "health_p99_ms": float(np.percentile(hl, 99))}


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children, from /proc."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(run: Path, workers: int, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([*RECFORGE, "serve", str(run), "--port", str(port), "--workers", str(workers),
                             "--feedback-db", str(tmp / f"fb-{workers}.sqlite")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                time.sleep(5 * workers)  # let every worker finish loading (each answers /health when ready)
                return proc, port
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ease")
    ap.add_argument("--data", default="ml-latest-small")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per (workers, concurrency) cell")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-workers-"))
    run = tmp / "run"
    subprocess.run([*RECFORGE, "train", args.model, "--data", args.data, "--out", str(run)], check=True,
                   stdout=subprocess.DEVNULL)
    from recforge.models.base import load_model

    users = load_model(run / "artifact").user_vocab.ids
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        proc, port = serve(run, workers, tmp)
        try:
            asyncio.run(load(port, users, 4, 3.0))  # warm-up
            for conc in (int(c) for c in args.concurrency.split(",")):
                load_avg = os.getloadavg()[0]
                cpu0 = tree_cpu(proc.pid)
                row = asyncio.run(load(port, users, conc, args.duration))
                row.update(workers=workers, load_avg_1m=load_avg,
                           server_cpu_ms_per_request=(tree_cpu(proc.pid) - cpu0) * 1e3 / max(row["requests"], 1))
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    by = {(r["workers"], r["concurrency"]): r["rps"] for r in rows}
    speedup = {c: by[(2, c)] / by[(1, c)] for (w, c) in by if w == 1 and (2, c) in by}
    print("speed-up of 2 workers over 1 by concurrency:", {c: round(s, 2) for c, s in speedup.items()})
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "data": args.data, "cores": os.cpu_count(),
                                        "rows": rows, "speedup": speedup}, indent=1))


if __name__ == "__main__":
    main()
