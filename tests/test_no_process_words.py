"""The code, docs, benchmarks and tests carry no development-process vocabulary: no development "stops", no
tracker issue numbers, no colleagues, no commit hashes of this repository, no absolute machine paths — in file
contents and in result file names. The history lives in git."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "docs", "bench", "tests", ".ci")
SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".txt", ".cfg", ".ini"}
SKIP_PARTS = {".recbole-venv", "out", "__pycache__", ".venv"}

PATTERNS = {
    "development stop": re.compile(r"\bstops? ?\d+\b", re.I),
    "issue number": re.compile(r"\bissues? #?\d+\b", re.I),
    "colleagues": re.compile(r"\b(colleagues?|other engineers?'?|another engineer'?s?|helper (agent|session)s?)\b", re.I),
    "commit hash": re.compile(r"\bcommits? [0-9a-f]{7,40}\b"),
    "absolute machine path": re.compile(r"(?<![\w.~])/(work|root|home|Users)/\w"),
}
#: (path, pattern) pairs that are not process vocabulary, each with its reason
ALLOWED = {
    # the upstream Open Bandit Pipeline file the prior is copied from, pinned to that repository's revision
    ("src/recforge/bandits/obd_prior.py", "commit hash"),
}


def files() -> list[Path]:
    out = [ROOT / "README.md"]
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            rel = path.relative_to(ROOT)
            if path.is_file() and path.suffix in SUFFIXES and not SKIP_PARTS & set(rel.parts[:-1]):
                out.append(path)
    return [p for p in out if p.is_file() and p != Path(__file__).resolve()]


def test_no_process_vocabulary_in_files():
    found = []
    for path in files():
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for what, pattern in PATTERNS.items():
                if (rel, what) not in ALLOWED and pattern.search(line):
                    found.append(f"{rel}:{n}: {what}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_result_file_names_carry_no_process_words():
    names = [p.name for p in (ROOT / "bench" / "results").iterdir()]
    bad = [n for n in names if re.search(r"stop-?\d|issue-?\d", n, re.I)]
    assert not bad, bad


def test_the_patterns_catch_what_they_are_for():
    for what, text in [("development stop", "as in stop 12"), ("issue number", "targets of issue 6"),
                       ("colleagues", "another engineer's job"), ("commit hash", "before commit 6878a37"),
                       ("absolute machine path", "see /work/shared/data")]:
        assert PATTERNS[what].search(text), what
    assert not PATTERNS["development stop"].search("early stopping after 5 epochs")
