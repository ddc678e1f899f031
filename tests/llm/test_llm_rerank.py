"""llm_rerank: a base model's top-N reordered by an LLM (mock backend and the mock OpenAI-compatible server);
without a reranker it ranks as its base; every misbehaviour still yields valid recommendations."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate
from recforge.llm.base import LLMError
from recforge.llm.mock import MockLLM
from recforge.llm.openai_compat import OpenAICompatClient
from recforge.llm.ranker import LLMRanker, RankerConfig
from recforge.models.base import load_model
from recforge.models.llm_rerank import LLMRerank
from recforge.models.popular import MostPopular
from recforge.models.rank import top_k
from recforge.testing import contract_split

SPLIT = contract_split()
N_ITEMS = SPLIT.train.n_items
TEXTS = ["", *[f"film {i}" for i in range(1, N_ITEMS + 1)]]  # dense id i is "film i"


def by_id_descending(request) -> str:
    """A scripted LLM that ranks the listed candidates by their dense id, highest first."""
    listing = re.findall(r"^(i\d{3}): film (\d+)$", request.messages[-1][1], re.M)
    return json.dumps([cid for cid, _ in sorted(listing, key=lambda p: -int(p[1]))])


def test_the_reranker_orders_the_base_models_top_n():
    ranker = LLMRanker(MockLLM(script=by_id_descending), TEXTS)
    model = LLMRerank(n_candidates=10, reranker=ranker).fit(SPLIT.train)
    base = MostPopular().fit(SPLIT.train)
    users = np.arange(1, 30)
    masked = base.score(users).clone()
    seen = SPLIT.train.to_csr()
    for row, u in enumerate(users):
        masked[row, seen[[u]].indices] = -torch.inf
    candidates = top_k(masked, 10).items  # the base model's top-10 unseen items (the one ranking path, one tie rule)
    top10 = top_k(model.score(users), 10).items
    for row in range(len(users)):
        assert sorted(top10[row].tolist()) == sorted(candidates[row].tolist())
        assert top10[row].tolist() == sorted(top10[row].tolist(), reverse=True)  # the scripted LLM's order
    assert ranker.stats.answers == len(users) and ranker.stats.to_dict()["fill_rate"] == 0.0


def test_without_a_reranker_it_ranks_as_its_base():
    model = LLMRerank(n_candidates=10).fit(SPLIT.train)
    base = MostPopular().fit(SPLIT.train)
    users = list(SPLIT.train.user_vocab.ids[:20])
    assert model.recommend(users, k=10).items == base.recommend(users, k=10).items


@pytest.mark.parametrize("reply", ["", "not json at all", '["i000", "i000"]', '{"ranking": 5}', "[" * 100])
def test_any_answer_gives_valid_recommendations(reply):
    model = LLMRerank(n_candidates=8, reranker=LLMRanker(MockLLM(replies=(reply,)), TEXTS)).fit(SPLIT.train)
    recs = model.recommend(list(SPLIT.train.user_vocab.ids[:10]), k=8)
    for user, items in zip(recs.users, recs.items):
        seen = set(SPLIT.train.item_vocab.decode(SPLIT.train.to_csr()[[SPLIT.train.user_vocab.encode([user])[0]]]
                                                 .indices))
        assert len(items) == 8 and len(set(items)) == 8 and not seen & set(items)


def test_evaluated_through_the_mock_server(server):
    _, url = server
    ranker = LLMRanker(OpenAICompatClient(base_url=url, model="prose"), TEXTS)
    model = LLMRerank(n_candidates=6, reranker=ranker).fit(SPLIT.train)
    report = evaluate(model, SPLIT, metrics=("recall@10",), n_boot=50)
    assert 0.0 <= report.metrics["recall@10"]["mean"] <= 1.0
    stats = ranker.stats.to_dict()
    assert stats["answers"] > 0 and stats["json_rate"] == 0.0 and stats["fill_rate"] > 0


def test_saved_without_the_reranker(tmp_path):
    model = LLMRerank(n_candidates=5, reranker=LLMRanker(MockLLM(script=by_id_descending), TEXTS)).fit(SPLIT.train)
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.reranker is None
    torch.testing.assert_close(loaded.score(np.arange(1, 10)), LLMRerank(n_candidates=5).fit(SPLIT.train)
                               .score(np.arange(1, 10)))


def test_bad_configs():
    with pytest.raises(ConfigError, match="n_candidates"):
        LLMRerank(n_candidates=1)
    with pytest.raises(ConfigError, match="cannot rerank itself"):
        LLMRerank(base={"name": "llm_rerank"})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        LLMRerank(base={"name": "nope"})
    with pytest.raises(ConfigError, match="CandidateReranker"):
        LLMRerank(reranker=object())


class ScoresListedIds:
    """A scoring client that knows which film each opaque id stands for (from the listing in the context): the
    log-prob of an id is the film's dense id (higher ids more likely); ``fail`` raises on every request."""

    name = "fake"
    capabilities = frozenset({"score"})

    def __init__(self, fail: bool = False):
        self.fail, self.contexts = fail, []

    def score(self, context: str, continuations):
        if self.fail:
            raise LLMError("fake: the endpoint is down")
        self.contexts.append(context)
        film = dict(re.findall(r"^(i\d{3}): film (\d+)$", context, re.M))
        return np.array([float(film[c.rstrip('"')]) for c in continuations])


def test_score_method_ranks_by_the_log_prob_of_each_id():
    client = ScoresListedIds()
    ranker = LLMRanker(client, TEXTS, RankerConfig(method="score"))
    order = ranker.rerank([np.array([1, 2])], np.array([[5, 9, 7, 3]]))
    assert order.tolist() == [[1, 2, 0, 3]]          # films 9, 7, 5, 3: the highest log-prob first
    assert client.contexts[0].endswith('assistant: ["') and "film 2" in client.contexts[0]
    stats = ranker.stats.to_dict()
    assert stats["parse_rate"] == 1.0 and stats["fill_rate"] == 0.0 and stats["invention_rate"] == 0.0
    failing = LLMRanker(ScoresListedIds(fail=True), TEXTS, RankerConfig(method="score"))
    assert failing.rerank([np.array([1])], np.array([[5, 9, 7]])).tolist() == [[0, 1, 2]]   # base order kept
    assert failing.stats.to_dict()["errors"] == 1 and failing.stats.to_dict()["fill_rate"] == 1.0
    with pytest.raises(ConfigError, match="reranking needs 'generate'"):
        LLMRanker(client, TEXTS)
    with pytest.raises(ConfigError, match="method must be"):
        LLMRanker(client, TEXTS, RankerConfig(method="vote"))
