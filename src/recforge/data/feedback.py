"""Logged bandit feedback: exposures, propensities and slates, and the readers of logged files.

``LoggedFeedback`` holds one row per logged (context, action[, position]) round of a behaviour policy. Slates are stored
in long format: one row per slot, rows of one slate share ``slate_id`` and differ in ``position``.

Ids. The actions of a log form a fixed action set of ``n_actions`` items. Inside recforge an action is its *index* in
that set, 0..n_actions-1: a column of an (n, n_actions) probability matrix or reward-model output, a row of a policy's
per-action statistics. This is the one documented exception to the dense 1-based id convention
(``recforge.data.vocab``): bandit maths indexes distributions over a fixed set, where a padding column would only get
in the way. The two meet exactly: ``action_vocab`` maps the external ids of the logged file to dense ids 1..n_actions,
and the action index is that dense id minus one (:func:`encode_actions`, :meth:`LoggedFeedback.external_actions`).
External ids appear only at the edges (files in, reports and artifacts out), compared exactly (no digit folding).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

OBD_POLICIES = ("random", "bts")
OBD_CAMPAIGNS = ("all", "men", "women")


def _check_prob(name: str, values: np.ndarray | None, n: int) -> np.ndarray | None:
    """Check a propensity-like array: shape (n,), finite, 0 < p <= 1."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise DataError(f"{name} must have shape ({n},), got {arr.shape}", column=name)
    bad = np.flatnonzero(~((arr > 0) & (arr <= 1)))
    if len(bad):
        raise DataError(f"{name} must satisfy 0 < p <= 1; row {int(bad[0])} has {arr[bad[0]]!r} ({len(bad)} bad rows)", column=name)
    return arr


