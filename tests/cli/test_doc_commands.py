"""Every `recforge ...` command written in README.md and docs/ (fenced and indented code blocks, and inline code
spans in the prose) parses with the real parser, every `--preset` it names ships in the package, and every `train` /
`tune` line builds a valid run config (model name, `--set` keys and values).

Commands that need a long run, a server or real data are only parsed here; the quick ones on the bundled dataset
also run in their own tests (tests/cli/test_core_cli.py, the data walk-through in tests/data/test_own_data_doc.py, the
```python examples in tests/test_docs_examples.py)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from recforge.cli.main import build_parser
from recforge.errors import ConfigError
from recforge.experiments.presets import preset_path
from recforge.experiments.runs import resolve_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: words that mark an inline mention as a pattern, not a command (`recforge train MODEL ...`, `recforge crs …`)
PATTERN = re.compile(r"\.\.\.|…|<[a-z_ -]+>|\[[A-Z]|\bMODEL\b|\bRUN\b|\bDATA\b|\bCOMMAND\b|\bKEY=VALUE\b")


def _split_commands(text: str) -> list[list[str]]:
    """The `recforge ...` argument lists in one logical shell line (after `|`, `&&`, `;`, `&`, a `$` prompt or
    environment assignments); quoting as the shell reads it."""
    lexer = shlex.shlex(text, posix=False, punctuation_chars=True)  # keeps quotes: a quoted ';' is no separator
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out, cmd = [], []
    for token in [*lexer, ";"]:
        if token in ("|", "||", "&&", ";", "&"):
            while cmd and (cmd[0] == "$" or re.fullmatch(r"[A-Z_]+=\S*", cmd[0])):
                cmd = cmd[1:]
            if cmd and cmd[0] == "recforge":
                out.append(shlex.split(" ".join(cmd[1:])))
            cmd = []
        else:
            cmd.append(token)
    return out


def _blocks(text: str) -> list[str]:
    """Shell lines of fenced blocks (bash, sh, console, shell or unlabelled) and of indented code blocks."""
    lines = []
    for lang, body in re.findall(r"```([a-z]*)\n(.*?)```", text, re.S):
        if lang in ("", "bash", "sh", "shell", "console"):
            lines += body.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for block in re.findall(r"(?:^|\n\n)((?:    \S.*(?:\n|$))+)", prose):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def commands() -> list:
    """(kind, argv) per command: "run" for code blocks (a complete command line), "mention" for inline spans."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(ROOT).as_posix()
        for line in _blocks(text):
            for argv in _split_commands(line.strip()):
                found.append(pytest.param("line", argv, id=f"{name}:{' '.join(argv)[:60]}"))
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        prose = re.sub(r"\n(#+) [^\n]*[Nn]ot built[^\n]*\n.*?(?=\n#+ |\Z)", "\n", prose, flags=re.S)  # plans
        for span in re.findall(r"`(recforge [^`]+)`", prose):
            if not PATTERN.search(span):
                for argv in _split_commands(span):
                    found.append(pytest.param("mention", argv, id=f"{name}:inline:{' '.join(argv)[:60]}"))
    return found


def test_the_docs_hold_many_commands():
    """The extraction itself works: the docs name well over a hundred commands, in blocks and inline."""
    params = commands()
    ids = [p.id for p in params]
    assert len(ids) > 100 and sum(p.values[0] == "mention" for p in params) > 20
    assert any(i.startswith("docs/tuning.md:tune ease --data amazon-beauty") for i in ids)
    assert ["data", "info", "tests/data/corpus/realworld.csv", "--sep", ";", "--decimal", ","] in [
        p.values[1][:7] for p in params]  # quoted separators survive


def _subparser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """Walk the command words of ``argv`` down the real parser; (the innermost parser, the remaining words)."""
    parser = build_parser()
    words = list(argv)
    while words and not words[0].startswith("-"):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            break
        choices = subs[0].choices
        if "/" in words[0] and all(w in choices for w in words[0].split("/")):  # "train/evaluate/recommend"
            return parser, []
        assert words[0] in choices, f"`recforge {' '.join(argv)}`: no command {words[0]!r} (one of {sorted(choices)})"
        parser, words = choices[words[0]], words[1:]
    return parser, words


@pytest.mark.parametrize(("kind", "argv"), commands())
def test_documented_command_parses(kind, argv):
    """A command line parses completely; a mention in the prose names real commands and options; a named
    ``--preset`` ships in the package."""
    parser, rest = _subparser(argv)
    if kind == "mention":
        for word in rest:
            if word.startswith("-"):
                option = word.split("=")[0]
                assert option in parser._option_string_actions, f"`recforge {' '.join(argv)}`: no option {option}"
        return
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"`recforge {' '.join(argv)}` does not parse (exit {exc.code})")
    assert getattr(args, "func", None) is not None, f"`recforge {' '.join(argv)}` names no command"
    preset = getattr(args, "preset", None)
    if preset and not Path(preset).suffix:  # a shipped preset name, not a file
        path = preset_path(preset, args.model, args.data or "ml-latest-small")
        assert path.is_file(), f"`recforge {' '.join(argv)}`: no shipped preset {preset!r} for it"
    if argv[0] in ("train", "tune") and getattr(args, "config", None) is None:
        # the run config it builds is valid (model name, every --set key and value), without loading data
        try:
            resolve_config(args.model, args.data, None, args.overrides, args.seed, preset)
        except ConfigError as exc:
            pytest.fail(f"`recforge {' '.join(argv)}`: {exc}")


@pytest.mark.parametrize(("kind", "argv", "message"), [
    ("line", ["train", "ease", "--set", "model.l2=100", "model.recency=0.6"], "does not parse"),  # one value per --set
    ("line", ["train", "ease", "--set", "model.no_such_field=1"], "no_such_field"),
    ("line", ["train", "ease", "--data", "ml-100k", "--preset", "no-such-preset"], "no shipped preset"),
    ("mention", ["tune", "--no-such-flag"], "no option --no-such-flag"),
    ("mention", ["data", "no-such-command"], "no command .no-such-command."),
])
def test_a_broken_documented_command_fails(kind, argv, message):
    with pytest.raises((pytest.fail.Exception, AssertionError), match=message):
        test_documented_command_parses(kind, argv)
