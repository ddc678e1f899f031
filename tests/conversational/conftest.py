"""A small planted-signal CRS world: users like a genre and a few tags, so questions and the scorer both carry signal."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.conversational.data import CRSDataset
from recforge.conversational.state import CRSSetting
from recforge.data.catalog import ItemCatalog
from recforge.data.dialogues import DialoguePairs
from recforge.data.vocab import Vocab

N_USERS, N_ITEMS, N_GENRES, N_TAGS = 60, 1500, 8, 52


def make_world(seed: int = 0) -> CRSDataset:
    """Items: 1 genre + 2 tags each. User u prefers one genre and 4 tags; their items are drawn with probability
    proportional to exp(3 * number of matching attributes). 24 train, 6 valid, 6 test pairs per user.
    Attribute columns: genres 0..7, then tags (group "tag") in their vocabulary's sorted order."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, N_GENRES, N_ITEMS)
    tags = np.stack([rng.choice(N_TAGS, 2, replace=False) for _ in range(N_ITEMS)])
    genre_names = [f"genre {g}" for g in range(N_GENRES)]
    catalog = ItemCatalog.from_records(
        [f"i{i}" for i in range(N_ITEMS)], [f"Item number {i}" for i in range(N_ITEMS)],
        [[genre_names[g]] for g in genre], attr_vocab=Vocab(genre_names), group="genre",
    ).with_attributes([[f"tag {t}" for t in row] for row in tags], "tag")
    item_attrs = catalog.attributes[1:, 1:]
    splits: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in ("train", "valid", "test")}
    for u in range(N_USERS):
        liked = np.zeros(N_GENRES + N_TAGS)
        liked[rng.integers(0, N_GENRES)] = 1
        liked[rng.choice(N_TAGS, 4, replace=False) + N_GENRES] = 1
        logits = 3.0 * (item_attrs @ liked)
        p = np.exp(logits - logits.max())
        items = rng.choice(N_ITEMS, 36, replace=False, p=p / p.sum())
        for s, part in (("train", items[:24]), ("valid", items[24:30]), ("test", items[30:])):
            splits[s][0].extend([u + 1] * len(part))
            splits[s][1].extend((part + 1).tolist())
    dialogues = DialoguePairs(Vocab([f"u{u}" for u in range(N_USERS)], name="user"), catalog.item_vocab,
                              {s: (np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64))
                               for s, (u, i) in splits.items()})
    return CRSDataset("synthetic-crs", catalog, dialogues)


@pytest.fixture(scope="session")
def world() -> CRSDataset:
    return make_world()


@pytest.fixture(scope="session")
def setting() -> CRSSetting:
    """Harder than the default so random stays far from 1: short lists, few turns."""
    return CRSSetting(max_turns=8, list_size=5)


@pytest.fixture(scope="session")
def scorer(world):
    from recforge.conversational.scorer import ScorerConfig, train_scorer

    return train_scorer(world, ScorerConfig(dim=16, epochs=30, batch_size=128, seed=0))


@pytest.fixture(scope="session")
def world_dir(world, tmp_path_factory):
    """The synthetic world saved as a `recforge crs build` folder."""
    return world.save(tmp_path_factory.mktemp("crs") / "world")
