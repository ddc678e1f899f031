"""Bandits and off-policy evaluation benchmark: Open Bandit Dataset check + speed rows.

1. OBD: estimate the value of the Bernoulli-TS policy (its Beta parameters from the OBP prior table, action distribution
   per slot by Monte Carlo) from the uniform-random logs, compare with the on-policy value (mean click) of the BTS logs;
   relative error per estimator, per campaign. Repeated with the BTS policy's empirical slot distribution in its own logs
   (what it actually did during the week), since its logged propensities show it was updated during the week.
2. Speed: all estimators on 1M logged rounds; the simulator with 1M rounds of a linear policy (LinUCB and linear TS,
   100 arms, d=10, batches of 1000).

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/bandits.py [--skip-obd] [--skip-speed] [--out bench/results/bandits.json]
"""

from __future__ import annotations

import os

# one BLAS thread: the machine is shared and small (n x 100) matmuls lose more to thread contention than they gain
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from recforge.bandits.bootstrap import bootstrap_stat  # noqa: E402
from recforge.bandits.build import make_env, make_policy  # noqa: E402
from recforge.bandits.estimators import OPEInput, estimate_all, ope_input  # noqa: E402
from recforge.bandits.obd_prior import OBD_BTS_PRIOR  # noqa: E402
from recforge.bandits.policies.mab import BernoulliTS  # noqa: E402
from recforge.bandits.refit import refit_bootstrap  # noqa: E402
from recforge.bandits.reward_model import LogisticRewardModel, cross_fitted  # noqa: E402
from recforge.bandits.simulators import simulate  # noqa: E402
from recforge.data.feedback import LoggedFeedback, read_open_bandit  # noqa: E402

ESTIMATORS = ("dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os")


def obd_check(data_dir: Path, n_sim: int, l2: float) -> list[dict]:
    rows = []
    for campaign in ("all", "men", "women"):
        random_logs = read_open_bandit("random", campaign, data_dir)
        bts_logs = read_open_bandit("bts", campaign, data_dir)
        prior = OBD_BTS_PRIOR[campaign]
        bts = BernoulliTS(random_logs.n_actions, len_list=random_logs.len_list, seed=0,
                          prior_alpha=np.asarray(prior["alpha"], float), prior_beta=np.asarray(prior["beta"], float))
        dists = {
            # (a) the fixed-parameter BTS policy of the OBP prior table, P(item at slot) by Monte Carlo (OBP's protocol)
            "prior-mc": bts.action_dist(n_sim),
            # (b) what the BTS policy actually did during the logged week: P(item at slot) = frequency in the BTS logs.
            # The logged BTS propensities vary row to row (the posterior was updated during the week), so (a) and (b)
            # differ; (b) is the policy whose on-policy value we compare with.
            "bts-frequency": _slot_frequencies(bts_logs),
        }
        tv = 0.5 * np.abs(dists["prior-mc"] - dists["bts-frequency"]).sum(axis=0).mean()
        truth, t_lo, t_hi = bootstrap_stat(bts_logs.reward[:, None], lambda m: m[:, 0], n_boot=2000)
        model = LogisticRewardModel(l2=l2).fit(random_logs)
        for variant, dist in dists.items():
            inp = ope_input(random_logs, dist, model.for_feedback(random_logs))
            for e in estimate_all(inp, ESTIMATORS, n_boot=2000):
                rows.append({"campaign": campaign, "policy": variant, "estimator": e.estimator, "estimate": e.value,
                             "ci_low": e.ci_low, "ci_high": e.ci_high, "truth": truth, "truth_ci": [t_lo, t_hi],
                             "relative_error": abs(e.value - truth) / truth, "tv_prior_vs_frequency": float(tv),
                             "clicks_random": int(random_logs.reward.sum()), "clicks_bts": int(bts_logs.reward.sum())})
    return rows


