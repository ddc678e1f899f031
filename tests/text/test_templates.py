"""Item sentences from the catalogue: MovieLens key-value sentences, Latin-1 titles, missing and over-long text,
catalogues with attribute ids only, and template hashes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from recforge.data.catalog import ItemCatalog, read_ml1m_movies
from recforge.data.datasets import load_dataset
from recforge.errors import ConfigError, DataError
from recforge.text.templates import TEMPLATES, item_texts, split_year, template, text_fields


@pytest.fixture(scope="module")
def ml_small():
    return load_dataset("ml-latest-small").catalog


def test_movielens_sentence(ml_small):
    texts = item_texts(ml_small, "kv")
    first = ml_small.item_vocab.encode([1])[0]
    assert texts.texts[first] == ("title: Toy Story; genres: Adventure, Animation, Children, Comedy, Fantasy; "
                                  "year: 1995; tags: pixar, fun")
    assert texts.texts[0] == "" and len(texts.texts) == ml_small.n_items + 1
    assert item_texts(ml_small, "title").texts[first] == "title: Toy Story; year: 1995"
    assert text_fields(ml_small) == ["title", "genre", "text"]


def test_template_hash_is_pinned_and_covers_every_field():
    assert TEMPLATES["kv"].hash == "a6baa839f11f8e1a"  # changing a template means a new version, never an edit
    kv = TEMPLATES["kv"]
    assert len({kv.hash, replace(kv, version=2).hash, replace(kv, sep=" | ").hash, replace(kv, max_chars=10).hash,
                replace(kv, fields=("title",)).hash}) == 5
    with pytest.raises(ConfigError, match="unknown item text template 'nope'"):
        template("nope")


@pytest.mark.parametrize("title,expected", [
    ("Toy Story (1995)", ("Toy Story", "1995")),
    ("American President, The (1995)", ("American President, The", "1995")),
    ("Babylon 5", ("Babylon 5", None)),
    ("Fawlty Towers (1975-1979)", ("Fawlty Towers", "1975")),
    ("Forrest Gump (1994) ", ("Forrest Gump", "1994")),
])
def test_split_year(title, expected):
    assert split_year(title) == expected


def test_latin1_titles_survive(tmp_path):
    path = tmp_path / "movies.dat"
    path.write_bytes("1::Amélie (2001)::Comedy|Romance\n2::Città aperta (1945)::Drama\n".encode("latin-1"))
    texts = item_texts(read_ml1m_movies(path)).texts
    assert texts[1] == "title: Amélie; genres: Comedy, Romance; year: 2001"
    assert texts[2].startswith("title: Città aperta")


def test_missing_and_empty_titles_raise_or_are_counted():
    cat = ItemCatalog.from_records(["a", "b", "c"], ["Heat (1995)", None, "  "], [["Action"], [], []], group="genre")
    with pytest.raises(DataError, match=r"2 of 3 items have no text \(e.g. \['b', 'c'\]\)"):
        item_texts(cat)
    texts = item_texts(cat, on_missing_text="attr_only")
    assert texts.missing.tolist() == [2, 3] and texts.texts[2:] == ["", ""]
    with pytest.raises(ConfigError, match="on_missing_text"):
        item_texts(cat, on_missing_text="skip")


def test_duplicate_titles_keep_their_years():
    cat = ItemCatalog.from_records([1, 2], ["Hamlet (1948)", "Hamlet (1996)"], [["Drama"], ["Drama"]], group="genre")
    assert item_texts(cat).texts[1:] == ["title: Hamlet; genres: Drama; year: 1948",
                                         "title: Hamlet; genres: Drama; year: 1996"]


def test_over_long_sentences_are_cut_and_counted():
    cat = ItemCatalog.from_records([1, 2], ["x" * 50, "short"])
    texts = item_texts(cat, replace(TEMPLATES["kv"], max_chars=20))
    assert texts.truncated == 1 and len(texts.texts[1]) == 20 and texts.texts[2] == "title: short"


def test_attribute_ids_are_not_text():
    cat = ItemCatalog.from_records([1, 2], None, [[3, 4], [4]], meta={"attributes": "attribute ids"})
    assert text_fields(cat) == [] and text_fields(None) == []
    with pytest.raises(DataError, match="no item text"):
        item_texts(cat)
    named = ItemCatalog.from_records([1, 2], None, [["rock", "90s"], ["jazz"]], group="tag")
    assert text_fields(named) == ["tag"] and item_texts(named).texts[1] == "tags: 90s, rock"
