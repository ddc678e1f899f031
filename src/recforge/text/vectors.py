"""Item text vectors, cached as artifacts per (model fingerprint, template hash, texts hash).

:func:`embed_items` renders the catalogue with a template, embeds the sentences and stores the vectors in the one
artifact format (``table="text_vectors"``) under ``<cache>/<model>--<template>--<texts>``. A second call with the
same model, template and catalogue loads them (sha256-verified); vectors written by another model, template or
catalogue are refused with a DataError, never served.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recforge.artifacts import is_artifact, load_artifact, save_artifact
from recforge.data.catalog import ItemCatalog
from recforge.errors import DataError
from recforge.protocols import TextEmbedder
from recforge.text.templates import ItemTemplate, ItemTexts, OnMissing, item_texts, template

log = logging.getLogger(__name__)

TABLE = "text_vectors"


@dataclass(frozen=True)
class ItemVectors:
    """vectors: float32 (n_items+1, d) aligned to the catalogue's dense ids; row 0 and items without text are zero.

    missing: dense ids without text (int64); path: the cache folder (None when not cached); cached: loaded, not
    computed; seconds: time spent (embedding or loading)."""

    vectors: np.ndarray
    model: str
    template: str
    template_hash: str
    texts_hash: str
    missing: np.ndarray
    path: Path | None
    cached: bool
    seconds: float

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def default_cache_dir() -> Path:
    """``$RECFORGE_CACHE_DIR/text-vectors``, else ``~/.cache/recforge/text-vectors``."""
    root = os.environ.get("RECFORGE_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "recforge") / "text-vectors"


def cache_key(embedder: TextEmbedder, texts: ItemTexts) -> str:
    """The cache folder's name: model fingerprint, template hash, texts hash."""
    return f"{embedder.fingerprint}--{texts.template.name}{texts.template.version}-{texts.template.hash}--{texts.hash}"


def embed_items(
    catalog: ItemCatalog,
    embedder: TextEmbedder,
    tpl: ItemTemplate | str = "kv",
    cache_dir: str | Path | None = None,
    *,
    on_missing_text: OnMissing = "attr_only",
    use_cache: bool = True,
) -> ItemVectors:
    """Vectors of every item's sentence (see :func:`recforge.text.templates.item_texts`), cached.

    ``cache_dir``: default :func:`default_cache_dir`; ``use_cache=False`` neither reads nor writes the cache.
    """
    tpl = template(tpl) if isinstance(tpl, str) else tpl
    texts = item_texts(catalog, tpl, on_missing_text=on_missing_text)
    folder = Path(cache_dir or default_cache_dir()) / cache_key(embedder, texts)
    start = time.perf_counter()
    if use_cache and is_artifact(folder):
        return _load(folder, embedder, texts, start)
    vectors = np.asarray(embedder.embed(texts.texts[1:]), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != catalog.n_items:
        raise DataError(f"embedder {embedder.name} returned shape {vectors.shape} for {catalog.n_items} texts")
    vectors = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])
    vectors[texts.missing] = 0.0
    out = ItemVectors(vectors=vectors, model=embedder.fingerprint, template=texts.template.key,
                      template_hash=texts.template.hash, texts_hash=texts.hash, missing=texts.missing,
                      path=folder if use_cache else None, cached=False, seconds=time.perf_counter() - start)
    if use_cache:
        _save(folder, embedder, out)
    log.info("embedded %d items with %s in %.1fs (%d without text)", catalog.n_items, embedder.fingerprint,
             out.seconds, len(texts.missing))
    return out


def _save(folder: Path, embedder: TextEmbedder, v: ItemVectors) -> None:
    """Write into a temporary sibling, then rename: a reader never sees half a cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    save_artifact(tmp, table=TABLE, name=embedder.name, config={"template": v.template},
                  tensors={"vectors": v.vectors, "missing": v.missing},
                  extra={"model": v.model, "template_hash": v.template_hash, "texts_hash": v.texts_hash})
    try:
        tmp.rename(folder)
    except OSError:  # another process wrote the same cache first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path, embedder: TextEmbedder, texts: ItemTexts, start: float) -> ItemVectors:
    art = load_artifact(folder, table=TABLE)
    want = {"model": embedder.fingerprint, "template_hash": texts.template.hash, "texts_hash": texts.hash}
    got = {k: art.extra.get(k) for k in want}
    if got != want:
        bad = [k for k in want if got[k] != want[k]]
        raise DataError(f"cached vectors were built with another {', '.join(bad)} ({got} != {want}); remove the "
                        "folder or pass another cache_dir", path=str(folder))
    vectors = art.tensors["vectors"].numpy()
    if len(vectors) != len(texts.texts):
        raise DataError(f"cached vectors have {len(vectors)} rows for {len(texts.texts)} items", path=str(folder))
    return ItemVectors(vectors=vectors, model=embedder.fingerprint, template=texts.template.key,
                       template_hash=texts.template.hash, texts_hash=texts.hash,
                       missing=art.tensors["missing"].numpy(), path=folder, cached=True,
                       seconds=time.perf_counter() - start)
