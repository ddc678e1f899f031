"""Item -> key-value sentence, from the item catalogue (the one source of titles, attributes and free text).

A template names the fields it renders, in order, and is versioned: its :attr:`ItemTemplate.hash` covers every choice
that changes the sentences, so cached vectors are keyed by it. MovieLens renders as
``title: Toy Story; genres: Adventure, Animation; year: 1995``; Last.fm HetRec as ``title: <artist name>``; free text
(ML-latest tags) as ``tags: ...``. Attribute ids without names (the S3-Rec Amazon, Yelp and LastFM releases) are not
text: those catalogues have no item text (:func:`text_fields` is empty) and describe items by attributes only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from recforge.data.catalog import ItemCatalog
from recforge.errors import ConfigError, DataError

#: A trailing release year in a title, as MovieLens writes it: "Toy Story (1995)".
YEAR = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
#: Field -> label in the sentence. Attribute groups render under their group name plus "s" ("genre" -> "genres").
LABELS = {"title": "title", "year": "year", "text": "tags"}

OnMissing = Literal["raise", "attr_only"]


@dataclass(frozen=True)
class ItemTemplate:
    """Renders one sentence per item: ``label: value`` for each field in ``fields`` the item has, joined by ``sep``.

    fields: "title", "year" (parsed from a MovieLens title, which then loses it), an attribute group name of the
    catalogue ("genre", "tag": its named attributes, comma-separated) and "text" (free text, e.g. tags). A field the
    catalogue lacks is skipped. Sentences longer than ``max_chars`` are cut (and counted).
    """

    name: str
    version: int
    fields: tuple[str, ...]
    sep: str = "; "
    max_chars: int = 1000

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) over everything that changes the sentences."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        """``name/version``, as written into caches and run folders."""
        return f"{self.name}/{self.version}"


#: The literal table of templates. Change a template by adding a version, never by editing one in place.
TEMPLATES: dict[str, ItemTemplate] = {
    "kv": ItemTemplate("kv", 1, ("title", "genre", "year", "tag", "text")),
    "title": ItemTemplate("title", 1, ("title", "year")),
}


@dataclass(frozen=True)
class ItemTexts:
    """Sentences aligned to a catalogue's dense ids: ``texts[i]`` describes item i ("" for padding and for items
    without text). ``missing``: dense ids without any text (int64); ``truncated``: sentences cut at max_chars."""

    texts: list[str]
    template: ItemTemplate
    missing: np.ndarray
    truncated: int

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) of the sentences themselves: a cache built from other texts is refused."""
        digest = hashlib.sha256()
        for t in self.texts:
            digest.update(t.encode("utf-8") + b"\x00")
        return digest.hexdigest()[:16]


def template(name: str) -> ItemTemplate:
    """The registered template ``name`` (ConfigError listing the known ones)."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown item text template {name!r} (known: {sorted(TEMPLATES)})")
    return TEMPLATES[name]


def split_year(title: str) -> tuple[str, str | None]:
    """"Toy Story (1995)" -> ("Toy Story", "1995"); a title without a trailing year -> (title, None)."""
    m = YEAR.search(title)
    return (title[: m.start()].strip(), m.group(1)) if m else (title.strip(), None)


def _named_groups(catalog: ItemCatalog) -> dict[str, np.ndarray]:
    """Attribute group -> boolean mask over attribute columns whose names are words (not bare ids)."""
    codes, names = catalog.groups()
    words = np.array([False] + [isinstance(a, str) and not a.strip().lstrip("-").isdigit()
                                for a in catalog.attr_vocab.ids])
    return {g: (codes == j) & words for j, g in enumerate(names) if ((codes == j) & words).any()}


def text_fields(catalog: ItemCatalog | None) -> list[str]:
    """The text fields a catalogue has ("title", "text", named attribute groups); [] means no item text at all
    (attribute ids only, or no catalogue)."""
    if catalog is None:
        return []
    out = []
    if any(t for t in catalog.titles[1:]):
        out.append("title")
    out += sorted(_named_groups(catalog))
    if catalog.text is not None and any(t for t in catalog.text[1:]):
        out.append("text")
    return out


def item_texts(catalog: ItemCatalog, tpl: ItemTemplate | str = "kv", on_missing_text: OnMissing = "raise") -> ItemTexts:
    """One sentence per item of ``catalog`` (aligned to its dense ids).

    ``on_missing_text``: "raise" (DataError naming the count and a few item ids) when an item has no text at all, or
    "attr_only" (its sentence stays "", listed in ``missing``: such items are described by attributes only).
    Missing titles are skipped; titles shared by several items are disambiguated by year when the template has it.
    """
    tpl = template(tpl) if isinstance(tpl, str) else tpl
    if on_missing_text not in ("raise", "attr_only"):
        raise ConfigError(f"on_missing_text must be 'raise' or 'attr_only', got {on_missing_text!r}")
    if not text_fields(catalog):
        raise DataError(f"the catalogue has no item text (its attributes are ids: {catalog.meta.get('attributes')}); "
                        "describe its items by attributes instead")
    groups = _named_groups(catalog)
    ind, ptr = catalog.attributes.indices, catalog.attributes.indptr
    names = [None, *catalog.attr_vocab.ids]
    texts, truncated = [""], 0
    for i in range(1, catalog.n_items + 1):
        title, year = (catalog.titles[i] or "").strip(), None
        if "year" in tpl.fields and title:
            title, year = split_year(title)
        values: dict[str, str | None] = {"title": title or None, "year": year,
                                         "text": (catalog.text[i] or None) if catalog.text is not None else None}
        cols = ind[ptr[i] : ptr[i + 1]]
        for group, mask in groups.items():
            values[group] = ", ".join(str(names[c]) for c in cols if mask[c]) or None
        parts = [f"{LABELS.get(f, f + 's')}: {values[f]}" for f in tpl.fields if values.get(f)]
        sentence = tpl.sep.join(parts)
        if len(sentence) > tpl.max_chars:
            sentence, truncated = sentence[: tpl.max_chars], truncated + 1
        texts.append(sentence)
    missing = np.asarray([i for i, t in enumerate(texts) if i and not t], dtype=np.int64)
    if len(missing) and on_missing_text == "raise":
        ids = catalog.item_vocab.decode(missing[:5])
        raise DataError(f"{len(missing)} of {catalog.n_items} items have no text (e.g. {ids}); pass "
                        "on_missing_text='attr_only' to describe them by attributes only")
    return ItemTexts(texts=texts, template=tpl, missing=missing, truncated=truncated)
