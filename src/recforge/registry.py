"""One literal table: registry name -> "module:Class". Imports are lazy (nothing is imported until asked for).

Add a row to register something; there are no decorators and no directory scanning.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from recforge.config import from_dict
from recforge.errors import ConfigError

MODELS: dict[str, str] = {
    "random": "recforge.models.random:RandomRecommender",
    "popular": "recforge.models.popular:MostPopular",
    "itemknn": "recforge.models.itemknn:ItemKNN",
    "userknn": "recforge.models.userknn:UserKNN",
    "ease": "recforge.models.ease:EASE",
    "als": "recforge.models.als:ALS",
    "bpr": "recforge.models.bpr:BPR",
    "sasrec": "recforge.models.sasrec:SASRec",
    "gru4rec": "recforge.models.gru4rec:GRU4Rec",
    "bert4rec": "recforge.models.bert4rec:BERT4Rec",
    "hstu": "recforge.models.hstu:HSTU",
    "llm_rerank": "recforge.models.llm_rerank:LLMRerank",
    "p5_lite": "recforge.models.p5_lite:P5Lite",
    "bigrec": "recforge.models.bigrec:BIGRec",
    "toolrec": "recforge.models.toolrec:ToolRec",
    "text_knn": "recforge.models.text_knn:TextKNN",
    "text_sasrec": "recforge.models.text_sasrec:TextSASRec",
    "rlmrec": "recforge.models.rlmrec:RLMRec",
    "tiger_decoder": "recforge.models.generative.tiger_decoder:TigerDecoder",
    "tiger": "recforge.models.generative.tiger:Tiger",
}

SPLITTERS: dict[str, str] = {
    "leave_last_out": "recforge.data.split:leave_last_out",
    "temporal": "recforge.data.split:temporal",
    "random": "recforge.data.split:random_holdout",
    "user_holdout": "recforge.data.split:user_holdout",
    "cold_item_holdout": "recforge.data.cold:cold_item_holdout",
}

POLICIES: dict[str, str] = {
    "uniform": "recforge.bandits.policies.base:UniformRandom",
    "epsilon-greedy": "recforge.bandits.policies.mab:EpsilonGreedy",
    "ucb1": "recforge.bandits.policies.mab:UCB1",
    "bernoulli-ts": "recforge.bandits.policies.mab:BernoulliTS",
    "gaussian-ts": "recforge.bandits.policies.mab:GaussianTS",
    "linucb": "recforge.bandits.policies.linear:LinUCB",
    "linear-ts": "recforge.bandits.policies.linear:LinearTS",
    "logistic-ts": "recforge.bandits.policies.linear:LogisticTS",
    "in-slate-ts": "recforge.bandits.policies.slate:InSlateTS",
    "gru-slate-ts": "recforge.bandits.policies.gru_slate_ts:GRUSlateTS",
    "periodic": "recforge.bandits.recovering:PeriodicOracle",
    "periodic-ucb": "recforge.bandits.recovering:PeriodicUCB",
}

ESTIMATORS: dict[str, str] = {
    "dm": "recforge.bandits.estimators:DirectMethod",
    "ips": "recforge.bandits.estimators:IPS",
    "snips": "recforge.bandits.estimators:SNIPS",
    "dr": "recforge.bandits.estimators:DoublyRobust",
    "sndr": "recforge.bandits.estimators:SNDR",
    "switch-dr": "recforge.bandits.estimators:SwitchDR",
    "dr-os": "recforge.bandits.estimators:DRShrinkage",
    "sips": "recforge.bandits.slate_estimators:SlateStandardIPS",
    "iips": "recforge.bandits.slate_estimators:SlateIndependentIPS",
    "rips": "recforge.bandits.slate_estimators:SlateRewardInteractionIPS",
}

ENVIRONMENTS: dict[str, str] = {
    "contextual": "recforge.bandits.simulators:ContextualBanditEnv",
    "slate": "recforge.bandits.simulators:SlateEnv",
    "recovering": "recforge.bandits.recovering:RecoveringEnv",
    "user-slate": "recforge.bandits.user_slates:UserSlateEnv",
}

CRS_POLICIES: dict[str, str] = {
    "random": "recforge.conversational.policies.random:RandomPolicy",
    "max-entropy": "recforge.conversational.policies.max_entropy:MaxEntropyPolicy",
    "ear": "recforge.conversational.policies.ear:EARPolicy",
    "scpr": "recforge.conversational.policies.scpr:SCPRPolicy",
    "fact-crs": "recforge.conversational.policies.fact_crs:FacTCRSPolicy",
}

EMBEDDERS: dict[str, str] = {
    "hashing": "recforge.text.embedders:HashingEmbedder",
    "minilm": "recforge.text.embedders:MiniLMEmbedder",
}

LLM_BACKENDS: dict[str, str] = {
    "mock": "recforge.llm.mock:MockLLM",
    "openai_compat": "recforge.llm.openai_compat:OpenAICompatClient",
    "hf_local": "recforge.llm.hf_local:HFLocalClient",
}

TOKENIZERS: dict[str, str] = {
    "rkmeans": "recforge.nn.quantisers:ResidualKMeans",
    "balanced-rkmeans": "recforge.nn.quantisers:BalancedResidualKMeans",
    "rqvae": "recforge.nn.rqvae:RQVAE",
}

REWARD_MODELS: dict[str, str] = {
    "rm_bt": "recforge.align.reward:BradleyTerryRM",
    "rm_gpm": "recforge.align.reward:GeneralPreferenceRM",
}

TABLES: dict[str, dict[str, str]] = {
    "model": MODELS, "splitter": SPLITTERS, "policy": POLICIES, "estimator": ESTIMATORS, "environment": ENVIRONMENTS,
    "crs_policy": CRS_POLICIES, "embedder": EMBEDDERS, "llm": LLM_BACKENDS, "reward_model": REWARD_MODELS,
    "tokenizer": TOKENIZERS,
}


def resolve(kind: str, name: str) -> Any:
    """Import and return the object registered as ``name`` in table ``kind`` ("model", "splitter", "policy", "estimator", "environment")."""
    table = TABLES.get(kind)
    if table is None:
        raise ConfigError(f"unknown registry table {kind!r} (expected one of {sorted(TABLES)})")
    target = table.get(name)
    if target is None:
        raise ConfigError(f"unknown {kind} {name!r} (expected one of {sorted(table)})")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_model(name: str) -> Any:
    """The Recommender class registered as ``name``."""
    return resolve("model", name)


def configured(kind: str, spec: Mapping[str, Any], prefix: str = "") -> tuple[Any, Any]:
    """A registered thing plus its parameters, spelled one way everywhere: ``{"name": <registry key>, **fields}``.

    Returns (the registered class, an instance of its ``config_class`` built from the other fields). Unknown or
    badly typed fields raise a ConfigError naming ``prefix + field``. Used for models, splitters' callers, bandit
    policies, estimators, environments and CRS policies alike.
    """
    if "name" not in spec:
        raise ConfigError(f"{prefix}name is required (one of {sorted(TABLES.get(kind, {}))})")
    cls = resolve(kind, spec["name"])
    fields = {k: v for k, v in spec.items() if k != "name"}
    return cls, from_dict(cls.config_class, fields, prefix=prefix)
