"""Logged bandit feedback and the Open Bandit Dataset reader.

``LoggedFeedback`` holds one row per logged (context, action[, position]) round of a behaviour policy. Slates are stored in
long format: one row per slot, rows of one slate share ``slate_id`` and differ in ``position``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

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
      action  (n,) int64 in [0, n_actions)       chosen action (item)
      reward  (n,) float64                        observed reward (e.g. click)
      pscore  (n,) float64 in (0, 1]              behaviour probability of the logged action (at its position)
      context (n, d) float64 or None              features seen by the policy
      position (n,) int64 in [0, len_list) or None  slot of the action in the slate (0 = top/left)
      slate_id (n,) int64 or None                 rows with the same id form one slate
      pscore_slate (n,) or None                   behaviour probability of the whole logged slate (standard slate IPS)
      pscore_cascade (n,) or None                 behaviour probability of the slate prefix up to this position (RIPS)
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

    Required columns: item_id (0-based), position (1-based), click, propensity_score. Optional: user_feature_*,
    user-item_affinity_<k>, and an ``item_context.csv`` next to the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{path.name}.csv"
    folder = path.parent
    if not path.exists():
        raise DataError("file not found", path=str(path))
    try:
        df = pl.read_csv(path)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise DataError(f"cannot parse CSV: {exc}", path=str(path)) from None
    required = ["item_id", "position", "click", "propensity_score"]
    for col in required:
        if col not in df.columns:
            raise DataError(f"missing column {col!r}", path=str(path), column=col)
    for col in ("item_id", "position", "click"):
        if not df[col].dtype.is_integer():
            raise DataError(f"must hold integers, got dtype {df[col].dtype}", path=str(path), column=col)
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
    aff_cols = sorted((c for c in df.columns if c.startswith("user-item_affinity_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    onehots = [df[c].to_dummies().to_numpy().astype(np.float64) for c in user_cols]
    context = np.hstack(onehots + [df.select(aff_cols).to_numpy().astype(np.float64)])
    item_ctx_path = folder / "item_context.csv"
    action_context = None
    if item_ctx_path.exists():
        items = pl.read_csv(item_ctx_path).sort("item_id")
        action_context = items.select("item_feature_0").to_numpy().astype(np.float64)
    n_actions = len(aff_cols) if aff_cols else int(df["item_id"].max()) + 1
    position = df["position"].to_numpy().astype(np.int64) - 1
    logger.info("read %s: %d rows, %d actions, context dim %d", path, df.height, n_actions, context.shape[1])
    return LoggedFeedback(
        action=df["item_id"].to_numpy().astype(np.int64),
        reward=df["click"].to_numpy().astype(np.float64),
        pscore=pscore,
        n_actions=n_actions,
        context=context,
        position=position,
        len_list=int(position.max()) + 1,
        action_context=action_context,
        meta={"source": str(path)},
    )
