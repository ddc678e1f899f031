"""RQ-VAE tokenizer on planted clusters: the first code recovers the clusters, no code is left dead after the
restart, the final IDs of a SID table built with it are unique, and bad settings are one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids, check_unique
from recforge.nn.rqvae import RQVAE, RQVAEConfig
from recforge.registry import resolve


def blobs(n_per: int = 60, n_clusters: int = 4, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (n_clusters, dim))
    labels = np.repeat(np.arange(n_clusters), n_per)
    return (centres[labels] + rng.normal(0, 0.5, (len(labels), dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    x, labels = blobs()
    tok = RQVAE(levels=3, codebook_size=4, epochs=30, hidden=32, latent=8, batch_size=64, lr=3e-3)
    return tok, tok.fit(x), x, labels


def test_first_code_recovers_the_planted_clusters(fitted):
    _, codes, _, labels = fitted
    assert codes.shape == (240, 3)
    # every cluster maps to one first code and every first code to one cluster
    for c in range(4):
        assert len(set(codes[labels == c, 0])) == 1
    assert len(set(codes[:, 0])) == 4


def test_training_lowers_the_loss_and_no_code_is_dead(fitted):
    tok, codes, _, _ = fitted
    assert tok.history_[-1] < tok.history_[0]
    for level in range(3):
        assert len(set(codes[:, level])) == 4  # all K codes in use at every level


def test_dead_codes_are_restarted():
    x, _ = blobs(n_per=30)
    tok = RQVAE(levels=1, codebook_size=16, epochs=1, hidden=16, latent=4, iters=1)
    tok.fit(x)
    dead = tok.net_.codebooks.detach().clone()
    dead[0, 8:] = 1e6  # eight codes far from every latent: nobody picks them
    tok.net_.codebooks.data.copy_(dead)
    codes, moved = tok._restart_dead(tok.net_.encoder(torch.from_numpy(x)).detach(), torch.Generator().manual_seed(0))
    assert moved >= 8 and len(set(codes[:, 0].tolist())) == 16


def test_sid_table_with_rqvae_has_unique_ids_and_is_registered():
    assert resolve("tokenizer", "rqvae") is RQVAE
    split = leave_last_out(planted_clusters(n_users=120, n_items=60, n_clusters=4, events_per_user=12, seed=2))
    for collisions in ("uniform", "dedup"):
        sids = build_semantic_ids(split.train, SidConfig(tokenizer="rqvae", levels=2, codebook_size=16, dim=8,
                                                         epochs=5, collisions=collisions))
        check_unique(sids.codes[1:])
        assert sids.config.tokenizer == "rqvae"


@pytest.mark.parametrize("bad", [{"levels": 0}, {"codebook_size": 0}, {"epochs": 0}, {"beta": -1.0}])
def test_bad_settings(bad):
    with pytest.raises(ConfigError):
        RQVAEConfig(**bad)


def test_nan_input():
    x, _ = blobs()
    x[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RQVAE(epochs=1).fit(x)
