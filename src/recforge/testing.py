"""Contracts per protocol: the promises every registered model, splitter, policy, estimator, environment and
conversational policy keeps, as plain functions that third-party code can run on its own classes.

recforge's suite runs them over every registry table (``tests/test_contracts.py``); a plugin runs the same ones::

    from recforge.testing import check_recommender
    check_recommender(MyModel, MyModel.config_class(dim=8))   # a ContractError (an AssertionError) names the broken promise

Each ``check_*`` raises :class:`ContractError` at the first broken promise and returns None otherwise. The recommender
contract fits once on a small seeded log with planted structure (:func:`contract_split`) and then runs every check in
:data:`RECOMMENDER_CHECKS`, plus the capability checks for each protocol of :mod:`recforge.protocols` the model
implements (``HistoryScorer``, ``TimedHistoryScorer``, ``Embedder``, ``LogProb``, ``TopK``, ``Steerable``). A class may shrink its
test-time cost with a class attribute ``test_config``: a config instance, or a dict of overrides of the default config
(see :func:`contract_config`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from recforge import registry
from recforge.align.reward import load_reward_model
from recforge.align.synthetic import multi_source_pairs
from recforge.artifacts import load_artifact
from recforge.bandits.estimators import ope_input
from recforge.bandits.policies.base import load_policy
from recforge.bandits.simulators import (
    ContextualBanditEnv,
    ContextualConfig,
    SlateConfig,
    SlateEnv,
    SlatePolicyProbs,
    log_slates,
    simulate,
    slate_policy_value,
)
from recforge.bandits.slate_estimators import slate_ope_input
from recforge.config import from_dict, to_dict
from recforge.conversational.data import CRSDataset, build_s3rec
from recforge.conversational.episode import simulate as simulate_dialogues
from recforge.conversational.scorer import ScorerConfig, train_scorer
from recforge.conversational.state import CRSSetting
from recforge.data.catalog import ItemCatalog
from recforge.data.split import Split, leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, NotFittedError, UnknownIdError
from recforge.evaluate.evaluator import evaluate
from recforge.models.base import Recommender, load_model
from recforge.protocols import (
    ConversationalPolicy,
    Embedder,
    Environment,
    Estimator,
    HistoryScorer,
    ItemSideConsumer,
    LLMClient,
    LogProb,
    Policy,
    Scorer,
    Steerable,
    TextEmbedder,
    TimedHistoryScorer,
    TopK,
    TrainableLogProb,
)
from recforge.text.side import bind_items

#: Tolerance of "the same scores" where an operation may legitimately reorder float sums (batching, embeddings).
ATOL = 1e-5


class ContractError(AssertionError):
    """A broken contract: the message names the class, the promise and what was observed."""


def require(condition: Any, message: str) -> None:
    """Raise :class:`ContractError` with ``message`` unless ``condition`` holds (survives ``python -O``)."""
    if not condition:
        raise ContractError(message)


# ---------------------------------------------------------------------------------------------------- recommenders


def contract_split(seed: int = 7) -> Split:
    """The contract's log: 300 users, 200 items, 20 events each, user clusters x item clusters (planted signal),
    split leave-last-out (train / valid / test)."""
    return _split(seed)


@cache
def _split(seed: int) -> Split:
    return leave_last_out(planted_clusters(n_users=300, n_items=200, events_per_user=20, seed=seed))


def contract_config(cls: type) -> Any:
    """The config a contract builds ``cls`` with: its ``test_config`` (an instance, or a dict of overrides merged
    into the default config, nested tables included), else the default config."""
    cfg = getattr(cls, "test_config", {})
    if isinstance(cfg, Mapping):
        return from_dict(cls.config_class, _merge(to_dict(cls.config_class()), cfg))
    return cfg


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def fit_for_contract(cls: type[Recommender], config: Any = None, split: Split | None = None) -> Recommender:
    """A fresh ``cls(config)`` (default: :func:`contract_config`) fitted on ``split.train``; checks fit returns self."""
    split = split or contract_split()
    model = cls(config if config is not None else contract_config(cls))
    if isinstance(model, ItemSideConsumer):  # text towers read the planted catalogue's item text and attributes
        bind_items(model, contract_catalog(split), split.train, use_cache=False)
    require(model.fit(split.train) is model, f"{cls.__name__}.fit must return self")
    return model


#: Words naming each planted item group in the contract catalogue's item text.
GROUP_WORDS = ("crime heist gangster", "space alien robot", "romance wedding love", "cartoon family animals",
               "horror ghost haunted")


def contract_catalog(split: Split) -> ItemCatalog:
    """An item catalogue for the contract log whose text and attributes carry the planted item groups: item
    ``i<k>`` is titled "item k", has the attribute "group<c>" and the text of its group's words (planted signal for
    models that read item text)."""
    groups = split.train.meta["item_cluster"]
    ids = list(split.train.item_vocab.ids)
    number = [int(str(i)[1:]) for i in ids]
    return ItemCatalog.from_records(
        ids, [f"item {k}" for k in number], [[f"group{groups[k]}"] for k in number],
        text=[GROUP_WORDS[groups[k] % len(GROUP_WORDS)] for k in number], group="group")


def check_recommender(cls: type[Recommender], config: Any = None, split: Split | None = None) -> None:
    """The whole recommender contract: config checks, then one fit and every check of :data:`RECOMMENDER_CHECKS`
    (the capability checks run where the model implements the protocol)."""
    split = split or contract_split()
    check_recommender_config(cls)
    model = fit_for_contract(cls, config, split)
    for check in RECOMMENDER_CHECKS.values():
        check(model, split)


def check_recommender_config(cls: type[Recommender]) -> None:
    """Without fitting: a frozen config dataclass that round-trips through plain data, unknown keys are ConfigErrors,
    the registry name is the class's ``name``, an unfitted model refuses to score."""
    cfg = contract_config(cls)
    require(dataclasses.is_dataclass(cfg), f"{cls.__name__}.config_class must be a dataclass")
    require(from_dict(type(cfg), to_dict(cfg)) == cfg, f"{cls.__name__}: the config must round-trip through to_dict")
    fields = dataclasses.fields(cfg)
    if fields:
        try:
            setattr(cfg, fields[0].name, getattr(cfg, fields[0].name))
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise ContractError(f"{cls.__name__}: the config must be a frozen dataclass")
    _raises(ConfigError, lambda: from_dict(cls.config_class, {"no_such_key": 1}), f"{cls.__name__}: an unknown key")
    _raises(NotFittedError, lambda: cls(cfg).score(np.array([1])), f"{cls.__name__}.score before fit")


