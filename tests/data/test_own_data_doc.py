"""The "Your own data" walk-through of docs/datasets.md runs as written: its commands (from a folder where the
repository's tests/ is visible), its Python example, and the counts it states."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from recforge.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.search(r"^## Your own data\n(.*?)^## ", (ROOT / "docs" / "datasets.md").read_text(), re.S | re.M).group(1)


def _commands() -> list[tuple[list[str], str | None]]:
    """(argv, the error the doc shows right below it, if any) for every `recforge ...` line of the section."""
    out: list[tuple[list[str], str | None]] = []
    for block in re.findall(r"```bash\n(.*?)```", SECTION, re.S):
        lines = block.splitlines()
        for k, line in enumerate(lines):
            if line.startswith("recforge "):
                nxt = lines[k + 1] if k + 1 < len(lines) else ""
                shown = nxt[len("# error: "):] if nxt.startswith("# error: ") else None
                out.append((shlex.split(line)[1:], shown))
    return out


def test_the_commands_run_as_documented(tmp_path, monkeypatch, capsys):
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "400")
    commands = _commands()
    assert len(commands) == 4
    for argv, shown in commands:
        code = main(argv)
        err = capsys.readouterr().err
        if shown is None:
            assert code == 0, (argv, err)
        else:
            assert code == 1 and err.strip() == "error: " + shown, err
    assert (tmp_path / "runs" / "my-data" / "metrics.json").is_file()


def test_the_counts_stated_in_the_doc(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    argv = next(argv for argv, shown in _commands() if argv[:2] == ["data", "info"] and shown is None)
    assert main([*argv, "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    stats = info["stats"]
    table = dict(re.findall(r"│ (\w[\w ]*?)\s+│ (.*?)\s+│", SECTION))
    assert table["users"] == str(stats["users"]) == "3"
    assert table["items"] == str(stats["items"]) == "5"
    assert table["interactions"] == str(stats["interactions"]) == "10"
    assert table["repeated pairs"].startswith(str(stats["duplicate_pairs_rows"]))
    assert table["removed on load"] == "blank_line: 2" and info["load"]["removed"] == {"blank_line": 2}
    assert table["values"] == f"1 .. 5 ({stats['value']['distinct']} distinct)"


def test_the_python_example(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
    exec(compile(code, "docs/datasets.md", "exec"), {})  # noqa: S102 (the documented example itself)
    assert capsys.readouterr().out.split() == ["3", "10"]
