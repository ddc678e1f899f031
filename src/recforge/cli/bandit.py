"""Bandit subcommands: ``recforge bandit simulate`` (regret/reward curves) and ``recforge ope`` (off-policy estimates)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from recforge.config import apply_overrides
from recforge.errors import ConfigError, DataError
from recforge.registry import ENVIRONMENTS, POLICIES

DEFAULT_ESTIMATORS = "dm,ips,snips,dr,sndr,switch-dr,dr-os"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bandit simulate`` and ``ope``."""
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
    sim.add_argument("--out", required=True, help="output folder (regret.png, reward.png, summary.json)")
    sim.set_defaults(func=run_simulate)

    rep = bsub.add_parser("replay", help="replay a learning policy on uniformly random logs (Li et al. 2011)")
    rep.add_argument("--logs", required=True, help="uniform-random logged feedback CSV (Open Bandit Dataset layout)")
    rep.add_argument("--policy", required=True, action="append", choices=sorted(set(POLICIES) - {"periodic", "periodic-ucb"}),
                     help="policy to replay (repeat to compare)")
    rep.add_argument("--batch-size", type=int, default=1, help="rows per select/update batch")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--set", dest="policy_set", action="append", default=[], metavar="POLICY.KEY=VALUE",
                     help="policy config override, e.g. epsilon-greedy.epsilon=0.05")
    rep.set_defaults(func=run_replay)

    ope = sub.add_parser("ope", help="off-policy evaluation of a policy on logged bandit feedback")
    ope.add_argument("--logs", required=True, help="logged feedback CSV in the Open Bandit Dataset layout (or its folder)")
    ope.add_argument("--policy", required=True,
                     help="evaluation policy: 'uniform', 'bernoulli-ts' (needs --prior) or a JSON file {\"action_dist\": ...} "
                          "with shape (n_actions,) or (n_actions, len_list)")
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
    ope.add_argument("--out", help="write the estimates as JSON here")
    ope.set_defaults(func=run_ope)


def _overrides(items: list[str]) -> dict:
    return apply_overrides({}, items)


