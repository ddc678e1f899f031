"""``recforge align RUN``: DPO / IPO / S-DPO alignment, or iterative preference alignment (IPA: generate, let a reward
model judge, align; rounds), optionally under constraints, of a recommender run's model; writes a recommender run folder.

The aligned model is an ordinary recommender run (kind ``recommender``, the source run's config and split), so
``recforge evaluate``, ``compare`` and ``serve`` take it like any other. ``run.json`` adds ``alignment``: the source
run, the align config, the pairs (kind, count, sources), the per-epoch log and, with ``--reward``, the reward-model
score of the test top-10 before and after (also in metrics.json as ``reward@10``). With ``--method ipa`` the log is
per round (reward, KL to the unaligned model, validation NDCG@10, constraint metrics and multipliers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

PAIR_KINDS = ("random", "popular", "ratings", "model-hard")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``recforge align``."""
    p = sub.add_parser("align", help="align a run's model to preferences (dpo | ipo | sdpo | ipa); writes a run folder")
    p.add_argument("run", help="a recommender run folder whose model has a likelihood over items (SASRec, HSTU, ...)")
    p.add_argument("--method", choices=("dpo", "ipo", "sdpo", "ipa"), default="dpo",
                   help="ipa: rounds of generate N candidates -> the reward model (--reward) picks best and worst -> "
                        "DPO (--loss)")
    p.add_argument("--pairs", default="model-hard",
                   help="random | popular | ratings | model-hard (the model's best unseen non-target items) | a "
                        "parquet pair file (external ids; columns user, history, chosen, rejected)")
    p.add_argument("--negatives", "-K", type=int, default=1, help="rejected items per pair (S-DPO's K)")
    p.add_argument("--positions", choices=("last", "all"), default="last",
                   help="pairs at each user's last training event (last) or at every event after the first (all)")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reward", default=None, metavar="RM_RUN", help="a reward-model run on the same split: scores "
                   "the test top-10 before and after")
    p.add_argument("--keep", choices=("best", "last", "reward"), default="best",
                   help="the epoch (ipa: round) kept: best validation NDCG@10 (the unaligned model included), the "
                        "last, or (ipa) the highest reward; with constraints only rounds that meet them")
    g = p.add_argument_group("iterative preference alignment (--method ipa)")
    g.add_argument("--rounds", type=int, default=2, help="generate -> judge -> align rounds")
    g.add_argument("--candidates", "-N", type=int, default=10, help="items generated per user and round")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: the model's N best)")
    g.add_argument("--contexts", type=int, default=0, help="training users per round (0: all)")
    g.add_argument("--loss", choices=("dpo", "ipo", "sdpo"), default="dpo", help="the per-round objective")
    g.add_argument("--constraint", action="append", default=[], metavar="METRIC@K>=TARGET",
                   help="keep a list metric (coverage, novelty, ild) at least (>=) or at most (<=) TARGET, a number "
                        "or sft (the unaligned model's value), e.g. coverage@10>=sft; repeatable")
    g.add_argument("--dual-step", type=float, default=5.0, help="dual-ascent step on the Lagrange multipliers")
    g.add_argument("--tolerance", type=float, default=0.02, help="relative slack of a constraint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>-<method>-<time>)")
    p.set_defaults(func=cmd_align)


def _pairs(kind: str, split: Any, model: Any, k: int, positions: str, seed: int) -> Any:
    from recforge.align.pairs import model_hard_pairs
    from recforge.data.preferences import PreferencePairs, build_pairs, check_leakage

    max_history = int(model.config.max_len)
    if kind in ("random", "popular", "ratings"):
        return build_pairs(split, kind, k=k, positions=positions, max_history=max_history, seed=seed)
    if kind == "model-hard":
        base = build_pairs(split, "random", k=1, positions=positions, max_history=max_history, seed=seed)
        return model_hard_pairs(base, model, k=k, split=split)
    path = Path(kind)
    if path.suffix != ".parquet" and not path.exists():
        from recforge.errors import ConfigError

        raise ConfigError(f"--pairs must be one of {PAIR_KINDS} or a parquet pair file, got {kind!r}")
    pairs = PreferencePairs.read_parquet(path, split.train.user_vocab, split.train.item_vocab)
    check_leakage(pairs, split)
    return pairs


def _reward_at_10(rm: Any, split: Any, users: np.ndarray, top: np.ndarray, seed: int) -> np.ndarray:
    from recforge.align.evaluation import list_reward
    from recforge.align.pairs import unseen_items
    from recforge.data.jagged import gather_jagged

    items, offsets = split.history("test").sequences()
    hist = gather_jagged(items, offsets, users)
    against = unseen_items(split, users, 100, on="test", seed=seed)
    return list_reward(rm, hist, top[:, :10], against)


