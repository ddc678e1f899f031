"""Side-by-side with the Open Bandit Pipeline (obp 0.5.7): same inputs, point estimates and time.

obp declares Python < 3.11 but its estimators run on 3.11; install it outside the repo without touching our venv:

    export RECFORGE_PEERS_DIR=../shared/peers   # where the peer packages go (outside the repository)
    .venv/bin/pip install --no-deps --ignore-requires-python --target $RECFORGE_PEERS_DIR/obp_pkg obp==0.5.7
    .venv/bin/pip install --target $RECFORGE_PEERS_DIR/obp_deps scikit-learn pandas pyyaml seaborn tqdm
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/bandits.py --dump-obp-inputs bench/out/obd_all_inputs.npz
    PYTHONPATH=$RECFORGE_PEERS_DIR/obp_pkg:$RECFORGE_PEERS_DIR/obp_deps .venv/bin/python bench/bandits_obp.py \
        --inputs bench/out/obd_all_inputs.npz

This script imports obp only (no recforge: the two use different numpy builds on that path). Part 1 feeds obp the exact
OBD inputs (evaluation action distribution, reward-model predictions) that recforge used and prints both point
estimates; part 2 times obp's estimators (point estimate, and bootstrap interval) on the synthetic 1M-round log that
``bench/bandits.py`` times for recforge (same generator and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from obp.ope import (  # noqa: E402
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
)


def estimators(tau: float, lam: float) -> dict:
    return {
        "dm": DirectMethod(),
        "ips": InverseProbabilityWeighting(),
        "snips": SelfNormalizedInverseProbabilityWeighting(),
        "dr": DoublyRobust(),
        "sndr": SelfNormalizedDoublyRobust(),
        "switch-dr": SwitchDoublyRobust(lambda_=tau),
        "dr-os": DoublyRobustWithShrinkage(lambda_=lam),
    }


def synthetic(n: int = 1_000_000, k: int = 10, seed: int = 0) -> dict:
    """The 1M-round log of bench/bandits.py:obp_speed_inputs (keep the two in sync)."""
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.ones(k), size=n)
    action = rng.integers(0, k, n)
    return {"action": action, "reward": (rng.random(n) < 0.1).astype(float), "pscore": np.full(n, 1.0 / k),
            "action_dist": dist[:, :, None], "q": (rng.random((n, k)) * 0.2)[:, :, None], "position": np.zeros(n, dtype=int)}


def run(est, data: dict, interval: int = 0):
    kw = {"reward": data["reward"], "action": data["action"], "pscore": data["pscore"], "position": data["position"],
          "action_dist": data["action_dist"], "estimated_rewards_by_reg_model": data["q"]}
    if interval:
        return est.estimate_interval(**kw, n_bootstrap_samples=interval, random_state=0)
    return est.estimate_policy_value(**kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", required=True, help="npz written by bench/bandits.py --dump-obp-inputs")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap samples for the timed obp intervals")
    parser.add_argument("--out", default="bench/results/bandits_obp.json")
    args = parser.parse_args()
    z = np.load(args.inputs)
    n, k, length = len(z["action"]), int(z["n_actions"]), int(z["len_list"])
    obd = {"action": z["action"], "reward": z["reward"], "pscore": z["pscore"], "position": z["position"],
           "action_dist": np.broadcast_to(z["dist"][None], (n, k, length)).copy(), "q": z["q"]}
    ours = dict(zip(z["names"].tolist(), z["values"].tolist()))
    result = {"obd_all": [], "speed": []}
    print("| estimator | recforge | obp 0.5.7 | abs. difference |")
    print("|---|---:|---:|---:|")
    for name, est in estimators(float(z["tau"]), float(z["lam"])).items():
        v = float(run(est, obd))
        result["obd_all"].append({"estimator": name, "recforge": ours[name], "obp": v})
        print(f"| {name} | {ours[name]:.6f} | {v:.6f} | {abs(v - ours[name]):.2e} |")
    data = synthetic()
    for name, est in estimators(100.0, 100.0).items():
        start = time.perf_counter()
        run(est, data)
        point = time.perf_counter() - start
        start = time.perf_counter()
        run(est, data, interval=args.n_boot)
        interval = time.perf_counter() - start
        result["speed"].append({"estimator": name, "point_s": point, "interval_s": interval, "n_boot": args.n_boot})
        print(f"obp {name}: point {point:.2f} s, interval ({args.n_boot} bootstrap samples) {interval:.1f} s")
    total = sum(r["point_s"] + r["interval_s"] for r in result["speed"])
    print(f"obp total, 7 estimators with intervals on 1M rounds: {total:.1f} s")
    result["speed_total_s"] = total
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
