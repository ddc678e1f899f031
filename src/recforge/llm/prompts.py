"""Versioned prompt templates: rank candidates, next title(s), rate item, planner step, user and item profiles.

Candidates are shown under opaque ids (``i`` + three digits, drawn at random per prompt) in a shuffled order, so an
answer cannot lean on list position or on the catalogue's own ids. The history is recency-marked ("[1]" = most
recent) and cut from its oldest end until the prompt fits a token budget (estimated at 4 characters per token);
a prompt that does not fit even without history is a ConfigError.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from recforge.errors import ConfigError
from recforge.protocols import GenerationRequest

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class PromptTemplate:
    """A system message and a user message with ``{history}`` and the task's fields. Change by a new version."""

    name: str
    version: int
    system: str
    user: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


PROMPTS: dict[str, PromptTemplate] = {
    "rank": PromptTemplate(
        "rank", 1,
        "You are a recommender system. You answer with JSON only.",
        "Items the user interacted with, [1] = most recent:\n{history}\n\nCandidates:\n{candidates}\n\n"
        "Rank ALL candidates from most to least likely to be the user's next item. Answer with a JSON list of "
        "the candidate ids, best first, for example [\"{example}\", ...], and nothing else."),
    "next_title": PromptTemplate(
        "next_title", 1,
        "You are a recommender system. You answer with one title only.",
        "Items the user interacted with, [1] = most recent:\n{history}\n\n"
        "Which item will the user choose next? Answer with its title only."),
    "rate": PromptTemplate(
        "rate", 1,
        "You are a recommender system. You answer with one number only.",
        "Ratings the user gave, [1] = most recent:\n{history}\n\n"
        "How would the user rate this item on a scale of 1 to 5?\n{item}\n\nAnswer with one number."),
    "next_titles": PromptTemplate(
        "next_titles", 1,
        "You are a recommender system. You answer with JSON only.",
        "Items the user interacted with, [1] = most recent:\n{history}\n\n"
        "Name {n} other items the user will like, best first. Answer with a JSON list of {n} titles and nothing else."),
    "plan": PromptTemplate(
        "plan", 1,
        "You plan recommendation steps. You answer with JSON only.",
        "Items the user interacted with, [1] = most recent:\n{history}\n\nTools: {tools}\nAttributes: {attributes}\n\n"
        "Pick the tool to call and the attributes (zero to three) the recommended items should have. Answer with "
        "JSON like {{\"tool\": \"{tool}\", \"filters\": [\"{attribute}\"]}} and nothing else."),
    "user_profile": PromptTemplate(
        "user_profile", 1,
        "You describe the tastes of users of a recommender system. You answer with JSON only.",
        "Items the user interacted with, [1] = most recent:\n{history}\n\n"
        "Summarise in at most {words} words what kinds of items this user enjoys and which they avoid, then give "
        "your reasoning. Answer with JSON like {{\"summarization\": \"...\", \"reasoning\": \"...\"}} and nothing "
        "else."),
    "item_profile": PromptTemplate(
        "item_profile", 1,
        "You describe the items of a recommender system and their audience. You answer with JSON only.",
        "Item:\n{item}\n\nWhat users said about it, [1] = most recent:\n{history}\n\n"
        "Summarise in at most {words} words what kinds of users would enjoy this item, then give your reasoning. "
        "Answer with JSON like {{\"summarization\": \"...\", \"reasoning\": \"...\"}} and nothing else."),
}


def prompt(name: str) -> PromptTemplate:
    if name not in PROMPTS:
        raise ConfigError(f"unknown prompt template {name!r} (known: {sorted(PROMPTS)})")
    return PROMPTS[name]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def opaque_ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct ids ``i100``..``i999`` in random order (at most 900 candidates)."""
    if n > 900:
        raise ConfigError(f"at most 900 candidates per prompt, got {n}")
    return [f"i{v}" for v in rng.choice(np.arange(100, 1000), size=n, replace=False)]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt. ``ids[j]``: the opaque id of candidate j (candidates keep the caller's order; ``shown``
    is the order they were listed in). ``history_kept``/``history_dropped``: history items shown / cut to fit."""

    request: GenerationRequest
    template: str
    ids: tuple[str, ...] = ()
    shown: tuple[int, ...] = ()
    history_kept: int = 0
    history_dropped: int = 0


def _history(texts: Sequence[str], keep: int) -> str:
    recent = list(texts)[::-1][:keep]
    return "\n".join(f"[{j + 1}] {t}" for j, t in enumerate(recent)) or "(none)"


