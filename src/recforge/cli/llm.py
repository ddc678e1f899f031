"""LLM subcommands: ``recforge llm ping`` (one request per supported verb, with latency and token counts)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``llm ping``."""
    llm = sub.add_parser("llm", help="language-model backends: check one answers")
    lsub = llm.add_subparsers(dest="llm_command", metavar="SUBCOMMAND")
    ping = lsub.add_parser("ping", help="send one request per supported verb and report what came back")
    ping.add_argument("--backend", default="mock", help="registered backend: mock, openai_compat, hf_local")
    ping.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="backend config field, e.g. base_url=http://127.0.0.1:8000/v1 model=qwen (repeatable)")
    ping.add_argument("--out", default=None, help="also write a run folder with the answers and usage counters")
    ping.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    ping.set_defaults(func=run_ping)
    llm.set_defaults(func=lambda args: (llm.print_help(), 2)[1])


def make_client(backend: str, overrides: list[str]) -> Any:
    """The registered backend built from ``key=value`` overrides of its config."""
    from recforge.config import apply_overrides
    from recforge.registry import configured

    cls, config = configured("llm", {"name": backend, **apply_overrides({}, overrides)}, prefix="--set ")
    return cls(config)


def ping(client: Any) -> dict[str, Any]:
    """One request per verb the client supports -> {verb: {...answer, seconds}}, plus ``usage``."""
    from recforge.protocols import GenerationRequest

    out: dict[str, Any] = {"backend": client.name, "capabilities": sorted(client.capabilities)}
    if "generate" in client.capabilities:
        start = time.perf_counter()
        gen = client.generate([GenerationRequest((("user", "Reply with one word: pong"),), max_tokens=8)])[0]
        if gen.error:
            from recforge.llm.base import LLMError

            raise LLMError(gen.error)
        out["generate"] = {"text": gen.text, "seconds": round(time.perf_counter() - start, 3)}
    if "score" in client.capabilities:
        start = time.perf_counter()
        lp = client.score("The capital of France is", [" Paris", " a banana"])
        out["score"] = {"log_probs": [round(float(v), 4) for v in lp], "seconds": round(time.perf_counter() - start, 3)}
    if "embed" in client.capabilities:
        start = time.perf_counter()
        out["embed"] = {"dim": int(client.embed(["ping"]).shape[1]), "seconds": round(time.perf_counter() - start, 3)}
    out["usage"] = client.usage.to_dict()
    return out


def run_ping(args: argparse.Namespace) -> int:
    from recforge.cli.console import console

    client = make_client(args.backend, args.set)
    result = ping(client)
    if args.out:
        from recforge.experiments.folder import RunFolder

        with RunFolder.create(args.out, kind="llm-ping", name=client.name, config=client.config) as run:
            run.write_metrics({"ping": {k: v for k, v in result.items() if k in ("generate", "score", "embed")}})
            run.finish(extra={"llm": result["usage"]})
    if args.format == "json":
        console.print_json(json.dumps(result))
        return 0
    console.print(f"{client.name}: supports {', '.join(result['capabilities'])}", highlight=False)
    for verb in ("generate", "score", "embed"):
        if verb in result:
            console.print(f"  {verb}: {json.dumps(result[verb])}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"  usage: {json.dumps(result['usage'])}", highlight=False, soft_wrap=True, markup=False)
    return 0
