"""Catalogue additions over HTTP (``POST /admin/items``): a text model (``ItemAdder``) scores new items from their
text without retraining; they are kept in the feedback store, so a reload, a restart and every worker serve them.

The planted catalogue: 40 items in four genre clusters ("Comedy story 3 (1990)", genre Comedy, ...); each user
interacts only within one cluster. A new item written like one cluster's items must enter that cluster's users'
top-k, and only theirs.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve_process import TOKEN, Server

from recforge.data.catalog import ItemCatalog
from recforge.data.interactions import Interactions
from recforge.models.popular import MostPopular
from recforge.models.text_knn import TextKNN
from recforge.models.text_sasrec import TextSASRec
from recforge.serve import ServeSettings, create_app
from recforge.serve.store import ItemConflictError, open_feedback_store
from recforge.text import bind_items

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GENRES = ["Comedy", "Horror", "Western", "Drama"]


def cluster_of(user: int) -> int:
    return (user - 1) % 4


@pytest.fixture(scope="module")
def planted() -> tuple[Interactions, ItemCatalog]:
    ids = list(range(1, 41))
    catalog = ItemCatalog.from_records(ids, [f"{GENRES[(i - 1) // 10]} story {i} (1990)" for i in ids],
                                       [[GENRES[(i - 1) // 10]] for i in ids], group="genre")
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 41), 6)
    items = np.array([cluster_of(u) * 10 + 1 + rng.integers(10) for u in users])
    return Interactions.from_arrays(users, items, time=np.arange(len(users))), catalog


@pytest.fixture(scope="module")
def knn_dir(planted, tmp_path_factory):
    """A saved text_knn over hashing vectors of the planted catalogue's kv sentences."""
    train, catalog = planted
    model = TextKNN(embedder={"name": "hashing"})
    bind_items(model, catalog, train)
    return model.fit(train).save(tmp_path_factory.mktemp("knn") / "artifact")


def new_item(item_id, genre: str, n: int = 99) -> dict:
    return {"item_id": item_id, "title": f"{genre} story {n}", "genres": [genre], "year": 1990}


def top(client: TestClient | httpx.Client, user, k: int = 10) -> list:
    """The user's top-k item ids (each user has at most 9 unseen items of their own cluster)."""
    r = client.post("/recommend", json={"user_id": user, "k": k})
    assert r.status_code == 200, r.text
    return [x["item"] for x in r.json()["items"]]


