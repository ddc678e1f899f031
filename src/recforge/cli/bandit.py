"""Bandit subcommands: ``recforge bandit simulate`` (regret/reward curves), ``recforge bandit replay`` (learning
policies on uniform logs) and ``recforge ope`` (off-policy estimates). Each writes the common run folder
(``recforge.experiments.folder.RunFolder``); a failed command leaves an existing folder as it was."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge.config import apply_overrides
from recforge.errors import ConfigError, DataError
from recforge.registry import ENVIRONMENTS, POLICIES

DEFAULT_ESTIMATORS = "dm,ips,snips,dr,sndr,switch-dr,dr-os"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bandit simulate``, ``bandit replay`` and ``ope``."""
    bandit = sub.add_parser("bandit", help="online learning: simulate or replay bandit policies")
    bsub = bandit.add_subparsers(dest="bandit_command", metavar="SUBCOMMAND")
    sim = bsub.add_parser("simulate", help="run policies on a simulator and plot cumulative regret / reward")
    sim.add_argument("--env", required=True, choices=sorted(ENVIRONMENTS), help="simulator")
    sim.add_argument("--policy", required=True, action="append", choices=sorted(POLICIES),
                     help="policy to run (repeat to compare several on the same environment)")
    sim.add_argument("--rounds", type=int, default=10_000, help="rounds per policy")
    sim.add_argument("--batch-size", type=int, default=1, help="rounds per select/update batch (1 = fully online)")
    sim.add_argument("--seed", type=int, default=0, help="seed of the policies (the environment has its own: --env-set seed=N)")
    sim.add_argument("--repeats", type=int, default=1,
                     help="independent runs per policy (new policy seed and context/noise stream; same world); "
                          "the table then shows the mean regret with a bootstrap CI over runs")
    sim.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE", help="environment config override")
    sim.add_argument("--set", dest="policy_set", action="append", default=[], metavar="POLICY.KEY=VALUE",
                     help="policy config override, e.g. linucb.alpha=0.5")
    sim.add_argument("--out", required=True,
                     help="run folder (config, metrics, provenance, policies, regret.png, reward.png, summary.json)")
    sim.set_defaults(func=run_simulate)

    rep = bsub.add_parser("replay", help="replay a learning policy on uniformly random logs (Li et al. 2011)")
    rep.add_argument("--logs", required=True, help="uniform-random logged feedback CSV (Open Bandit Dataset layout)")
    rep.add_argument("--policy", required=True, action="append", choices=sorted(POLICIES),
                     help="policy to replay (repeat to compare)")
    rep.add_argument("--batch-size", type=int, default=1, help="rows per select/update batch")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    rep.add_argument("--set", dest="policy_set", action="append", default=[], metavar="POLICY.KEY=VALUE",
                     help="policy config override, e.g. epsilon-greedy.epsilon=0.05")
    rep.add_argument("--out", required=True, help="run folder (config, metrics, provenance, the replayed policies)")
    rep.set_defaults(func=run_replay)

    ope = sub.add_parser("ope", help="off-policy evaluation of a policy on logged bandit feedback")
    ope.add_argument("--logs", required=True, help="logged feedback CSV in the Open Bandit Dataset layout (or its folder)")
    ope.add_argument("--policy", required=True,
                     help="evaluation policy: 'uniform', 'bernoulli-ts' (needs --prior) or a JSON file {\"action_dist\": ...}: "
                          "a list of shape (n_actions,) or (n_actions, len_list) in action-set order, or an object "
                          "{item id: probability or [one per slot]}")
    ope.add_argument("--prior", help="Beta parameters for bernoulli-ts: obd-all | obd-men | obd-women | JSON {alpha, beta}")
    ope.add_argument("--n-sim", type=int, default=100_000, help="Monte-Carlo draws for the Thompson-sampling action distribution")
    ope.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="comma-separated estimator names")
    ope.add_argument("--l2", type=float, default=1.0, help="L2 penalty of the logistic reward model (DM/DR family)")
    ope.add_argument("--cross-fit", type=int, default=0, metavar="K",
                     help="fit the reward model on K folds and predict each row out of fold (0 = one model on all rows)")
    ope.add_argument("--refit-boot", type=int, default=0, metavar="B",
                     help="CIs from B bootstrap replicates that also refit the reward model (slower, honest for DM)")
    ope.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    ope.add_argument("--alpha", type=float, default=0.05, help="CI level is 1 - alpha")
    ope.add_argument("--seed", type=int, default=0)
    ope.add_argument("--min-pscore", type=float, default=None, help="clip logged propensities from below")
    ope.add_argument("--truth-logs", help="on-policy logs of the evaluation policy: their mean reward is shown as ground truth")
    ope.add_argument("--out", required=True, help="run folder (config, metrics, provenance, estimates.json)")
    ope.set_defaults(func=run_ope)


