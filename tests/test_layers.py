"""The package's layers are acyclic: a module imports only from its own layer or lower ones (an AST check).

Packages on the same layer meet only through ``protocols`` and ``data`` (lower layers), so e.g. ``bandits`` never
imports ``models``. Imports inside functions are allowed only for heavy optional dependencies (never recforge's own
modules; the CLI's subcommands are the one exception), so the check covers every ``import`` statement in the tree,
wherever it sits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import recforge

ROOT = Path(recforge.__file__).parent

#: top-level module or package -> layer (see docs/architecture.md).
LAYERS: dict[str, int] = {
    "errors": 0, "config": 0, "registry": 0, "artifacts": 0, "progress": 0, "threads": 0,
    "data": 1,
    "metrics": 2, "protocols": 2,
    "nn": 3, "index": 3,
    "train": 4,
    "models": 5, "bandits": 5, "conversational": 5, "align": 5, "debias": 5, "rl": 5, "llm": 5, "text": 5,
    "evaluate": 6,
    "serve": 7,
    "experiments": 8, "testing": 8,
    "cli": 9,
    "__init__": 10, "__main__": 10,
}


def _unit(path: Path) -> str:
    """The top-level unit a file belongs to: ``models/base.py`` -> ``models``, ``config.py`` -> ``config``."""
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, imported recforge unit, inside a function) for every recforge import in a module."""
    out = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "recforge":
                names = [a.name for a in node.names]
            elif node.module.startswith("recforge."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("recforge.")]
        out += [(node.lineno, name, id(node) in nested) for name in names]
    return out


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")}
    assert units <= set(LAYERS), f"give these a layer in LAYERS and docs/architecture.md: {sorted(units - set(LAYERS))}"


def test_imports_go_down_the_layers():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        me = _unit(path)
        for line, target, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target not in LAYERS:
                continue  # e.g. `from recforge import __version__`
            upward = LAYERS[target] > LAYERS[me]
            sideways = LAYERS[target] == LAYERS[me] and target != me and LAYERS[me] not in (0, 2)
            if upward or sideways:
                bad.append(f"{path.relative_to(ROOT)}:{line}: layer {LAYERS[me]} ({me}) imports {target} "
                           f"(layer {LAYERS[target]})")
    assert not bad, "\n".join(bad)


def test_no_function_level_imports_of_recforge():
    """Function-level imports are for lazy heavy third-party dependencies only, never to dodge a cycle. The CLI is
    the exception: each subcommand imports its library code when it runs, so ``recforge --help`` stays instant."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if _unit(path) == "cli":
            continue
        for line, target, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if in_function:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports recforge.{target} inside a function")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source,expected", [
    ("from recforge.models.base import X", ["models"]),
    ("import recforge.serve.app", ["serve"]),
    ("from recforge import registry", ["registry"]),
    ("def f():\n    from recforge.cli import main", ["cli"]),
])
def test_the_checker_sees_imports(source, expected):
    assert [name for _, name, _ in _imports(ast.parse(source))] == expected
