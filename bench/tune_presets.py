"""Produce the shipped `tuned` presets: run `recforge tune ... --refit` per (model, dataset) and copy each run's
preset.toml into src/recforge/presets/tuned/<dataset>/<model>.toml.

Every preset file records the `recforge tune` command that produced it, the validation figure it was chosen on and
the refit's test figure. This script adds the machine conditions (wall time, CPU time, load average) to
bench/results/tune_presets.jsonl, one line per study.

    RECFORGE_DATA_DIR=... python bench/tune_presets.py --data amazon-beauty --models ease --trials 12 --timeout 1080 \
        --enqueue l2=100,recency=0.6
    python bench/tune_presets.py --data ml-latest-small --models itemknn userknn ease als --trials 16
    python bench/tune_presets.py --data ml-100k --models gru4rec --trials 6 --timeout 540
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "src" / "recforge" / "presets" / "tuned"
RESULTS = ROOT / "bench" / "results" / "tune_presets.jsonl"


def tune_one(model: str, data: str, trials: int, timeout: float, out: Path, extra: list[str], threads: int) -> dict:
    cmd = ["recforge", "tune", model, "--data", data, "--trials", str(trials)]
    cmd += ["--timeout", str(float(timeout))] if timeout else []
    cmd += [*extra, "--refit"]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)) if threads else None
    subprocess.run([sys.executable, "-m", "recforge", *cmd[1:], "--out", str(out)], check=True, env=env)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t0
    target = PRESETS / data / f"{model}.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "preset.toml", target)
    run = json.loads((out / "run.json").read_text())
    test = json.loads((out / "metrics.json").read_text())["test"]
    return {"model": model, "dataset": data, "command": " ".join(cmd), "trials": run["study"]["finished"],
            "best_valid_ndcg@10": run["study"]["best_valid"], "params": run["study"]["best_params"],
            "test": {k: v for k, v in test.items() if not k.startswith("_")},
            "wall_s": round(wall, 1), "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(), "threads": threads or None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=0.0, help="seconds after which a study starts no new trial")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="passed to recforge tune")
    ap.add_argument("--enqueue", action="append", default=[], help="passed to recforge tune (settings tried first)")
    ap.add_argument("--out", default="bench/out/tune", help="where the tune run folders go")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenMP/MKL threads of each study's process (default 1: the machine is shared; 0 = library default)")
    args = ap.parse_args()
    extra = [a for o in args.overrides for a in ("--set", o)] + [a for e in args.enqueue for a in ("--enqueue", e)]
    for model in args.models:
        row = tune_one(model, args.data, args.trials, args.timeout, Path(args.out) / f"{model}-{args.data}", extra,
                       args.threads)
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
