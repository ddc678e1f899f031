"""ItemCatalog: construction, alignment to an interaction vocabulary, and the readers (tmp files + real data)."""

from __future__ import annotations

import json

import pytest

from recforge.data.catalog import (
    ItemCatalog,
    read_item2attributes,
    read_ml1m_movies,
    read_ml100k_items,
    read_movielens_csv,
)
from recforge.data.vocab import Vocab
from recforge.errors import DataError


def test_from_records_and_align():
    cat = ItemCatalog.from_records([3, 1, 2], ["c", "a", "b"], [["g1", "g2"], [], ["g2"]], text=["t3", None, "t2"])
    assert cat.title(1) == "a" and cat.attributes_of(3) == ["g1", "g2"] and cat.attributes_of(1) == []
    assert cat.attribute_counts().tolist() == [0, 1, 2]
    aligned = cat.align(Vocab([2, 9, 3], name="item"))
    assert aligned.titles == [None, "b", None, "c"]
    assert aligned.attributes.shape == (4, 3) and aligned.attributes_of(9) == [] and aligned.attributes_of(2) == ["g2"]
    assert aligned.text == [None, "t2", None, "t3"]
    assert aligned.meta["missing_items"] == 1 and aligned.meta["unused_items"] == 1
    frame = aligned.to_frame()
    assert frame["item"].to_list() == [2, 9, 3] and frame["attributes"].to_list()[2] == ["g1", "g2"]


def test_movielens_csv_with_quotes_and_tags(tmp_path):
    movies = tmp_path / "movies.csv"
    movies.write_text('movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama\n2,X,(no genres listed)\n')
    tags = tmp_path / "tags.csv"
    tags.write_text("userId,movieId,tag,timestamp\n1,1,funny,5\n2,1,funny,6\n2,1,politics,7\n")
    cat = read_movielens_csv(movies, tags)
    assert cat.title(1) == "American President, The (1995)" and cat.attributes_of(1) == ["Comedy", "Drama"]
    assert cat.attributes_of(2) == [] and cat.text == [None, "funny, politics", None]


def test_ml100k_items_latin1(tmp_path):
    item = tmp_path / "u.item"
    item.write_bytes("1|Misérables, Les (1995)|01-Jan-1995||http://x|0|1|1\n2|B|01-Jan-1995||http://y|1|0|0\n"
                     .encode("latin-1"))
    genre = tmp_path / "u.genre"
    genre.write_text("unknown|0\nAction|1\nAdventure|2\n\n")
    cat = read_ml100k_items(item, genre)
    assert cat.title(1) == "Misérables, Les (1995)" and cat.attributes_of(1) == ["Action", "Adventure"]
    with pytest.raises(DataError, match="cannot be decoded as utf-8"):
        read_ml100k_items(item, encoding="utf-8")


def test_ml1m_movies(tmp_path):
    p = tmp_path / "movies.dat"
    p.write_bytes("1::Toy Story (1995)::Animation|Children's\n2::Café (2000)::Drama\n".encode("latin-1"))
    cat = read_ml1m_movies(p)
    assert cat.title(2) == "Café (2000)" and cat.attributes_of(1) == ["Animation", "Children's"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"1": [1, 2], "2": 3}', "attributes of item '2' must be a list"),
        ('[1, 2]', "expected a JSON object"),
        ('{"1": [1, 2],', "invalid JSON"),
    ],
)
def test_item2attributes_errors(tmp_path, content, match):
    p = tmp_path / "a.json"
    p.write_text(content)
    with pytest.raises(DataError, match=match):
        read_item2attributes(p)


def test_item2attributes(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"2": [5, 1], "1": [1]}))
    cat = read_item2attributes(p)
    assert cat.item_vocab.ids == [2, 1] and cat.attributes_of(2) == [1, 5] and cat.n_attributes == 2


def test_movies_csv_missing_column(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text("movieId,name,genres\n1,a,b\n")
    with pytest.raises(DataError, match="missing column") as exc:
        read_movielens_csv(p)
    assert exc.value.column == "title"


def test_shape_checks():
    with pytest.raises(DataError, match="titles has 2 entries for 3 items"):
        ItemCatalog.from_records([1, 2, 3], ["a", "b"])


def test_save_load_round_trip(tmp_path):
    cat = ItemCatalog.from_records(["3", "b", "2"], ["c", None, "é"], [["g1", 7], [], [7]], text=["t", None, None])
    back = ItemCatalog.load(cat.save(tmp_path / "cat"))
    assert back.item_vocab == cat.item_vocab and back.attr_vocab == cat.attr_vocab
    assert back.titles == cat.titles and back.text == cat.text
    assert (back.attributes != cat.attributes).nnz == 0 and back.attributes_of("3") == cat.attributes_of("3") == [7, "g1"]
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "cat").iterdir())
    with pytest.raises(DataError, match="not a saved catalog"):
        ItemCatalog.load(tmp_path)


def test_attribute_groups_and_with_attributes(tmp_path):
    cat = ItemCatalog.from_records([1, 2, 3], None, [["Drama"], ["Comedy", "Drama"], []], group="genre")
    assert cat.groups()[1] == ["genre"] and cat.groups()[0].tolist() == [-1, 0, 0]
    more = cat.with_attributes([["funny"], [], ["dark", "funny"]], "tag")
    assert more.attr_vocab.ids == ["Comedy", "Drama", "dark", "funny"]  # old columns kept, new ones appended sorted
    assert more.attributes_of(3) == ["dark", "funny"] and more.attributes_of(2) == ["Comedy", "Drama"]
    assert more.attributes_of(1) == ["Drama", "funny"]
    codes, names = more.groups()
    assert names == ["genre", "tag"] and codes.tolist() == [-1, 0, 0, 1, 1]
    back = ItemCatalog.load(more.save(tmp_path / "cat"))
    assert back.attr_groups == more.attr_groups and (back.attributes != more.attributes).nnz == 0
    aligned = more.align(Vocab([3, 1], name="item"))
    assert aligned.attr_groups == more.attr_groups and aligned.attributes_of(3) == ["dark", "funny"]
    plain = ItemCatalog.from_records([1], None, [["a"]]).with_attributes([["b"]], "tag")
    assert plain.groups()[1] == ["attribute", "tag"]


def test_with_attributes_errors(tmp_path):
    cat = ItemCatalog.from_records([1, 2], None, [["x"], []])
    with pytest.raises(DataError, match="already exist"):
        cat.with_attributes([["x"], []], "tag")
    with pytest.raises(DataError, match="per_item has 1 entries for 2 items"):
        cat.with_attributes([["y"]], "tag")
    folder = cat.save(tmp_path / "c")
    (folder / "catalog.json").write_text("{nope")
    with pytest.raises(DataError, match="corrupt catalog"):
        ItemCatalog.load(folder)