def obd_refit(data_dir: Path, n_sim: int, l2: float, n_boot: int) -> list[dict]:
    """Campaign "all", fixed-prior BTS: cross-fitted reward model (3 folds) and CIs from a bootstrap that refits it."""
    random_logs = read_open_bandit("random", "all", data_dir)
    truth = read_open_bandit("bts", "all", data_dir).on_policy_value()
    prior = OBD_BTS_PRIOR["all"]
    dist = BernoulliTS(random_logs.n_actions, len_list=random_logs.len_list, seed=0,
                       prior_alpha=np.asarray(prior["alpha"], float), prior_beta=np.asarray(prior["beta"], float)).action_dist(n_sim)
    ests = refit_bootstrap(random_logs, dist, lambda fb: cross_fitted(fb, 3, l2=l2), ESTIMATORS, n_boot=n_boot)
    return [{"estimator": e.estimator, "estimate": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "truth": truth,
             "relative_error": abs(e.value - truth) / truth, "n_boot": n_boot} for e in ests]


def _slot_frequencies(logs) -> np.ndarray:
    """Empirical P(item at slot) of a log, (K, L)."""
    counts = np.zeros((logs.n_actions, logs.len_list))
    np.add.at(counts, (logs.action, logs.pos()), 1.0)
    return counts / counts.sum(axis=0, keepdims=True)


def speed_estimators(n: int = 1_000_000, n_actions: int = 100, repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    inp = OPEInput(reward=(rng.random(n) < 0.1).astype(float), pscore=np.full(n, 1.0 / n_actions),
                   pi_e=rng.dirichlet(np.ones(n_actions), size=1)[0][rng.integers(0, n_actions, n)],
                   q_logged=rng.random(n) * 0.2, q_pi=rng.random(n) * 0.2)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        estimate_all(inp, ESTIMATORS, n_boot=1000)
        best = min(best, time.perf_counter() - start)
    return {"rounds": n, "estimators": list(ESTIMATORS), "n_boot": 1000, "seconds_best_of_3": best}


def obp_speed_inputs(n: int = 1_000_000, k: int = 10, seed: int = 0) -> dict:
    """The synthetic 1M-round log also timed for obp in bench/bandits_obp.py:synthetic (keep the two in sync)."""
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.ones(k), size=n)
    action = rng.integers(0, k, n)
    return {"action": action, "reward": (rng.random(n) < 0.1).astype(float), "pscore": np.full(n, 1.0 / k),
            "dist": dist, "q": rng.random((n, k)) * 0.2}


def speed_side_by_side(repeats: int = 3) -> dict:
    """recforge on the obp comparison log: ope_input from full (n, K) arrays + all 7 estimators with 1000-resample CIs."""
    d = obp_speed_inputs()
    fb = LoggedFeedback(action=d["action"], reward=d["reward"], pscore=d["pscore"], n_actions=d["dist"].shape[1])
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        inp = ope_input(fb, d["dist"], lambda rows, pos: d["q"][rows])
        estimate_all(inp, ESTIMATORS, n_boot=1000)
        best = min(best, time.perf_counter() - start)
    return {"rounds": len(d["action"]), "n_actions": d["dist"].shape[1], "n_boot": 1000, "seconds_best_of_3": best}


def dump_obp_inputs(data_dir: Path, path: str, n_sim: int, l2: float) -> None:
    """OBD "all" inputs exactly as recforge used them (fixed-prior BTS, logistic reward model) for bench/bandits_obp.py;
    prints recforge's point estimates (the "recforge" column of the side-by-side table)."""
    logs = read_open_bandit("random", "all", data_dir)
    prior = OBD_BTS_PRIOR["all"]
    dist = BernoulliTS(logs.n_actions, len_list=logs.len_list, seed=0, prior_alpha=np.asarray(prior["alpha"], float),
                       prior_beta=np.asarray(prior["beta"], float)).action_dist(n_sim)
    model = LogisticRewardModel(l2=l2).fit(logs)
    q = np.stack([model.predict(logs.context, np.full(logs.n_rounds, k)) for k in range(logs.len_list)], axis=2)
    ests = estimate_all(ope_input(logs, dist, model.for_feedback(logs)), ESTIMATORS, n_boot=0)
    for e in ests:
        print(f"recforge {e.estimator}: {e.value:.6f}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, action=logs.action, reward=logs.reward, pscore=logs.pscore, position=logs.pos(), dist=dist, q=q,
             n_actions=logs.n_actions, len_list=logs.len_list, names=np.array([e.estimator for e in ests]),
             values=np.array([e.value for e in ests]), tau=100.0, lam=100.0)


