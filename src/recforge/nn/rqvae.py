"""RQ-VAE tokenizer (registered as ``rqvae``): a residual-quantised autoencoder that turns item vectors into codes.

An MLP encoder maps x (d) to a latent z (``latent``); L codebooks of K vectors quantise z residually (level l picks
the centroid nearest to what levels < l left over); an MLP decoder rebuilds x from the sum of the chosen centroids.
Loss = reconstruction MSE + sum over levels of ``||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2`` (codebook and
commitment terms, beta = 0.25); gradients pass the quantiser straight through (``z + sg(z_q - z)``).

- **k-means initialisation**: before training, each codebook is the residual k-means of the initial encoder's latents;
- **dead-code restart**: after every epoch (and once more before the final codes are read), a code no item chose is
  moved onto the residual of a random item at its level, so every code is in use when N >= K.

Shapes: ``x`` float32 (N, d) -> ``codes`` int64 (N, L); ``codebooks`` float32 (L, K, latent).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.config import from_dict
from recforge.errors import ConfigError, DataError
from recforge.nn.quantisers import _sq_dist, residual_kmeans
from recforge.progress import track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RQVAEConfig:
    """RQ-VAE settings."""

    levels: int = 3  # L: codebooks (code length)
    codebook_size: int = 256  # K: codes per codebook
    iters: int = 20  # Lloyd iterations of the k-means initialisation
    seed: int = 0  # seeds the weights, the k-means and the batch order
    epochs: int = 200  # passes over the items
    hidden: int = 256  # width of the encoder / decoder MLP (two hidden layers: hidden, hidden // 2)
    latent: int = 32  # size of the quantised latent
    beta: float = 0.25  # commitment weight
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 1024  # items per step

    def __post_init__(self) -> None:
        if self.levels < 1 or self.codebook_size < 1:
            raise ConfigError(f"levels (L) and codebook_size (K) must be >= 1, got L={self.levels}, "
                              f"K={self.codebook_size}")
        if min(self.iters, self.epochs, self.hidden, self.latent, self.batch_size) < 1:
            raise ConfigError("iters, epochs, hidden, latent and batch_size must be >= 1")
        if self.beta < 0 or self.lr <= 0:
            raise ConfigError(f"beta must be >= 0 and lr > 0, got beta={self.beta}, lr={self.lr}")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _RQVAENet(nn.Module):
    """Encoder, L codebooks, decoder."""

    def __init__(self, dim: int, cfg: RQVAEConfig):
        super().__init__()
        h = cfg.hidden
        self.encoder = _mlp([dim, h, max(h // 2, 1), cfg.latent])
        self.decoder = _mlp([cfg.latent, max(h // 2, 1), h, dim])
        self.codebooks = nn.Parameter(torch.zeros(cfg.levels, cfg.codebook_size, cfg.latent))

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """z (B, latent) -> (codes (B, L), quantised z (B, latent), residuals before each level [(B, latent)] * L)."""
        resid, zq = z, torch.zeros_like(z)
        codes, resids = [], []
        for book in self.codebooks:
            c = _sq_dist(resid.detach(), book.detach()).argmin(1)
            e = book[c]
            resids.append(resid)
            codes.append(c)
            zq = zq + e
            resid = resid - e.detach()
        return torch.stack(codes, 1), zq, resids

    def forward(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) -> (loss, codes (B, L))."""
        z = self.encoder(x)
        codes, zq, resids = self.quantise(z)
        vq = x.new_zeros(())
        for level, r in enumerate(resids):
            e = self.codebooks[level][codes[:, level]]
            vq = vq + F.mse_loss(e, r.detach()) + beta * F.mse_loss(r, e.detach())
        recon = self.decoder(z + (zq - z).detach())  # straight-through estimator
        return F.mse_loss(recon, x) + vq, codes


class RQVAE:
    """Residual-quantised VAE tokenizer (registered as ``rqvae``)."""

    name: ClassVar[str] = "rqvae"
    config_class: ClassVar[type] = RQVAEConfig

    def __init__(self, config: RQVAEConfig | None = None, **overrides: Any):
        if config is None:
            config = from_dict(self.config_class, overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.net_: _RQVAENet | None = None
        self.history_: list[float] = []  # mean training loss per epoch
        self.restarts_: int = 0  # dead codes restarted over the whole fit

    @torch.no_grad()
    def _restart_dead(self, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        """Move every unused code onto the residual of a random item at its level, level by level (so later levels
        see the final earlier ones): latents (N, latent) -> (codes (N, L), codes restarted)."""
        books = self.net_.codebooks
        resid = z.clone()
        codes = torch.zeros((len(z), books.shape[0]), dtype=torch.int64)
        moved = 0
        for level in range(books.shape[0]):
            c = _sq_dist(resid, books[level]).argmin(1)
            dead = torch.nonzero(torch.bincount(c, minlength=books.shape[1]) == 0).flatten()
            if len(dead) and len(z) >= books.shape[1]:
                pick = torch.randperm(len(z), generator=gen)[: len(dead)]
                books[level, dead] = resid[pick]
                moved += len(dead)
                c = _sq_dist(resid, books[level]).argmin(1)
            codes[:, level] = c
            resid -= books[level][c]
        return codes, moved

    def fit(self, x: np.ndarray) -> np.ndarray:
        """Train on ``x`` float (N, d) and return its codes int64 (N, L)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"quantiser input must be a non-empty (N, d) matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError("quantiser input holds NaN or infinite values")
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        data = torch.from_numpy(x)
        self.net_ = net = _RQVAENet(x.shape[1], cfg)
        with torch.no_grad():  # k-means initialisation of every codebook on the initial latents
            centres, _ = residual_kmeans(net.encoder(data), cfg.levels, cfg.codebook_size, cfg.iters, gen)
            for level, cent in enumerate(centres):
                net.codebooks[level, : len(cent)] = cent
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        for _ in track(range(cfg.epochs), "rqvae", total=cfg.epochs):
            net.train()
            total = 0.0
            for rows in torch.randperm(len(data), generator=gen).split(cfg.batch_size):
                loss, _ = net(data[rows], cfg.beta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(rows)
            self.history_.append(total / len(data))
            with torch.no_grad():
                self.restarts_ += self._restart_dead(net.encoder(data), gen)[1]
        net.eval()
        with torch.no_grad():
            codes, moved = self._restart_dead(net.encoder(data), gen)
        self.restarts_ += moved
        log.info("rqvae: %d epochs, final loss %.4f, %d dead codes restarted", cfg.epochs, self.history_[-1],
                 self.restarts_)
        return codes.numpy()

    @torch.no_grad()
    def residual(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        """What levels ``0..level-1`` of ``codes`` leave of the latent of ``x``: (N, latent) float32."""
        resid = self.net_.encoder(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        for lv in range(level):
            resid = resid - self.net_.codebooks[lv][torch.from_numpy(codes[:, lv])]
        return resid.numpy()

    def distances(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        """Squared distance of each row's latent residual before ``level`` to every code of that level: (N, K)."""
        resid = torch.from_numpy(self.residual(x, codes, level))
        return _sq_dist(resid, self.net_.codebooks[level].detach()).numpy()
