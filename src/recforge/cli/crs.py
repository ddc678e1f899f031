"""``recforge crs``: conversational recommendation — simulate, train, evaluate, build, chat.

``train`` and ``evaluate`` write the common run folder (:class:`recforge.experiments.folder.RunFolder`)::

    config.toml          the resolved config (``recforge crs train --config config.toml`` re-runs a training run)
    metrics.json         {"<split>": {"sr@15": {"mean", "ci_low", "ci_high"}, "at": ..., "hdcg": ..., "_info": {...}}}
    run.json             kind ("crs-train" / "crs-evaluate"), policy, dataset summary, timings, training statistics,
                         provenance (seed, versions, git commit, hardware, sha256 of the data files)
    artifact/            (train) the policy as a "crs_policy" artifact (recforge.conversational.train.save_policy)
    success_curve.png    SR@t per turn
    train.log

A run is written into a staging folder next to ``--out`` and moved into place only when complete: a failed command
never modifies an existing run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.table import Table

from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``recforge crs simulate|train|evaluate|build|chat``."""
    crs = sub.add_parser("crs", help="conversational recommendation: simulate, train, evaluate, build, chat")
    crs_sub = crs.add_subparsers(dest="crs_command", metavar="CRS_COMMAND")
    crs.set_defaults(func=lambda args: (crs.print_help(), 2)[1])

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=("binary", "multiple_choice"), default=None,
                       help="question style (default binary)")
        p.add_argument("--max-turns", type=int, default=None, help="T, turns before the dialogue fails (default 15)")
        p.add_argument("--list-size", type=int, default=None, help="k, items per recommendation (default 10)")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a run-config value, e.g. --set policy.hidden=32 --set scorer.epochs=5")

    p = crs_sub.add_parser("simulate", help="run simulated dialogues and print SR@T / AT / hDCG")
    p.add_argument("--data", default="lastfm-crs", help="dataset name or folder from `recforge crs build`")
    p.add_argument("--policy", default=None, help="policy name(s), comma-separated (crs_policy registry)")
    p.add_argument("--run", action="append", default=[], help="a trained CRS run folder (repeatable)")
    p.add_argument("--episodes", type=int, default=500, help="test dialogues (a seeded sample; 0 = all)")
    p.add_argument("--train-episodes", type=int, default=None,
                   help="training dialogues for trainable policies given by --policy (default 2000)")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--curve", default=None, metavar="PNG", help="write per-turn success curves to this PNG")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common(p)
    p.set_defaults(func=cmd_simulate)

    p = crs_sub.add_parser("train", help="train a policy into a run folder")
    p.add_argument("--data", default=None, help="dataset name or folder (default lastfm-crs)")
    p.add_argument("--policy", default=None, help="crs_policy registry name (default scpr)")
    p.add_argument("--config", default=None, help="TOML CRS run config (e.g. a run's config.toml)")
    p.add_argument("--train-episodes", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=None, help="test dialogues after training (0 = all)")
    p.add_argument("--out", default=None, help="run folder (default runs/crs-<policy>-<data>)")
    common(p)
    p.set_defaults(func=cmd_train)

    p = crs_sub.add_parser("evaluate", help="play a trained policy again and write an evaluation run folder")
    p.add_argument("run", help="CRS run folder written by `recforge crs train`")
    p.add_argument("--data", default=None, help="dataset (default: the run's)")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--episodes", type=int, default=1000, help="dialogues (a seeded sample; 0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="evaluation run folder (default: print only)")
    p.set_defaults(func=cmd_evaluate)

    p = crs_sub.add_parser("build", help="build a CRS dataset from attribute data")
    p.add_argument("--from", dest="source", choices=("movielens", "s3rec"), required=True,
                   help="movielens: ML-latest-small folder (genres + tags); s3rec: <Name>.txt + item2attributes JSON")
    p.add_argument("--input", required=True, help="ML folder, or the S3-Rec <Name>.txt file")
    p.add_argument("--attributes", default=None, help="S3-Rec <Name>_item2attributes.json (default: next to --input)")
    p.add_argument("--min-tag-items", type=int, default=2, help="movielens: keep tags used on at least this many movies")
    p.add_argument("--out", required=True, help="output folder (crs.json + crs.safetensors)")
    p.set_defaults(func=cmd_build)

    p = crs_sub.add_parser("chat", help="talk to a trained policy in the terminal (answers on stdin)")
    p.add_argument("run", help="CRS run folder written by `recforge crs train`")
    p.add_argument("--data", default=None, help="dataset (default: the run's)")
    p.add_argument("--user", default=None, help="external user id to personalise for (default: an average user)")
    p.set_defaults(func=cmd_chat)


