"""The shared CRS policy base class and per-turn helpers.

A policy is bound to one dataset, one :class:`CRSSetting` and (for all but ``random``) a trained :class:`Scorer`; it
satisfies :class:`recforge.protocols.ConversationalPolicy`. The dialogue loop calls ``begin`` once, then ``act`` each
turn and ``observe`` with the user's reaction, and ``end`` when the dialogue is over. Trainable policies learn in
``fit``: EAR and SCPR play simulated dialogues through :mod:`recforge.train.rollout` (their ``decide`` returns the action
and a memo of the decision), FacT-CRS grows trees. Items, users and attributes are row indices (see
:mod:`recforge.conversational.data`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from recforge.conversational.data import CRSDataset
from recforge.conversational.scorer import Scorer
from recforge.conversational.state import (
    OUTCOMES,
    Action,
    Ask,
    CRSSetting,
    DialogueState,
    EpisodeOutcome,
    Recommend,
)
from recforge.errors import ConfigError


class Policy:
    """Base class: holds dataset, setting, scorer and the precomputed CSC view; no-op hooks."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = type(None)
    needs_scorer: ClassVar[bool] = True
    trainable: ClassVar[bool] = False

    def __init__(self, config: Any, dataset: CRSDataset, setting: CRSSetting, scorer: Scorer | None = None):
        if self.needs_scorer and scorer is None:
            raise ConfigError(f"policy {self.name!r} needs a trained scorer (train it with `recforge crs train`)")
        self.config = config if config is not None else self.config_class()
        self.dataset, self.setting, self.scorer = dataset, setting, scorer
        self.item_attrs = dataset.item_attrs
        self.item_attrs_t = dataset.item_attrs.T.tocsr()  # (n_attrs, n_items): attribute counts over candidates
        self.training = False
        self.rng = np.random.default_rng(0)

    def begin(self, state: DialogueState, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, state: DialogueState) -> Action:
        raise NotImplementedError

    def observe(self, state: DialogueState, action: Action, accepted: tuple[int, ...] | None) -> None:
        """Called after every turn that did not end the dialogue (``accepted`` is None after a rejected list)."""

    def end(self, state: DialogueState, outcome: EpisodeOutcome) -> None:
        """Called once when the dialogue ends."""

    def fit(self, dataset: CRSDataset, episodes: int, seed: int = 0) -> dict[str, float]:
        """Learn from simulated episodes on the "valid" pairs; returns training statistics."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Learned weights (without the scorer) for safetensors."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_dict`."""

    # ---- helpers shared by the policies -------------------------------------------------------------------------

    def attr_mass(self, state: DialogueState, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Per-attribute (weighted) count over candidate items, shape (n_attrs,), and the total weight."""
        w = state.candidates.astype(np.float64) if weights is None else weights
        return self.item_attrs_t @ w, float(w.sum())

    def askable(self, state: DialogueState, mass: np.ndarray) -> np.ndarray:
        """Boolean (n_attrs,): attributes adjacent to a candidate item and not asked yet."""
        ok = mass > 0
        asked = state.accepted + state.rejected
        if asked:
            ok[asked] = False
        return ok

    def candidate_scores(self, state: DialogueState, user_vec: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(candidate item ids (C,), scorer scores (C,))."""
        cands = state.candidate_items()
        q = self.scorer.query(state.user, state.accepted, user_vec)
        return cands, self.scorer.item_scores(q, cands)

    def top_items(self, cands: np.ndarray, scores: np.ndarray) -> Recommend:
        """The ``list_size`` best-scored candidates, best first."""
        k = min(self.setting.list_size, len(cands))
        top = np.argpartition(-scores, k - 1)[:k] if len(cands) > k else np.arange(len(cands))
        top = top[np.argsort(-scores[top], kind="stable")]
        return Recommend(tuple(int(i) for i in cands[top]))

    def question(self, values: np.ndarray, ok: np.ndarray) -> Ask | None:
        """Ask the best attribute by ``values`` (n_attrs,) among ``ok``; in the multiple-choice setting add the next best
        ones of the same group up to ``choices``. ``None`` when nothing is askable."""
        if not ok.any():
            return None
        v = np.where(ok, values, -np.inf)
        best = int(np.argmax(v))
        if self.setting.question_size == 1:
            return Ask((best,))
        v = np.where(self.dataset.attr_groups == self.dataset.attr_groups[best], v, -np.inf)
        n = min(self.setting.question_size, int((v > -np.inf).sum()))
        top = np.argpartition(-v, n - 1)[:n]
        top = top[np.argsort(-v[top], kind="stable")]
        return Ask(tuple(int(a) for a in top))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (bits) of a yes/no answer with probability ``p`` of yes, elementwise."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def dialogue_features(state: DialogueState, setting: CRSSetting) -> np.ndarray:
    """State features shared by the learned policies (SCPR's s_his + s_len), shape (3*T + 16,):
    one-hot outcome of each past turn (ask accepted / ask rejected / list rejected) and the candidate-set size as a
    one-hot of ceil(log2(C+1)) (16 buckets)."""
    t = setting.max_turns
    out = np.zeros(3 * t + 16, dtype=np.float32)
    for i, code in enumerate(state.history[:t]):
        out[3 * i + OUTCOMES.index(code)] = 1.0
    c = int(state.candidates.sum())
    out[3 * t + min(15, int(np.ceil(np.log2(c + 1))))] = 1.0
    return out


def top_mass(scores: np.ndarray, k: int) -> float:
    """Share of the softmax probability over candidate scores (C,) held by the best ``k``: how sure the ranker is."""
    if len(scores) <= k:
        return 1.0
    p = np.exp(scores - scores.max())
    top = np.partition(p, len(p) - k)[len(p) - k :]
    return float(top.sum() / p.sum())

