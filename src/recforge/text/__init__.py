"""Item text: key-value sentences from the item catalogue, text embedders and cached item text vectors.

Layer 5 (a paradigm package): it reads ``data/`` (the catalogue) and declares what it offers through
``protocols.TextEmbedder``; recommenders declare what they read
(``protocols.ItemSideConsumer``) and :func:`bind_items` hands it to them; they never import this package.
"""

from recforge.text.embedders import HashingEmbedder, MiniLMEmbedder
from recforge.text.side import add_catalog_items, bind_items, item_side, make_embedder
from recforge.text.templates import TEMPLATES, ItemTemplate, ItemTexts, item_texts, split_year, text_fields
from recforge.text.vectors import ItemVectors, default_cache_dir, embed_items

__all__ = [
    "TEMPLATES", "HashingEmbedder", "ItemTemplate", "ItemTexts", "ItemVectors", "MiniLMEmbedder", "add_catalog_items",
    "bind_items", "default_cache_dir", "embed_items", "item_side", "item_texts", "make_embedder", "split_year",
    "text_fields",
]