def speed_simulator(policy: str, n: int = 1_000_000) -> dict:
    env = make_env({"name": "contextual", "n_actions": 100, "dim": 10, "reward": "linear", "seed": 0})
    pol = make_policy({"name": policy}, env, seed=0)
    start = time.perf_counter()
    res = simulate(env, pol, n, batch_size=1000, env_name="contextual")
    return {"policy": policy, "rounds": n, "arms": 100, "dim": 10, "batch_size": 1000,
            "seconds": time.perf_counter() - start, **res.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-obd", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--n-sim", type=int, default=100_000)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--refit-boot", type=int, default=200, help="replicates of the refit bootstrap (0 = skip)")
    parser.add_argument("--out", default="bench/results/bandits.json")
    parser.add_argument("--dump-obp-inputs", metavar="NPZ", help="only write the OBD inputs for bench/bandits_obp.py")
    args = parser.parse_args()
    if args.dump_obp_inputs:
        root = os.environ.get("RECFORGE_DATA_DIR")
        if not root:
            raise SystemExit("set RECFORGE_DATA_DIR (e.g. ../shared/data)")
        dump_obp_inputs(Path(root) / "open-bandit-dataset-small", args.dump_obp_inputs, args.n_sim, args.l2)
        return
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)"}
    if not args.skip_obd:
        root = os.environ.get("RECFORGE_DATA_DIR")
        if not root:
            raise SystemExit("set RECFORGE_DATA_DIR (e.g. ../shared/data) for the Open Bandit Dataset check")
        result["obd"] = obd_check(Path(root) / "open-bandit-dataset-small", args.n_sim, args.l2)
        print("| campaign | evaluation policy | estimator | estimate [95% CI] | on-policy BTS value [95% CI] | relative error |")
        print("|---|---|---|---|---|---:|")
        for r in result["obd"]:
            print(f"| {r['campaign']} | {r['policy']} | {r['estimator']} | {r['estimate']:.5f} [{r['ci_low']:.5f}, {r['ci_high']:.5f}] | "
                  f"{r['truth']:.5f} [{r['truth_ci'][0]:.5f}, {r['truth_ci'][1]:.5f}] | {r['relative_error']:.3f} |")
        if args.refit_boot:
            start = time.perf_counter()
            result["obd_refit"] = obd_refit(Path(root) / "open-bandit-dataset-small", args.n_sim, args.l2, args.refit_boot)
            print(f"campaign all, cross-fitted model, refit bootstrap ({args.refit_boot} replicates, "
                  f"{time.perf_counter() - start:.0f} s):")
            for r in result["obd_refit"]:
                print(f"  {r['estimator']}: {r['estimate']:.5f} [{r['ci_low']:.5f}, {r['ci_high']:.5f}] "
                      f"rel. error {r['relative_error']:.3f}")
        tvs = {r["campaign"]: round(r["tv_prior_vs_frequency"], 3) for r in result["obd"]}
        print(f"mean total-variation distance per slot, prior-mc vs bts-frequency: {tvs}")
    if not args.skip_speed:
        result["speed_estimators"] = speed_estimators()
        print(f"all {len(ESTIMATORS)} estimators, 1M rounds, 1000 bootstrap resamples: "
              f"{result['speed_estimators']['seconds_best_of_3']:.2f} s")
        result["speed_side_by_side"] = speed_side_by_side()
        print(f"recforge on the obp comparison log (1M rounds, 10 actions, ope_input + 7 estimators with CIs): "
              f"{result['speed_side_by_side']['seconds_best_of_3']:.2f} s")
        result["speed_simulator"] = [speed_simulator(p) for p in ("linucb", "linear-ts")]
        for s in result["speed_simulator"]:
            print(f"simulator 1M rounds {s['policy']} (100 arms, d=10, batch 1000): {s['seconds']:.1f} s, "
                  f"mean regret/round {s['cumulative_regret'] / s['rounds']:.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
