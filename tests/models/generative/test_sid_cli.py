"""`recforge sid build` and `recforge sid inspect` on the bundled dataset, through ``main([...])``."""

from __future__ import annotations

import json

import pytest

from recforge.cli.main import main
from recforge.models.generative.semantic_ids import SemanticIds


@pytest.mark.parametrize("features", ["cf+attributes", "text"])
def test_build_and_inspect(tmp_path, capsys, features):
    out = tmp_path / "sid"
    assert main(["sid", "build", "--data", "ml-latest-small", "--features", features, "--levels", "2",
                 "--codebook-size", "32", "--collisions", "dedup", "--out", str(out)]) == 0
    sids = SemanticIds.load(out)
    assert len({tuple(r) for r in sids.codes[1:].tolist()}) == sids.n_items
    capsys.readouterr()
    assert main(["sid", "inspect", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["collisions"]["after"]["largest_group"] == 1
    assert (out / "inspect.png").stat().st_size > 0


def test_bad_inputs_exit_cleanly(tmp_path, capsys):
    assert main(["sid", "build", "--data", "ml-latest-small", "--features", "genres", "--out", str(tmp_path)]) == 2
    assert main(["sid", "build", "--data", "ml-latest-small", "--levels", "0", "--out", str(tmp_path)]) == 2
    assert main(["sid", "build", "--data", "ml-latest-small", "--levels", "1", "--codebook-size", "8",
                 "--out", str(tmp_path / "x")]) == 1  # uniform cannot separate 9k items with 8 values
    assert main(["sid", "inspect", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown feature source" in err
