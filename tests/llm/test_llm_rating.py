"""Rating predictors on planted worlds: BiasCF recovers planted biases, TextMLP learns a planted taste-by-text
effect that biases cannot, LLMRating builds zero/few-shot prompts, parses answers and falls back to BiasCF."""

from __future__ import annotations

import re

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.llm.mock import MockLLM
from recforge.llm.toolkit import Toolkit
from recforge.models.llm_rating import BiasCF, LLMRating, LLMRatingConfig, TextMLP, TextMLPConfig, rmse_mae
from recforge.text import HashingEmbedder

N_USERS, N_ITEMS = 120, 60
WORDS = ["space", "love", "crime"]


def world(seed: int = 0, taste: float = 0.0) -> tuple[Interactions, Interactions, np.ndarray]:
    """Ratings = 3 + user bias + item bias (+ ``taste`` when the item's genre word is the user's) + noise 0.1;
    returns (train, test, item genre per dense item id)."""
    rng = np.random.default_rng(seed)
    bu, bi = rng.normal(0, 0.5, N_USERS), rng.normal(0, 0.5, N_ITEMS)
    user_word, item_word = rng.integers(0, 3, N_USERS), np.arange(N_ITEMS) % 3
    rows = [(u, i) for u in range(N_USERS) for i in rng.choice(N_ITEMS, 30, replace=False)]
    u, i = np.array(rows).T
    r = 3 + bu[u] + bi[i] + taste * (user_word[u] == item_word[i]) - taste / 3 + rng.normal(0, 0.1, len(u))
    log = Interactions.from_arrays(u, i, time=np.tile(np.arange(30), N_USERS), value=np.clip(r, 1, 5),
                                   item_vocab=None)
    last = np.tile(np.arange(30) == 29, N_USERS)
    genre = np.zeros(log.n_items + 1, np.int64)
    genre[log.item] = item_word[np.asarray(log.item_vocab.ids)[log.item - 1].astype(int)]
    return log.with_rows(~last), log.with_rows(last), genre


def test_bias_cf_recovers_planted_biases():
    train, test, _ = world()
    pred = BiasCF(config=None).fit(train).predict(test.user, test.item)
    assert rmse_mae(pred, test.value)["rmse"] < 0.2
    assert rmse_mae(np.full(len(test), train.value.mean()), test.value)["rmse"] > 0.5


def test_text_mlp_learns_a_taste_for_words_that_biases_cannot():
    train, test, genre = world(taste=1.5)
    texts = [f"a {WORDS[g]} film number {k}" for k, g in enumerate(genre)]
    vectors = HashingEmbedder().embed(texts)
    vectors[0] = 0
    cf = rmse_mae(BiasCF().fit(train).predict(test.user, test.item), test.value)["rmse"]
    mlp = rmse_mae(TextMLP(vectors, TextMLPConfig(epochs=10)).fit(train).predict(test.user, test.item), test.value)["rmse"]
    assert mlp < 0.7 * cf


def test_llm_rating_prompts_parse_and_fall_back():
    train, test, _ = world()
    texts = ["", *[f"film {k}" for k in range(1, train.n_items + 1)]]
    seen: list[str] = []

    def script(request) -> str:
        msg = request.messages[-1][1]
        seen.append(msg)
        return "I'd say 4 stars" if "film 1\n" not in msg.split("How would")[1] else "no idea"

    toolkit = Toolkit(MockLLM(script=script), texts)
    model = LLMRating(toolkit, LLMRatingConfig(shots=3)).fit(train)
    pred = model.predict(test.user, test.item)
    unparsed = np.asarray(test.item) == 1
    assert np.all(pred[~unparsed] == 4.0)
    cf = BiasCF().fit(train).predict(test.user, test.item)
    assert np.allclose(pred[unparsed], np.clip(cf[unparsed], 1, 5)) and model.fallbacks == unparsed.sum()
    assert all(len(re.findall(r"^\[\d+\] film \d+: [\d.]+$", m, re.M)) == 3 for m in seen)  # three rated shots
    assert toolkit.report()["rating_parse_rate"] == pytest.approx(1 - unparsed.mean())
    zero = LLMRating(Toolkit(MockLLM(replies=("2",)), texts), LLMRatingConfig(shots=0)).fit(train)
    assert np.all(zero.predict(test.user[:5], test.item[:5]) == 2.0)
    assert "(none)" in zero.toolkit.client.requests[-1].messages[-1][1]
    with pytest.raises(ConfigError, match="needs a toolkit with a language model"):
        LLMRating(Toolkit(None, texts))