def _console() -> Any:
    from recforge.cli.console import console

    return console


def _run_config(args: argparse.Namespace, base: dict[str, Any]) -> Any:
    from recforge.config import apply_overrides, from_dict
    from recforge.conversational.train import CRSRunConfig

    data = dict(base)
    setting = dict(data.get("setting", {}))
    for key, value in (("mode", args.mode), ("max_turns", args.max_turns), ("list_size", args.list_size)):
        if value is not None:
            setting[key] = value
    data["setting"] = setting
    for key in ("seed", "data", "train_episodes", "eval_episodes"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    name = (getattr(args, "policy", None) or "").split(",")[0].strip()
    if name and dict(data.get("policy", {})).get("name") != name:
        data["policy"] = {"name": name}  # another policy: the config's policy fields do not apply
    return from_dict(CRSRunConfig, apply_overrides(data, args.overrides))


def _metrics_table(reports: list[Any], title: str) -> Table:
    """Compact (fits 80 columns): SR@T with its CI, AT, hDCG; SR@5/SR@10 and curves are in --json."""
    t = reports[0].setting.max_turns
    table = Table(title=title)
    for col in ("policy", "n", f"SR@{t}", "95% CI", "AT", "hDCG", "sec"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)
    for r in reports:
        m = r.metrics
        sr = m[f"sr@{t}"]
        table.add_row(r.policy, str(len(r.turns)), f"{sr['mean']:.3f}", f"{sr['ci_low']:.3f}-{sr['ci_high']:.3f}",
                      f"{m['at']['mean']:.2f}", f"{m['hdcg']['mean']:.3f}", f"{r.seconds:.1f}")
    return table


def cmd_simulate(args: argparse.Namespace) -> int:
    from recforge.conversational.data import load_crs_dataset
    from recforge.conversational.episode import simulate
    from recforge.conversational.metrics import plot_success_curves
    from recforge.conversational.scorer import train_scorer
    from recforge.conversational.train import load_policy, make_policy
    from recforge.registry import resolve

    if not args.policy and not args.run:
        raise ConfigError("give --policy NAME[,NAME...] and/or --run RUN")
    cfg = _run_config(args, {"data": args.data})
    episodes = args.episodes or None
    ds = load_crs_dataset(cfg.data)
    policies = []
    names = [n.strip() for n in (args.policy or "").split(",") if n.strip()]
    classes = {n: resolve("crs_policy", n) for n in names}
    scorer = train_scorer(ds, cfg.scorer) if any(c.needs_scorer for c in classes.values()) else None
    for name, cls in classes.items():
        policy = make_policy(cfg.policy if name == cfg.policy["name"] else {"name": name}, ds, cfg.setting, scorer)
        if cls.trainable:
            policy.fit(ds, cfg.train_episodes, seed=cfg.seed)
        policies.append(policy)
    for run in args.run:
        policies.append(load_policy(run, ds, cfg.setting)[0])
    reports = [simulate(p, ds, cfg.setting, args.split, episodes, cfg.seed) for p in policies]
    if args.curve:
        plot_success_curves({r.policy: r.curve() for r in reports}, args.curve, title=f"{ds.name} ({cfg.setting.mode})")
    if args.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
    else:
        _console().print(_metrics_table(reports, f"{ds.name} · {args.split} · {cfg.setting.mode}"))
    return 0


def _write_report(run: Any, report: Any, dataset: Any, meta: dict[str, Any]) -> None:
    """metrics.json (with CIs), the success curve and run.json (with provenance) of a CRS run."""
    from recforge.conversational.metrics import plot_success_curves

    metrics: dict[str, Any] = dict(report.metrics)
    metrics["_info"] = {"episodes": int(len(report.turns)), "split": report.split, "mode": report.setting.mode,
                        "max_turns": report.setting.max_turns, "list_size": report.setting.list_size,
                        "success_curve": report.to_dict()["success_curve"]}
    run.write_metrics({report.split: metrics})
    plot_success_curves({report.policy: report.curve()}, run.path / "success_curve.png",
                        title=f"{report.policy} on {report.dataset} ({report.setting.mode})")
    run.finish(data_files=list(dataset.files), extra={"policy": report.policy, "dataset": dataset.summary(), **meta})


def train_run(config: Any, out: str | Path, dataset: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Train a CRS policy (:func:`recforge.conversational.train.fit_policy`) into run folder ``out``."""
    from recforge.conversational.train import fit_policy, save_policy
    from recforge.experiments.folder import RunFolder

    with RunFolder.create(out, kind="crs-train", name=config.policy["name"], config=config, seed=config.seed) as run:
        policy, report, meta = fit_policy(config, dataset)
        save_policy(policy, run.artifact_dir, config.data)
        _write_report(run, report, policy.dataset, meta)
    return policy, report, meta


def evaluate_run(config: Any, out: str | Path, dataset: Any = None) -> Any:
    """Play a trained policy again (:func:`recforge.conversational.train.evaluate_policy`) into run folder ``out``."""
    from recforge.conversational.train import evaluate_policy
    from recforge.experiments.folder import RunFolder

    with RunFolder.create(out, kind="crs-evaluate", name="crs-evaluate", config=config, seed=config.seed) as run:
        policy, report = evaluate_policy(config, dataset)
        _write_report(run, report, policy.dataset, {"timings": {"eval_s": report.seconds}})
    return report


def cmd_train(args: argparse.Namespace) -> int:
    from recforge.config import load_toml

    cfg = _run_config(args, load_toml(args.config) if args.config else {})
    name = cfg.policy["name"]
    out = Path(args.out) if args.out else Path("runs") / f"crs-{name}-{Path(cfg.data).name}"
    _, report, meta = train_run(cfg, out)
    console = _console()
    console.print(_metrics_table([report], f"{name} · {report.dataset} · test · {cfg.setting.mode}"))
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in meta["timings"].items())
    console.print(f"run folder: [bold]{out}[/] ({timings})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recforge.conversational.train import CRSEvalConfig, evaluate_policy

    cfg = CRSEvalConfig(run=args.run, data=args.data, split=args.split, episodes=args.episodes, seed=args.seed)
    report = evaluate_run(cfg, args.out) if args.out else evaluate_policy(cfg)[1]
    console = _console()
    console.print(_metrics_table([report], f"{report.policy} · {report.dataset} · {args.split} · {report.setting.mode}"))
    if args.out:
        console.print(f"run folder: [bold]{args.out}[/]")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from recforge.conversational.data import build_movielens, build_s3rec

    if args.source == "movielens":
        ds = build_movielens(args.input, min_tag_items=args.min_tag_items)
    else:
        ds = build_s3rec(args.input, args.attributes)
    ds.save(args.out)
    table = Table(title=f"CRS dataset written to {args.out}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in ds.summary().items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    _console().print(table)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from recforge.conversational.data import load_crs_dataset
    from recforge.conversational.train import load_policy

    ds = load_crs_dataset(args.data) if args.data else None
    policy, ds = load_policy(args.run, ds)
    return chat(policy, ds, _console(), sys.stdin, user=args.user)


def _read(stream: TextIO, console: Any, prompt: str) -> str | None:
    """Prompt, then one stripped line from ``stream``; None at end of input."""
    console.print(prompt, end=" ", highlight=False)
    line = stream.readline()
    if line == "":
        console.print()
        return None
    return line.strip()


def _find_attributes(names: list[str], text: str) -> list[int]:
    """Attribute ids whose name equals ``text`` (case-insensitive), else those containing it."""
    low = text.lower()
    exact = [a for a, n in enumerate(names) if n.lower() == low or n.lower().split(": ", 1)[-1] == low]
    return exact or [a for a, n in enumerate(names) if low in n.lower()]


def chat(policy: Any, ds: Any, console: Any, stream: TextIO, user: str | None = None) -> int:
    """A dialogue where a person (lines on ``stream``) plays the user: opens with an attribute, answers questions and
    accepts or rejects recommendation lists (shown with item titles). Same state updates as the simulator's loop."""
    import numpy as np

    from recforge.conversational.state import Ask, DialogueState

    setting = policy.setting
    uidx = -1 if user is None else ds.user_row(user)
    console.print(f"[bold]recforge chat[/] · {ds.name} · policy {policy.name} · up to {setting.max_turns} turns "
                  "(end of input quits)")
    first = None
    while first is None:
        text = _read(stream, console, "Name one thing you like (an attribute):")
        if text is None:
            return 0
        found = _find_attributes(ds.attr_names, text) if text else []
        if len(found) == 1:
            first = found[0]
        elif found:
            shown = found[:10]
            for n, a in enumerate(shown, start=1):
                console.print(f"  {n}) {ds.attr_names[a]}", highlight=False)
            pick = _read(stream, console, "Which one? (number)")
            if pick is None:
                return 0
            if pick.isdigit() and 1 <= int(pick) <= len(shown):
                first = shown[int(pick) - 1]
        else:
            console.print("No attribute matches that; try another word.")
    csc = ds.item_attrs.tocsc()
    state = DialogueState(user=uidx, candidates=np.ones(ds.n_items, dtype=bool))
    state.apply_answer((first,), (first,), csc, setting.filter_rejected)
    state.history.clear()
    policy.begin(state, np.random.default_rng(0))
    for turn in range(1, setting.max_turns + 1):
        state.turn = turn
        action = policy.act(state)
        if isinstance(action, Ask):
            accepted = _ask(action, ds, console, stream, turn)
            if accepted is None:
                return 0
            state.apply_answer(action.attributes, accepted, csc, setting.filter_rejected)
            policy.observe(state, action, accepted)
            continue
        table = Table(title=f"turn {turn}: my recommendations ({int(state.candidates.sum())} candidates left)")
        for col in ("#", "title", "id"):
            table.add_column(col)
        for n, i in enumerate(action.items, start=1):
            table.add_row(str(n), ds.item_titles[i], str(ds.item_ids[i]))
        console.print(table)
        while True:
            answer = _read(stream, console, "Is it one of these? (its number, or n)")
            if answer is None:
                return 0
            if answer.isdigit() and 1 <= int(answer) <= len(action.items):
                console.print(f"[bold green]Great — enjoy {ds.item_titles[action.items[int(answer) - 1]]}![/]")
                return 0
            if answer.lower() in ("n", "no"):
                break
            console.print("Please type a number from the list or n.")
        state.apply_rejection(action.items)
        policy.observe(state, action, None)
    console.print(f"Sorry, I did not find it within {setting.max_turns} turns.")
    return 0


def _ask(action: Any, ds: Any, console: Any, stream: TextIO, turn: int) -> tuple[int, ...] | None:
    """Put a question to the person; returns the accepted attributes (None at end of input)."""
    attrs = action.attributes
    if len(attrs) == 1:
        while True:
            answer = _read(stream, console, f"turn {turn}: Should it have [bold]{ds.attr_names[attrs[0]]}[/]? (y/n)")
            if answer is None:
                return None
            if answer.lower() in ("y", "yes", "n", "no"):
                return attrs if answer.lower().startswith("y") else ()
            console.print("Please answer y or n.")
    console.print(f"turn {turn}: Which of these should it have?")
    for n, a in enumerate(attrs, start=1):
        console.print(f"  {n}) {ds.attr_names[a]}", highlight=False)
    while True:
        answer = _read(stream, console, "numbers separated by spaces (empty = none):")
        if answer is None:
            return None
        parts = answer.replace(",", " ").split()
        if all(p.isdigit() and 1 <= int(p) <= len(attrs) for p in parts):
            return tuple(attrs[int(p) - 1] for p in dict.fromkeys(parts))
        console.print(f"Please type numbers between 1 and {len(attrs)}.")
