"""Data-parallel training with torch.distributed (gloo, 2 CPU processes) reaches the quality of one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
EPOCHS = 8


def _run(nproc: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(WORKER), str(out), str(EPOCHS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    one = _run(1, tmp_path / "one.json")
    two = _run(2, tmp_path / "two.json")
    assert one["world"] == 1 and two["world"] == 2
    # The planted rule is followed 90% of the time: both must learn it, and to the same quality.
    assert one["ndcg@10"] > 0.6 and two["ndcg@10"] > 0.6, (one["ndcg@10"], two["ndcg@10"])
    assert abs(one["ndcg@10"] - two["ndcg@10"]) < 0.05, (one["ndcg@10"], two["ndcg@10"])
    assert len(two["history"]) == EPOCHS
