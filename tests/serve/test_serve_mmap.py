"""Model weights are memory-mapped for serving: N worker processes share one copy of them in the page cache.

``load_artifact(mmap=True)`` leaves the tensors as copy-on-write views of the weights file; ``save_artifact`` replaces
the file by rename, so a process mapping the old weights keeps reading them. A real ``recforge serve --workers 2`` is
checked through ``/proc/PID/smaps``: each worker maps the whole weights file, and its pages are shared between the
workers (Shared_Clean, or Shared_Dirty until the page cache is written back), so each worker's proportional share (Pss) of them is about half of what it maps (Rss). With the
tensors copied into private memory (the default load) there is no such mapping and the test fails.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from recforge.artifacts import WEIGHTS_FILE, load_artifact, save_artifact
from recforge.data.interactions import Interactions
from recforge.models.ease import EASE, EASEConfig


def smaps_of(pid: int, file: Path) -> dict[str, int]:
    """kB summed over the mappings of ``file`` in ``/proc/PID/smaps``: Size, Rss, Pss, Shared_Clean, Private_*."""
    out: dict[str, int] = {}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line: address range, perms, ...
            inside = len(head) >= 6 and head[-1] == str(file)
        elif inside and line.endswith(" kB"):
            key, value = line.split(":")
            out[key] = out.get(key, 0) + int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (field 4 of /proc/PID/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EASE over 1,500 items (an item-item matrix of ~9 MB): big enough to be seen in smaps, quick to fit."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 301), 30)
    items = rng.integers(1, 1501, len(users))
    items[:1500] = np.arange(1, 1501)  # every item occurs
    run = tmp_path_factory.mktemp("ease-run")
    EASE(EASEConfig(l2=50.0)).fit(Interactions.from_arrays(users, items)).save(run / "artifact")
    return run


def test_mmap_load_is_copy_on_write_and_survives_a_save_over_it(ease_run, tmp_path):
    copied = load_artifact(ease_run / "artifact")
    mapped = load_artifact(ease_run / "artifact", mmap=True)
    assert copied.tensors.keys() == mapped.tensors.keys()
    for key in copied.tensors:
        assert torch.equal(copied.tensors[key], mapped.tensors[key])
    weights = ease_run / "artifact" / WEIGHTS_FILE
    before = weights.read_bytes()
    b = mapped.tensors["b"]
    b[1, 1] += 1.0  # private to this process: the file does not change
    assert weights.read_bytes() == before
    # an artifact saved over a mapped one is written beside it and renamed: the mapped tensors keep their values
    art = tmp_path / "art"
    save_artifact(art, table="t", name="n", config={}, tensors={"x": torch.arange(4096, dtype=torch.float32)})
    held = load_artifact(art, mmap=True).tensors["x"]
    save_artifact(art, table="t", name="n", config={}, tensors={"x": torch.zeros(16)})
    assert torch.equal(held, torch.arange(4096, dtype=torch.float32))
    assert torch.equal(load_artifact(art).tensors["x"], torch.zeros(16))
    assert not (art / (WEIGHTS_FILE + ".tmp")).exists()


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/PID/smaps")
def test_two_workers_share_the_weight_pages(ease_run, tmp_path):
    weights = (ease_run / "artifact" / WEIGHTS_FILE).resolve()
    size_kb = weights.stat().st_size / 1024
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "recforge.cli", "serve", str(ease_run), "--port", str(port),
                                 "--workers", "2", "--feedback-db", str(tmp_path / "fb.sqlite")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        loaded: set[float] = set()  # each worker's /ready carries its own load time
        deadline = time.monotonic() + 120
        while len(loaded) < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"two workers did not answer in 120 s: {log.read_text()}"
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", headers={"Connection": "close"}, timeout=5)
                loaded.add(ready.json()["loaded_at"])
                assert httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": 1, "k": 5},
                                  timeout=5).status_code == 200
            except httpx.TransportError:
                time.sleep(0.3)
        workers = [p for p in children(proc.pid) if smaps_of(p, weights).get("Rss", 0) > 0]
        assert len(workers) >= 2, f"expected 2 workers mapping {weights.name}, found {workers}"
        for pid in workers:
            m = smaps_of(pid, weights)
            assert m["Rss"] >= 0.9 * size_kb, str(m)  # the whole file is mapped and resident in this worker
            # ... and its pages are the same as another process's (Shared_Dirty while the just-written file's page
            # cache is not yet written back, Shared_Clean after); none was copied on write (Anonymous)
            assert m["Shared_Clean"] + m["Shared_Dirty"] >= 0.9 * size_kb, str(m)
            assert m.get("Anonymous", 0) == 0, str(m)
            assert m["Pss"] <= 0.6 * m["Rss"], str(m)  # this worker's proportional share is about half of them
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "hstu"])
def test_sequential_parameters_are_the_mapped_tensors(name, serve_log, tmp_path):
    """A sequential model loaded from mapped weights keeps them as its parameters (no private copy per worker)."""
    from recforge.models.base import model_from_artifact
    from recforge.registry import resolve
    from recforge.train.trainer import TrainConfig

    model = resolve("model", name)(dim=8, max_len=10, train=TrainConfig(epochs=1, device="cpu")).fit(serve_log)
    model.save(tmp_path / "artifact")
    art = load_artifact(tmp_path / "artifact", mmap=True)
    loaded = model_from_artifact(art)
    params = dict(loaded.net_.named_parameters())
    assert params
    for key, p in params.items():
        assert p.data_ptr() == art.tensors[f"net.{key}"].data_ptr(), key
    users = np.arange(1, 6)
    assert torch.allclose(loaded.score(users), model.score(users), atol=1e-5)
