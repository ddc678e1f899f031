"""Strict grounding of LLM answers to the catalogue.

A ranking answer always becomes a permutation of the candidates: ids are read from a JSON list (or, failing that,
from the text), unknown ids (inventions) and repeats are dropped, and candidates the answer left out are appended in
base-model order; each case is counted. A title grounds to an item by normalised exact match, then fuzzy match, then
the nearest title vector (a :class:`recforge.protocols.TextEmbedder`) above a threshold; otherwise to nothing.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforge.protocols import TextEmbedder

ID = re.compile(r"\bi\d{3}\b")
YEAR = re.compile(r"\((\d{4})\)")
ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|der|die|das)$")


@dataclass(frozen=True)
class RankAnswer:
    """order: int64 (N,) permutation of candidate positions, best first. parsed_json: the answer was a JSON list;
    mentioned: ids read; invented / duplicates: of those, unknown / repeated; filled: candidates appended."""

    order: np.ndarray
    parsed_json: bool
    mentioned: int
    invented: int
    duplicates: int
    filled: int


def _first_json_list(text: str) -> list[Any] | None:
    """The JSON list spanning the first "[" to the last "]" of ``text``, or None when there is none."""
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            value: Any = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            return None
        if isinstance(value, list):
            return value
    return None


def _read_ids(text: str) -> tuple[list[str], bool]:
    """Ids from the first JSON list in ``text`` (or a dict's first list value), else every id-shaped token."""
    value = _first_json_list(text)
    if value is not None:
        return [str(v).strip() for v in value], True
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if lists:
            return [str(v).strip() for v in lists[0]], True
    return ID.findall(text), False


def parse_ranking(text: str, ids: Sequence[str]) -> RankAnswer:
    """An answer -> a permutation of the N candidates whose opaque ids are ``ids`` (in base-model order)."""
    index = {cid: j for j, cid in enumerate(ids)}
    mentioned, parsed_json = _read_ids(text or "")
    order: list[int] = []
    seen: set[int] = set()
    invented = duplicates = 0
    for cid in mentioned:
        j = index.get(cid)
        if j is None:
            invented += 1
        elif j in seen:
            duplicates += 1
        else:
            seen.add(j)
            order.append(j)
    missing = [j for j in range(len(ids)) if j not in seen]
    return RankAnswer(np.asarray(order + missing, dtype=np.int64), parsed_json, len(mentioned), invented,
                      duplicates, len(missing))


def parse_rating(text: str, low: float = 1.0, high: float = 5.0) -> float | None:
    """The first number in ``text`` clipped to [low, high]; None when there is none (a counted fallback)."""
    m = re.search(r"-?\d+(?:\.\d+)?", text or "")
    return None if m is None else float(min(max(float(m.group()), low), high))


@dataclass
class RankingStats:
    """Counts over many ranking answers; :meth:`to_dict` adds the rates a run reports."""

    answers: int = 0
    errors: int = 0
    parsed: int = 0
    parsed_json: int = 0
    mentioned: int = 0
    invented: int = 0
    duplicates: int = 0
    filled: int = 0
    candidates: int = 0
    taus: list[float] = field(default_factory=list)

    def add(self, ans: RankAnswer, error: bool = False) -> None:
        self.answers += 1
        self.errors += int(error)
        self.parsed += int(ans.mentioned - ans.invented > 0)
        self.parsed_json += int(ans.parsed_json)
        self.mentioned += ans.mentioned
        self.invented += ans.invented
        self.duplicates += ans.duplicates
        self.filled += ans.filled
        self.candidates += len(ans.order)

    def to_dict(self) -> dict[str, Any]:
        n, m = max(self.answers, 1), max(self.mentioned, 1)
        out: dict[str, Any] = {
            "answers": self.answers, "errors": self.errors, "parse_rate": self.parsed / n,
            "json_rate": self.parsed_json / n, "invention_rate": self.invented / m,
            "duplicate_rate": self.duplicates / m, "fill_rate": self.filled / max(self.candidates, 1),
        }
        if self.taus:
            out["position_bias_tau"] = float(np.mean(self.taus))
        return out


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau between two rankings of the same N items (orders, best first): 1 = identical, -1 = reversed."""
    a, b = np.asarray(a), np.asarray(b)
    if sorted(a.tolist()) != sorted(b.tolist()):
        raise ValueError("kendall_tau needs two orders of the same items")
    n = len(a)
    if n < 2:
        return 1.0
    pos_a, pos_b = np.empty(n, np.int64), np.empty(n, np.int64)
    items = {v: k for k, v in enumerate(sorted(a.tolist()))}
    pos_a[[items[v] for v in a.tolist()]] = np.arange(n)
    pos_b[[items[v] for v in b.tolist()]] = np.arange(n)
    da = np.sign(pos_a[:, None] - pos_a[None, :])
    db = np.sign(pos_b[:, None] - pos_b[None, :])
    return float((da * db).sum() / (n * (n - 1)))


def normalise_title(title: str) -> tuple[str, str | None]:
    """(folded title, year or None): accents and case folded, "Matrix, The" -> "the matrix", year and punctuation
    dropped, "&" -> "and"."""
    year_m = YEAR.search(title)
    year = year_m.group(1) if year_m else None
    t = YEAR.sub(" ", title)
    t = unicodedata.normalize("NFKD", t)
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower().strip()
    t = re.sub(r"\s*\([^)]*\)\s*$", "", t).strip()  # a trailing alternative title: "Seven (a.k.a. Se7en)"
    m = ARTICLE.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = t.replace("&", " and ")
    t = re.sub(r"[^\w\s]", " ", t)
    return re.sub(r"\s+", " ", t).strip(), year


@dataclass(frozen=True)
class Grounded:
    """item: dense id (0 = no match); how: "exact", "fuzzy", "embedding" or "none"; score: similarity in [0, 1];
    ambiguous: several items share the matched title (the year, else the lowest id, decided)."""

    item: int
    how: str
    score: float
    ambiguous: bool = False


class TitleGrounder:
    """Grounds free-text titles to dense item ids of ``titles`` (index 0 padding, None = no title)."""

    def __init__(self, titles: Sequence[str | None], embedder: TextEmbedder | None = None,
                 fuzzy_cutoff: float = 0.88, embed_threshold: float = 0.8):
        self.titles, self.embedder = list(titles), embedder
        self.fuzzy_cutoff, self.embed_threshold = fuzzy_cutoff, embed_threshold
        self.index: dict[str, list[tuple[int, str | None]]] = {}
        for i, t in enumerate(self.titles):
            if i and t:
                key, year = normalise_title(t)
                if key:
                    self.index.setdefault(key, []).append((i, year))
        self.keys = list(self.index)
        self._vectors: np.ndarray | None = None

    def _pick(self, key: str, year: str | None, how: str, score: float) -> Grounded:
        found = self.index[key]
        same_year = [i for i, y in found if year is not None and y == year]
        pool = same_year or [i for i, _ in found]
        return Grounded(min(pool), how, score, ambiguous=len(pool) > 1)

    def ground(self, query: str) -> Grounded:
        key, year = normalise_title(query or "")
        if not key:
            return Grounded(0, "none", 0.0)
        if key in self.index:
            return self._pick(key, year, "exact", 1.0)
        close = difflib.get_close_matches(key, self.keys, n=1, cutoff=self.fuzzy_cutoff)
        if close:
            return self._pick(close[0], year, "fuzzy", difflib.SequenceMatcher(None, key, close[0]).ratio())
        if self.embedder is not None and self.keys:
            if self._vectors is None:
                self._vectors = self.embedder.embed(self.keys)
            sims = self._vectors @ self.embedder.embed([key])[0]
            best = int(np.argmax(sims))
            if sims[best] >= self.embed_threshold:
                return self._pick(self.keys[best], year, "embedding", float(sims[best]))
        return Grounded(0, "none", 0.0)

    def ground_many(self, queries: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """-> (dense ids (n,) int64, 0 = no match; {"grounding_rate", "by": {how: count}, "ambiguous"})."""
        res = [self.ground(q) for q in queries]
        by: dict[str, int] = {}
        for r in res:
            by[r.how] = by.get(r.how, 0) + 1
        rate = sum(r.item > 0 for r in res) / max(len(res), 1)
        return (np.asarray([r.item for r in res], dtype=np.int64),
                {"grounding_rate": rate, "by": by, "ambiguous": sum(r.ambiguous for r in res)})


def parse_titles(text: str, n: int) -> tuple[list[str], bool]:
    """Up to ``n`` titles from an answer: the first JSON list of strings, else one title per non-empty line (list
    markers and quotes stripped) -> (titles, parsed as JSON)."""
    text = text or ""
    value = _first_json_list(text)
    if value is not None:
        return [str(v).strip() for v in value if str(v).strip()][:n], True
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", ln).strip().strip("\"'") for ln in text.splitlines()]
    return [ln for ln in lines if ln][:n], False


def parse_plan(text: str, tools: Sequence[str], attributes: Sequence[str]) -> dict[str, Any] | None:
    """A planner answer ``{"tool": ..., "filters": [...]}`` -> the same dict with the tool among ``tools`` and only
    known attributes kept (matched case-insensitively); None when no known tool can be read."""
    start, end = (text or "").find("{"), (text or "").rfind("}")
    try:
        obj: Any = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return None
    by_lower = {t.lower(): t for t in tools}
    tool = by_lower.get(str(obj.get("tool", "")).strip().lower())
    if tool is None:
        return None
    attrs = {a.lower(): a for a in attributes}
    raw = obj.get("filters", [])
    raw = raw if isinstance(raw, list) else [raw]
    filters = list(dict.fromkeys(attrs[str(f).strip().lower()] for f in raw if str(f).strip().lower() in attrs))
    return {"tool": tool, "filters": filters}
