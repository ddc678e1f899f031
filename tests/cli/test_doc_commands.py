"""Every `recforge ...` line of a ```bash block in README.md and docs/datasets.md parses with the real parser (the
data walk-through also runs, in tests/data/test_own_data_doc.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from recforge.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def commands() -> list:
    found = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "datasets.md"):
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"^[A-Z_]+=\S+\s+", "", line.strip())  # an environment assignment in front
                if line.startswith("recforge "):
                    argv = shlex.split(line, comments=True)[1:]
                    found.append(pytest.param(argv, id=f"{doc.name}:{' '.join(argv)[:60]}"))
    return found


@pytest.mark.parametrize("argv", commands())
def test_documented_command_parses(argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"recforge {' '.join(argv)} does not parse (exit {exc.code})")
    assert getattr(args, "func", None) is not None