def _fit(tpl: PromptTemplate, history: Sequence[str], budget_tokens: int, **fields: str) -> tuple[str, int]:
    """The user message with as much recent history as fits ``budget_tokens`` -> (message, history items kept)."""
    fixed = estimate_tokens(tpl.system)
    lo, hi = 0, len(history)
    if fixed + estimate_tokens(tpl.user.format(history=_history(history, 0), **fields)) > budget_tokens:
        raise ConfigError(f"the {tpl.key} prompt does not fit {budget_tokens} tokens even without history "
                          "(fewer or shorter candidates, or a larger budget)")
    while lo < hi:  # the most history that fits (binary search: prompt length grows with history)
        mid = (lo + hi + 1) // 2
        if fixed + estimate_tokens(tpl.user.format(history=_history(history, mid), **fields)) <= budget_tokens:
            lo = mid
        else:
            hi = mid - 1
    return tpl.user.format(history=_history(history, lo), **fields), lo


def rank_prompt(history: Sequence[str], candidates: Sequence[str], rng: np.random.Generator,
                budget_tokens: int = 2048, max_tokens: int = 256, template: str = "rank") -> Prompt:
    """Rank ``candidates`` (texts, in base-model order) for a ``history`` (texts, oldest first)."""
    tpl = prompt(template)
    ids = opaque_ids(len(candidates), rng)
    shown = rng.permutation(len(candidates))
    listing = "\n".join(f"{ids[j]}: {candidates[j]}" for j in shown)
    user, kept = _fit(tpl, history, budget_tokens, candidates=listing, example=ids[int(shown[0])] if ids else "")
    req = GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens)
    return Prompt(req, tpl.key, tuple(ids), tuple(int(j) for j in shown), kept, len(history) - kept)


def next_title_prompt(history: Sequence[str], budget_tokens: int = 2048, max_tokens: int = 48) -> Prompt:
    """Ask for the next item's title given a ``history`` (texts, oldest first)."""
    tpl = prompt("next_title")
    user, kept = _fit(tpl, history, budget_tokens)
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(history) - kept)


def rate_prompt(history: Sequence[str], item: str, budget_tokens: int = 2048, max_tokens: int = 8) -> Prompt:
    """Ask for a 1-5 rating of ``item``; ``history`` entries carry their ratings (e.g. "Heat (1995): 4")."""
    tpl = prompt("rate")
    user, kept = _fit(tpl, history, budget_tokens, item=item)
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(history) - kept)


def next_titles_prompt(history: Sequence[str], n: int, budget_tokens: int = 2048, max_tokens: int = 256) -> Prompt:
    """Ask for ``n`` next titles (a JSON list) given a ``history`` (texts, oldest first)."""
    tpl = prompt("next_titles")
    user, kept = _fit(tpl, history, budget_tokens, n=str(n))
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(history) - kept)


def plan_prompt(history: Sequence[str], tools: Sequence[str], attributes: Sequence[str], budget_tokens: int = 2048,
                max_tokens: int = 64) -> Prompt:
    """One planner step: pick a tool among ``tools`` and attribute filters among ``attributes``."""
    tpl = prompt("plan")
    user, kept = _fit(tpl, history, budget_tokens, tools=", ".join(tools), attributes=", ".join(attributes),
                      tool=tools[0] if tools else "", attribute=attributes[0] if attributes else "")
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(history) - kept)


def user_profile_prompt(history: Sequence[str], words: int = 100, budget_tokens: int = 2048,
                        max_tokens: int = 300) -> Prompt:
    """Ask for a profile of a user (what they enjoy and avoid, at most ``words`` words, as JSON with
    ``summarization`` and ``reasoning``) from their ``history`` (item texts, oldest first; recency-marked and cut
    from the oldest end to fit ``budget_tokens``). The profile's embedding is a user's text vector (RLMRec)."""
    tpl = prompt("user_profile")
    user, kept = _fit(tpl, history, budget_tokens, words=str(words))
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(history) - kept)


def item_profile_prompt(item: str, feedback: Sequence[str], words: int = 100, budget_tokens: int = 2048,
                        max_tokens: int = 300) -> Prompt:
    """Ask for a profile of an item (who would enjoy it, at most ``words`` words, as JSON with ``summarization`` and
    ``reasoning``) from its text ``item`` and users' ``feedback`` about it (reviews or tags, oldest first;
    recency-marked and cut from the oldest end to fit ``budget_tokens``)."""
    tpl = prompt("item_profile")
    user, kept = _fit(tpl, feedback, budget_tokens, item=item, words=str(words))
    return Prompt(GenerationRequest((("system", tpl.system), ("user", user)), max_tokens=max_tokens), tpl.key,
                  history_kept=kept, history_dropped=len(feedback) - kept)
