"""Load test of `recforge serve`: a real uvicorn process on loopback, driven by a load generator in another process.

For each model: train on Amazon Beauty (or build the synthetic 1M-item catalog), start the server, warm it up, run a
closed-loop burst (max throughput at fixed concurrency) and an open-loop soak at a fixed rate, sampling the server's
RSS every second. Latencies are measured from each request's *scheduled* send time in the open-loop phase, so client
queueing counts (no coordinated omission). Everything stays on 127.0.0.1 and is bounded in count and time.

    RECFORGE_DATA_DIR=../shared/data python bench/serve_load.py --models popular,ease,sasrec,synthetic-1m \
        --soak 120 --rate 200 --out bench/results/serve_load.json
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------------------------- load generator
class _Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for JSON POSTs (a raw client keeps the load
    generator's own CPU cost per request tiny, so it measures the server rather than the client library)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            self.writer.write(head + body)
            header = await self.reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
            length = 0
            for line in header.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await self.reader.readexactly(length)
            return status
        except Exception:
            self.writer.close()
            self.writer = None
            raise


async def _drive(url: str, users: list, mode: str, rate: float, concurrency: int, duration: float,
                 max_requests: int, k: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    rng = np.random.default_rng(0)
    lat: list[float] = []
    errors: dict[str, int] = {}
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(_Conn(host, int(port)))

    async def one(t_sched: float) -> None:
        body = json.dumps({"user_id": users[int(rng.integers(len(users)))], "k": k}).encode()
        conn = await pool.get()
        try:
            status = await asyncio.wait_for(conn.post("/recommend", body), timeout=10)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
                return
            lat.append(time.perf_counter() - t_sched)
        except Exception as exc:  # any transport failure is an error of the run, counted by type
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        finally:
            pool.put_nowait(conn)

    t0 = time.perf_counter()
    if mode == "closed":
        async def worker() -> None:
            while time.perf_counter() - t0 < duration and len(lat) + sum(errors.values()) < max_requests:
                await one(time.perf_counter())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        n = min(max_requests, int(rate * duration))
        tasks = []
        for i in range(n):
            t_sched = t0 + i / rate
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(t_sched)))
        # Bounded in time: what the server has not answered 10 s after the last send is counted as an error
        # (a server slower than the offered rate builds a backlog; waiting it out would only measure the queue).
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, t0 + duration + 10 - time.perf_counter()))
        for task in pending:
            task.cancel()
        if pending:
            errors["unanswered_at_deadline"] = len(pending)
    elapsed = time.perf_counter() - t0
    ms = np.array(lat) * 1000 if lat else np.zeros(1)
    return {
        "mode": mode, "requests": len(lat) + sum(errors.values()), "ok": len(lat), "errors": errors,
        "seconds": round(elapsed, 2), "throughput_rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
    }


def load_main(args: argparse.Namespace) -> None:
    users = json.loads(Path(args.users).read_text())
    out = asyncio.run(_drive(args.url, users, args.mode, args.rate, args.concurrency, args.duration,
                             args.max_requests, args.k))
    Path(args.result).write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------------- synthetic catalog
def synthetic_model(n_items: int, n_users: int, dim: int, seed: int = 0):
    """An Embedder over ``n_items`` clustered item vectors (what a two-tower model would produce)."""
    import torch

    from recforge.data.interactions import Interactions
    from recforge.data.vocab import Vocab
    from recforge.models.base import Recommender
    from recforge.models.popular import PopularConfig

    class SyntheticDot(Recommender):
        name = "synthetic-dot"
        config_class = PopularConfig

        def _fit(self, train, valid) -> None:
            g = torch.Generator().manual_seed(seed)
            centers = torch.randn(1000, dim, generator=g)
            assign = torch.randint(0, 1000, (n_items + 1,), generator=g)
            # Noise as large as the cluster centres: neighbourhoods overlap, so the index has real work to do.
            self.items = centers[assign] + torch.randn(n_items + 1, dim, generator=g)
            self.items[0] = 0
            self.users = centers[torch.randint(0, 1000, (n_users + 1,), generator=g)] + torch.randn(
                n_users + 1, dim, generator=g)

        def _score(self, users: np.ndarray) -> torch.Tensor:
            return self.users[torch.from_numpy(users)] @ self.items.T

        def item_embeddings(self) -> torch.Tensor:
            return self.items

        def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
            return self.users[torch.from_numpy(np.asarray(users, dtype=np.int64))]

    rng = np.random.default_rng(seed)
    per_user = 20
    data = Interactions.from_arrays(
        np.repeat(np.arange(1, n_users + 1), per_user), rng.integers(1, n_items + 1, n_users * per_user),
        user_vocab=Vocab(range(1, n_users + 1), name="user"), item_vocab=Vocab(range(1, n_items + 1), name="item"))
    return SyntheticDot().fit(data)


def server_main(args: argparse.Namespace) -> None:
    """The synthetic-catalog server: build the model + faiss index in this process, then run uvicorn."""
    import torch
    import uvicorn

    from recforge.serve import ServeSettings, create_app

    torch.set_num_threads(1)  # as `recforge serve` does by default

    t0 = time.perf_counter()
    model = synthetic_model(args.catalog, args.n_users, args.dim)
    params = {k: int(v) for k, v in (kv.split("=") for kv in args.index_params.split(",") if kv)}
    app = create_app(model, ServeSettings(feedback_db=args.feedback_db, sync="normal", index=args.index,
                                          index_params=params, ann_threshold=1))
    print(json.dumps({"build_s": time.perf_counter() - t0}), flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------------------------------- orchestration
@dataclass
class Served:
    proc: subprocess.Popen
    url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(cmd: list[str], port: int, log: Path, timeout: float = 1800) -> Served:
    import httpx

    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Served(proc, url)
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start in time")


def drive(url: str, users_file: Path, tmp: Path, mode: str, duration: float, rate: float, concurrency: int,
          max_requests: int, pid: int) -> tuple[dict, list[float]]:
    """Run the load generator as a separate process; sample the server's RSS once a second meanwhile."""
    result = tmp / f"load-{mode}.json"
    cmd = [sys.executable, str(HERE), "_load", "--url", url, "--users", str(users_file), "--mode", mode,
           "--duration", str(duration), "--rate", str(rate), "--concurrency", str(concurrency),
           "--max-requests", str(max_requests), "--result", str(result)]
    cpu0, load0 = _cpu_s(pid), os.getloadavg()[0]
    gen = subprocess.Popen(cmd)
    rss = [_rss_mb(pid)]
    while gen.poll() is None:
        time.sleep(1.0)
        rss.append(_rss_mb(pid))
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed with {gen.returncode}")
    out = json.loads(result.read_text())
    # Server CPU per request does not depend on how busy the (shared) machine is; wall latency does.
    out["server_cpu_ms_per_req"] = round(1000 * (_cpu_s(pid) - cpu0) / max(1, out["ok"]), 3)  # per answered request
    out["loadavg_1m"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    return out, rss


def bench_one(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    import httpx

    port = _free_port()
    row: dict = {"model": name}
    if name == "synthetic-1m":
        cmd = [sys.executable, str(HERE), "_server", "--catalog", str(args.catalog), "--dim", str(args.dim),
               "--n-users", "10000", "--index", args.index, "--index-params", args.index_params, "--port", str(port),
               "--feedback-db", str(tmp / f"{name}.sqlite")]
        users = list(range(1, 10001))
        row["dataset"] = f"synthetic {args.catalog:,} items x {args.dim} dims (1000 clusters)"
    else:
        from recforge.data.datasets import load_dataset
        from recforge.registry import get_model

        data = load_dataset(args.data).interactions
        row["dataset"] = f"{args.data} ({data.n_users:,} users, {data.n_items:,} items)"
        saved = tmp / name / "artifact" / "meta.json"
        if saved.is_file():  # --workdir with a model from an earlier run: serve it again, no retraining
            users = json.loads(saved.read_text())["extra"]["user_vocab"]["ids"]
            row["train_s"] = "reused"
        else:
            kwargs = {}
            if name == "sasrec":
                from recforge.train.trainer import TrainConfig

                kwargs = {"train": TrainConfig(epochs=args.sasrec_epochs, device="cpu", seed=0)}
            t0 = time.perf_counter()
            model = get_model(name)(**kwargs).fit(data)
            row["train_s"] = round(time.perf_counter() - t0, 1)
            model.save(tmp / name / "artifact")
            users = list(model.user_vocab.ids)
            del model
        cmd = [sys.executable, "-m", "recforge.cli", "serve", str(tmp / name), "--port", str(port),
               "--feedback-db", str(tmp / f"{name}.sqlite"), "--sync", "normal"]
    users_file = tmp / f"{name}-users.json"
    users_file.write_text(json.dumps(users))
    t0 = time.perf_counter()
    served = start(cmd, port, tmp / f"{name}-server.log")
    row["startup_s"] = round(time.perf_counter() - t0, 1)
    try:
        ready = httpx.get(f"{served.url}/ready", timeout=10).json()
        row["index"] = ready.get("index")
        pid = served.proc.pid
        drive(served.url, users_file, tmp, "closed", 5, 0, 4, 2000, pid)  # warm-up
        row["burst"], _ = drive(served.url, users_file, tmp, "closed", args.burst, 0, args.concurrency,
                                args.max_requests, pid)
        row["soak"], rss = drive(served.url, users_file, tmp, "rate", args.soak, args.rate, args.concurrency,
                                 args.max_requests, pid)
        row["rss_mb_start"], row["rss_mb_end"], row["rss_mb_max"] = round(rss[0]), round(rss[-1]), round(max(rss))
        row["rss_growth_pct"] = round(100 * (rss[-1] - rss[0]) / rss[0], 2)
    finally:
        served.proc.terminate()
        served.proc.wait(30)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_load", "_server"):
        p = argparse.ArgumentParser()
        p.add_argument("role")
        p.add_argument("--url")
        p.add_argument("--users")
        p.add_argument("--mode", choices=("closed", "rate"))
        p.add_argument("--duration", type=float)
        p.add_argument("--rate", type=float, default=0)
        p.add_argument("--concurrency", type=int, default=16)
        p.add_argument("--max-requests", type=int, default=100_000)
        p.add_argument("--result")
        p.add_argument("--k", type=int, default=10)
        p.add_argument("--catalog", type=int)
        p.add_argument("--n-users", type=int)
        p.add_argument("--dim", type=int)
        p.add_argument("--index")
        p.add_argument("--index-params", default="")
        p.add_argument("--port", type=int)
        p.add_argument("--feedback-db")
        a = p.parse_args()
        (load_main if a.role == "_load" else server_main)(a)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="popular,ease,sasrec,synthetic-1m")
    p.add_argument("--data", default="amazon-beauty")
    p.add_argument("--soak", type=float, default=120, help="seconds of the fixed-rate soak (RSS growth is over it)")
    p.add_argument("--rate", type=float, default=200, help="requests per second in the soak")
    p.add_argument("--burst", type=float, default=20, help="seconds of the closed-loop max-throughput phase")
    p.add_argument("--concurrency", type=int, default=32, help="max requests in flight")
    p.add_argument("--max-requests", type=int, default=100_000, help="hard cap on requests per phase")
    p.add_argument("--sasrec-epochs", type=int, default=3)
    p.add_argument("--catalog", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index", default="ivf", choices=("flat", "hnsw", "ivf"))
    p.add_argument("--index-params", default="nlist=1024,nprobe=32", help="faiss parameters, e.g. m=16,ef_search=128")
    p.add_argument("--out", default="bench/results/serve_load.json")
    p.add_argument("--workdir", default=None, help="keep trained models here and reuse them on the next run")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="recforge-serve-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            rows.append(bench_one(name, args, work))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