def test_a_new_item_enters_its_clusters_top_k_and_survives_reload_and_restart(knn_dir, tmp_path):
    db = tmp_path / "fb.sqlite"
    s = ServeSettings(feedback_db=str(db), admin_token=TOKEN)
    with TestClient(create_app(knn_dir, s)) as c:
        horror_users = [u for u in range(1, 41) if cluster_of(u) == 1]
        assert all("new-horror" not in top(c, u) for u in horror_users)  # unknown before the addition
        r = c.post("/admin/items", json={"items": [new_item("new-horror", "Horror")]}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["added"] == ["new-horror"] and body["n_items"] == 41 and body["model_version"].endswith("+items1")
        assert all("new-horror" in top(c, u) for u in horror_users)  # every Horror user gets it in the top 10
        assert all("new-horror" not in top(c, u, k=4) for u in range(1, 41) if cluster_of(u) != 1)
        assert "recforge_items_added_total 1" in c.get("/metrics").text
        ready = c.get("/ready").json()
        assert ready["n_items"] == 41 and ready["added_items"] == 1 and ready["can_add_items"]
        # the one id rule: "7" is item 7 (known: 409), "077" is another id; the new id is an item like any other
        assert c.post("/admin/items", json={"items": [new_item("7", "Horror")]}, headers=AUTH).status_code == 409
        assert c.post("/admin/items", json={"items": [new_item("077", "Western")]}, headers=AUTH).json()["added"] \
            == ["077"]
        assert c.post("/similar", json={"item_id": "new-horror", "k": 3}).status_code == 200
        assert c.post("/feedback", json={"user_id": 1, "item_id": "new-horror"}).json()["known_item"] is True
        assert c.post("/admin/reload", json={}, headers=AUTH).json()["n_items"] == 42  # reload re-applies them
        assert "new-horror" in top(c, horror_users[0])
    with TestClient(create_app(knn_dir, s)) as c:  # a restart reads the additions from the store
        assert c.get("/ready").json()["added_items"] == 2
        assert all("new-horror" in top(c, u) for u in horror_users)


def test_a_second_process_on_the_same_store_applies_the_additions_before_its_next_answer(knn_dir, tmp_path):
    s = ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"), admin_token=TOKEN)
    with TestClient(create_app(knn_dir, s)) as one, TestClient(create_app(knn_dir, s)) as two:  # two "workers"
        comedy = [u for u in range(1, 41) if cluster_of(u) == 0]
        assert "c1" not in top(two, comedy[0])
        assert one.post("/admin/items", json={"items": [new_item("c1", "Comedy")]}, headers=AUTH).status_code == 200
        assert two.app.state.recforge.handle.n_items == 40  # nothing pushed to it...
        assert all("c1" in top(two, u) for u in comedy)  # ...it reads the store before answering
        assert two.post("/admin/items", json={"items": [new_item("c2", "Comedy", 98)]}, headers=AUTH).status_code == 200
        assert two.post("/admin/items", json={"items": [new_item("c1", "Drama")]}, headers=AUTH).status_code == 409
        versions = {c.post("/recommend", json={"user_id": 1}).json()["model_version"] for c in (one, two)}
        assert len(versions) == 1 and versions.pop().endswith("+items2")  # same items, same order, same version


def test_text_sasrec_places_a_new_item_in_its_cluster(planted, tmp_path):
    train, catalog = planted
    model = TextSASRec(**TextSASRec.test_config)  # hashing vectors through a trained adapter, SASRec block
    bind_items(model, catalog, train)
    path = model.fit(train).save(tmp_path / "artifact")
    with TestClient(create_app(path, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"), admin_token=TOKEN))) as c:
        r = c.post("/admin/items", json={"items": [new_item("new-horror", "Horror")]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["n_items"] == 41, r.text
        assert all("new-horror" in top(c, u) for u in range(1, 41) if cluster_of(u) == 1)
        near = c.post("/similar", json={"item_id": "new-horror", "k": 3}).json()["items"]
        assert all(11 <= x["item"] <= 20 for x in near)  # its nearest items are the Horror ones


def test_a_model_object_is_never_modified(planted, tmp_path):
    train, catalog = planted
    model = TextKNN(embedder={"name": "hashing"})
    bind_items(model, catalog, train)
    model.fit(train)
    with TestClient(create_app(model, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"), admin_token=TOKEN))) as c:
        assert c.post("/admin/items", json={"items": [new_item(100, "Drama")]}, headers=AUTH).status_code == 200
        assert c.get("/ready").json()["n_items"] == 41
    assert model.n_items == 40  # the served copy took the item


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"items": [new_item("a", "Horror"), new_item("a", "Comedy")]}, 422, "more than once"),
    ({"items": [new_item(7, "Horror"), new_item("7", "Comedy")]}, 422, "more than once"),
    ({"items": [{"item_id": "b", "title": "   "}]}, 422, "needs text"),
    ({"items": [{"item_id": "b"}]}, 422, "needs text"),
    ({"items": [{"item_id": "b", "title": "x", "colour": "red"}]}, 422, "extra"),
    ({"items": []}, 422, "at least 1"),
    ({"items": [{"item_id": "b", "genres": [""]}]}, 422, "at least 1"),
    ({"items": [new_item(3, "Horror")]}, 409, "already in the catalogue"),
])
def test_bad_additions_are_clear_4xx_and_add_nothing(knn_dir, tmp_path, body, status, says):
    with TestClient(create_app(knn_dir, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"),
                                                      admin_token=TOKEN))) as c:
        r = c.post("/admin/items", json=body, headers=AUTH)
        assert r.status_code == status and says in json.dumps(r.json()), r.text
        assert c.post("/admin/items", content=b'{"items": [', headers={**AUTH, "content-type": "application/json"}
                      ).status_code == 422
        assert c.post("/admin/items", json={"items": [new_item("z", "Drama")]}).status_code == 401
        assert c.get("/ready").json()["n_items"] == 40


def test_a_model_that_cannot_add_items_answers_409(planted, tmp_path):
    train, _ = planted
    with TestClient(create_app(MostPopular().fit(train), ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"),
                                                                       admin_token=TOKEN))) as c:
        r = c.post("/admin/items", json={"items": [new_item("n", "Horror")]}, headers=AUTH)
        assert r.status_code == 409 and "not an ItemAdder" in r.json()["detail"]
        assert c.get("/ready").json()["can_add_items"] is False
        schema = c.get("/openapi.json").json()["paths"]["/admin/items"]["post"]["responses"]
        assert {"200", "401", "403", "409", "413", "422"} <= set(schema)


@pytest.fixture(scope="module")
def knn_api(knn_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "fb.sqlite"
    with TestClient(create_app(knn_dir, ServeSettings(feedback_db=str(db), admin_token=TOKEN)),
                    raise_server_exceptions=False) as c:
        yield c


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                         lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                             st.sampled_from(["items", "item_id", "title", "genres", "tags", "year", "x"]), kids,
                             max_size=4), max_leaves=12))
