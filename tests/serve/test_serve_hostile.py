"""Hostile but parseable input: a corpus of the cases that used to answer 500, the id rule over HTTP, and a
property-based test over JSON bodies for every route. Never 5xx, always a JSON body, still healthy afterwards."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.data.interactions import Interactions
from recforge.models.popular import MostPopular
from recforge.serve import ServeSettings, create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
JSON = {"content-type": "application/json"}
ROUTES = ("/recommend", "/similar", "/feedback", "/admin/reload", "/admin/items")


@pytest.fixture(scope="module")
def int_model() -> MostPopular:
    """Integer user ids 1..9 (user 7 among them) and integer items 1..20."""
    users = [u for u in range(1, 10) for _ in range(4)]
    items = [(u * 3 + j) % 20 + 1 for u in range(1, 10) for j in range(4)]
    return MostPopular().fit(Interactions.from_arrays(users, items, time=list(range(len(users)))))


@pytest.fixture(scope="module")
def api(int_model, tmp_path_factory) -> TestClient:
    db = tmp_path_factory.mktemp("hostile") / "feedback.sqlite"
    with TestClient(create_app(int_model, ServeSettings(feedback_db=str(db), admin_token=TOKEN)),
                    raise_server_exceptions=False) as c:
        yield c


BIG = str(2**63)
CORPUS = [  # (name, route, raw body, expected status)
    ("nan in k", "/recommend", b'{"user_id": 1, "k": NaN}', 422),
    ("infinity as id", "/recommend", b'{"user_id": Infinity}', 422),
    ("-infinity in exclude", "/recommend", b'{"user_id": 1, "exclude": [-Infinity]}', 422),
    ("1e400 in history", "/recommend", b'{"history": [1e400]}', 422),
    ("lone surrogate id", "/recommend", b'{"user_id": "\\ud800"}', 422),
    ("lone surrogate key", "/recommend", b'{"\\udfff": 1}', 422),
    ("2^63 user id", "/recommend", f'{{"user_id": {BIG}}}'.encode(), 422),
    ("2^53 user id", "/recommend", f'{{"user_id": {2**53}}}'.encode(), 422),
    ("2^63 as a string is an unknown user", "/recommend", f'{{"user_id": "{BIG}"}}'.encode(), 200),
    ("whole float id", "/recommend", b'{"user_id": 7.0}', 200),
    ("fractional id", "/recommend", b'{"user_id": 7.5}', 422),
    ("2^63 history time", "/recommend", f'{{"history": [1], "times": [{BIG}]}}'.encode(), 422),
    ("superscript two", "/recommend", '{"user_id": "²"}'.encode(), 200),
    ("superscript three item", "/similar", '{"item_id": "³"}'.encode(), 404),
    ("2^63 item", "/similar", f'{{"item_id": {BIG}}}'.encode(), 422),
    ("nan in similar", "/similar", b'{"item_id": NaN}', 422),
    ("2^63 feedback user", "/feedback", f'{{"user_id": {BIG}, "item_id": 1}}'.encode(), 422),
    ("feedback timestamp nan", "/feedback", b'{"user_id": 1, "item_id": 1, "timestamp": NaN}', 422),
    ("feedback timestamp infinity", "/feedback", b'{"user_id": 1, "item_id": 1, "timestamp": Infinity}', 422),
    ("feedback timestamp -1", "/feedback", b'{"user_id": 1, "item_id": 1, "timestamp": -1}', 422),
    ("feedback timestamp 2^63", "/feedback", f'{{"user_id": 1, "item_id": 1, "timestamp": {BIG}}}'.encode(), 422),
    ("feedback value nan", "/feedback", b'{"user_id": 1, "item_id": 1, "value": NaN}', 422),
    ("feedback value 1e400", "/feedback", b'{"user_id": 1, "item_id": 1, "value": 1e400}', 422),
    ("nul in id", "/feedback", b'{"user_id": "a\\u0000b", "item_id": 1}', 422),
    ("invalid utf-8", "/feedback", b'{"user_id": "\xff\xfe", "item_id": 1}', 422),
    ("5000-character reload path", "/admin/reload", json.dumps({"path": "x" * 5000}).encode(), 422),
    ("4000-character reload path", "/admin/reload", json.dumps({"path": "x" * 4000}).encode(), 409),
    ("reload path that does not exist", "/admin/reload", b'{"path": "/no/such/run"}', 409),
    ("reload path nul", "/admin/reload", b'{"path": "a\\u0000"}', 422),
    ("reload nan", "/admin/reload", b'{"path": NaN}', 422),
    ("deep nesting", "/recommend", b"[" * 100_000 + b"]" * 100_000, 413),
    ("deep nesting under the limit", "/recommend", b"[" * 30_000 + b"]" * 30_000, 422),
    ("huge integer", "/recommend", b'{"user_id": ' + b"9" * 5000 + b"}", 422),
    ("null user with history", "/recommend", b'{"user_id": null, "history": [1]}', 422),
]


@pytest.mark.parametrize(("name", "route", "body", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_never_5xx(api, name, route, body, expected):
    r = api.post(route, content=body, headers=AUTH)
    assert r.status_code == expected, r.text
    detail = r.json()  # every answer is valid JSON
    if expected >= 400:
        assert "detail" in detail
        assert "/no/such" not in r.text and "xxxxxxxxxx" not in r.text  # no path echoed
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize("raw", ["07", "007", "٧", "७", "+7", " 7", "7.0"])
def test_look_alike_ids_are_other_users(api, raw):
    """Only 7 and "7" are user 7; the look-alikes are unknown users (popularity fallback), and their feedback
    never reaches user 7."""
    seven = api.post("/recommend", json={"user_id": 7, "k": 5}).json()
    assert seven["fallback"] is False
    assert api.post("/recommend", json={"user_id": "7", "k": 5}).json()["items"] == seven["items"]
    other = api.post("/recommend", json={"user_id": raw, "k": 5}).json()
    assert other["fallback"] is True and other["source"] == "popular"
    assert api.post("/feedback", json={"user_id": raw, "item_id": 1}).status_code == 200
    assert api.post("/recommend", json={"user_id": 7, "k": 5}).json() == seven


@pytest.mark.parametrize("history", [[], ["ghost"], ["ghost", 10**15, "07"]])
def test_empty_or_unknown_history_is_the_unknown_user_fallback(api, history):
    out = api.post("/recommend", json={"history": history, "k": 3}).json()
    unknown = api.post("/recommend", json={"user_id": "nobody-at-all", "k": 3}).json()
    assert out["fallback"] is True and out["source"] == "popular"
    assert out["items"] == unknown["items"] and out["ignored"] == history


def test_every_status_is_documented(api):
    """Each route's OpenAPI responses list the statuses the corpus and the app can produce."""
    paths = api.get("/openapi.json").json()["paths"]
    want = {"/recommend": {"200", "400", "404", "413", "422", "503"}, "/similar": {"200", "400", "404", "413", "422"},
            "/feedback": {"200", "400", "413", "422", "503"},
            "/admin/reload": {"200", "400", "401", "403", "409", "413", "422"}}
    for route, codes in want.items():
        assert codes <= set(paths[route]["post"]["responses"]), route
    schema = api.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
    assert "oneOf" in schema


ids = st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from(["07", "٧", "७", "²", "\ud800", "", "x" * 300]))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), ids),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
fields = st.sampled_from(["user_id", "item_id", "history", "times", "k", "exclude", "exclude_seen", "event",
                          "timestamp", "value", "path"])
bodies = st.one_of(st.dictionaries(fields, values, max_size=6), values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_json_bodies_never_5xx(api, route, body):
    # allow_nan: NaN/Infinity go out as the bare words Python writes; surrogatepass: lone surrogates reach the wire
    raw = json.dumps(body, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    r = api.post(route, content=raw, headers=AUTH)
    assert r.status_code < 500, (raw[:200], r.text)
    assert isinstance(r.json(), dict)
    assert api.get("/health").status_code == 200
