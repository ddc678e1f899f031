"""Load time and peak memory of every named dataset (validation, vocabularies, catalog, sha256 check, statistics).

Each dataset is loaded in a fresh process (so peak RSS is per dataset); the time is the median of --repeat loads.
For the delimited rating files, the time of a bare polars parse (typed columns, no validation, no vocabularies) is
shown next to it as the reference for what the checks cost.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/data_load.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# name -> (file under RECFORGE_DATA_DIR, polars read_csv kwargs) for the bare-parse reference
BARE = {
    "ml-100k": ("ml-100k/u.data", {"separator": "\t", "has_header": False}),
    "ml-latest-small": ("ml-latest-small/ratings.csv", {}),
    "lastfm-hetrec": ("lastfm-hetrec2011/user_artists.dat", {"separator": "\t"}),
}


def child(name: str, repeat: int) -> dict:
    from recforge.data.datasets import load_dataset

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds = load_dataset(name)
        times.append(time.perf_counter() - t0)
    out = {"name": name, "load_s": statistics.median(times), "origin": ds.info["origin"],
           "interactions": ds.info["stats"]["interactions"],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name in BARE:
        import polars as pl

        path, kw = BARE[name]
        full = os.path.join(os.environ["RECFORGE_DATA_DIR"], path)
        bare = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            pl.read_csv(full, **kw)
            bare.append(time.perf_counter() - t0)
        out["bare_polars_s"] = statistics.median(bare)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeat)))
        return
    from recforge.data.datasets import DATASETS

    rows = []
    for name in args.datasets or list(DATASETS):
        res = subprocess.run([sys.executable, __file__, "--child", name, "--repeat", str(args.repeat)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print("| dataset | interactions | load_dataset (s, median) | bare polars parse (s) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        bare = f"{r['bare_polars_s']:.3f}" if "bare_polars_s" in r else "–"
        print(f"| {r['name']} ({r['origin']}) | {r['interactions']:,} | {r['load_s']:.2f} | {bare} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