def test_no_body_answers_5xx(knn_api, body):
    r = knn_api.post("/admin/items", json=body, headers=AUTH)
    assert r.status_code < 500 and r.headers["content-type"].startswith("application/json")
    assert knn_api.get("/health").status_code == 200


def test_every_worker_and_a_killed_server_serve_the_added_items(knn_dir, tmp_path):
    db = tmp_path / "fb.sqlite"
    western = [u for u in range(1, 41) if cluster_of(u) == 2]
    server = Server(knn_dir, db, tmp_path / "server.log", "--workers", "2")  # one store, two processes
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/admin/items", json={"items": [new_item("new-western", "Western")]}, headers=AUTH)
            assert r.status_code == 200, r.text
        for u in western * 2:  # a new connection per request: the kernel spreads them over both workers
            with httpx.Client(base_url=server.url, timeout=30) as c:
                assert "new-western" in top(c, u)
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        for pid in [server.proc.pid, *map(int, children)]:  # kill -9 the whole server, workers included
            os.kill(pid, signal.SIGKILL)
        server.proc.wait()
    finally:
        server.stop()
    store = open_feedback_store(db)  # acknowledged means committed: the next start applies it (tested above)
    try:
        assert [item for _, item, _ in store.added_items()] == ["new-western"]
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_stores_keep_additions_in_order_with_their_id_types_and_refuse_repeats(kind, request, tmp_path):
    where = str(tmp_path / "fb.sqlite") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_feedback_store(where)
    try:
        tag = uuid.uuid4().hex[:8]  # the PostgreSQL server is shared by the session's tests
        before = store.last_added()
        rows = store.add_items([(f"a-{tag}", '{"title": "A"}'), (f"b-{tag}", "{}")])
        assert rows == sorted(rows) and rows[0] > before and store.last_added() == rows[-1]
        with pytest.raises(ItemConflictError):  # one repeated id: nothing of the request is stored
            store.add_items([(f"c-{tag}", "{}"), (f"a-{tag}", "{}")])
        mine = [(item, record) for _, item, record in store.added_items() if str(item).endswith(tag)]
        assert mine == [(f"a-{tag}", '{"title": "A"}'), (f"b-{tag}", "{}")]
        number = int(tag, 16)
        store.add_items([(number, "{}"), (str(number), "{}")])  # 7 and "7" are distinct stored values
        assert [item for _, item, _ in store.added_items()][-2:] == [number, str(number)]
    finally:
        store.close()
