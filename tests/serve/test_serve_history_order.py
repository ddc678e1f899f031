"""A known user's live history is the training history in time order followed by feedback by timestamp; the length
bound keeps the most recent items, never the lowest ids."""

from __future__ import annotations

import numpy as np
from conftest import CoocModel
from fastapi.testclient import TestClient

from recforge.data.interactions import Interactions
from recforge.models.base import load_model
from recforge.serve import ServeSettings, create_app


class RecordingCooc(CoocModel):
    """CoocModel that remembers the last history it scored (dense ids)."""

    name = "recording-cooc-test"

    def _score_histories(self, items, offsets):
        self.last_history = np.asarray(items[offsets[0]:offsets[1]]).copy()
        return super()._score_histories(items, offsets)


def _log(n_long: int = 300):
    rng = np.random.default_rng(3)
    long_items = rng.permutation(np.arange(1, 401))[:n_long]  # time order unrelated to id order
    users = ["long"] * n_long + [f"u{i}" for i in range(40) for _ in range(5)]
    items = list(long_items) + list(rng.integers(1, 401, 200))
    return Interactions.from_arrays(users, items, time=np.arange(len(users))), [int(x) for x in long_items]


def test_training_history_is_time_ordered_and_survives_save(tmp_path):
    log, order = _log()
    model = RecordingCooc().fit(log)
    dense = model.user_vocab.encode(["long"])[0]
    assert model.item_vocab.decode(model.history(dense)) == order
    from recforge.models.popular import MostPopular

    pop = MostPopular().fit(log)
    pop.save(tmp_path / "pop")
    assert load_model(tmp_path / "pop").item_vocab.decode(load_model(tmp_path / "pop").history(dense)) == order


def test_one_feedback_event_keeps_the_history_order(tmp_path):
    log, order = _log()
    model = RecordingCooc().fit(log)
    app = create_app(model, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"), max_history=200))
    with TestClient(app) as c:
        new_item = order[5]  # an item the user already had, re-consumed now
        assert c.post("/feedback", json={"user_id": "long", "item_id": new_item, "timestamp": 2_000}).status_code == 200
        assert c.post("/recommend", json={"user_id": "long", "k": 5}).json()["source"] == "history"
        seen = model.item_vocab.decode(model.last_history)
        assert seen == (order + [new_item])[-200:]  # recency, not ids: the oldest 101 dropped
        # feedback is ordered by its timestamp, not by arrival
        c.post("/feedback", json={"user_id": "long", "item_id": order[0], "timestamp": 1_000})
        c.post("/recommend", json={"user_id": "long", "k": 5})
        assert model.item_vocab.decode(model.last_history)[-2:] == [order[0], new_item]


class TopKCooc(CoocModel):
    """CoocModel that also declares TopK: serving must rank known users through ``topk``."""

    name = "topk-cooc-test"

    def topk(self, users, k, exclude=None):
        self.topk_calls = getattr(self, "topk_calls", 0) + 1
        scores = self.score(users).clone()
        for row, banned in enumerate(exclude or []):
            scores[row, banned] = -float("inf")
        vals, items = scores.topk(k, dim=1)
        return items.numpy(), vals.numpy()


def test_a_topk_model_ranks_known_users_itself(tmp_path):
    log, _ = _log(30)
    model = TopKCooc().fit(log)
    with TestClient(create_app(model, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite")))) as c:
        out = c.post("/recommend", json={"user_id": "long", "k": 4}).json()
    assert model.topk_calls == 1 and out["source"] == "model"
    dense = model.user_vocab.encode(["long"])
    items, _ = model.topk(dense, 4, exclude=[model.seen_[dense].indices])
    assert [x["item"] for x in out["items"]] == model.item_vocab.decode(items[0])