def _overrides(items: list[str]) -> dict:
    return apply_overrides({}, items)


def _policy_specs(names: list[str], overrides: list[str], verb: str) -> list[dict[str, Any]]:
    """``--policy`` names plus ``--set NAME.KEY=VALUE`` overrides -> specs ``{"name": ..., **fields}``."""
    params = _overrides(overrides)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"--set names policies not being {verb}: {unknown} ({verb} {names})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"--policy names {twice} more than once")
    return [{"name": n, **params.get(n, {})} for n in names]


def _plain_config(data: Any) -> Any:
    """A run config as TOML-able data (TOML has no null: None values are left out)."""
    if isinstance(data, dict):
        return {k: _plain_config(v) for k, v in data.items() if v is not None}
    if isinstance(data, list | tuple):
        return [_plain_config(v) for v in data]
    return data


def _run_folder(out: str, *, kind: str, name: str, config: dict[str, Any], seed: int) -> Any:
    """The run folder ``out`` (a RunFolder: written aside and moved into place only when the command succeeds)."""
    from recforge.experiments.folder import RunFolder

    final = Path(out)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"--out must be a folder, got the file {final}")
    return RunFolder.create(final, kind=kind, name=name, config=_plain_config(config), seed=seed)


def _ci(values: np.ndarray, seed: int) -> dict[str, float]:
    """Mean of per-run values with a 95 % bootstrap CI over runs (the mean itself for one run)."""
    from recforge.bandits.bootstrap import bootstrap_stat

    mean, lo, hi = bootstrap_stat(np.asarray(values, dtype=np.float64)[:, None], lambda m: m[:, 0], n_boot=1000, seed=seed)
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def run_simulate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.build import make_env, make_policy
    from recforge.bandits.plots import plot_curves
    from recforge.bandits.simulators import simulate
    from recforge.cli.console import console

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    env_spec = {"name": args.env, **_overrides(args.env_set)}
    specs = _policy_specs(args.policy, args.policy_set, "run")
    for spec in specs:  # every config error before the run folder is touched
        make_policy(spec, make_env(env_spec), seed=args.seed)
    config = {"env": env_spec, "policies": specs, "rounds": args.rounds, "batch_size": args.batch_size,
              "repeats": args.repeats, "seed": args.seed}
    with _run_folder(args.out, kind="bandit-simulate", name=args.env, config=config, seed=args.seed) as run:
        results, summary, metrics, learned = [], [], {}, []
        for spec in specs:
            name, runs, seconds = spec["name"], [], 0.0
            for rep in range(args.repeats):
                env = make_env(env_spec)  # a fresh environment per run: same config seed, same world
                policy = make_policy(spec, env, seed=args.seed + rep)
                start = time.perf_counter()
                noise_seed = None if args.repeats == 1 else 7919 * (rep + 1) + args.seed
                runs.append(simulate(env, policy, args.rounds, batch_size=args.batch_size, env_name=args.env,
                                     noise_seed=noise_seed))
                seconds += time.perf_counter() - start
                if rep == 0:
                    learned.append(policy)
            final = np.array([r.cumulative_regret[-1] for r in runs])
            regret = _ci(final, args.seed)
            summary.append({"policy": name, "rounds": args.rounds, "repeats": args.repeats,
                            "mean_reward": float(np.mean([r.reward.mean() for r in runs])),
                            "mean_expected_reward": float(np.mean([r.expected.mean() for r in runs])),
                            "cumulative_regret": float(final.mean()), "regret_ci": [regret["ci_low"], regret["ci_high"]],
                            "regret_per_run": final.tolist(), "seconds": seconds})
            metrics[name] = {"cumulative_regret": regret,
                             "mean_reward": _ci(np.array([r.reward.mean() for r in runs]), args.seed),
                             "mean_expected_reward": _ci(np.array([r.expected.mean() for r in runs]), args.seed),
                             "_info": {"rounds": args.rounds, "repeats": args.repeats, "seconds": seconds,
                                       "regret_per_run": final.tolist()}}
            results.extend(runs)
        plot_curves(results, run.path)
        (run.path / "summary.json").write_text(
            json.dumps({"env": args.env, "env_params": {k: v for k, v in env_spec.items() if k != "name"},
                        "runs": summary}, indent=2), encoding="utf-8")
        for policy in learned:  # last: a failure before this leaves no half-made folder behind
            policy.save(run.artifact_dir / policy.name)
        run.write_metrics(metrics)
        run.finish(extra={"timings": {s["policy"]: s["seconds"] for s in summary}})
    table = Table(title=f"{args.env}: {args.rounds} rounds" + (f", {args.repeats} runs each" if args.repeats > 1 else ""))
    for col in ("policy", "mean reward", "cumulative regret", "95% CI", "seconds"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for s in summary:
        ci = f"[{s['regret_ci'][0]:.1f}, {s['regret_ci'][1]:.1f}]" if args.repeats > 1 else "(1 run)"
        table.add_row(s["policy"], f"{s['mean_reward']:.4f}", f"{s['cumulative_regret']:.1f}", ci, f"{s['seconds']:.2f}")
    console.print(table)
    console.print(f"wrote the run folder {args.out} (regret.png, reward.png, summary.json, metrics.json, artifact/)")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.bootstrap import bootstrap_stat
    from recforge.bandits.build import make_policy
    from recforge.bandits.env import ActionSpace
    from recforge.bandits.replay import replay
    from recforge.cli.console import console
    from recforge.data.feedback import read_logged_csv

    specs = _policy_specs(args.policy, args.policy_set, "replayed")
    logs = read_logged_csv(args.logs)
    space = ActionSpace(logs.n_actions, 0 if logs.context is None else logs.context.shape[1], logs.len_list)
    policies = [make_policy(spec, space, seed=args.seed) for spec in specs]
    logging_value = dict(zip(("mean", "ci_low", "ci_high"), bootstrap_stat(
        logs.reward[:, None], lambda m: m[:, 0], n_boot=args.n_boot, seed=args.seed)))
    config = {"logs": args.logs, "policies": specs, "batch_size": args.batch_size, "n_boot": args.n_boot, "seed": args.seed}
    with _run_folder(args.out, kind="bandit-replay", name="+".join(args.policy), config=config, seed=args.seed) as run:
        results, metrics = [], {"logging": {"value": logging_value, "_info": {"rows": logs.n_rounds}}}
        for policy in policies:
            res = replay(policy, logs, batch_size=args.batch_size, n_boot=args.n_boot, seed=args.seed)
            policy.action_vocab = logs.action_vocab
            metrics[policy.name] = {"value": {"mean": res.value, "ci_low": res.ci_low, "ci_high": res.ci_high},
                                    "_info": {"matched": res.n_matched, "scanned": res.n_scanned}}
            results.append((policy.name, res))
        for policy in policies:  # last: a failure before this leaves no half-made folder behind
            policy.save(run.artifact_dir / policy.name)
        run.write_metrics(metrics)
        run.finish(data_files=logs.meta["files"], extra={"logs": logs.meta["source"]})
    table = Table(title=f"replay on {logs.n_rounds} uniform-random rows of {args.logs}")
    for col in ("policy", "matched rows", "value", "95% CI low", "95% CI high"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    table.add_row("(logging policy)", str(logs.n_rounds), f"{logs.on_policy_value():.6f}", "", "")
    for name, res in results:
        table.add_row(name, str(res.n_matched), f"{res.value:.6f}", f"{res.ci_low:.6f}", f"{res.ci_high:.6f}")
    console.print(table)
    console.print(f"wrote the run folder {args.out}")
    return 0


def _prior(spec: str | None, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    if spec is None:
        raise ConfigError("--policy bernoulli-ts needs --prior (obd-all, obd-men, obd-women or a JSON file)")
    if spec.startswith("obd-"):
        from recforge.bandits.obd_prior import OBD_BTS_PRIOR

        campaign = spec[4:]
        if campaign not in OBD_BTS_PRIOR:
            raise ConfigError(f"--prior must be one of {['obd-' + c for c in OBD_BTS_PRIOR]} or a JSON file, got {spec!r}")
        data = OBD_BTS_PRIOR[campaign]
    else:
        data = _read_json(spec, "--prior")
    a, b = np.asarray(data.get("alpha", []), float), np.asarray(data.get("beta", []), float)
    if a.shape != (n_actions,) or b.shape != (n_actions,):
        raise ConfigError(f"--prior: alpha and beta must each have {n_actions} values, got {a.shape} and {b.shape}")
    return a, b


def _read_json(path: str, flag: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{flag}: file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc}", path=str(p)) from None
    if not isinstance(data, dict):
        raise DataError("expected a JSON object", path=str(p))
    return data


def _dist_from_json(spec: str, logs: Any) -> np.ndarray:
    """``{"action_dist": ...}`` -> (n_actions, len_list): a list in action-set order, or an object keyed by the log's
    external item ids (through its action vocabulary; ids not named get probability 0)."""
    from recforge.data.feedback import encode_actions

    n_actions, len_list = logs.n_actions, logs.len_list
    raw = _read_json(spec, "--policy").get("action_dist", [])
    if isinstance(raw, dict):
        if logs.action_vocab is None:
            raise ConfigError(f"--policy {spec}: action_dist keyed by item id needs a log with an action set")
        try:
            rows = np.asarray(list(raw.values()), dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("action_dist values must be numbers or lists of numbers", path=spec) from None
        dist = np.zeros((n_actions, *rows.shape[1:]))
        dist[encode_actions(logs.action_vocab, list(raw))] = rows
    else:
        try:
            dist = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("action_dist must be a list of numbers or of lists of numbers", path=spec) from None
    if dist.ndim == 1:
        dist = np.repeat(dist[:, None], len_list, axis=1)
    if dist.shape != (n_actions, len_list):
        raise ConfigError(f"--policy {spec}: action_dist must have shape ({n_actions},) or ({n_actions}, {len_list}), "
                          f"got {dist.shape}")
    return dist


def evaluation_dist(spec: str, logs: Any, prior: str | None, n_sim: int, seed: int) -> np.ndarray:
    """The evaluation policy's action distribution over the log's action set, (n_actions, len_list), from a --policy spec."""
    n_actions, len_list = logs.n_actions, logs.len_list
    if spec == "uniform":
        return np.full((n_actions, len_list), 1.0 / n_actions)
    if spec == "bernoulli-ts":
        from recforge.bandits.policies.mab import BernoulliTS

        a, b = _prior(prior, n_actions)
        return BernoulliTS(n_actions, len_list=len_list, prior_alpha=a, prior_beta=b, seed=seed).action_dist(n_sim)
    if spec.endswith(".json"):
        return _dist_from_json(spec, logs)
    raise ConfigError(f"--policy must be 'uniform', 'bernoulli-ts' or a .json file, got {spec!r}")


def run_ope(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.estimators import make_estimator, ope_input
    from recforge.bandits.refit import refit_bootstrap
    from recforge.bandits.reward_model import LogisticRewardModel, cross_fitted
    from recforge.cli.console import console
    from recforge.data.feedback import read_logged_csv

    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    for n in names:
        if n in ("sips", "iips", "rips"):
            raise ConfigError(f"{n} is a slate estimator; `recforge ope` evaluates per-slot logs (use the Python API for slates)")
    estimators = [make_estimator({"name": n}) for n in names]
    logs = read_logged_csv(args.logs, min_pscore=args.min_pscore)
    dist = evaluation_dist(args.policy, logs, args.prior, args.n_sim, args.seed)
    truth_logs = read_logged_csv(args.truth_logs, min_pscore=args.min_pscore or 1e-12) if args.truth_logs else None
    model_based = {"dm", "dr", "sndr", "switch-dr", "dr-os"}

    def fit(fb):
        if args.cross_fit:
            return cross_fitted(fb, args.cross_fit, l2=args.l2, seed=args.seed)
        return LogisticRewardModel(l2=args.l2).fit(fb).for_feedback(fb)

    config = {"logs": args.logs, "policy": args.policy, "prior": args.prior, "n_sim": args.n_sim,
              "estimators": [{"name": n} for n in names], "l2": args.l2, "cross_fit": args.cross_fit,
              "refit_boot": args.refit_boot, "n_boot": args.n_boot, "alpha": args.alpha, "seed": args.seed,
              "min_pscore": args.min_pscore, "truth_logs": args.truth_logs}
    with _run_folder(args.out, kind="ope", name=args.policy, config=config, seed=args.seed) as run:
        if args.refit_boot:
            estimates = refit_bootstrap(logs, dist, fit, tuple(names), n_boot=args.refit_boot, alpha=args.alpha,
                                        seed=args.seed)
        else:
            inp = ope_input(logs, dist, fit(logs) if model_based & set(names) else None)
            estimates = [e.estimate(inp, n_boot=args.n_boot, alpha=args.alpha, seed=args.seed) for e in estimators]
        truth = None if truth_logs is None else truth_logs.on_policy_value()
        payload = {"policy": args.policy, "logs": args.logs, "n_rounds": logs.n_rounds, "truth": truth,
                   "estimates": [e.to_dict() for e in estimates]}
        (run.path / "estimates.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        part: dict[str, Any] = {e.estimator: {"mean": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high} for e in estimates}
        part["_info"] = {"n_rounds": logs.n_rounds, "ci_level": 1 - args.alpha, "truth": truth}
        run.write_metrics({"ope": part})
        files = logs.meta["files"] + (truth_logs.meta["files"] if truth_logs is not None else [])
        run.finish(data_files=files, extra={"logs": logs.meta["source"]})
    level = f"{100 * (1 - args.alpha):g}%"
    table = Table(title=f"off-policy value of {args.policy} on {logs.n_rounds} logged rows")
    table.add_column("estimator")
    for col in ("value", f"{level} CI low", f"{level} CI high") + (("rel. error",) if truth is not None else ()):
        table.add_column(col, justify="right")
    for e in estimates:
        row = [e.estimator, f"{e.value:.6f}", f"{e.ci_low:.6f}", f"{e.ci_high:.6f}"]
        if truth is not None:
            row.append(f"{abs(e.value - truth) / truth:.3f}")
        table.add_row(*row)
    console.print(table)
    if truth is not None:
        console.print(f"on-policy value in {args.truth_logs}: {truth:.6f}")
    console.print(f"wrote the run folder {args.out} (estimates.json, metrics.json)")
    return 0