def _raises(error: type[BaseException], call: Callable[[], Any], what: str, match: str = "") -> None:
    try:
        call()
    except error as exc:
        require(match in str(exc), f"{what}: the {error.__name__} should mention {match!r}, got {exc}")
        return
    raise ContractError(f"{what} must raise {error.__name__}")


def check_scores(model: Recommender, split: Split) -> None:
    """``score`` -> float32 (U, n_items+1), column 0 is -inf, the rest finite; independent of the batch."""
    require(isinstance(model, Scorer), f"{model.name} must implement the Scorer protocol")
    users = np.arange(1, 40)
    scores = model.score(users)
    n = split.train.n_items + 1
    require(tuple(scores.shape) == (39, n), f"{model.name}: score shape {tuple(scores.shape)} != (39, {n})")
    require(scores.dtype == torch.float32, f"{model.name}: score dtype {scores.dtype} != float32")
    require(torch.isneginf(scores[:, 0]).all(), f"{model.name}: score column 0 (padding) must be -inf")
    require(torch.isfinite(scores[:, 1:]).all(), f"{model.name}: item scores must be finite")
    apart = torch.cat([model.score(users[:13]), model.score(users[13:])])
    require(torch.allclose(scores, apart, rtol=ATOL, atol=ATOL), f"{model.name}: scores depend on the user batch")


def check_deterministic(model: Recommender, split: Split) -> None:
    """The same config and seed fitted again give identical scores."""
    again = fit_for_contract(type(model), model.config, split)
    users = np.arange(1, 50)
    require(torch.equal(model.score(users), again.score(users)),
            f"{model.name}: the same config and seed must give identical scores")


def check_recommend(model: Recommender, split: Split) -> None:
    """``recommend``: k items per user, best first, seen items masked by default, the same lists whatever the batch;
    k outside 1..n_items is a ConfigError."""
    train = split.train
    users = list(train.user_vocab.decode(np.arange(1, 31)))
    recs = model.recommend(users, k=10)
    seen = train.to_csr()
    for user, items, scores in zip(recs.users, recs.items, recs.scores):
        dense = train.user_vocab.encode([user])[0]
        require(len(items) == 10, f"{model.name}: recommend(k=10) gave {len(items)} items for {user!r}")
        require(len(set(items)) == 10, f"{model.name}: recommended items repeat for {user!r}")
        require(not set(train.item_vocab.encode(items)) & set(seen[[dense]].indices),
                f"{model.name}: recommend returned a seen item for {user!r}")
        require(all(a >= b for a, b in zip(scores, scores[1:])), f"{model.name}: recommendations not best first")
    one = model.recommend(users[5:6], k=10)
    require(one.items[0] == recs.items[5], f"{model.name}: recommend depends on the other users in the call")
    require(len(model.recommend(users[:1], k=10, exclude_seen=False).items[0]) == 10,
            f"{model.name}: recommend(exclude_seen=False) must give k items")
    for bad in (0, -3, train.n_items + 1):
        _raises(ConfigError, lambda bad=bad: model.recommend(users[:1], k=bad), f"{model.name}: recommend(k={bad})",
                "k must be in")


