"""bigrec (generate titles, ground, re-weight) and toolrec (planner + tools + attribute filters) on a planted world:
the contract log with a catalogue whose titles and genres encode the planted item clusters."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from recforge.data.catalog import ItemCatalog
from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate
from recforge.llm.mock import MockLLM
from recforge.llm.toolkit import Toolkit
from recforge.models.base import load_model
from recforge.models.bigrec import BIGRec
from recforge.models.popular import MostPopular
from recforge.models.toolrec import ToolRec
from recforge.testing import contract_split

SPLIT = contract_split()
VOCAB = SPLIT.train.item_vocab
N = len(VOCAB)
CLUSTER = np.asarray(SPLIT.train.meta["item_cluster"])  # indexed by the external number k of "i<k>"
GENRES = ["Drama", "Comedy", "Horror", "Western", "Musical"]


def item_cluster(dense: int) -> int:
    return int(CLUSTER[int(str(VOCAB.ids[dense - 1])[1:])])


def catalogue() -> ItemCatalog:
    """Title "Film <k> (19xx)" and the planted cluster as the genre of every item."""
    ids = list(VOCAB.ids)
    titles = [f"Film {str(i)[1:]} ({1950 + int(str(i)[1:]) % 50})" for i in ids]
    genres = [[GENRES[item_cluster(d)]] for d in range(1, N + 1)]
    return ItemCatalog.from_records(ids, titles=titles, attributes=genres, group="genre")


CATALOG = catalogue()
TEXTS = ["", *CATALOG.titles[1:]]
TEST_TARGET = {int(u): int(i) for u, i in zip(SPLIT.test.user, SPLIT.test.item)}
VALID_TARGET = {int(u): int(i) for u, i in zip(SPLIT.valid.user, SPLIT.valid.item)}


def oracle(targets: dict[int, int]):
    """A mock LLM that knows each user's held-out item: it names it perturbed (upper case, no year), then an
    invented title and a repeat. The user is recognised by the history in the prompt (training items, with or
    without the validation item: the evaluator folds it in for the test part)."""
    by_history = {}
    offsets = SPLIT.train.user_offsets()
    for u in targets:
        hist = [CATALOG.titles[int(i)] for i in SPLIT.train.item[offsets[u] : offsets[u + 1]]]
        by_history[tuple(hist[::-1][:20])] = u
        if u in VALID_TARGET:
            by_history[tuple([CATALOG.titles[VALID_TARGET[u]], *hist[::-1]][:20])] = u

    def script(request) -> str:
        shown = tuple(re.findall(r"^\[\d+\] (.+)$", request.messages[-1][1], re.M))
        user = by_history.get(shown)
        title = re.sub(r" \(\d{4}\)$", "", CATALOG.titles[targets[user]]).upper() if user else "Nothing"
        return json.dumps([title, "Zorblax Returns (2031)", title])

    return script


def test_bigrec_grounds_perturbed_titles_and_counts_inventions():
    toolkit = Toolkit(MockLLM(script=oracle(TEST_TARGET)), TEXTS, CATALOG)
    model = BIGRec(n_titles=3)
    model.use_llm(toolkit)
    model.fit(SPLIT.train)
    ours = evaluate(model, SPLIT, ("hit@1",), n_boot=10).metrics["hit@1"]["mean"]
    base = evaluate(MostPopular().fit(SPLIT.train), SPLIT, ("hit@1",), n_boot=10).metrics["hit@1"]["mean"]
    assert ours > 0.9 and base < 0.2  # the named (perturbed) title grounds to the held-out item
    rep = toolkit.report()
    assert rep["counts"]["titles_invented"] == rep["counts"]["titles_given"] / 3  # one invention per answer
    assert rep["grounded_by"]["none"] == rep["counts"]["titles_invented"]
    assert rep["grounding_rate"] == pytest.approx(2 / 3)


def test_bigrec_without_llm_ranks_as_its_base_and_reloads(tmp_path):
    model = BIGRec(base={"name": "itemknn"}).fit(SPLIT.train)
    from recforge.models.itemknn import ItemKNN

    base = ItemKNN().fit(SPLIT.train)
    users = np.arange(1, 40)
    a = model.recommend([VOCAB and u for u in SPLIT.train.user_vocab.ids[:39]], k=10)
    b = base.recommend(list(SPLIT.train.user_vocab.ids[:39]), k=10)
    assert a.items == b.items
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert np.allclose(again.score(users).numpy(), model.score(users).numpy())


def test_bigrec_gamma_reorders_generated_items_by_the_base_model():
    """Two named items: with gamma = 0 the LLM's order wins, with a large gamma the base model's."""
    pop = MostPopular().fit(SPLIT.train)
    order = np.argsort(-pop.popularity_[1:], kind="stable") + 1
    hi, lo = int(order[0]), int(order[-1])
    reply = json.dumps([CATALOG.titles[lo], CATALOG.titles[hi]])
    firsts = []
    for gamma in (0.0, 10.0):
        model = BIGRec(n_titles=2, gamma=gamma)
        model.use_llm(Toolkit(MockLLM(replies=(reply,)), TEXTS, CATALOG))
        model.fit(SPLIT.train)
        hist = [np.array([i for i in range(1, N + 1) if i not in (hi, lo)][:3])]
        firsts.append(int(model.score_histories(hist).argmax()))
    assert firsts == [lo, hi]


def test_toolrec_rule_planner_filters_by_the_history_genre():
    model = ToolRec(tools=({"name": "popular"},), n_filters=1, min_share=0.5)
    model.use_llm(Toolkit(None, TEXTS, CATALOG))
    model.fit(SPLIT.train)
    unfiltered = MostPopular().fit(SPLIT.train)
    users = np.arange(1, 101)
    top = model.score(users).topk(10).indices.numpy()
    share = np.mean([[item_cluster(i) == np.bincount([item_cluster(h) for h in model.history(u)[-10:]]).argmax()
                      for i in row] for u, row in zip(users, top)])
    base_top = unfiltered.score(users).topk(10).indices.numpy()
    base_share = np.mean([[item_cluster(i) == np.bincount([item_cluster(h) for h in unfiltered.history(u)[-10:]]
                                                          ).argmax() for i in row] for u, row in zip(users, base_top)])
    assert share > 0.95 and base_share < 0.5
    assert all(p["tool"] == "popular" and len(p["filters"]) == 1 for p in model.plans_)
    hr = evaluate(model, SPLIT, ("hit@10",), n_boot=10).metrics["hit@10"]["mean"]
    assert hr > evaluate(unfiltered, SPLIT, ("hit@10",), n_boot=10).metrics["hit@10"]["mean"]


def test_toolrec_llm_planner_follows_the_answer_and_falls_back():
    def planner(request) -> str:
        if "Film 1 " in request.messages[-1][1]:
            return "no idea"  # unusable: the rule planner's step, counted
        return json.dumps({"tool": "ItemKNN", "filters": ["comedy", "Sci-Fi"]})

    toolkit = Toolkit(MockLLM(script=planner), TEXTS, CATALOG)
    model = ToolRec(planner="llm", llm={"name": "mock"})
    model.use_llm(toolkit)
    model.fit(SPLIT.train)
    model.score(np.arange(1, 51))
    steps = [p for p in model.plans_ if p["tool"] == "itemknn"]
    assert steps and all(p["filters"] == ["Comedy"] for p in steps)  # case-insensitive; unknown attributes dropped
    rep = toolkit.report()
    assert rep["counts"]["plans"] == 50 and rep["counts"]["plans_fallback"] == 50 - len(steps)


def test_toolrec_refuses_bad_configs():
    with pytest.raises(ConfigError, match="distinct name"):
        ToolRec(tools=({"name": "popular"}, {"name": "popular"}))
    with pytest.raises(ConfigError, match="needs llm"):
        ToolRec(planner="llm")
    with pytest.raises(ConfigError, match="no attribute group"):
        model = ToolRec(attribute_group="mood")
        model.use_llm(Toolkit(None, TEXTS, CATALOG))
        model.fit(SPLIT.train).score(np.array([1]))
