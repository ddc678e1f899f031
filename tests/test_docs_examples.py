"""Every ```python example in README.md and docs/*.md runs as written, in a scratch folder, so the docs cannot rot.

An HTML comment on the line right before the fence, ``<!-- example: ... -->``, can say:

- ``not run (why)``: skipped with that reason;
- ``needs RECFORGE_DATA_DIR``: reads a dataset that is not bundled (skipped, with the reason, where the data folder
  is absent); ``, NAME = PATH`` also puts that data file, unzipped, into the scratch folder as NAME;
- ``after `recforge ...` ``: a CLI command from the text before the example, run first in the same folder;
- ``with `recforge serve ... --port P` ``: a real server on 127.0.0.1:P while the example runs (fails if the port
  is taken).
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?:(<!-- example: [^\n]*-->)\n)?```python\n(.*?)^```", re.S | re.M)


def examples() -> list:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start(2))  # the fence's line, 1-based
            name = f"{doc.relative_to(ROOT)}:{line}"
            marker = match.group(1) or ""
            marks = [pytest.mark.skip(reason=marker[5:-4].strip())] if "not run" in marker else []
            after = re.search(r"after `(recforge [^`]+)`", marker)
            serve = re.search(r"with `(recforge serve [^`]+)`", marker)
            data_file = re.search(r"(\S+) = (\S+) -->", marker)
            found.append(pytest.param(match.group(2), "needs RECFORGE_DATA_DIR" in marker,
                                      after.group(1) if after else "", serve.group(1) if serve else "",
                                      data_file.groups() if data_file else None, id=name, marks=marks))
    return found


def test_the_docs_have_examples():
    assert len(examples()) >= 15


def python(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run ``python *args`` in ``cwd``; fail with the tail of its stderr."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@contextmanager
def serving(command: str, cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """``command`` (``recforge serve ... --port P``) as a process until the block ends; waits for /health."""
    args = shlex.split(command)
    url = f"http://127.0.0.1:{args[args.index('--port') + 1]}/health"
    with open(cwd / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-3000:]
            with suppress(httpx.TransportError):
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server not healthy in 90 s"
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(("code", "needs_data", "after", "serve", "data_file"), examples())
def test_example_runs(code: str, needs_data: bool, after: str, serve: str, data_file: tuple[str, str] | None,
                      tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if needs_data:
        data_dir = request.getfixturevalue("data_dir")  # skips with its reason where RECFORGE_DATA_DIR is absent
        if data_file:
            name, source = data_file
            with (gzip.open if source.endswith(".gz") else open)(data_dir / source, "rb") as src:
                (tmp_path / name).write_bytes(src.read())
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if env.get("RECFORGE_DATA_DIR"):  # the examples run in a scratch folder: a relative data path would point nowhere
        env["RECFORGE_DATA_DIR"] = str(Path(env["RECFORGE_DATA_DIR"]).resolve())
    if after:
        python(["-m", *shlex.split(after)], tmp_path, env)
    with serving(serve, tmp_path, env) if serve else nullcontext():
        python(["-c", code], tmp_path, env)


TOML_FENCE = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)


def run_configs() -> list:
    """Every ```toml block in README.md and docs/*.md that is a run config (it has a [model] table)."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for match in TOML_FENCE.finditer(text):
            if "[model]" in match.group(1):
                found.append(pytest.param(match.group(1), id=f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, match.start(1))}"))
    return found


@pytest.mark.parametrize("text", run_configs())
def test_run_config_examples_resolve(text: str, tmp_path: Path) -> None:
    """A run config shown in the docs is valid as written: known keys, registered names, splitter parameters."""
    from recforge.experiments.runs import resolve_config

    (tmp_path / "run.toml").write_text(text)
    resolve_config(config_file=tmp_path / "run.toml")  # raises ConfigError for an unknown key, name or parameter


SHELL_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(recforge [^`]+)`")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _recforge_words(line: str) -> list[str] | None:
    """The arguments of a ``recforge ...`` shell line (env assignments, a venv prefix and comments dropped)."""
    words = shlex.split(line, comments=True) if line.strip() else []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    for end, word in enumerate(words):  # one command: up to a shell operator
        if word in ("&", "&&", "|", "||"):  # (a ';' may be a quoted argument: --sep ';')
            words = words[:end]
            break
    return words[1:] if words and Path(words[0]).name == "recforge" else None


def shell_commands() -> list:
    """Every ``recforge ...`` command line in a non-python fenced block of README.md and docs/ (continuations joined)."""
    found = []
    for doc in _docs():
        text = doc.read_text()
        for match in SHELL_FENCE.finditer(text):
            if match.group(1) == "python":
                continue
            for line in match.group(2).replace("\\\n", " ").splitlines():
                words = _recforge_words(line)
                if words is not None:
                    found.append(pytest.param(words, id=f"{doc.relative_to(ROOT)}:{' '.join(words)[:60]}"))
    return found


def inline_commands() -> list:
    """Every `recforge ...` code span in the prose (a command's name, often with placeholders such as N)."""
    return [pytest.param(shlex.split(m.group(1))[1:], id=f"{doc.relative_to(ROOT)}:{m.group(1)[:60]}")
            for doc in _docs() for m in INLINE.finditer(doc.read_text())]


def test_the_docs_have_commands():
    assert len(shell_commands()) >= 40 and len(inline_commands()) >= 20


@functools.cache
def _parser() -> object:
    from recforge.cli.main import build_parser

    return build_parser()


def _parse(argv: list[str]) -> tuple[int, object]:
    try:
        return 0, _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on a usage error, 0 for --help
        return int(exc.code or 0), None


@pytest.mark.parametrize("argv", shell_commands())
def test_shell_command_parses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A `recforge` command shown in the docs is accepted by the CLI's own argument parser as written; a train or
    tune command's config (model, --set keys, --preset) also resolves, without loading data or training."""
    code, args = _parse(argv)
    assert code == 0, capsys.readouterr().err[-2000:]
    if args is not None and args.command in ("train", "tune") and not args.config and not getattr(args, "resume", None):
        from recforge.experiments.runs import resolve_config

        overrides = [*args.overrides, "refit=true"] if args.refit else args.overrides
        resolve_config(args.model, args.data, None, overrides, args.seed, preset=getattr(args, "preset", None))


@pytest.mark.parametrize("argv", inline_commands())
def test_inline_command_names_an_existing_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`recforge data get NAME [--dest DIR]` in prose: the (sub)command it names exists (its --help exits 0);
    `recforge train/evaluate` names each of them."""
    for first in argv[0].split("/") if argv else [""]:
        path: list[str] = []
        for word in [first, *argv[1:]]:
            if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                break
            path.append(word)
            if _parse([*path, "--help"])[0] != 0:
                path.pop()
                break
        assert path or argv[:1] == ["--help"], argv
        assert _parse([*path, "--help"])[0] == 0
    capsys.readouterr()
