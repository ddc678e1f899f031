"""`recforge data info` says which item text a dataset has, and that attribute-id catalogues have none."""

from __future__ import annotations

import json

from recforge.cli import main


def test_movielens_has_titles_genres_and_tags(capsys, monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    assert main(["data", "info", "ml-latest-small", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["item_text"] == ["title", "genre", "text"]
    assert main(["data", "info", "ml-latest-small"]) == 0
    assert "title, genre, text" in capsys.readouterr().out


def test_s3rec_attribute_ids_are_no_item_text(tmp_path, capsys):
    (tmp_path / "Beauty.txt").write_text("1 1 2 3\n2 2 3 4\n")
    (tmp_path / "Beauty_item2attributes.json").write_text(json.dumps({"1": [5, 6], "2": [6], "3": [7], "4": [5]}))
    assert main(["data", "info", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["item_text"] == []
    assert main(["data", "info", str(tmp_path)]) == 0
    assert "no item text (attribute ids only" in capsys.readouterr().out
