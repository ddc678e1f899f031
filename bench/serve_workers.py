"""`recforge serve --workers 1` vs `--workers 2`, side by side: throughput, latency and /health under load.

Trains a model (EASE on ML-latest-small by default) once with `recforge train`, then for each worker count starts the
server on loopback and runs closed-loop /recommend load (a random known user per request, top-10) at each concurrency
for a fixed time, while a prober sends GET /health every 20 ms on its own connection. Reports requests/s, p50/p99 of
/recommend and of /health, server CPU milliseconds per request (every server process, from /proc), the load
generator's own CPU per request and the load average around each cell (other processes compete for the same cores).

The load comes from ``wrk`` (a C load generator: one thread, ``--concurrency`` keep-alive connections, a Lua script
that draws the user of every POST body) when it is installed, else from a minimal asyncio HTTP client in this process,
which costs a core of its own at a few hundred requests/s and so understates what two workers serve on two cores.
Nothing is pinned to a core: the kernel schedules the server, the load generator and everything else.

    RECFORGE_DATA_DIR=../shared/data python bench/serve_workers.py --duration 15 --out bench/results/serve_workers.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECFORGE = [sys.executable, "-m", "recforge.cli"]

#: wrk script: POST /recommend with a random known user per request; prints one JSON line of results at the end
WRK_LUA = """
local users = {%(users)s}
local headers = {["Content-Type"] = "application/json", ["Host"] = "127.0.0.1"}
local counter = 0
function setup(thread) counter = counter + 1; thread:set("seed", counter) end
function init(args) math.randomseed(seed * 7919 + os.time()) end
function request()
  return wrk.format("POST", "/recommend", headers, '{"user_id": ' .. users[math.random(#users)] .. ', "k": 10}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


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


async def probe_health(port: int, stop: asyncio.Event) -> list[float]:
    """GET /health every 20 ms on one connection until ``stop`` is set -> latencies in seconds."""
    conn, out = Conn(port), []
    while not stop.is_set():
        t0 = time.perf_counter()
        await conn.request("GET", "/health")
        out.append(time.perf_counter() - t0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)
    return out


async def python_load(port: int, users: list, concurrency: int, seconds: float) -> dict:
    """Closed loop from this process: ``concurrency`` connections each sending the next /recommend as soon as the
    last one answered."""
    rng = np.random.default_rng(concurrency)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        conn = Conn(port)
        while time.perf_counter() < deadline:
            body = json.dumps({"user_id": users[int(rng.integers(len(users)))], "k": 10}).encode()
            t0 = time.perf_counter()
            status = await conn.request("POST", "/recommend", body)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200

    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(port, stop))
    cpu0, t0 = _self_cpu(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, client_cpu = time.perf_counter() - t0, _self_cpu() - cpu0
    stop.set()
    health = await prober
    lat = np.array(latencies) * 1e3
    return {"driver": "python", "requests": len(lat), "errors": errors, "rps": len(lat) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "client_cpu_s": client_cpu, **_health_stats(health)}


async def wrk_load(port: int, script: Path, concurrency: int, seconds: float) -> dict:
    """Closed loop from ``wrk`` (one thread, ``concurrency`` connections) while this process probes /health."""
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(port, stop))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script),
        f"http://127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    health = await prober
    line = next((x for x in out.decode().splitlines() if x.startswith("WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {err.decode().strip() or out.decode()[-500:]}")
    res = json.loads(line[4:])
    return {"driver": "wrk", "requests": res["requests"], "errors": res["errors"],
            "rps": res["requests"] / (res["duration_us"] / 1e6),
            "p50_ms": res["p50_us"] / 1e3, "p99_ms": res["p99_us"] / 1e3,
            "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            **_health_stats(health)}


def _health_stats(health: list[float]) -> dict:
    hl = np.array(health) * 1e3
    return {"health_probes": len(hl), "health_p50_ms": float(np.percentile(hl, 50)),
            "health_p99_ms": float(np.percentile(hl, 99)), "health_max_ms": float(hl.max())}


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def server_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants, from /proc/PID/stat."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in server_pids(pid):
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


def serve(run: Path, workers: int, tmp: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """Start the server and wait until every worker process has loaded the model and answered."""
    port = free_port()
    proc = subprocess.Popen([*RECFORGE, "serve", str(run), "--port", str(port), "--workers", str(workers),
                             "--feedback-db", str(tmp / f"fb-{workers}.sqlite"), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 300
    loaded: set[float] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        try:  # every fresh connection lands on some worker; each worker's /ready has its own load time
            info = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5, headers={"Connection": "close"})
            loaded.add(info.json()["loaded_at"])
            if len(loaded) >= workers:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server with {workers} worker(s) did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ease")
    ap.add_argument("--data", default="ml-latest-small")
    ap.add_argument("--run", type=Path, default=None, help="serve this run folder instead of training one")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per (workers, concurrency) cell")
    ap.add_argument("--driver", choices=("auto", "wrk", "python"), default="auto",
                    help="load generator (auto: wrk when installed, else the Python client)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `recforge serve` argument, repeatable")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    driver = args.driver if args.driver != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if driver == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --driver python")
    print(f"load generator: {driver}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="serve-workers-"))
    run = args.run
    if run is None:
        run = tmp / "run"
        subprocess.run([*RECFORGE, "train", args.model, "--data", args.data, "--out", str(run)], check=True,
                       stdout=subprocess.DEVNULL)
    from recforge.models.base import load_model

    users = load_model(run / "artifact" if (run / "artifact").is_dir() else run).user_vocab.ids
    script = tmp / "recommend.lua"
    # string ids: a JSON string inside a Lua string literal (both escape only quotes, backslashes and controls)
    script.write_text(WRK_LUA % {"users": ", ".join(
        json.dumps(json.dumps(u, ensure_ascii=False), ensure_ascii=False) if isinstance(u, str) else str(u)
        for u in users)}, encoding="utf-8")
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        proc, port = serve(run, workers, tmp, args.serve_arg)
        try:
            asyncio.run(python_load(port, users, 4, 3.0))  # warm-up: every worker has scored
            for conc in (int(c) for c in args.concurrency.split(",")):
                load_before = os.getloadavg()[0]
                cpu0 = tree_cpu(proc.pid)
                if driver == "wrk":
                    row = asyncio.run(wrk_load(port, script, conc, args.duration))
                else:
                    row = asyncio.run(python_load(port, users, conc, args.duration))
                cpu = tree_cpu(proc.pid) - cpu0
                n = max(row["requests"], 1)
                row = {"workers": workers, "concurrency": conc, **row,
                       "server_cpu_ms_per_request": cpu * 1e3 / n,
                       "client_cpu_ms_per_request": row.pop("client_cpu_s") * 1e3 / n,
                       "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0]}
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
                                        "driver": driver, "duration_s": args.duration, "rows": rows,
                                        "speedup": speedup}, indent=1))


if __name__ == "__main__":
    main()
