"""The comparison report: files, content, refusals, and a real headless Chromium rendering it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.errors import ConfigError
from recforge.experiments.report_html import build_report
from recforge.experiments.runs import load_run

FIGURES = ("leaderboard", "metric_at_k", "popularity_bias", "segments", "training_curves", "sampled_vs_full")


@pytest.fixture(scope="module")
def report_dir(eval_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a neural-style run would write curves.json; the report must plot it
    curves = [{"epoch": e, "loss": 1.0 / e, "valid_ndcg@10": 0.05 * e} for e in range(1, 6)]
    (eval_runs["itemknn"] / "curves.json").write_text(json.dumps(curves), encoding="utf-8")
    out = tmp_path_factory.mktemp("report")
    args = ["compare", *(str(p) for p in eval_runs.values()), "--report", str(out)]
    assert main(args) == 0
    return out


def test_report_files_and_content(report_dir: Path):
    for name in FIGURES:
        png = report_dir / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("class='lb-row'") == 3
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    first_row = page.split("class='lb-row'")[1]
    assert "itemknn" in first_row and "(best)" in first_row  # planted clusters: item-kNN beats popularity
    data = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    by_model = {t["model"]: t for t in data["tests"]}
    assert by_model["random"]["significant"] and by_model["random"]["diff"] < 0
    assert {r["run"] for r in data["beyond"]} == {"popular", "random", "itemknn"}
    assert any(r["kind"] == "item" for r in data["segments"])


def test_report_refuses_different_splits_and_bad_input(eval_runs, cluster_csv, tmp_path):
    other = tmp_path / "other"
    assert main(["train", "popular", "--data", str(cluster_csv), "--out", str(other), "--set", "split.name=random",
                 "--set", "eval.n_boot=10"]) == 0
    assert main(["compare", str(eval_runs["popular"]), str(other), "--report", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r" / "report.html").exists()
    with pytest.raises(ConfigError, match="different splits"):
        build_report([load_run(eval_runs["popular"]), load_run(other)], tmp_path / "r2")
    with pytest.raises(ConfigError, match="at least two"):
        build_report([load_run(eval_runs["popular"])], tmp_path / "r3")
    with pytest.raises(ConfigError, match="per-user"):
        build_report([load_run(p) for p in eval_runs.values()], tmp_path / "r4", metric="ndcg@7", sampled=False)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian `chromium` is not installed (apt-get install -y chromium; .ci/run installs it)")
    return exe


def _chromium_run(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path):
    exe = _chromium()
    url = (report_dir / "report.html").resolve().as_uri()
    dom = _chromium_run(exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r'class="lb-row"', dom.stdout)) == 3  # the leaderboard rows are in the rendered DOM
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert loaded and int(loaded.group(1)) == len(FIGURES)  # every plot decoded with a non-zero width
    shot = tmp_path / "shot.png"
    res = _chromium_run(exe, tmp_path / "profile2", "--window-size=1280,3000", f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 3000)
        colours = img.convert("RGB").resize((64, 150)).getcolors(maxcolors=100000)
    assert colours is not None and len(colours) > 50  # not a blank page: text, tables and plots were painted
