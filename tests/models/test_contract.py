"""The contracts of recforge.testing can fail: each broken class below breaks one promise and its check says so.
(tests/test_contracts.py runs the same checks over every registry table; this file checks the checks.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from recforge import registry
from recforge.bandits.build import make_env
from recforge.bandits.estimators import IPS
from recforge.bandits.policies.base import UniformRandom
from recforge.bandits.simulators import ContextualBanditEnv
from recforge.data.split import leave_last_out
from recforge.models.base import HistoryScoring, Recommender
from recforge.testing import (
    ContractError,
    check_deterministic,
    check_embedder,
    check_environment,
    check_estimator,
    check_history_scorer,
    check_log_prob,
    check_policy,
    check_recommender,
    check_registry,
    check_save_load,
    check_scores,
    check_splitter,
    check_topk,
    check_unknown_users,
    contract_split,
    fit_for_contract,
)

Popular = registry.get_model("popular")


@dataclass(frozen=True)
class CountsConfig:
    smoothing: float = 1.0


class Counts(Recommender):
    """A minimal third-party model: smoothed item counts (what a plugin author writes)."""

    name = "test-counts"
    config_class = CountsConfig

    def _fit(self, train, valid) -> None:
        self.counts_ = torch.from_numpy(train.item_counts().astype(np.float32)) + self.config.smoothing

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self.counts_.expand(len(users), -1).clone()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts_ = state["counts"]


class ForgetsOnSave(Counts):
    name = "test-forgetful"

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": torch.ones_like(self.counts_)}


class BatchDependent(Counts):
    def _score(self, users: np.ndarray) -> torch.Tensor:
        return super()._score(users) + len(users)


class Unseeded(Counts):
    def _fit(self, train, valid) -> None:
        super()._fit(train, valid)
        self.counts_ = self.counts_ + torch.rand(self.counts_.shape)  # the global torch stream: differs per fit


class Embeds(Counts):
    """An Embedder: one-dimensional vectors whose products are the counts."""

    shift = 0.0

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        return torch.ones(len(users), 1)

    def item_embeddings(self) -> torch.Tensor:
        out = self.counts_.clone()[:, None]
        out[1] += self.shift
        return out


class EmbedsWrongly(Embeds):
    shift = 1.0


class Likelihood(Counts):
    """A LogProb: the softmax of the log counts, whatever the history."""

    scale = 1.0

    def log_prob(self, histories, targets: np.ndarray) -> torch.Tensor:
        lp = torch.log_softmax(self.scale * self.counts_[1:].log(), dim=0)
        return lp[torch.as_tensor(targets) - 1]


class Unnormalised(Likelihood):
    def log_prob(self, histories, targets: np.ndarray) -> torch.Tensor:
        return super().log_prob(histories, targets) - 0.1


class RanksItself(Counts):
    """A TopK model; ``honest`` False ignores the excluded items."""

    honest = True

    def topk(self, users: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(users).clone()
        if self.honest and exclude is not None:
            for row, items in enumerate(exclude):
                scores[row, torch.as_tensor(items)] = -torch.inf
        top = torch.topk(scores, k, dim=1)
        return top.indices.numpy(), top.values.numpy()


class IgnoresExclusions(RanksItself):
    honest = False


class SecondMostPopularFirst(Counts):
    """Its popularity fallback swaps the first and sixth most popular items: one wrong item in five."""

    def fit(self, train, valid=None, **kwargs):
        super().fit(train, valid, **kwargs)
        order = np.argsort(-self.popularity_[1:], kind="stable") + 1
        self.popularity_[[order[0], order[5]]] = self.popularity_[[order[5], order[0]]]
        return self


class CountsHistories(HistoryScoring, Counts):
    """A HistoryScorer: the counts, whatever the history."""

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return self.counts_.expand(len(offsets) - 1, -1).clone()


class StaleHistoryMask(CountsHistories):
    """``recommend_history`` masks the first history it was ever given instead of the current one."""

    def recommend_history(self, history, k=10, exclude_seen=True, exclude=None, times=None, repeatable=None):
        if not hasattr(self, "first_"):
            self.first_ = [h for h in history if self.item_vocab.canonical(h) is not None]
        return super().recommend_history(history, k, exclude_seen=False, exclude=self.first_)


@pytest.fixture()
def registered(monkeypatch):
    """The test models registered, as a plugin registers its own: a row in the literal table."""
    for cls in (Counts, ForgetsOnSave):
        monkeypatch.setitem(registry.MODELS, cls.name, f"{__name__}:{cls.__name__}")


def test_a_third_party_model_passes_the_whole_contract(registered):
    check_recommender(Counts)


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (BatchDependent, check_scores, "depend on the user batch"),
        (Unseeded, check_deterministic, "identical scores"),
        (ForgetsOnSave, check_save_load, "scores differently"),
        (EmbedsWrongly, check_embedder, "do not reproduce the scores"),
        (Unnormalised, check_log_prob, "not normalised"),
        (IgnoresExclusions, check_topk, "excluded item"),
        (SecondMostPopularFirst, check_unknown_users, "not the five most popular items"),
        (StaleHistoryMask, check_history_scorer, "outside the history"),
    ],
)
def test_a_broken_model_fails_its_check(registered, cls, check, message):
    split = contract_split()
    model = fit_for_contract(cls, split=split)
    with pytest.raises(ContractError, match=message):
        check(model, split)


@pytest.mark.parametrize(("cls", "check"), [(Embeds, check_embedder), (Likelihood, check_log_prob),
                                            (RanksItself, check_topk), (Counts, check_unknown_users),
                                            (CountsHistories, check_history_scorer)])
def test_an_honest_capability_passes(cls, check):
    split = contract_split()
    check(fit_for_contract(cls, split=split), split)


def test_a_splitter_under_another_name_fails():
    with pytest.raises(ContractError, match="names its split 'leave_last_out'"):
        check_splitter("temporal", leave_last_out)


def test_a_registry_key_that_is_not_the_class_name_fails(monkeypatch):
    monkeypatch.setitem(registry.POLICIES, "greedy", registry.POLICIES["epsilon-greedy"])
    with pytest.raises(ContractError, match="'greedy' is registered under another name"):
        check_registry(("policy",))


class RepeatsItself(UniformRandom):
    def select(self, context, n):
        return np.zeros((n, self.len_list), dtype=np.int64)


def test_a_policy_repeating_an_action_in_a_slate_fails():
    with pytest.raises(ContractError, match="repeated action"):
        check_policy(RepeatsItself, make_env({"name": "slate"}))


class Inflated(IPS):
    def terms(self, inp):
        cols, stat = super().terms(inp)
        return 1.2 * cols, stat


def test_a_biased_estimator_fails():
    with pytest.raises(ContractError, match="vs truth"):
        check_estimator(Inflated)


class FlatRewards(ContextualBanditEnv):
    def step(self, context, actions):
        rewards, expected, best = super().step(context, actions)
        return rewards[:, 0], expected, best


def test_an_environment_with_flat_rewards_fails():
    with pytest.raises(ContractError, match="step shapes"):
        check_environment(FlatRewards)
