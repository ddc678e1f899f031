"""The contracts of recforge.testing over EVERY registry table: models, splitters, policies, estimators, environments,
conversational policies, reward models, text embedders and LLM backends. A new registry row is checked here without a new test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recforge import registry
from recforge.bandits.build import make_env
from recforge.models.base import Recommender
from recforge.testing import (
    RECOMMENDER_CHECKS,
    check_crs_policy,
    check_environment,
    check_estimator,
    check_llm_client,
    check_policy,
    check_recommender_config,
    check_registry,
    check_reward_model,
    check_splitter,
    check_text_embedder,
    contract_split,
    fit_for_contract,
)

_FITTED: dict[str, Recommender] = {}


def fitted(name: str) -> Recommender:
    """One fit per model per session (fitting is the slow part)."""
    if name not in _FITTED:
        _FITTED[name] = fit_for_contract(registry.get_model(name))
    return _FITTED[name]


@pytest.mark.parametrize("check", sorted(RECOMMENDER_CHECKS))
@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_recommender(name: str, check: str) -> None:
    RECOMMENDER_CHECKS[check](fitted(name), contract_split())


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_recommender_config(name: str) -> None:
    check_recommender_config(registry.get_model(name))


@pytest.mark.parametrize("name", sorted(registry.SPLITTERS))
def test_splitter(name: str) -> None:
    check_splitter(name, registry.resolve("splitter", name))


#: The world each policy is checked in (default: the contextual world for policies that need contexts, else slates).
POLICY_ENV: dict[str, dict[str, Any]] = {
    "linucb": {"name": "contextual", "reward": "linear"},
    "linear-ts": {"name": "contextual", "reward": "linear"},
    "periodic": {"name": "recovering"},
    "periodic-ucb": {"name": "recovering"},
    "gru-slate-ts": {"name": "user-slate"},
}


@pytest.mark.parametrize("name", sorted(registry.POLICIES))
def test_policy(name: str) -> None:
    cls = registry.resolve("policy", name)
    spec = POLICY_ENV.get(name, {"name": "contextual" if cls.needs_context else "slate"})
    check_policy(cls, make_env(spec))


@pytest.mark.parametrize("name", sorted(registry.ENVIRONMENTS))
def test_environment(name: str) -> None:
    check_environment(registry.resolve("environment", name))


#: Estimators of logged slates; the others read logged bandit feedback.
SLATE_ESTIMATORS = {"sips", "iips", "rips"}


@pytest.mark.parametrize("name", sorted(registry.ESTIMATORS))
def test_estimator(name: str) -> None:
    check_estimator(registry.resolve("estimator", name), world="slate" if name in SLATE_ESTIMATORS else "contextual")


@pytest.mark.parametrize("name", sorted(registry.CRS_POLICIES))
def test_crs_policy(name: str) -> None:
    check_crs_policy(registry.resolve("crs_policy", name))


@pytest.mark.parametrize("name", sorted(registry.REWARD_MODELS))
def test_reward_model(name: str) -> None:
    check_reward_model(registry.resolve("reward_model", name))


@pytest.mark.parametrize("name", sorted(registry.EMBEDDERS))
def test_text_embedder(name: str) -> None:
    check_text_embedder(registry.resolve("embedder", name))


@pytest.mark.parametrize("name", sorted(registry.LLM_BACKENDS))
def test_llm_client(name: str) -> None:
    check_llm_client(registry.resolve("llm", name))


@pytest.mark.parametrize("table", sorted(registry.TABLES))
def test_registry_keys_are_class_names(table: str) -> None:
    check_registry((table,))


class _UnnormalisedEmbedder:
    """Breaks the embedder contract: raw counts, not unit rows."""

    name, fingerprint = "broken", "broken-1"

    def embed(self, texts: list[str]) -> Any:
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


class _UndeclaredVerbLLM:
    """Breaks the LLM contract: serves a verb it did not declare."""

    name = "loose"

    def __init__(self, capabilities: tuple[str, ...] = ()):
        self.capabilities = frozenset(capabilities)

    def generate(self, requests: Any) -> list:
        return []

    def score(self, context: str, continuations: Any) -> Any:
        return [0.0] * len(continuations)

    def embed(self, texts: Any) -> Any:
        return [[0.0]] * len(texts)


def test_the_text_and_llm_contracts_can_fail() -> None:
    from recforge.testing import ContractError

    with pytest.raises(ContractError, match="unit vectors"):
        check_text_embedder(_UnnormalisedEmbedder)
    with pytest.raises(ContractError, match="ran although it was not declared"):
        check_llm_client(_UndeclaredVerbLLM)
