"""Item text: key-value sentences from the item catalogue, text embedders and cached item text vectors.

Layer 5 (a paradigm package): it reads ``data/`` (the catalogue) and declares what it offers through
``protocols.TextEmbedder``; recommenders take an embedder or its vectors, never this package.
"""

from recforge.text.embedders import HashingEmbedder, MiniLMEmbedder
from recforge.text.templates import TEMPLATES, ItemTemplate, ItemTexts, item_texts, split_year, text_fields
from recforge.text.vectors import ItemVectors, default_cache_dir, embed_items

__all__ = [
    "TEMPLATES", "HashingEmbedder", "ItemTemplate", "ItemTexts", "ItemVectors", "MiniLMEmbedder", "default_cache_dir",
    "embed_items", "item_texts", "split_year", "text_fields",
]