def _bound_constraints(texts: list[str], split: Any, dataset: Any) -> list[Any]:
    """``--constraint`` texts bound to the evaluation suite's list metrics (measured on top-k lists) and their item
    gains, on this split's training statistics."""
    from recforge.align.constrained import (
        BoundConstraint,
        coverage_gain,
        ild_gain,
        novelty_gain,
        parse_constraint,
    )
    from recforge.errors import ConfigError
    from recforge.evaluate.beyond import catalog_coverage, efd, intra_list_diversity, item_popularity

    out = []
    n_items, popularity = split.train.n_items, item_popularity(split.train)
    for text in texts:
        c = parse_constraint(text)
        if c.metric == "coverage":
            out.append(BoundConstraint(c, lambda lists: catalog_coverage(lists, n_items), coverage_gain(n_items)))
        elif c.metric == "novelty":
            out.append(BoundConstraint(c, lambda lists: float(efd(lists, popularity).mean()),
                                       novelty_gain(popularity)))
        else:
            catalog = getattr(dataset, "catalog", None)
            if catalog is None or catalog.n_attributes == 0:
                raise ConfigError(f"{text}: intra-list diversity needs item attributes, and this dataset has no "
                                  "item catalogue with attributes")
            features = catalog.align(split.train.item_vocab).attributes
            out.append(BoundConstraint(c, lambda lists, f=features: float(intra_list_diversity(lists, f).mean()),
                                       ild_gain(features)))
    return out


