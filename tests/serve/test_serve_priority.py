"""Scoring threads run below the event loop's priority, so /health and request parsing are not queued behind them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from recforge.serve import ServeSettings, create_app
from recforge.serve.app import SCORING_NICE, _at_scoring_priority


def _thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _lowered(base: int) -> int:
    """The nice value a scoring thread gets from ``base`` (the kernel caps nice values at 19)."""
    return min(base + SCORING_NICE, 19)


def test_scoring_thread_is_lowered_once_and_the_caller_is_not():
    base = _thread_nice()
    seen: list[int] = []

    def work() -> None:
        seen.append(_at_scoring_priority(_thread_nice))
        seen.append(_at_scoring_priority(_thread_nice))  # a second call does not lower it again

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [_lowered(base), _lowered(base)]
    assert _thread_nice() == base


def _task_nices() -> list[int]:
    """Nice value of every thread of this process (field 19 of /proc/self/task/TID/stat)."""
    out = []
    for tid in os.listdir("/proc/self/task"):
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        out.append(int(stat.rsplit(")", 1)[1].split()[16]))
    return out


def test_a_served_request_scores_on_a_lowered_thread(popular_run, tmp_path):
    base = _thread_nice()
    app = create_app(popular_run, ServeSettings(feedback_db=str(tmp_path / "f.sqlite")))
    with TestClient(app) as c:
        assert c.post("/recommend", json={"user_id": "u1", "k": 3}).status_code == 200
        assert _lowered(base) in _task_nices()
    assert _thread_nice() == base
