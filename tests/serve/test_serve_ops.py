"""Operations: offline docs, no filesystem paths in public answers, host checks, token rules, store durability."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from recforge.errors import ConfigError
from recforge.serve import FeedbackStore, ServeSettings, create_app


@pytest.fixture()
def api(popular_run, tmp_path):
    with TestClient(create_app(popular_run, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite")))) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(api, page):
    html = api.get(page).text
    assert not re.search(r"https?://", html.split("<body", 1)[-1].replace("http://www.w3.org", "")), html
    assets = re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', html)
    assert assets
    for asset in assets:
        r = api.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset


def test_public_answers_name_no_path(api, popular_run):
    assert str(popular_run) not in api.get("/ready").text
    assert str(popular_run) not in api.get("/metrics").text
    assert "source" not in api.get("/ready").json()


def test_allowed_hosts(popular_run, tmp_path):
    app = create_app(popular_run, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"),
                                                allowed_hosts=("api.example.com",)))
    with TestClient(app, base_url="http://api.example.com") as ok, TestClient(app, base_url="http://evil.test") as bad:
        assert ok.get("/health").status_code == 200
        assert bad.get("/health").status_code == 400


@pytest.mark.parametrize("token", [" " * 8, "abc def ghi", "short", "tab\tinside-token", "ünïcödé-token"])
def test_tokens_need_visible_ascii_without_whitespace(token):
    with pytest.raises(ConfigError, match="admin_token"):
        ServeSettings(admin_token=token)


def test_sqlite_store_runs_with_synchronous_full_by_default(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    assert store.pragma("synchronous") == 2  # FULL
    assert store.pragma("journal_mode") == "wal"
    store.close()
    normal = FeedbackStore(tmp_path / "fb2.sqlite", sync="normal")
    assert normal.pragma("synchronous") == 1
    normal.close()


def test_store_refuses_what_sqlite_cannot_hold(tmp_path):
    from recforge.errors import DataError

    store = FeedbackStore(tmp_path / "fb.sqlite")
    for kwargs in ({"user": 2**63}, {"user": "a\ud800"}, {"ts": float("nan")}, {"ts": -1.0}, {"value": float("inf")}):
        args = {"user": 1, "item": 1, **kwargs}
        with pytest.raises(DataError):
            store.add(args.pop("user"), args.pop("item"), **args)
    assert store.count() == 0
    store.close()


def test_serve_without_the_extra_names_it_in_one_line(popular_run, tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['uvicorn'] = None; from recforge.cli import main; "
            f"sys.exit(main(['serve', {str(popular_run)!r}, '--feedback-db', {str(tmp_path / 'f.sqlite')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "pip install 'recforge[serve]'" in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