def align_run(run_path: str, method: str, pairs_kind: str, negatives: int, positions: str, beta: float,
              epochs: int, lr: float, batch_size: int, reward: str | None, seed: int, out: str | None,
              keep: str = "best", rounds: int = 2, candidates: int = 10, temperature: float = 1.0,
              contexts: int = 0, loss: str = "dpo", constraints: list[str] | None = None, dual_step: float = 5.0,
              tolerance: float = 0.02) -> Path:
    """Align the model of ``run_path`` (``method`` dpo | ipo | sdpo on ``pairs_kind`` pairs, or ipa: ``rounds`` of
    ``candidates`` generated items judged by the reward model ``reward``, under ``constraints``); write the aligned
    recommender run folder. Returns it."""
    import polars as pl

    from recforge.align.dpo import AlignConfig, align, require_trainable
    from recforge.align.ipa import IPAConfig, ipa
    from recforge.align.pairs import check_same_split
    from recforge.cli.rm import reward_run
    from recforge.config import to_dict
    from recforge.errors import ConfigError, DataError
    from recforge.evaluate.evaluator import evaluate
    from recforge.experiments.folder import RunFolder
    from recforge.experiments.provenance import dataset_files
    from recforge.experiments.runs import load_data, load_run, make_split, write_per_user
    from recforge.metrics.stats import bootstrap_ci
    from recforge.models.validation import validation_metric

    constraints = list(constraints or [])
    if method == "ipa":
        icfg = IPAConfig(rounds=rounds, candidates=candidates, temperature=temperature, contexts=contexts, keep=keep,
                         dual_step=dual_step, tolerance=tolerance, seed=seed, align=AlignConfig(
                             method=loss, beta=beta, negatives=negatives, epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, keep="last"))  # bad values fail before any loading
        if reward is None:
            raise ConfigError("--method ipa needs --reward RM_RUN: the reward model judges the generated candidates")
        acfg = icfg.align
    else:
        if constraints:
            raise ConfigError("--constraint needs --method ipa (pairs are re-selected every round with the "
                              "Lagrange multipliers)")
        if keep == "reward":
            raise ConfigError("--keep reward needs --method ipa")
        acfg = AlignConfig(method=method, beta=beta, negatives=negatives, epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, keep=keep)  # bad values fail before anything is loaded
    src = load_run(run_path)
    model = require_trainable(src.model)
    cfg = src.config
    dataset = load_data(cfg)
    split = make_split(cfg, dataset.interactions)
    check_same_split(f"the model of {run_path}", src.meta.get("split_hash"), split)
    rm = None
    if reward is not None:
        rm, _ = reward_run(reward)
        check_same_split(f"the reward model of {reward}", rm.split_hash, split)
        if rm.item_vocab != split.train.item_vocab:
            raise DataError(f"the reward model of {reward} was built on another item catalogue")
    bound = _bound_constraints(constraints, split, dataset)
    t0 = time.perf_counter()
    pairs = None if method == "ipa" else _pairs(pairs_kind, split, model, negatives, positions, seed)
    t_pairs = time.perf_counter() - t0
    ev = cfg.eval
    valid_users = split.valid.active_users()
    if len(valid_users) > 5000:  # a fixed, seeded sample keeps the per-epoch validation cheap
        chosen = np.random.default_rng(seed).choice(valid_users, 5000, replace=False)
        valid = split.valid.with_rows(np.isin(split.valid.user, chosen))
    else:
        valid = split.valid

    def evaluate_fn() -> float:
        return validation_metric(model, split.train, valid, "ndcg@10")

    before = None
    if rm is not None:
        per_user = pl.read_parquet(Path(run_path) / "per_user.parquet")
        users = per_user["user"].to_numpy()
        before = _reward_at_10(rm, split, users, np.asarray(per_user["top_items"].to_list()), seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = Path(out) if out else Path("runs") / f"{cfg.model['name']}-{method}-{stamp}"
    with RunFolder.create(out_path, kind="recommender", name=cfg.model["name"], config=cfg, seed=cfg.seed) as run:
        t1 = time.perf_counter()
        if method == "ipa":
            result = ipa(model, split.train, rm, icfg, evaluate_fn=evaluate_fn if keep == "best" else None,
                         constraints=bound)
        else:
            result = align(model, pairs, acfg, evaluate_fn=evaluate_fn)
        fit_s = time.perf_counter() - t1
        model.save(run.artifact_dir)
        kw = {"metrics": ev.metrics, "batch_size": ev.batch_size, "exclude_seen": ev.exclude_seen, "n_boot": ev.n_boot,
              "seed": cfg.seed}
        t2 = time.perf_counter()
        valid_report = evaluate(model, split, on="valid", **kw)
        test_report = evaluate(model, split, on="test", **kw)
        metrics: dict[str, Any] = {"test": test_report.to_dict(), "valid": valid_report.to_dict()}
        alignment: dict[str, Any] = {"source_run": str(run_path), "method": method, **result.to_dict()}
        if method == "ipa":
            alignment["config"] = to_dict(icfg)
            alignment["constraints"] = {str(c.constraint): {"target": c.target, "multiplier": c.multiplier}
                                        for c in bound}
        else:
            alignment["config"] = to_dict(acfg)
            alignment["pairs"] = {"kind": pairs_kind, "n": len(pairs), "k": pairs.k, "positions": positions,
                                  "sources": pairs.source_counts()}
        if rm is not None:
            after = _reward_at_10(rm, split, test_report.users, test_report.top_items, seed)
            lo, hi = bootstrap_ci(after, n_boot=ev.n_boot, seed=cfg.seed)
            metrics["test"]["reward@10"] = {"mean": float(after.mean()), "ci_low": lo, "ci_high": hi}
            alignment["reward@10"] = {"before": float(before.mean()), "after": float(after.mean()),
                                      "reward_run": str(reward)}
        eval_s = time.perf_counter() - t2
        run.write_metrics(metrics)
        write_per_user(run.path / "per_user.parquet", test_report, split)
        info = dict(getattr(dataset, "info", {}) or {})
        run.finish(data_files=info.get("files") or dataset_files(info), split=split, extra={
            "model": cfg.model["name"], "dataset": cfg.data["name"],
            "dataset_info": {k: v for k, v in info.items() if k != "files"}, "split": split.summary(),
            "alignment": alignment,
            "timings": {"pairs_s": round(t_pairs, 3), "fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3)}})
    return out_path


def cmd_align(args: argparse.Namespace) -> int:
    import json

    from recforge.cli.console import console
    from recforge.cli.core import _public, print_leaderboard
    from recforge.experiments.runs import load_run

    out = align_run(args.run, args.method, args.pairs, args.negatives, args.positions, args.beta, args.epochs,
                    args.lr, args.batch_size, args.reward, args.seed, args.out, args.keep, args.rounds,
                    args.candidates, args.temperature, args.contexts, args.loss, args.constraint, args.dual_step,
                    args.tolerance)
    src, new = load_run(args.run), load_run(out)
    print_leaderboard([{"run": src.name, "model": src.meta["model"], "metrics": _public(src.metrics["test"])},
                       {"run": new.name, "model": f"{new.meta['model']} ({args.method})",
                        "metrics": _public(new.metrics["test"])}],
                      title="test metrics before and after alignment (full ranking, seen items masked)")
    al = new.meta["alignment"]
    if "reward@10" in al:
        console.print(f"reward@10: {al['reward@10']['before']:.4f} -> {al['reward@10']['after']:.4f}")
    if args.method == "ipa":
        for row in al["history"]:
            console.print(f"round {row['round']}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)) + ("" if row["feasible"] else
                                                                                  " (infeasible)"))
        console.print(f"kept round {al['best_round']}")
    else:
        console.print(f"kept epoch {al['best_epoch']}: {json.dumps(al['history'][-1])}")
    console.print(f"run folder: [bold]{out}[/]")
    return 0
