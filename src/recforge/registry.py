"""One literal table: registry name -> "module:Class". Imports are lazy (nothing is imported until asked for).

Add a row to register something; there are no decorators and no directory scanning.
"""

from __future__ import annotations

import importlib
from typing import Any

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
}

SPLITTERS: dict[str, str] = {
    "leave_last_out": "recforge.data.split:leave_last_out",
    "temporal": "recforge.data.split:temporal",
    "random": "recforge.data.split:random_holdout",
    "user_holdout": "recforge.data.split:user_holdout",
}

POLICIES: dict[str, str] = {}

TABLES: dict[str, dict[str, str]] = {"model": MODELS, "splitter": SPLITTERS, "policy": POLICIES}


def resolve(kind: str, name: str) -> Any:
    """Import and return the object registered as ``name`` in table ``kind`` ("model", "splitter", "policy")."""
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
