"""The contracts of recforge.testing over EVERY registry table: models, splitters, policies, estimators, environments
and conversational policies. A new registry row is checked here without a new test."""

from __future__ import annotations

from typing import Any

import pytest

from recforge import registry
from recforge.bandits.build import make_env
from recforge.models.base import Recommender
from recforge.testing import (
    RECOMMENDER_CHECKS,
    check_crs_policy,
    check_environment,
    check_estimator,
    check_policy,
    check_recommender_config,
    check_registry,
    check_reward_model,
    check_splitter,
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


@pytest.mark.parametrize("table", sorted(registry.TABLES))
def test_registry_keys_are_class_names(table: str) -> None:
    check_registry((table,))