@dataclass(frozen=True, eq=False)
class LoggedFeedback:
    """Logged bandit feedback, validated at construction.

    Arrays (n = number of logged rows):
      action  (n,) int64 in [0, n_actions)       chosen action: its index in the action set (module docstring)
      reward  (n,) float64                        observed reward (e.g. click)
      pscore  (n,) float64 in (0, 1]              behaviour probability of the logged action (at its position)
      context (n, d) float64 or None              features seen by the policy
      position (n,) int64 in [0, len_list) or None  slot of the action in the slate (0 = top/left)
      slate_id (n,) int64 or None                 rows with the same id form one slate
      pscore_slate (n,) or None                   behaviour probability of the whole logged slate (standard slate IPS)
      pscore_cascade (n,) or None                 behaviour probability of the slate prefix up to this position (RIPS)
      action_context (n_actions, d') or None      features of each action
      action_vocab Vocab of n_actions ids or None  external ids of the action set (action index i = dense id i + 1)
    """

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    n_actions: int
    context: np.ndarray | None = None
    position: np.ndarray | None = None
    len_list: int = 1
    slate_id: np.ndarray | None = None
    pscore_slate: np.ndarray | None = None
    pscore_cascade: np.ndarray | None = None
    action_context: np.ndarray | None = None
    action_vocab: Vocab | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.n_actions, int | np.integer) or self.n_actions < 1:
            raise ConfigError(f"n_actions must be a positive int, got {self.n_actions!r}")
        if not isinstance(self.len_list, int | np.integer) or self.len_list < 1:
            raise ConfigError(f"len_list must be a positive int, got {self.len_list!r}")
        action = np.asarray(self.action)
        if action.ndim != 1:
            raise DataError(f"action must be 1-D, got shape {action.shape}", column="action")
        if action.size and not np.issubdtype(action.dtype, np.integer):
            raise DataError(f"action must be integers, got dtype {action.dtype}", column="action")
        n = len(action)
        if n == 0:
            raise DataError("logged feedback is empty (0 rows)")
        action = action.astype(np.int64)
        bad = np.flatnonzero((action < 0) | (action >= self.n_actions))
        if len(bad):
            raise DataError(f"action must be in [0, {self.n_actions}); row {int(bad[0])} has {int(action[bad[0]])}", column="action")
        reward = np.asarray(self.reward, dtype=np.float64)
        if reward.shape != (n,):
            raise DataError(f"reward must have shape ({n},), got {reward.shape}", column="reward")
        if not np.isfinite(reward).all():
            raise DataError(f"reward has non-finite values at row {int(np.flatnonzero(~np.isfinite(reward))[0])}", column="reward")
        set_ = object.__setattr__  # frozen dataclass: normalise arrays once, here
        set_(self, "action", action)
        set_(self, "reward", reward)
        set_(self, "pscore", _check_prob("pscore", self.pscore, n))
        set_(self, "pscore_slate", _check_prob("pscore_slate", self.pscore_slate, n))
        set_(self, "pscore_cascade", _check_prob("pscore_cascade", self.pscore_cascade, n))
        if self.context is not None:
            ctx = np.asarray(self.context, dtype=np.float64)
            if ctx.ndim == 1:
                ctx = ctx[:, None]
            if ctx.ndim != 2 or ctx.shape[0] != n:
                raise DataError(f"context must have shape ({n}, d), got {ctx.shape}", column="context")
            set_(self, "context", ctx)
        if self.position is not None:
            pos = np.asarray(self.position)
            if pos.shape != (n,) or (pos.size and not np.issubdtype(pos.dtype, np.integer)):
                raise DataError(f"position must be ({n},) integers, got shape {pos.shape} dtype {pos.dtype}", column="position")
            pos = pos.astype(np.int64)
            bad = np.flatnonzero((pos < 0) | (pos >= self.len_list))
            if len(bad):
                raise DataError(
                    f"position must be in [0, len_list={self.len_list}); row {int(bad[0])} has {int(pos[bad[0]])}", column="position"
                )
            set_(self, "position", pos)
        elif self.len_list > 1:
            raise DataError(f"len_list={self.len_list} needs a position array", column="position")
        if self.slate_id is not None:
            sid = np.asarray(self.slate_id)
            if sid.shape != (n,):
                raise DataError(f"slate_id must have shape ({n},), got {sid.shape}", column="slate_id")
            set_(self, "slate_id", sid.astype(np.int64))
        if self.action_context is not None:
            ac = np.asarray(self.action_context, dtype=np.float64)
            if ac.ndim != 2 or ac.shape[0] != self.n_actions:
                raise DataError(f"action_context must have shape ({self.n_actions}, d), got {ac.shape}", column="action_context")
            set_(self, "action_context", ac)
        if self.action_vocab is not None and len(self.action_vocab) != self.n_actions:
            raise DataError(f"action_vocab has {len(self.action_vocab)} ids for n_actions={self.n_actions}",
                            column="action_vocab")

    @property
    def n_rounds(self) -> int:
        """Number of logged rows."""
        return len(self.action)

    def pos(self) -> np.ndarray:
        """Positions, zeros when the log has no slates. Shape (n,)."""
        return self.position if self.position is not None else np.zeros(self.n_rounds, dtype=np.int64)

    def on_policy_value(self) -> float:
        """Mean observed reward per row: the behaviour policy's own value (ground truth for on-policy checks)."""
        return float(self.reward.mean())

    def external_actions(self, index: np.ndarray) -> list[Any]:
        """Action indices (m,) -> the external ids of the logged file (the indices themselves without a vocabulary)."""
        index = np.asarray(index, dtype=np.int64)
        return self.action_vocab.decode(index + 1) if self.action_vocab is not None else index.tolist()

    def subset(self, rows: np.ndarray) -> LoggedFeedback:
        """The logged rows ``rows`` (m,) as feedback over the same action set."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return LoggedFeedback(
            action=self.action[rows], reward=self.reward[rows], pscore=self.pscore[rows], n_actions=self.n_actions,
            context=pick(self.context), position=pick(self.position), len_list=self.len_list,
            slate_id=pick(self.slate_id), pscore_slate=pick(self.pscore_slate), pscore_cascade=pick(self.pscore_cascade),
            action_context=self.action_context, action_vocab=self.action_vocab, meta=dict(self.meta),
        )


def encode_actions(vocab: Vocab, external: Sequence[Any] | np.ndarray) -> np.ndarray:
    """External action ids -> action indices 0..len(vocab)-1 (int64). Ids that arrive as text (JSON, the command line)
    match integer ids too (``Vocab.canonical``); an id outside the action set raises a DataError naming it."""
    out = np.empty(len(external), dtype=np.int64)
    for i, x in enumerate(external):
        known = vocab.canonical(x)
        if known is None:
            raise DataError(f"unknown action id {x!r} (not in the action set of {len(vocab)} ids)")
        out[i] = vocab.encode(known)[0] - 1
    return out


def obd_dir(data_dir: str | Path | None = None) -> Path:
    """Folder of the Open Bandit Dataset sample: ``data_dir`` or ``$RECFORGE_DATA_DIR/open-bandit-dataset-small``."""
    if data_dir is not None:
        return Path(data_dir)
    root = os.environ.get("RECFORGE_DATA_DIR")
    if not root:
        raise ConfigError("set RECFORGE_DATA_DIR (or pass data_dir) to read the Open Bandit Dataset")
    return Path(root) / "open-bandit-dataset-small"


def read_open_bandit(
    policy: str = "random", campaign: str = "all", data_dir: str | Path | None = None, min_pscore: float | None = None
) -> LoggedFeedback:
    """Read one Open Bandit Dataset file ``{policy}/{campaign}/{campaign}.csv`` into :class:`LoggedFeedback`.

    Context = one-hot of the four hashed user features followed by the user-item affinity columns, shape (n, d).
    Positions 1..3 in the file become 0..2. ``min_pscore`` clips logged propensities from below (zero propensities
    are otherwise rejected; the BTS files go down to 1e-6).
    """
    if policy not in OBD_POLICIES:
        raise ConfigError(f"policy must be one of {list(OBD_POLICIES)}, got {policy!r}")
    if campaign not in OBD_CAMPAIGNS:
        raise ConfigError(f"campaign must be one of {list(OBD_CAMPAIGNS)}, got {campaign!r}")
    return read_logged_csv(obd_dir(data_dir) / policy / campaign / f"{campaign}.csv", min_pscore=min_pscore)


def read_logged_csv(path: str | Path, min_pscore: float | None = None) -> LoggedFeedback:
    """Read a log in the Open Bandit Dataset CSV layout (see :func:`read_open_bandit`); a folder ``X/`` means ``X/X.csv``.

    Required columns: item_id (external ids, integers or strings), position (1-based), click, propensity_score.
    Optional: user_feature_*, user-item_affinity_<item id>, and an ``item_context.csv`` (item_id, item_feature_0, ...)
    next to the file. The action set, in sorted id order, is the item ids of ``item_context.csv`` when present, else
    those named by the affinity columns, else the distinct item ids of the log; ``action_vocab`` holds it and a logged
    id outside it is a DataError naming its line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{path.name}.csv"
    if not path.exists():
        raise DataError("file not found", path=str(path))
    df = _read_csv(path)
    for col in ("item_id", "position", "click", "propensity_score"):
        if col not in df.columns:
            raise DataError(f"missing column {col!r}", path=str(path), column=col)
    for col in ("position", "click"):
        if not df[col].dtype.is_integer():
            raise DataError(f"must hold integers, got dtype {df[col].dtype}", path=str(path), column=col)
    if not (df["item_id"].dtype.is_integer() or df["item_id"].dtype == pl.String):
        raise DataError(f"must hold integer or string ids, got dtype {df['item_id'].dtype}", path=str(path), column="item_id")
    if not df["propensity_score"].dtype.is_numeric():
        raise DataError(f"must be numeric, got dtype {df['propensity_score'].dtype}", path=str(path), column="propensity_score")
    bad_pos = np.flatnonzero(df["position"].to_numpy() < 1)
    if len(bad_pos):
        raise DataError("position must be >= 1 (1 = first slot)", path=str(path), line=int(bad_pos[0]) + 2, column="position")
    pscore = df["propensity_score"].to_numpy().astype(np.float64)
    if min_pscore is not None:
        pscore = np.maximum(pscore, min_pscore)
    bad = np.flatnonzero(~((pscore > 0) & (pscore <= 1)))
    if len(bad):
        raise DataError(
            f"propensity_score must satisfy 0 < p <= 1, got {pscore[bad[0]]!r} ({len(bad)} rows; pass min_pscore to clip)",
            path=str(path), line=int(bad[0]) + 2, column="propensity_score",
        )
    user_cols = sorted(c for c in df.columns if c.startswith("user_feature_"))
    aff_cols = sorted((c for c in df.columns if c.startswith(AFFINITY)), key=lambda c: _affinity_id(c, df, path))
    onehots = [df[c].to_dummies().to_numpy().astype(np.float64) for c in user_cols]
    context = np.hstack(onehots + [df.select(aff_cols).to_numpy().astype(np.float64)])
    vocab, action_context = _action_set(df, path, aff_cols)
    action = _encode_logged(vocab, df["item_id"].to_list(), path)
    position = df["position"].to_numpy().astype(np.int64) - 1
    logger.info("read %s: %d rows, %d actions, context dim %d", path, df.height, len(vocab), context.shape[1])
    return LoggedFeedback(
        action=action,
        reward=df["click"].to_numpy().astype(np.float64),
        pscore=pscore,
        n_actions=len(vocab),
        context=context,
        position=position,
        len_list=int(position.max()) + 1,
        action_context=action_context,
        action_vocab=vocab,
        meta={"source": str(path), "files": [str(f) for f in (path, path.parent / "item_context.csv") if f.exists()]},
    )


