"""text_knn, the zero-shot text recommender: the recommender contract's checks (with item vectors bound), cold items
scored from text alone, the last-n query, state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError
from recforge.models.text_knn import TextKNN
from recforge.testing import RECOMMENDER_CHECKS, contract_split
from recforge.text.embedders import HashingEmbedder


def cluster_vectors(split) -> np.ndarray:
    """Hashed sentences naming each contract item's planted group (the text an item tower would see)."""
    vocab = split.train.item_vocab
    groups = split.train.meta["item_cluster"]
    texts = [f"genre {'abcde'[groups[int(str(i)[1:])]]} film number {i}" for i in vocab.ids]
    return np.vstack([np.zeros((1, 64), np.float32), HashingEmbedder(dim=64).embed(texts)])


VECTORS = cluster_vectors(contract_split())


class BoundTextKNN(TextKNN):
    """text_knn with the contract log's item vectors bound, as the experiments layer binds a catalogue's."""

    def __init__(self, config=None, **overrides):
        super().__init__(config, item_vectors=VECTORS, **overrides)


@pytest.fixture(scope="module")
def fitted():
    split = contract_split()
    return BoundTextKNN().fit(split.train), split


@pytest.mark.parametrize("check", sorted(set(RECOMMENDER_CHECKS) - {"save_load"}))
def test_contract_checks(fitted, check):
    model, split = fitted
    RECOMMENDER_CHECKS[check](model, split)


def test_state_round_trip(fitted):
    model, split = fitted
    again = TextKNN()
    again.user_vocab, again.item_vocab, again.seen_ = model.user_vocab, model.item_vocab, model.seen_
    again._load_state(model._state())
    torch.testing.assert_close(again.score(np.arange(1, 20)), model.score(np.arange(1, 20)))


def test_a_cold_item_is_scored_from_its_text():
    users, items = ["u1"] * 3 + ["u2"] * 2, ["heat", "casino", "ronin", "toy", "cars"]
    vocab_items = ["heat", "casino", "ronin", "toy", "cars", "goodfellas"]  # goodfellas: never interacted with
    data = Interactions.from_arrays(np.array(users), np.array(items), time=np.arange(5),
                                    item_vocab=Vocab(vocab_items, name="item"))
    texts = ["crime gangster", "crime casino gangster", "crime heist", "animation toys", "animation cars",
             "crime gangster mafia"]
    vectors = np.vstack([np.zeros((1, 128), np.float32), HashingEmbedder(dim=128).embed(texts)])
    model = TextKNN(item_vectors=vectors).fit(data)
    assert data.item_counts()[6] == 0
    assert model.recommend(["u1"], k=1).items == [["goodfellas"]]
    assert model.recommend(["u2"], k=1).items[0] != ["goodfellas"]


def test_only_the_last_n_items_form_the_query():
    vectors = np.eye(5, dtype=np.float32)
    vectors[0] = 0
    model = TextKNN(item_vectors=vectors, n_last=1).fit(
        Interactions.from_arrays(np.array([1, 1, 1, 1]), np.array([1, 2, 3, 4]), time=np.arange(4)))
    s = model.score_histories([np.array([1, 2, 3]), np.array([], np.int64)])
    assert s[0].argmax().item() == 3 and torch.all(s[1, 1:] == 0)


def test_vectors_are_required_and_must_fit_the_log():
    data = Interactions.from_arrays(np.array([1, 1]), np.array([1, 2]))
    with pytest.raises(ConfigError, match="needs item_vectors"):
        TextKNN().fit(data)
    with pytest.raises(ConfigError, match="n_items\\+1=3"):
        TextKNN(item_vectors=np.ones((5, 4))).fit(data)
    with pytest.raises(ConfigError, match="n_last"):
        TextKNN(n_last=0)
