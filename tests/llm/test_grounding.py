"""Prompts and strict grounding: opaque shuffled ids, history cut to the budget, every answer a permutation
(property), titles grounded on the catalogue, Kendall tau, ratings, the mock backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.datasets import load_dataset
from recforge.errors import ConfigError
from recforge.llm.grounding import TitleGrounder, kendall_tau, normalise_title, parse_ranking, parse_rating
from recforge.llm.mock import MockLLM
from recforge.llm.prompts import PROMPTS, estimate_tokens, next_title_prompt, prompt, rank_prompt, rate_prompt
from recforge.llm.ranker import LLMRanker
from recforge.protocols import CandidateReranker, GenerationRequest, LLMClient
from recforge.text.embedders import HashingEmbedder


def test_rank_prompt_ids_are_opaque_shuffled_and_the_history_recency_marked():
    p = rank_prompt(["Heat", "Casino", "Toy Story"], [f"movie {k}" for k in range(10)], np.random.default_rng(0))
    user = p.request.messages[-1][1]
    assert len(set(p.ids)) == 10 and all(i.startswith("i") and len(i) == 4 for i in p.ids)
    assert sorted(p.shown) == list(range(10)) and list(p.shown) != list(range(10))
    assert user.index("[1] Toy Story") < user.index("[2] Casino") < user.index("[3] Heat")
    listed = [line.split(": ")[0] for line in user.split("Candidates:\n")[1].split("\n\n")[0].splitlines()]
    assert listed == [p.ids[j] for j in p.shown]
    again = rank_prompt(["Heat"], ["a", "b"], np.random.default_rng(1))
    assert again.ids != rank_prompt(["Heat"], ["a", "b"], np.random.default_rng(2)).ids


def test_history_is_cut_from_the_oldest_end_to_fit_the_budget():
    history = [f"a rather long movie title number {k}" for k in range(200)]
    p = rank_prompt(history, ["x", "y"], np.random.default_rng(0), budget_tokens=400)
    assert 0 < p.history_kept < 200 and p.history_dropped == 200 - p.history_kept
    assert estimate_tokens(p.request.messages[0][1] + p.request.messages[1][1]) <= 400
    assert f"[1] {history[-1]}" in p.request.messages[1][1] and history[0] not in p.request.messages[1][1]
    with pytest.raises(ConfigError, match="does not fit 50 tokens even without history"):
        rank_prompt(history, ["candidate " * 50], np.random.default_rng(0), budget_tokens=50)
    assert next_title_prompt(history, budget_tokens=300).history_dropped > 0
    assert "Heat (1995)" in rate_prompt(["Casino: 4"], "Heat (1995)").request.messages[1][1]


def test_templates_are_versioned_and_hashed():
    assert {p.key for p in PROMPTS.values()} == {"rank/1", "next_title/1", "rate/1", "next_titles/1", "plan/1",
                                                    "user_profile/1", "item_profile/1"}
    assert len({p.hash for p in PROMPTS.values()}) == 7
    with pytest.raises(ConfigError, match="unknown prompt template"):
        prompt("planner")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(1, 12))
def test_any_answer_becomes_a_permutation(text, n):
    ids = [f"i{100 + 7 * k}" for k in range(n)]
    ans = parse_ranking(text, ids)
    assert sorted(ans.order.tolist()) == list(range(n))
    assert ans.filled + (n - ans.filled) == n and ans.invented + ans.duplicates <= ans.mentioned


@pytest.mark.parametrize("text,order,counts", [
    ('["i200", "i100"]', [1, 0, 2], (0, 0, 1)),
    ('ranking: {"ranking": ["i300", "i300", "i999"]}', [2, 0, 1], (1, 1, 2)),
    ('{"ranking": ["i300", "i300", "i999"]}', [2, 0, 1], (1, 1, 2)),
    ("i300 is best, then i100", [2, 0, 1], (0, 0, 1)),
    ("", [0, 1, 2], (0, 0, 3)),
    ('["i200", "i1', [1, 0, 2], (0, 0, 2)),
])
def test_parse_ranking_table(text, order, counts):
    ans = parse_ranking(text, ["i100", "i200", "i300"])
    assert ans.order.tolist() == order and (ans.invented, ans.duplicates, ans.filled) == counts


def test_kendall_tau():
    assert kendall_tau(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0
    assert kendall_tau(np.array([1, 2, 3]), np.array([3, 2, 1])) == -1.0
    assert kendall_tau(np.array([1, 2, 3, 4]), np.array([2, 1, 3, 4])) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        kendall_tau(np.array([1, 2]), np.array([1, 3]))


def test_parse_rating():
    assert parse_rating("I'd say 4.5 stars") == 4.5 and parse_rating("7") == 5.0 and parse_rating("none") is None


@pytest.mark.parametrize("title,expected", [
    ("American President, The (1995)", ("the american president", "1995")),
    ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", ("amelie", "2001")),
    ("Fast & Furious", ("fast and furious", None)),
])
def test_normalise_title(title, expected):
    assert normalise_title(title) == expected


@pytest.fixture(scope="module")
def titles():
    return load_dataset("ml-latest-small").catalog.titles


def _perturb(title: str, rng: np.random.Generator) -> str:
    """What an LLM does to a title: drop the year, change case, move the article, drop or double one letter."""
    t = title
    kind = rng.integers(4)
    if kind == 0:
        t = t.split(" (")[0]
    elif kind == 1:
        t = t.upper()
    elif kind == 2 and ", The" in t:
        t = "The " + t.replace(", The", "")
    else:
        k = int(rng.integers(1, max(len(t) - 8, 2)))
        t = t[:k] + t[k + 1 :] if rng.random() < 0.5 else t[:k] + t[k] + t[k:]
    return t


def test_perturbed_titles_ground_top1_and_invented_ones_do_not(titles):
    rng = np.random.default_rng(0)
    picks = rng.choice(np.arange(1, len(titles)), size=300, replace=False)
    grounder = TitleGrounder(titles)
    found, info = grounder.ground_many([_perturb(titles[i], rng) for i in picks])
    wanted = np.array([grounder.ground(titles[i]).item for i in picks])  # the catalogue's own pick for duplicates
    assert (found == wanted).mean() >= 0.95, info
    invented = ["Quantum Llama Rhapsody (2031)", "The Unfilmed Sequel of Nothing", "Zebra Accounting III"]
    assert grounder.ground_many(invented)[1]["grounding_rate"] == 0.0


def test_duplicate_titles_pick_by_year_then_lowest_id():
    g = TitleGrounder([None, "Hamlet (1948)", "Hamlet (1996)", "Heat (1995)"])
    assert g.ground("Hamlet (1996)").item == 2 and g.ground("hamlet").item == 1 and g.ground("hamlet").ambiguous
    assert g.ground("Heat").how == "exact" and g.ground("Heath").how == "fuzzy" and g.ground("").item == 0


def test_embedding_step_only_above_its_threshold():
    g = TitleGrounder([None, "crime thriller in los angeles", "toys come alive"], embedder=HashingEmbedder(dim=512),
                      embed_threshold=0.5)
    hit = g.ground("los angeles crime thriller")  # same words, other order: not fuzzy, but the vectors agree
    assert hit.item == 1 and hit.how == "embedding"
    assert g.ground("a documentary about bees").item == 0


def test_mock_backend_scripts_and_declares_capabilities():
    mock = MockLLM(replies=("[\"i100\"]", "nope"))
    assert isinstance(mock, LLMClient)
    req = GenerationRequest((("user", "hi"),))
    assert [g.text for g in mock.generate([req, req, req])] == ['["i100"]', "nope", '["i100"]']
    assert MockLLM().generate([req])[0].text == "hi"
    assert MockLLM(script=lambda r: r.messages[-1][1].upper()).generate([req])[0].text == "HI"
    assert mock.score("a", ["bb", "c"]).tolist() == [-2.0, -1.0] and mock.embed(["x"]).shape == (1, 16)
    only = MockLLM(capabilities=("generate",))
    with pytest.raises(ConfigError, match="mock backend does not support 'embed'"):
        only.embed(["x"])


def test_ranker_with_the_mock_is_a_candidate_reranker():
    ranker = LLMRanker(MockLLM(replies=("garbage",)), ["", "a", "b", "c"])
    assert isinstance(ranker, CandidateReranker)
    order = ranker.rerank([np.array([1])], np.array([[3, 1, 2]]))
    assert order.tolist() == [[0, 1, 2]] and ranker.stats.to_dict()["fill_rate"] == 1.0
    with pytest.raises(ConfigError, match="1 histories for 2 candidate rows"):
        ranker.rerank([np.array([1])], np.array([[3, 1], [1, 2]]))
