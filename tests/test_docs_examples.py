"""Every ```python example in README.md and docs/*.md runs as written, in a scratch folder, so the docs cannot rot.

A line right before the fence can say ``<!-- example: not run (why) -->`` (it needs a live server or the reader's
own file), ``<!-- example: needs RECFORGE_DATA_DIR -->`` (it reads a dataset that is not bundled; skipped, with
the reason, where the data folder is absent) or ``<!-- example: after `recforge ...` -->`` (a CLI command from the
text before it, run first in the same folder).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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
            found.append(pytest.param(match.group(2), "needs RECFORGE_DATA_DIR" in marker,
                                      after.group(1) if after else "", id=name, marks=marks))
    return found


def test_the_docs_have_examples():
    assert len(examples()) >= 15


@pytest.mark.parametrize(("code", "needs_data", "after"), examples())
def test_example_runs(code: str, needs_data: bool, after: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if needs_data:
        request.getfixturevalue("data_dir")  # skips with its reason where RECFORGE_DATA_DIR is absent
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if after:
        setup = subprocess.run([sys.executable, "-m", *shlex.split(after)], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600)
        assert setup.returncode == 0, setup.stderr[-3000:]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
