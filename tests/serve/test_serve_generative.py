"""Serving the generative retrievers: a tiny ``tiger_decoder`` and ``tiger`` trained on a planted log, saved as run
folders (no pickle: a JSON meta file and safetensors weights), and served in-process and by `recforge serve` as a
real process.

What is checked: the served top-k equals the model's own beam top-k for the user, holds only catalogue items (the
beam decodes valid semantic IDs only), never a seen or excluded item and mostly items of the user's planted group;
an anonymous history and live feedback are decoded from the history; k above the beam width is a clear 422.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from recforge.data.synthetic import planted_clusters
from recforge.models.base import load_model
from recforge.models.generative.semantic_ids import SidConfig
from recforge.models.generative.tiger import Tiger, TigerConfig
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.serve import ServeSettings, create_app
from recforge.train.trainer import TrainConfig

SID = SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup")
TRAIN = TrainConfig(epochs=30, batch_size=32, lr=1e-2, threads=1, seed=0)
BEAM = 10


@pytest.fixture(scope="module")
def log():
    """150 users "u<k>" and 60 items "i<k>" in 3 planted groups; a user's items come from their group 90% of the time."""
    return planted_clusters(n_users=150, n_items=60, n_clusters=3, events_per_user=10, p_in_cluster=0.9, seed=1)


def _fit(name: str, log):
    if name == "tiger_decoder":
        cfg = TigerDecoderConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, beam=BEAM, train=TRAIN)
        return TigerDecoder(cfg).fit(log)
    # tiger learns one example per training event (9x tiger_decoder's rows here): fewer epochs, larger batches
    cfg = TigerConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, max_items=8, beam=BEAM,
                      train=TrainConfig(epochs=8, batch_size=64, lr=1e-2, threads=1, seed=0))
    return Tiger(cfg).fit(log)


@pytest.fixture(scope="module", params=["tiger_decoder", "tiger"])
def run(request, log, tmp_path_factory) -> Path:
    """A run-folder-shaped directory holding the saved model in artifact/."""
    folder = tmp_path_factory.mktemp(request.param)
    _fit(request.param, log).save(folder / "artifact")
    return folder


@pytest.fixture()
def served(run, tmp_path):
    with TestClient(create_app(run, ServeSettings(feedback_db=str(tmp_path / "feedback.sqlite")))) as c:
        yield c


def _group_share(items: list[str], user: str, log) -> float:
    """Share of ``items`` ("i<k>") in the planted group of ``user`` ("u<k>")."""
    group = log.meta["user_cluster"][int(user[1:])]
    return float(np.mean([log.meta["item_cluster"][int(i[1:])] == group for i in items]))


def test_saved_without_pickle_and_reloads_to_the_same_ranking(run):
    files = sorted(p.name for p in (run / "artifact").iterdir())
    assert files == ["meta.json", "weights.safetensors"]
    assert json.loads((run / "artifact" / "meta.json").read_text())["name"] == run.name.rstrip("0123456789")
    tensors = load_file(run / "artifact" / "weights.safetensors")  # plain tensors, nothing to unpickle
    assert "sid.codes" in tensors and "net.item_head.weight" not in tensors  # the token head only
    a, b = load_model(run / "artifact"), load_model(run / "artifact")
    assert a.recommend(["u1", "u2"], k=5).items == b.recommend(["u1", "u2"], k=5).items


def test_served_topk_is_the_beam_over_valid_unseen_items(served, run, log):
    model = load_model(run / "artifact")
    ready = served.get("/ready").json()
    assert ready["model"] == model.name and ready["supports_histories"] is True
    catalogue = set(model.item_vocab.ids)
    for user in ("u0", "u5", "u17", "u42", "u99"):
        out = served.post("/recommend", json={"user_id": user, "k": 5}).json()
        items = [r["item"] for r in out["items"]]
        dense = model.user_vocab.encode([user])
        seen = set(model.item_vocab.decode(model.seen_[dense].indices))
        expected, _ = model.topk(dense, 5, exclude=[model.seen_[dense].indices])
        assert items == model.item_vocab.decode(expected[0]), user  # the model's own beam, in its order
        assert len(items) == 5 and len(set(items)) == 5 and set(items) <= catalogue
        assert not seen & set(items)
        scores = [r["score"] for r in out["items"]]
        assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))  # beam log-likelihoods
        assert out["source"] == "model" and not out["fallback"]
    users = [f"u{k}" for k in range(150)]
    served_lists = [[r["item"] for r in served.post("/recommend", json={"user_id": u, "k": 5}).json()["items"]]
                    for u in users]
    assert np.mean([_group_share(items, u, log) for items, u in zip(served_lists, users)]) > 0.6  # chance: 1/3


def test_exclude_list_is_never_served(served):
    first = [r["item"] for r in served.post("/recommend", json={"user_id": "u3", "k": 5}).json()["items"]]
    out = served.post("/recommend", json={"user_id": "u3", "k": 5, "exclude": first[:2]}).json()
    items = [r["item"] for r in out["items"]]
    assert not set(first[:2]) & set(items) and len(items) == 5


def test_anonymous_history_is_decoded_from_the_session(served, run, log):
    model = load_model(run / "artifact")
    group = 2
    session = [f"i{k}" for k in np.flatnonzero(log.meta["item_cluster"] == group)[:6]]
    out = served.post("/recommend", json={"history": session, "k": 5}).json()
    items = [r["item"] for r in out["items"]]
    rec, _ = model.recommend_history(session, k=5)
    assert out["source"] == "history" and items == rec.items[0]
    assert not set(session) & set(items)
    assert np.mean([log.meta["item_cluster"][int(i[1:])] == group for i in items]) > 0.5


def test_live_feedback_is_masked_and_read_as_history(served):
    before = [r["item"] for r in served.post("/recommend", json={"user_id": "u7", "k": 5}).json()["items"]]
    assert served.post("/feedback", json={"user_id": "u7", "item_id": before[0]}).status_code == 200
    out = served.post("/recommend", json={"user_id": "u7", "k": 5}).json()
    assert out["source"] == "history" and before[0] not in [r["item"] for r in out["items"]]


def test_k_above_the_beam_is_a_clear_error(served):
    r = served.post("/recommend", json={"user_id": "u1", "k": BEAM + 1})
    assert r.status_code == 422 and "beam" in r.json()["detail"]


def test_recforge_serve_process_serves_a_tiger_decoder_run(log, tmp_path):
    folder = tmp_path / "run"
    model = _fit("tiger_decoder", log)
    model.save(folder / "artifact")
    port = free_port()
    cmd = [sys.executable, "-m", "recforge.cli", "serve", str(folder), "--port", str(port),
           "--feedback-db", str(tmp_path / "fb.sqlite")]
    with open(tmp_path / "serve.log", "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        body = httpx.post(f"{url}/recommend", json={"user_id": "u4", "k": 3}, timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    expected = model.recommend(["u4"], k=3).items[0]
    assert [r["item"] for r in body["items"]] == expected and body["source"] == "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
