"""The PostgreSQL feedback store against a real server: the store's contract, serving with it, and replicas sharing
one log."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from recforge.errors import DataError
from recforge.serve import ServeSettings, create_app
from recforge.serve.store import PostgresFeedbackStore, open_feedback_store


@pytest.fixture()
def store(postgres_url):
    s = open_feedback_store(postgres_url)
    yield s
    s.close()


def test_store_contract(store):
    assert isinstance(store, PostgresFeedbackStore)
    assert store.setting("synchronous_commit") == "on" and store.setting("fsync") == "on"
    user = f"pg-{uuid.uuid4()}"
    first = store.add(user, 5, ts=20.0)
    store.add(user, "5", ts=10.0)  # an older event arriving later; "5" and 5 stay distinct values
    store.add(user, 9, event="skip", ts=30.0)
    assert store.history(user, ("skip",)) == ["5", 5]  # by timestamp, oldest first
    assert store.history(user) == ["5", 5, 9]
    assert store.history(user, limit=1) == [9]
    assert store.history(7) == [] or all(isinstance(i, int | str) for i in store.history(7))
    row = next(r for r in store.rows() if r[0] == first)
    assert row[1:4] == (user, 5, "click")
    for bad in ({"user": 2**63}, {"user": "a\x00"}, {"ts": float("nan")}, {"value": float("inf")}, {"ts": -1.0}):
        args = {"user": 1, "item": 1, **bad}
        with pytest.raises(DataError):
            store.add(args.pop("user"), args.pop("item"), **args)


def test_two_replicas_share_feedback(postgres_url, popular_run, tmp_path):
    """Two app instances (replicas behind a load balancer) on one PostgreSQL store: feedback given to one shapes the
    other's recommendations."""
    settings = ServeSettings(feedback_db=postgres_url)
    user = f"pg-user-{uuid.uuid4()}"
    with TestClient(create_app(popular_run, settings)) as a, TestClient(create_app(popular_run, settings)) as b:
        assert b.post("/recommend", json={"user_id": user}).json()["fallback"] is True
        assert a.post("/feedback", json={"user_id": user, "item_id": 3}).status_code == 200
        out = b.post("/recommend", json={"user_id": user, "k": 5}).json()
        assert out["source"] == "history" and out["fallback"] is False and 3 not in [x["item"] for x in out["items"]]