def check_unknown_users(model: Recommender, split: Split) -> None:
    """Unknown users: ``on_unknown="raise"`` raises UnknownIdError, ``"popular"`` falls back (flagged), ``"skip"``
    drops them."""
    train = split.train
    known = train.user_vocab.decode(np.array([1]))[0]
    _raises(UnknownIdError, lambda: model.recommend([known, "nobody"], k=5, on_unknown="raise"),
            f"{model.name}: an unknown user with on_unknown='raise'")
    recs = model.recommend([known, "nobody"], k=5, on_unknown="popular")
    require(recs.fallback == [False, True], f"{model.name}: fallback flags {recs.fallback} != [False, True]")
    # the five most popular training items, ties broken by the lower item index (the ranking's tie rule), in order
    top = list(train.item_vocab.decode(np.argsort(-train.item_counts()[1:], kind="stable")[:5] + 1))
    require(list(recs.items[1]) == top,
            f"{model.name}: the popular fallback {list(recs.items[1])} is not the five most popular items {top}")
    require(model.recommend([known, "nobody"], k=5, on_unknown="skip").users == [known],
            f"{model.name}: on_unknown='skip' must drop the unknown user")


def check_save_load(model: Recommender, split: Split) -> None:
    """``save`` writes an artifact (table "model", the registry name); ``load_model`` rebuilds the same class and
    config with identical scores, recommendations and (for a HistoryScorer) history scores."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        model.save(path)
        art = load_artifact(path)
        require((art.table, art.name) == ("model", model.name),
                f"{model.name}: saved as ({art.table!r}, {art.name!r}), expected ('model', {model.name!r})")
        loaded = load_model(path)
    require(type(loaded) is type(model) and loaded.config == model.config,
            f"{model.name}: load_model gave {type(loaded).__name__} with another config")
    users = np.arange(1, split.train.n_users + 1)
    require(torch.equal(model.score(users), loaded.score(users)), f"{model.name}: a loaded model scores differently")
    ext = list(split.train.user_vocab.decode(users[:5]))
    require(model.recommend(ext, k=5).items == loaded.recommend(ext, k=5).items,
            f"{model.name}: a loaded model recommends differently")
    if isinstance(model, HistoryScorer):
        hist = [np.array([1, 5, 9])]
        require(torch.equal(model.score_histories(hist), loaded.score_histories(hist)),
                f"{model.name}: a loaded model scores histories differently")


def check_history_scorer(model: Recommender, split: Split) -> None:
    """A HistoryScorer: (B, n_items+1) scores with column 0 at -inf, independent of the batch; an out-of-range id
    is an UnknownIdError; ``recommend_history`` ignores unknown external ids and masks the history."""
    if not isinstance(model, HistoryScorer):
        return
    items, offsets = split.train.sequences()
    hists = [items[offsets[u]: offsets[u + 1]] for u in (1, 2, 3)]
    scores = model.score_histories(hists)
    n = split.train.n_items + 1
    require(tuple(scores.shape) == (3, n), f"{model.name}: score_histories shape {tuple(scores.shape)} != (3, {n})")
    require(torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all(),
            f"{model.name}: history scores need column 0 at -inf and finite item scores")
    require(torch.allclose(scores[1:2], model.score_histories(hists[1:2]), rtol=ATOL, atol=ATOL),
            f"{model.name}: history scores depend on the batch")
    _raises(UnknownIdError, lambda: model.score_histories([np.array([n + 4])]),
            f"{model.name}: score_histories with an out-of-range item id")
    for hist in hists:
        known = list(split.train.item_vocab.decode(hist))
        recs, ignored = model.recommend_history(known + ["never-seen"], k=5)
        require(ignored == ["never-seen"], f"{model.name}: recommend_history must report the unknown id, got {ignored}")
        require(len(recs.items[0]) == 5 and not set(known) & set(recs.items[0]),
                f"{model.name}: recommend_history must give k items outside the history")


def check_timed_history_scorer(model: Recommender, split: Split) -> None:
    """A TimedHistoryScorer: timed histories score like untimed ones in shape, padding and batch independence."""
    if not isinstance(model, TimedHistoryScorer):
        return
    items, offsets = split.train.sequences()
    hist = (items[offsets[1]: offsets[4]], offsets[1:5] - offsets[1])
    times = np.arange(len(hist[0]), dtype=np.int64) * 60
    scores = model.score_timed_histories(hist, times)
    n = split.train.n_items + 1
    require(tuple(scores.shape) == (3, n), f"{model.name}: score_timed_histories shape {tuple(scores.shape)}")
    require(torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all(),
            f"{model.name}: timed history scores need column 0 at -inf and finite item scores")
    a, b = offsets[2] - offsets[1], offsets[3] - offsets[1]
    one = model.score_timed_histories((hist[0][a:b], np.array([0, b - a])), times[a:b])
    require(torch.allclose(scores[1:2], one, rtol=ATOL, atol=ATOL), f"{model.name}: timed scores depend on the batch")


def check_embedder(model: Recommender, split: Split) -> None:
    """An Embedder: user vectors (U, d) or (U, V, d), item vectors (n_items+1, d), and their inner products
    (the max over a user's V vectors) reproduce ``score``."""
    if not isinstance(model, Embedder):
        return
    users = np.arange(1, 20)
    q, items = model.user_embeddings(users).float(), model.item_embeddings().float()
    n = split.train.n_items + 1
    require(items.ndim == 2 and items.shape[0] == n, f"{model.name}: item_embeddings shape {tuple(items.shape)}")
    require(q.ndim in (2, 3) and q.shape[0] == len(users) and q.shape[-1] == items.shape[1],
            f"{model.name}: user_embeddings shape {tuple(q.shape)} does not match items {tuple(items.shape)}")
    dots = q @ items[1:].T if q.ndim == 2 else (q @ items[1:].T).amax(dim=1)
    scores = model.score(users)[:, 1:]
    require(torch.allclose(dots, scores, rtol=1e-4, atol=1e-4),
            f"{model.name}: embeddings do not reproduce the scores (max diff {(dots - scores).abs().max():.2e})")


def check_log_prob(model: Recommender, split: Split) -> None:
    """A LogProb: (B,) log-likelihoods <= 0, normalised over the items (logsumexp over every target is 0)."""
    if not isinstance(model, LogProb):
        return
    items, offsets = split.train.sequences()
    hist = items[offsets[1]: offsets[2]]
    n_items = split.train.n_items
    targets = np.arange(1, n_items + 1)
    lp = model.log_prob([hist] * n_items, targets)
    require(tuple(lp.shape) == (n_items,), f"{model.name}: log_prob shape {tuple(lp.shape)} != ({n_items},)")
    require(torch.isfinite(lp).all() and (lp <= 1e-6).all(), f"{model.name}: log_prob must be finite and <= 0")
    total = torch.logsumexp(lp.double(), dim=0).item()
    require(abs(total) < 1e-3, f"{model.name}: log_prob is not normalised over the items (logsumexp {total:.2e})")
    if isinstance(model, TrainableLogProb):  # alignment's view: the same numbers, with gradients
        module = model.log_prob_module()
        module.eval()
        grad_lp = model.differentiable_log_prob([hist] * 2, targets[:4].reshape(2, 2))
        require(tuple(grad_lp.shape) == (2, 2), f"{model.name}: differentiable_log_prob shape {tuple(grad_lp.shape)}")
        require(torch.allclose(grad_lp.detach().reshape(-1).cpu(), lp[:4], atol=1e-4),
                f"{model.name}: differentiable_log_prob disagrees with log_prob")
        grad_lp.sum().backward()
        require(any(p.grad is not None for p in module.parameters()),
                f"{model.name}: differentiable_log_prob carries no gradient to log_prob_module()")
        module.zero_grad(set_to_none=True)


def check_topk(model: Recommender, split: Split) -> None:
    """A TopK: (U, k) items and scores, best first, distinct, in range; its own best three items, excluded, are
    absent; for a Scorer too, the scores are the full matrix's and no better item was left out."""
    if not isinstance(model, TopK):
        return
    users, k, n = np.arange(1, 11), 7, split.train.n_items
    first, _ = model.topk(users, k, None)
    exclude = [row[row > 0][:3] for row in first]
    items, scores = model.topk(users, k, exclude)
    require(items.shape == (len(users), k) and scores.shape == (len(users), k), f"{model.name}: topk shapes")
    for row, vals, excluded in zip(items, scores, exclude):
        real = row[row > 0]
        require(len(set(real)) == len(real) and real.max(initial=1) <= n, f"{model.name}: topk items repeat or exceed")
        require(not set(real) & set(excluded), f"{model.name}: topk returned an excluded item")
        require(np.all(np.diff(vals[row > 0]) <= ATOL), f"{model.name}: topk is not best first")
    if isinstance(model, Scorer):
        full = model.score(users).clone()
        for row, excluded in enumerate(exclude):
            full[row, torch.from_numpy(excluded)] = -torch.inf
        kth = torch.topk(full, k, dim=1).values[:, -1].numpy()
        got = np.take_along_axis(full.numpy(), items, axis=1)
        require(np.allclose(got, scores, atol=1e-4), f"{model.name}: topk scores differ from score()")
        require(np.all(scores[:, -1] >= kth - 1e-4), f"{model.name}: topk left out a better item")


def check_steerable(model: Recommender, split: Split) -> None:
    """A Steerable: its preference values are "group=value" strings; an unknown value is a ConfigError; leaving the
    steering context restores the unsteered scores."""
    if not isinstance(model, Steerable):
        return
    values = model.preference_values()
    require(all(isinstance(v, str) for v in values), f"{model.name}: preference values must be strings")
    users = np.arange(1, 6)
    before = model.score(users).clone()
    _raises(ConfigError, lambda: model.steer(["no-such-group=no-such-value"]).__enter__(), "an unknown preference")
    if values:
        with model.steer(values[:1]):
            model.score(users)
    require(torch.equal(model.score(users), before), f"{model.name}: scores changed after the steering context")


def check_beats_random(model: Recommender, split: Split) -> None:
    """On the planted log, the model's test NDCG@10 CI lies above the random recommender's (a clear win)."""
    if model.name == "random":
        return
    ours = evaluate(model, split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    rand = _random_ndcg(split)
    require(ours["ci_low"] > rand["ci_high"], f"{model.name}: NDCG@10 {ours} does not beat random {rand}")


def _random_ndcg(split: Split) -> dict[str, float]:
    key = split.hash
    if key not in _RANDOM:
        rand = registry.get_model("random")().fit(split.train)
        _RANDOM[key] = evaluate(rand, split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    return _RANDOM[key]


_RANDOM: dict[str, dict[str, float]] = {}

#: The checks run on a fitted recommender, by name (``tests/test_contracts.py`` runs each as its own test).
RECOMMENDER_CHECKS: dict[str, Callable[[Recommender, Split], None]] = {
    "scores": check_scores,
    "deterministic": check_deterministic,
    "recommend": check_recommend,
    "unknown_users": check_unknown_users,
    "save_load": check_save_load,
    "history_scorer": check_history_scorer,
    "timed_history_scorer": check_timed_history_scorer,
    "embedder": check_embedder,
    "log_prob": check_log_prob,
    "topk": check_topk,
    "steerable": check_steerable,
    "beats_random": check_beats_random,
}


# ------------------------------------------------------------------------------------------------------- splitters


def check_splitter(name: str, splitter: Callable[..., Split]) -> None:
    """A splitter registered as ``name``: a Split named ``name`` whose parts share the vocabularies, leave no test
    event in train, and hash the same when run again."""
    data = planted_clusters(n_users=60, n_items=40, events_per_user=12, seed=3)
    split, again = splitter(data), splitter(data)
    require(split.name == name, f"splitter {name!r} names its split {split.name!r}")
    require(split.hash == again.hash, f"splitter {name!r} is not deterministic")
    require(len(split.train) > 0 and len(split.test) > 0, f"splitter {name!r} left an empty part")
    for part in (split.valid, split.test):
        if part is not None:
            require(part.item_vocab is split.train.item_vocab, f"splitter {name!r}: parts must share the item vocab")
    train = set(zip(split.train.user.tolist(), split.train.item.tolist(), split.train.time.tolist()))
    test = set(zip(split.test.user.tolist(), split.test.item.tolist(), split.test.time.tolist()))
    require(not train & test, f"splitter {name!r}: a test event is also in train")


# -------------------------------------------------------------------------------------------------- bandit policies


def check_policy(cls: type, env: Environment, config: Any = None, rounds: int = 200) -> None:
    """A bandit policy built for ``env`` by ``cls.from_env(env, config, seed)``: a ``Policy``; ``select`` gives
    (n, len_list) distinct in-range int actions; a short simulation updates it; save / load round-trips (table
    "policy", its registry name) to the same decisions from the same random state."""
    policy = cls.from_env(env, config, seed=1)
    name = getattr(cls, "name", cls.__name__)
    require(isinstance(policy, Policy), f"policy {name!r} must implement the Policy protocol")
    require((policy.n_actions, policy.len_list) == (env.n_actions, env.len_list), f"policy {name!r}: wrong sizes")
    n = 1 if getattr(env, "sequential", False) else 16
    _check_actions(name, policy, policy.select(env.contexts(n), n), n)
    res = simulate(env, policy, rounds, batch_size=n)
    require(len(res.reward) == rounds and np.isfinite(res.reward).all(), f"policy {name!r}: the simulation broke")
    _check_actions(name, policy, policy.select(env.contexts(n), n), n)
    with tempfile.TemporaryDirectory() as tmp:
        path = policy.save(Path(tmp) / "policy")
        art = load_artifact(path)
        require((art.table, art.name) == ("policy", name), f"policy {name!r} saved as ({art.table!r}, {art.name!r})")
        loaded = load_policy(path, seed=7)
    require(type(loaded) is type(policy) and loaded.config == policy.config, f"policy {name!r}: load changed it")
    policy.rng, loaded.rng = np.random.default_rng(5), np.random.default_rng(5)
    x = env.contexts(n)
    require(np.array_equal(loaded.select(x, n), policy.select(x, n)), f"policy {name!r}: a loaded policy decides "
            "differently")


def _check_actions(name: str, policy: Any, actions: np.ndarray, n: int) -> None:
    require(actions.shape == (n, policy.len_list), f"policy {name!r}: select shape {actions.shape}")
    require(np.issubdtype(actions.dtype, np.integer), f"policy {name!r}: actions must be ints, got {actions.dtype}")
    require(actions.min() >= 0 and actions.max() < policy.n_actions, f"policy {name!r}: an action out of range")
    require(all(len(set(row)) == len(row) for row in actions.tolist()), f"policy {name!r}: repeated action in a row")


# ----------------------------------------------------------------------------------------------------- environments


def check_environment(cls: type, config: Any = None) -> None:
    """An environment ``cls(config)``: an ``Environment`` with 1 <= len_list <= n_actions; contexts (n, d) or None;
    ``step`` of distinct actions (n, len_list) -> finite rewards and expected rewards (n, len_list) and the best
    expected reward (n,) that no chosen slate's expected total exceeds; two instances of one config agree."""
    name = getattr(cls, "name", cls.__name__)
    envs = [cls(config if config is not None else cls.config_class()) for _ in range(2)]
    env = envs[0]
    require(isinstance(env, Environment), f"environment {name!r} must implement the Environment protocol")
    require(1 <= env.len_list <= env.n_actions, f"environment {name!r}: len_list {env.len_list} vs {env.n_actions}")
    n = 1 if getattr(env, "sequential", False) else 32
    actions = np.argsort(np.random.default_rng(0).random((n, env.n_actions)), axis=1)[:, : env.len_list]
    outs = []
    for e in envs:
        ctx = e.contexts(n)
        require(ctx is None or (ctx.ndim == 2 and ctx.shape[0] == n), f"environment {name!r}: contexts shape")
        outs.append((ctx, *e.step(ctx, actions)))
    ctx, rewards, expected, best = outs[0]
    shape = (n, env.len_list)
    require(rewards.shape == shape and expected.shape == shape and best.shape == (n,),
            f"environment {name!r}: step shapes {rewards.shape}, {expected.shape}, {best.shape} for actions {shape}")
    require(np.isfinite(rewards).all() and np.isfinite(expected).all(), f"environment {name!r}: non-finite rewards")
    require(np.all(expected.sum(axis=1) <= best + 1e-9), f"environment {name!r}: a slate beats the best expected")
    for a, b in zip(outs[0], outs[1]):
        require((a is None and b is None) or np.array_equal(a, b), f"environment {name!r}: one config, two worlds")


# -------------------------------------------------------------------------------------------------------- estimators

#: The planted-truth worlds an estimator is checked on: logged bandit feedback (contextual) or logged slates under
#: the position-based click model (slate).
World = Literal["contextual", "slate"]


def check_estimator(cls: type, config: Any = None, world: World = "contextual", reps: int = 20) -> None:
    """An unbiased off-policy estimator ``cls(config)``: on ``reps`` independent logs of a simulator with known
    truth, the mean estimate is within 4 standard errors of the true value and the 95% bootstrap CI covers it in at
    least 75% of the logs. The contextual world gives the estimator the true reward model (so DM and DR variants are
    unbiased too); the slate world logs uniform slates under a position-based model."""
    est = cls(config if config is not None else cls.config_class())
    name = getattr(cls, "name", cls.__name__)
    require(isinstance(est, Estimator), f"estimator {name!r} must implement the Estimator protocol")
    truth, inputs = _planted_world(world, reps)
    found = [est.estimate(inp, n_boot=200, seed=rep) for rep, inp in enumerate(inputs)]
    values = np.array([e.value for e in found])
    se = values.std(ddof=1) / np.sqrt(len(values))
    require(abs(values.mean() - truth) < 4 * se + 1e-4,
            f"estimator {name!r}: mean {values.mean():.4f} vs truth {truth:.4f} (se {se:.4f}) on the {world} world")
    coverage = float(np.mean([e.ci_low <= truth <= e.ci_high for e in found]))
    require(coverage >= 0.75, f"estimator {name!r}: its CI covers the truth in {coverage:.0%} of logs")


@cache
def _planted_world(world: World, reps: int) -> tuple[float, list[Any]]:
    if world == "contextual":
        env = ContextualBanditEnv(ContextualConfig(n_actions=5, dim=3, seed=1))
        behaviour, target = env.softmax_policy(2.0), env.softmax_policy(8.0)
        inputs = []
        for _ in range(reps):
            fb = env.log(1500, behaviour)
            inputs.append(ope_input(fb, lambda rows, pos, fb=fb: target(fb.context[rows]),
                                    lambda rows, pos, fb=fb: env.expected_rewards(fb.context[rows])))
        return env.policy_value(target), inputs
    if world == "slate":
        env = SlateEnv(SlateConfig(n_items=6, len_list=3, click_model="pbm", seed=4))
        slates = env.all_slates()
        behaviour = SlatePolicyProbs.plackett_luce(np.zeros(6), slates)
        target = SlatePolicyProbs.plackett_luce(2.0 * np.log(env.attractiveness), slates)
        inputs = []
        for _ in range(reps):
            feedback, index = log_slates(env, behaviour, 2000)
            inputs.append(slate_ope_input(feedback, target, index))
        return slate_policy_value(env, target), inputs
    raise ConfigError(f"world must be one of ['contextual', 'slate'], got {world!r}")


# ---------------------------------------------------------------------------------------------- conversational policies


def crs_world(folder: str | Path, seed: int = 0) -> CRSDataset:
    """A tiny conversational world with planted preferences, written in the S3-Rec layout under ``folder``: 40 users,
    150 items with 3 of 24 attributes each; a user's 14 items favour the items sharing their 3 liked attributes."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_attrs = 40, 150, 24
    attrs = np.stack([rng.choice(n_attrs, 3, replace=False) for _ in range(n_items)])
    lines = []
    for u in range(n_users):
        liked = rng.choice(n_attrs, 3, replace=False)
        logits = 3.0 * np.isin(attrs, liked).sum(axis=1)
        prob = np.exp(logits - logits.max())
        items = rng.choice(n_items, 14, replace=False, p=prob / prob.sum()) + 1
        lines.append(" ".join(map(str, [u + 1, *items.tolist()])))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "World.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    item2attrs = {str(i + 1): [int(a) + 1 for a in attrs[i]] for i in range(n_items)}
    (folder / "World_item2attributes.json").write_text(json.dumps(item2attrs), encoding="utf-8")
    return build_s3rec(folder / "World.txt")


def check_crs_policy(cls: type, config: Any = None, episodes: int = 20) -> None:
    """A conversational policy ``cls(config, world, setting, scorer)`` on :func:`crs_world` (a small scorer trained
    first when the class ``needs_scorer``; a short training when it is ``trainable``): a ``ConversationalPolicy`` whose
    test dialogues all end in an outcome (success at turn 1..T, rank 1..k; or failure, 0), the same ones when played
    again with the same seed."""
    name = getattr(cls, "name", cls.__name__)
    setting = CRSSetting(max_turns=6, list_size=5)
    with tempfile.TemporaryDirectory() as tmp:
        world = crs_world(tmp)
    scorer = train_scorer(world, ScorerConfig(dim=8, epochs=2, batch_size=256)) if cls.needs_scorer else None
    policy = cls(config if config is not None else cls.config_class(), world, setting, scorer)
    require(isinstance(policy, ConversationalPolicy), f"CRS policy {name!r} must implement ConversationalPolicy")
    if cls.trainable:
        policy.fit(world, episodes, seed=0)
    report = simulate_dialogues(policy, world, setting, "test", episodes, seed=1)
    turns, ranks = report.turns, report.ranks
    require(len(turns) == episodes and len(ranks) == episodes, f"CRS policy {name!r}: {len(turns)} outcomes")
    require(np.all((turns >= 0) & (turns <= setting.max_turns)), f"CRS policy {name!r}: a turn outside 0..T")
    require(np.array_equal(turns > 0, ranks > 0) and ranks.max() <= setting.list_size,
            f"CRS policy {name!r}: ranks must be 1..k exactly for the successful dialogues")
    sr = report.metrics[f"sr@{setting.max_turns}"]["mean"]
    require(0.0 <= sr <= 1.0 and abs(sr - float(np.mean(turns > 0))) < 1e-12, f"CRS policy {name!r}: SR {sr}")
    again = simulate_dialogues(policy, world, setting, "test", episodes, seed=1)
    require(np.array_equal(again.turns, turns), f"CRS policy {name!r}: the same seed played different dialogues")


# -------------------------------------------------------------------------------------------------- reward models


def check_reward_model(cls: type, config: Any = None) -> None:
    """A reward model (table ``reward_model``) fitted on a small transitive multi-source world: logits of shape
    (B, M), antisymmetric (logit(a, b) = -logit(b, a), logit(a, a) = 0), better than chance on the shared
    preference, the same after save/load and for the same seed, and a UnknownIdError for an unknown item."""
    name = cls.name
    world = multi_source_pairs(sizes=(1500,), source_noise=(0.0,), n_items=20, n_shared=500, seed=3)
    cfg = config if config is not None else from_dict(cls.config_class, {
        "dim": 16, "max_len": 5, "dropout": 0.0, "epochs": 4, "lr": 1e-2, "batch_size": 128})
    model = cls(cfg).fit(world["train"], world["valid"])
    shared = world["shared"]
    hist = shared.histories()
    a, b = np.asarray(shared.chosen)[:, None].repeat(2, 1), np.asarray(shared.rejected).repeat(2, 1)
    ab, ba, aa = (model.preference_logits(hist, x, y) for x, y in ((a, b), (b, a), (a, a)))
    require(tuple(ab.shape) == a.shape, f"reward model {name!r}: logits shape {tuple(ab.shape)} != {a.shape}")
    require(torch.allclose(ab, -ba, atol=1e-5) and bool((aa.abs() < 1e-5).all()),
            f"reward model {name!r}: preference logits must be antisymmetric")
    acc = float((ab[:, 0] > 0).double().mean())
    require(acc > 0.65, f"reward model {name!r}: accuracy {acc:.3f} on a transitive world (chance is 0.5)")
    again = cls(cfg).fit(world["train"], world["valid"])
    require(torch.equal(again.preference_logits(hist, a, b), ab), f"reward model {name!r}: not deterministic")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "rm")
        loaded = load_reward_model(Path(tmp) / "rm")
    require(type(loaded) is cls and torch.equal(loaded.preference_logits(hist, a, b), ab),
            f"reward model {name!r}: save/load changed the logits")
    unknown = np.array([[len(model.item_vocab) + 1]])
    _raises(UnknownIdError, lambda: model.preference_logits([np.array([1])], unknown, np.array([[1]])),
            f"reward model {name!r}: an unknown item id")


# ------------------------------------------------------------------------------------------------------- registry


def check_text_embedder(cls: type) -> None:
    """A text embedder built from its default config: a ``TextEmbedder``; n texts -> float32 (n, d) with unit rows
    (a zero row for an empty text); the same text gets the same vector, in any batch and from a second instance
    (same ``fingerprint``)."""
    embedder = cls()
    require(isinstance(embedder, TextEmbedder), f"embedder {cls.__name__} does not satisfy TextEmbedder")
    texts = ["title: Heat; genres: Action|Crime", "", "tags: jazz, live", "title: Heat; genres: Action|Crime"]
    vectors = embedder.embed(texts)
    require(isinstance(vectors, np.ndarray) and vectors.dtype == np.float32 and vectors.ndim == 2
            and vectors.shape[0] == len(texts), f"embedder {cls.__name__}: embed must return float32 (n, d), got "
            f"{getattr(vectors, 'dtype', type(vectors))} {getattr(vectors, 'shape', None)}")
    norms = np.linalg.norm(vectors, axis=1)
    require(np.allclose(norms[[0, 2, 3]], 1.0, atol=1e-4) and norms[1] == 0.0,
            f"embedder {cls.__name__}: rows must be unit vectors and an empty text a zero row, norms {norms}")
    require(np.allclose(vectors[0], vectors[3], atol=1e-6), f"embedder {cls.__name__}: one text, two vectors")
    again = cls()
    require(again.fingerprint == embedder.fingerprint and np.allclose(again.embed(texts[2:3])[0], vectors[2],
                                                                      atol=1e-5),
            f"embedder {cls.__name__}: a second instance (or another batch) embeds differently")


def check_llm_client(cls: type) -> None:
    """An LLM client declares its verbs: built with ``capabilities=("generate",)`` it is an ``LLMClient`` whose
    ``capabilities`` say so, and ``score`` / ``embed`` raise a ConfigError naming the backend (before any model is
    loaded or any request is sent)."""
    client = cls(capabilities=("generate",))
    require(isinstance(client, LLMClient), f"llm {cls.__name__} does not satisfy LLMClient")
    require(client.capabilities == frozenset({"generate"}),
            f"llm {cls.__name__}: capabilities {sorted(client.capabilities)}, declared ['generate']")
    for verb, call in (("score", lambda: client.score("a", ["b"])), ("embed", lambda: client.embed(["a"]))):
        try:
            call()
        except ConfigError as exc:
            require(cls.name in str(exc) and verb in str(exc),
                    f"llm {cls.__name__}: the error for an undeclared {verb!r} must name the backend and the verb: {exc}")
        else:
            raise ContractError(f"llm {cls.__name__}: {verb!r} ran although it was not declared")


def check_registry(tables: tuple[str, ...] | None = None) -> None:
    """Every key of the registry ``tables`` (default: all) resolves and equals its class's ``name`` (a splitter's:
    the name of the Split it makes); every registered class has a dataclass ``config_class``."""
    for table in tables or tuple(registry.TABLES):
        for key in registry.TABLES[table]:
            obj = registry.resolve(table, key)
            if table == "splitter":
                check_splitter(key, obj)
                continue
            found = getattr(obj, "name", None)
            require(found == key, f"{table} {key!r} is registered under another name than its class's ({found!r})")
            require(dataclasses.is_dataclass(getattr(obj, "config_class", None)),
                    f"{table} {key!r}: config_class must be a dataclass")
