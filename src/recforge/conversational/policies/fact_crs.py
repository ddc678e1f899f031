"""FacT-CRS (after "Is Decision Tree All You Need? Factorisation trees for conversational recommendation").

- *Trees choose the questions*: a small forest of binary decision trees over item attributes, grown greedily on the
  "train" dialogue targets (each item weighted by how often it is a target, Bayesian-bootstrapped per tree, with a
  random subset of attributes considered at each node so the trees differ). A node splits on the attribute whose
  yes/no answer has the largest weighted entropy over the node's items.
- *Embeddings rank*: each node carries the weighted centroid of its items' scorer embeddings; recommendations rank
  the candidates by the scorer plus ``node_weight`` x (node embedding . item embedding).
- *Early stopping by node diversity*: when the items under the current node are alike (1 - |mean unit embedding| <
  ``min_diversity``), or few candidates are left, the policy recommends instead of descending further.
- *Switch trees after a rejection*: a rejected list moves the dialogue to the next tree, which is walked from its root;
  questions already answered (or whose answer the candidates already imply) are followed without asking again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from recforge.conversational.data import CRSDataset
from recforge.conversational.policies.base import Policy, binary_entropy
from recforge.conversational.state import Action, Ask, DialogueState
from recforge.errors import ConfigError, NotFittedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FacTCRSConfig:
    """Forest shape and stopping rules."""

    n_trees: int = 5  # trees in the forest; a rejected list switches to the next one
    max_depth: int = 14  # deepest question path
    feature_fraction: float = 0.5  # share of a node's attributes considered for its split
    min_diversity: float = 0.05  # stop descending below this node diversity
    node_weight: float = 1.0  # weight of the node-embedding term in the ranking
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_trees < 1 or self.max_depth < 1:
            raise ConfigError(f"n_trees and max_depth must be >= 1, got {self.n_trees}, {self.max_depth}")
        if not 0.0 < self.feature_fraction <= 1.0:
            raise ConfigError(f"feature_fraction must be in (0, 1], got {self.feature_fraction}")
        if not 0.0 <= self.min_diversity <= 1.0:
            raise ConfigError(f"min_diversity must be in [0, 1], got {self.min_diversity}")


class FacTCRSPolicy(Policy):
    """Decision-tree questions, tree-node embeddings for ranking, tree switching after rejections."""

    name = "fact-crs"
    config_class = FacTCRSConfig
    trainable = True

    def __init__(self, config, dataset, setting, scorer=None):
        super().__init__(config, dataset, setting, scorer)
        # flat forest: node arrays over all trees; roots[t] is tree t's root; children -1 = leaf
        self.attr = np.zeros(0, dtype=np.int64)
        self.yes = np.zeros(0, dtype=np.int64)
        self.no = np.zeros(0, dtype=np.int64)
        self.diversity = np.zeros(0, dtype=np.float32)
        self.embedding = np.zeros((0, scorer.item.shape[1] if scorer is not None else 0), dtype=np.float32)
        self.roots = np.zeros(0, dtype=np.int64)
        self.tree, self.node = 0, 0

    # ---- growing the forest -------------------------------------------------------------------------------------

    def fit(self, dataset: CRSDataset, episodes: int = 0, seed: int = 0) -> dict[str, float]:
        """Grow ``n_trees`` trees on the "train" targets (``episodes`` is unused: trees are not trained by simulation)."""
        _, targets = dataset.pairs("train")
        rng = np.random.default_rng(self.config.seed + seed)
        base = np.bincount(targets, minlength=dataset.n_items).astype(np.float64) + 1.0
        self._nodes: list[tuple[int, int, int, float, np.ndarray]] = []
        self._unit = self.scorer.item / np.maximum(np.linalg.norm(self.scorer.item, axis=1, keepdims=True), 1e-12)
        self._csc = dataset.item_attrs.tocsc()
        roots = []
        for _ in range(self.config.n_trees):
            weights = base * rng.gamma(1.0, 1.0, size=len(base))  # Bayesian bootstrap of the target distribution
            roots.append(self._grow(np.arange(dataset.n_items), weights, 0, rng))
        attr, yes, no, div, emb = zip(*self._nodes)
        self.attr, self.yes, self.no = (np.asarray(x, dtype=np.int64) for x in (attr, yes, no))
        self.diversity = np.asarray(div, dtype=np.float32)
        self.embedding = np.stack(emb).astype(np.float32)
        self.roots = np.asarray(roots, dtype=np.int64)
        del self._nodes, self._unit, self._csc
        depth_stats = {"nodes": float(len(self.attr)), "leaves": float((self.attr < 0).sum())}
        log.info("FacT-CRS forest: %s", depth_stats)
        return depth_stats

    def _grow(self, items: np.ndarray, weights: np.ndarray, depth: int, rng: np.random.Generator) -> int:
        w = weights[items]
        total = float(w.sum())
        mean_unit = (self._unit[items] * w[:, None]).sum(0) / total
        diversity = float(1.0 - np.linalg.norm(mean_unit))
        centroid = (self.scorer.item[items] * w[:, None]).sum(0) / total
        node = len(self._nodes)
        self._nodes.append((-1, -1, -1, diversity, centroid))
        if depth >= self.config.max_depth or len(items) <= self.setting.list_size or diversity < self.config.min_diversity:
            return node
        rows = self.item_attrs[items]
        mass = rows.T @ w
        count = rows.T @ np.ones(len(items))
        ok = (count > 0) & (count < len(items))  # both children non-empty (counts, not float weights)
        ok &= rng.random(len(ok)) < self.config.feature_fraction
        if not ok.any():
            return node
        best = int(np.argmax(np.where(ok, binary_entropy(mass / total), -1.0)))
        has = np.zeros(self.dataset.n_items, dtype=bool)
        has[self._csc.indices[self._csc.indptr[best] : self._csc.indptr[best + 1]]] = True
        yes = self._grow(items[has[items]], weights, depth + 1, rng)
        no = self._grow(items[~has[items]], weights, depth + 1, rng)
        self._nodes[node] = (best, yes, no, diversity, centroid)
        return node

    # ---- playing ------------------------------------------------------------------------------------------------

    def begin(self, state: DialogueState, rng: np.random.Generator) -> None:
        if len(self.roots) == 0:
            raise NotFittedError("fact-crs has no trees: call fit() or load a trained policy")
        super().begin(state, rng)
        self.tree, self.node = 0, int(self.roots[0])

    def _descend(self, state: DialogueState, mass: np.ndarray, total: float) -> None:
        """Follow every split whose answer is already known or implied by the candidates."""
        acc, rej = set(state.accepted), set(state.rejected)
        while self.attr[self.node] >= 0:
            a = int(self.attr[self.node])
            if a in acc or mass[a] >= total:
                self.node = int(self.yes[self.node])
            elif a in rej or mass[a] <= 0:
                self.node = int(self.no[self.node])
            else:
                return

    def act(self, state: DialogueState) -> Action:
        mass, total = self.attr_mass(state)
        self._descend(state, mass, total)
        node = self.node
        cands = state.candidate_items()
        stop = (self.attr[node] < 0 or self.diversity[node] < self.config.min_diversity
                or len(cands) <= self.setting.list_size or state.turn >= self.setting.max_turns)
        if stop:
            query = self.scorer.query(state.user, state.accepted)
            scores = self.scorer.item_scores(query, cands) + self.config.node_weight * (
                self.scorer.item[cands] @ self.embedding[node])
            return self.top_items(cands, scores)
        a = int(self.attr[node])
        if self.setting.question_size == 1:
            return Ask((a,))
        values = binary_entropy(mass / total)
        values[a] = np.inf  # the tree's question first, then the most informative attributes of its group
        return self.question(values, self.askable(state, mass) & (mass < total))

    def observe(self, state: DialogueState, action: Action, accepted: tuple[int, ...] | None) -> None:
        if accepted is None:  # rejected list: switch to the next tree, walked from its root
            self.tree = (self.tree + 1) % len(self.roots)
            self.node = int(self.roots[self.tree])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"forest.attr": torch.from_numpy(self.attr), "forest.yes": torch.from_numpy(self.yes),
                "forest.no": torch.from_numpy(self.no), "forest.diversity": torch.from_numpy(self.diversity),
                "forest.embedding": torch.from_numpy(self.embedding), "forest.roots": torch.from_numpy(self.roots)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("attr", "yes", "no", "diversity", "embedding", "roots"):
            setattr(self, key, state[f"forest.{key}"].numpy())