AFFINITY = "user-item_affinity_"


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise DataError(f"cannot parse CSV: {exc}", path=str(path)) from None


def _affinity_id(column: str, df: pl.DataFrame, path: Path) -> Any:
    """The item id an affinity column names, typed like the log's item_id column (integers sort numerically)."""
    suffix = column.removeprefix(AFFINITY)
    if not df["item_id"].dtype.is_integer():
        return suffix
    if not suffix.lstrip("-").isdigit():
        raise DataError(f"affinity column does not name an integer item id: {column!r}", path=str(path), column=column)
    return int(suffix)


def _action_set(df: pl.DataFrame, path: Path, aff_cols: list[str]) -> tuple[Vocab, np.ndarray | None]:
    """The action set's vocabulary (sorted ids) and, when ``item_context.csv`` exists, its item_feature_0 per action."""
    item_ctx_path = path.parent / "item_context.csv"
    if item_ctx_path.exists():
        items = _read_csv(item_ctx_path)
        for col in ("item_id", "item_feature_0"):
            if col not in items.columns:
                raise DataError(f"missing column {col!r}", path=str(item_ctx_path), column=col)
        items = items.sort("item_id")
        ids = items["item_id"].to_list()
        if len(set(ids)) != len(ids):
            raise DataError("item_id holds duplicate ids", path=str(item_ctx_path), column="item_id")
        return Vocab(ids, name="action"), items.select("item_feature_0").to_numpy().astype(np.float64)
    if aff_cols:
        return Vocab([_affinity_id(c, df, path) for c in aff_cols], name="action"), None
    return Vocab(df["item_id"].unique().sort().to_list(), name="action"), None


def _encode_logged(vocab: Vocab, ids: list[Any], path: Path) -> np.ndarray:
    """Logged external ids -> action indices; an id outside the action set is a DataError naming its line."""
    dense = vocab.encode(ids, on_unknown="zero")
    unknown = np.flatnonzero(dense == 0)
    if len(unknown):
        raise DataError(f"item id {ids[unknown[0]]!r} is not in the action set of {len(vocab)} items "
                        f"({len(unknown)} rows)", path=str(path), line=int(unknown[0]) + 2, column="item_id")
    return dense - 1