def run_simulate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.bootstrap import bootstrap_stat
    from recforge.bandits.build import make_env, make_policy
    from recforge.bandits.plots import plot_curves
    from recforge.bandits.simulators import simulate
    from recforge.cli.console import console

    env_params = _overrides(args.env_set)
    policy_params = _overrides(args.policy_set)
    unknown = sorted(set(policy_params) - set(args.policy))
    if unknown:
        raise ConfigError(f"--set names policies not being run: {unknown} (running {args.policy})")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    results, summary = [], []
    for name in args.policy:
        runs, seconds = [], 0.0
        for rep in range(args.repeats):
            env = make_env(args.env, env_params)  # a fresh environment per run: same config seed, same world
            policy = make_policy(name, env, policy_params.get(name), seed=args.seed + rep)
            start = time.perf_counter()
            noise_seed = None if args.repeats == 1 else 7919 * (rep + 1) + args.seed
            runs.append(simulate(env, policy, args.rounds, batch_size=args.batch_size, env_name=args.env, noise_seed=noise_seed))
            seconds += time.perf_counter() - start
        final = np.array([r.cumulative_regret[-1] for r in runs])
        _, lo, hi = bootstrap_stat(final[:, None], lambda m: m[:, 0], n_boot=1000, seed=args.seed)
        summary.append({"policy": name, "rounds": args.rounds, "repeats": args.repeats,
                        "mean_reward": float(np.mean([r.reward.mean() for r in runs])),
                        "mean_expected_reward": float(np.mean([r.expected.mean() for r in runs])),
                        "cumulative_regret": float(final.mean()), "regret_ci": [lo, hi],
                        "regret_per_run": final.tolist(), "seconds": seconds})
        results.extend(runs)
    out = Path(args.out)
    paths = plot_curves(results, out)
    (out / "summary.json").write_text(json.dumps({"env": args.env, "env_params": env_params, "runs": summary}, indent=2))
    table = Table(title=f"{args.env}: {args.rounds} rounds" + (f", {args.repeats} runs each" if args.repeats > 1 else ""))
    for col in ("policy", "mean reward", "cumulative regret", "95% CI", "seconds"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for s in summary:
        ci = f"[{s['regret_ci'][0]:.1f}, {s['regret_ci'][1]:.1f}]" if args.repeats > 1 else "(1 run)"
        table.add_row(s["policy"], f"{s['mean_reward']:.4f}", f"{s['cumulative_regret']:.1f}", ci, f"{s['seconds']:.2f}")
    console.print(table)
    console.print(f"wrote {', '.join(str(p) for p in paths)} and {out / 'summary.json'}")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.logged import read_logged_csv
    from recforge.bandits.replay import replay
    from recforge.cli.console import console
    from recforge.config import from_dict
    from recforge.registry import resolve

    params = _overrides(args.policy_set)
    unknown = sorted(set(params) - set(args.policy))
    if unknown:
        raise ConfigError(f"--set names policies not being replayed: {unknown} (replaying {args.policy})")
    logs = read_logged_csv(args.logs)
    dim = 0 if logs.context is None else logs.context.shape[1]
    table = Table(title=f"replay on {logs.n_rounds} uniform-random rows of {args.logs}")
    for col in ("policy", "matched rows", "value", "95% CI low", "95% CI high"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    table.add_row("(logging policy)", str(logs.n_rounds), f"{logs.on_policy_value():.6f}", "", "")
    for name in args.policy:
        cls = resolve("policy", name)
        policy = cls(logs.n_actions, dim=dim, len_list=logs.len_list, config=from_dict(cls.config_class, params.get(name, {})),
                     seed=args.seed)
        res = replay(policy, logs, batch_size=args.batch_size, seed=args.seed)
        table.add_row(name, str(res.n_matched), f"{res.value:.6f}", f"{res.ci_low:.6f}", f"{res.ci_high:.6f}")
    console.print(table)
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


def evaluation_dist(spec: str, n_actions: int, len_list: int, prior: str | None, n_sim: int, seed: int) -> np.ndarray:
    """The evaluation policy's action distribution, (n_actions, len_list), from a --policy spec."""
    if spec == "uniform":
        return np.full((n_actions, len_list), 1.0 / n_actions)
    if spec == "bernoulli-ts":
        from recforge.bandits.policies.mab import BernoulliTS

        a, b = _prior(prior, n_actions)
        return BernoulliTS(n_actions, len_list=len_list, prior_alpha=a, prior_beta=b, seed=seed).action_dist(n_sim)
    if spec.endswith(".json"):
        dist = np.asarray(_read_json(spec, "--policy").get("action_dist", []), dtype=np.float64)
        if dist.ndim == 1:
            dist = np.repeat(dist[:, None], len_list, axis=1)
        if dist.shape != (n_actions, len_list):
            raise ConfigError(f"--policy {spec}: action_dist must have shape ({n_actions},) or ({n_actions}, {len_list}), got {dist.shape}")
        return dist
    raise ConfigError(f"--policy must be 'uniform', 'bernoulli-ts' or a .json file, got {spec!r}")


def run_ope(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.bandits.estimators import make_estimator, ope_input
    from recforge.bandits.logged import read_logged_csv
    from recforge.bandits.refit import refit_bootstrap
    from recforge.bandits.reward_model import LogisticRewardModel, cross_fitted
    from recforge.cli.console import console

    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    for n in names:
        if n in ("sips", "iips", "rips"):
            raise ConfigError(f"{n} is a slate estimator; `recforge ope` evaluates per-slot logs (use the Python API for slates)")
    logs = read_logged_csv(args.logs, min_pscore=args.min_pscore)
    dist = evaluation_dist(args.policy, logs.n_actions, logs.len_list, args.prior, args.n_sim, args.seed)
    model_based = {"dm", "dr", "sndr", "switch-dr", "dr-os"}

    def fit(fb):
        if args.cross_fit:
            return cross_fitted(fb, args.cross_fit, l2=args.l2, seed=args.seed)
        return LogisticRewardModel(l2=args.l2).fit(fb).for_feedback(fb)

    if args.refit_boot:
        estimates = refit_bootstrap(logs, dist, fit, tuple(names), n_boot=args.refit_boot, alpha=args.alpha, seed=args.seed)
    else:
        inp = ope_input(logs, dist, fit(logs) if model_based & set(names) else None)
        estimates = [make_estimator(n).estimate(inp, n_boot=args.n_boot, alpha=args.alpha, seed=args.seed) for n in names]
    truth = None
    if args.truth_logs:
        truth = read_logged_csv(args.truth_logs, min_pscore=args.min_pscore or 1e-12).on_policy_value()
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
    if args.out:
        payload = {"policy": args.policy, "logs": args.logs, "n_rounds": logs.n_rounds, "truth": truth,
                   "estimates": [e.to_dict() for e in estimates]}
        Path(args.out).write_text(json.dumps(payload, indent=2))
    return 0
