"""text_knn, the zero-shot text recommender: the recommender contract's checks (bound to the contract catalogue),
cold and added items scored from text alone, the last-n query, state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError
from recforge.models.text_knn import TextKNN
from recforge.protocols import ItemAdder, ItemSide, ItemSideConsumer
from recforge.testing import RECOMMENDER_CHECKS, contract_catalog, contract_split
from recforge.text.embedders import HashingEmbedder
from recforge.text.side import bind_items


@pytest.fixture(scope="module")
def fitted():
    split = contract_split()
    model = TextKNN(embedder={"name": "hashing", "dim": 64})
    bind_items(model, contract_catalog(split), split.train, use_cache=False)
    return model.fit(split.train), split


def test_contract_checks(fitted):
    model, split = fitted
    assert isinstance(model, ItemSideConsumer) and isinstance(model, ItemAdder)
    for check in RECOMMENDER_CHECKS.values():
        check(model, split)


def test_state_round_trip(fitted):
    model, split = fitted
    again = TextKNN()
    again.user_vocab, again.item_vocab, again.seen_ = model.user_vocab, model.item_vocab, model.seen_
    again._load_state(model._state())
    torch.testing.assert_close(again.score(np.arange(1, 20)), model.score(np.arange(1, 20)))


def side(texts: list[str], ids: list[str], dim: int = 128) -> ItemSide:
    vectors = np.vstack([np.zeros((1, dim), np.float32), HashingEmbedder(dim=dim).embed(texts)])
    return ItemSide(item_ids=ids, vectors=vectors)


def test_a_cold_item_is_scored_from_its_text():
    users, items = ["u1"] * 3 + ["u2"] * 2, ["heat", "casino", "ronin", "toy", "cars"]
    vocab_items = ["heat", "casino", "ronin", "toy", "cars", "goodfellas"]  # goodfellas: never interacted with
    data = Interactions.from_arrays(np.array(users), np.array(items), time=np.arange(5),
                                    item_vocab=Vocab(vocab_items, name="item"))
    texts = ["crime gangster", "crime casino gangster", "crime heist", "animation toys", "animation cars",
             "crime gangster mafia"]
    model = TextKNN()
    model.bind_items(side(texts, vocab_items))
    model.fit(data)
    assert data.item_counts()[6] == 0
    assert model.recommend(["u1"], k=1).items == [["goodfellas"]]
    assert model.recommend(["u2"], k=1).items[0] != ["goodfellas"]


def test_added_items_are_scored_from_their_text():
    data = Interactions.from_arrays(np.array(["u1"] * 3 + ["u2"] * 2), np.array(["heat", "casino", "ronin", "toy",
                                                                                   "cars"]), time=np.arange(5))
    texts = ["crime gangster", "crime casino gangster", "crime heist", "animation toys", "animation cars"]
    model = TextKNN()
    model.bind_items(side(texts, list(data.item_vocab.ids)))
    model.fit(data)
    model.add_items(side(["animation toys cars sequel", "crime gangster mafia"], ["toy2", "goodfellas"]))
    assert model.n_items == 7
    assert model.recommend(["u1"], k=1).items == [["goodfellas"]]
    assert model.recommend(["u2"], k=1).items == [["toy2"]]
    with pytest.raises(ConfigError, match="already known"):
        model.add_items(side(["x"], ["heat"]))


def test_only_the_last_n_items_form_the_query():
    vectors = np.eye(5, dtype=np.float32)
    vectors[0] = 0
    data = Interactions.from_arrays(np.array([1, 1, 1, 1]), np.array([1, 2, 3, 4]), time=np.arange(4))
    model = TextKNN(n_last=1)
    model.bind_items(ItemSide(item_ids=list(data.item_vocab.ids), vectors=vectors))
    model.fit(data)
    s = model.score_histories([np.array([1, 2, 3]), np.array([], np.int64)])
    assert s[0].argmax().item() == 3 and torch.all(s[1, 1:] == 0)


def test_vectors_are_required_and_must_fit_the_log():
    data = Interactions.from_arrays(np.array([1, 1]), np.array([1, 2]))
    with pytest.raises(ConfigError, match="bound before fit"):
        TextKNN().fit(data)
    model = TextKNN()
    model.bind_items(ItemSide(item_ids=[1, 2, 3, 4], vectors=np.ones((5, 4), np.float32)))
    with pytest.raises(ConfigError, match="describe 4 items, not the 2"):
        model.fit(data)
    with pytest.raises(ConfigError, match="n_last"):
        TextKNN(n_last=0)
