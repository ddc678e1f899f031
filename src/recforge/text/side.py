"""Item side information for recommenders that read text or attributes (:class:`recforge.protocols.ItemSideConsumer`).

A model declares what it reads (``item_side_spec()``: an embedder spelled ``{"name": <embedder key>, **config}``, a
template, whether it wants the attribute matrix); :func:`item_side` renders and embeds the catalogue accordingly (through
the vector cache) and :func:`bind_items` hands the result to the model before ``fit``. The experiments layer and the
contract suite call :func:`bind_items`; so can a user::

    model = TextKNN(embedder={"name": "hashing"})
    bind_items(model, dataset.catalog, split.train)
    model.fit(split.train)

:func:`add_catalog_items` appends the catalogue's items that a fitted :class:`recforge.protocols.ItemAdder` does not know
yet, scored from their text without retraining.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recforge.data.catalog import ItemCatalog
from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError
from recforge.protocols import ItemAdder, ItemSide, ItemSideConsumer, ItemSideSpec, TextEmbedder
from recforge.registry import configured
from recforge.text.vectors import embed_items

log = logging.getLogger(__name__)


def make_embedder(spec: dict) -> TextEmbedder:
    """The registered text embedder ``{"name": key, **config}`` (ConfigError for an unknown name or field)."""
    cls, cfg = configured("embedder", spec, prefix="embedder.")
    embedder = cls(cfg)
    if not isinstance(embedder, TextEmbedder):
        raise ConfigError(f"embedder {spec['name']!r} does not implement TextEmbedder")
    return embedder


def item_side(catalog: ItemCatalog | None, spec: ItemSideSpec, item_vocab: Vocab, *,
              cache_dir: str | Path | None = None, use_cache: bool = True) -> ItemSide:
    """Side information of every item of ``item_vocab`` as ``spec`` asks: the catalogue aligned to the vocabulary,
    its sentences embedded (cached, see :func:`recforge.text.embed_items`) and/or its attribute matrix."""
    if catalog is None:
        raise DataError("this model reads item text or attributes, and the dataset has no item catalogue")
    aligned = catalog if catalog.item_vocab.ids == item_vocab.ids else catalog.align(item_vocab)
    vectors, source = None, []
    if spec.embedder is not None:
        embedder = make_embedder(dict(spec.embedder))
        iv = embed_items(aligned, embedder, spec.template, cache_dir, on_missing_text=spec.on_missing_text,
                         use_cache=use_cache)
        vectors = iv.vectors
        source.append(f"{iv.model} {iv.template}-{iv.template_hash} texts-{iv.texts_hash}")
        if len(iv.missing):
            log.info("%d of %d items have no text (zero vectors)", len(iv.missing), aligned.n_items)
    attributes = None
    if spec.attributes:
        if aligned.n_attributes == 0:
            raise DataError("the model reads item attributes, and the item catalogue has none")
        attributes = sp.csr_array(aligned.attributes, dtype=np.float32)
        source.append(f"{aligned.n_attributes} attributes")
    return ItemSide(item_ids=list(item_vocab.ids), vectors=vectors, attributes=attributes, source="; ".join(source))


def bind_items(model: ItemSideConsumer, catalog: ItemCatalog | None, train: Interactions, *,
               cache_dir: str | Path | None = None, use_cache: bool = True) -> None:
    """Render, embed and hand ``catalog``'s side information for ``train``'s items to ``model`` (before ``fit``)."""
    if not isinstance(model, ItemSideConsumer):
        raise ConfigError(f"{type(model).__name__} does not read item side information")
    model.bind_items(item_side(catalog, model.item_side_spec(), train.item_vocab, cache_dir=cache_dir,
                               use_cache=use_cache))


def add_catalog_items(model: ItemAdder, catalog: ItemCatalog, known: Vocab, spec: ItemSideSpec, *,
                      cache_dir: str | Path | None = None, use_cache: bool = False) -> list:
    """Add the items of ``catalog`` missing from ``known`` (the fitted model's item vocabulary) to ``model``, with
    side information built as ``spec`` says. Returns the added external ids (in catalogue order)."""
    if not isinstance(model, ItemAdder):
        raise ConfigError(f"{type(model).__name__} cannot add items after training")
    new = [i for i in catalog.item_vocab.ids if i not in known]
    if not new:
        return []
    side = item_side(catalog, spec, Vocab(new, name="item"), cache_dir=cache_dir, use_cache=use_cache)
    model.add_items(side)
    log.info("added %d items from their text", len(new))
    return new
