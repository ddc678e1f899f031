"""All routes in-process through FastAPI's TestClient: happy paths, bad input, feedback, metrics, admin reload."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from recforge.errors import ConfigError, DataError
from recforge.models.rank import top_k
from recforge.serve import FeedbackStore, ServeSettings, create_app

TOKEN = "s3cret-token"


def client(artifact, tmp_path: Path, **settings) -> TestClient:
    settings.setdefault("feedback_db", str(tmp_path / "feedback.sqlite"))
    return TestClient(create_app(artifact, ServeSettings(**settings)))


@pytest.fixture()
def pop(popular_run, tmp_path):
    with client(popular_run, tmp_path, admin_token=TOKEN) as c:
        yield c


def test_health_ready_and_docs(pop, serve_log):
    assert pop.get("/health").json() == {"status": "ok"}
    ready = pop.get("/ready").json()
    assert ready["model"] == "popular" and ready["n_items"] == serve_log.n_items
    assert ready["version"].startswith("popular-") and ready["index"] is None
    assert pop.get("/docs").status_code == 200
    paths = pop.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/feedback", "/metrics", "/admin/reload"} <= set(paths)


def test_serves_a_run_folder_or_an_artifact_directory_with_the_artifact_version(popular_run, tmp_path):
    from recforge.artifacts import load_artifact

    version = load_artifact(popular_run / "artifact").version
    for path in (popular_run, popular_run / "artifact"):
        with client(path, tmp_path) as c:
            ready = c.get("/ready").json()
            assert ready["version"] == version and ready["supports_histories"] is True  # popular is a HistoryScorer


def test_ready_reports_the_declared_history_capability(tmp_path, dot_model, cooc_model):
    with client(dot_model, tmp_path / "a") as c:
        assert c.get("/ready").json()["supports_histories"] is False
    with client(cooc_model, tmp_path / "b") as c:
        assert c.get("/ready").json()["supports_histories"] is True


def test_recommend_known_user_matches_model_and_masks_seen(pop, popular_run, serve_log):
    from recforge.models.base import load_model

    model = load_model(popular_run / "artifact")
    out = pop.post("/recommend", json={"user_id": "u3", "k": 5}).json()
    expected = model.recommend(["u3"], k=5).items[0]
    assert [r["item"] for r in out["items"]] == expected
    assert out["source"] == "model" and not out["fallback"]
    seen = set(model.item_vocab.decode(model.seen_[[model.user_vocab.encode(["u3"])[0]]].indices))
    assert not seen & {r["item"] for r in out["items"]}
    scores = [r["score"] for r in out["items"]]
    assert scores == sorted(scores, reverse=True)
    with_seen = pop.post("/recommend", json={"user_id": "u3", "k": 5, "exclude_seen": False}).json()
    assert with_seen["items"][0]["item"] == model.item_vocab.decode([int(np.argmax(model.popularity_[1:])) + 1])[0]


def test_recommend_exclude_list_and_unknown_exclude_ids(pop):
    first = pop.post("/recommend", json={"user_id": "u1", "k": 3}).json()["items"]
    banned = [first[0]["item"], "no-such-item"]
    out = pop.post("/recommend", json={"user_id": "u1", "k": 3, "exclude": banned}).json()
    assert first[0]["item"] not in [r["item"] for r in out["items"]]
    assert out["ignored"] == ["no-such-item"]


def test_unknown_user_popular_fallback(pop, popular_run):
    from recforge.models.base import load_model

    model = load_model(popular_run / "artifact")
    ranked = model.item_vocab.decode(np.argsort(-model.popularity_[1:], kind="stable") + 1)
    out = pop.post("/recommend", json={"user_id": "nobody", "k": 4}).json()
    assert out["fallback"] is True and out["source"] == "popular"
    assert [r["item"] for r in out["items"]] == ranked[:4]
    # Excluding the top item shifts the list (and must not damage the popularity vector for the next request).
    out = pop.post("/recommend", json={"user_id": "nobody", "k": 3, "exclude": [ranked[0]]}).json()
    assert [r["item"] for r in out["items"]] == ranked[1:4]
    out = pop.post("/recommend", json={"user_id": "nobody", "k": 4}).json()
    assert [r["item"] for r in out["items"]] == ranked[:4]
    assert 'recforge_fallback_total' in pop.get("/metrics").text


def test_unknown_user_404_when_configured(popular_run, tmp_path):
    with client(popular_run, tmp_path, on_unknown="404") as c:
        r = c.post("/recommend", json={"user_id": "nobody"})
        assert r.status_code == 404 and "nobody" in r.json()["detail"]


def test_history_ignores_and_lists_unknown_items(tmp_path, cooc_model):
    with client(cooc_model, tmp_path) as c:
        out = c.post("/recommend", json={"history": [1, "ghost", 2, 999], "k": 5}).json()
        assert out["ignored"] == ["ghost", 999] and out["source"] == "history"
        got = [r["item"] for r in out["items"]]
        assert 1 not in got and 2 not in got  # exclude_seen masks the session's own items
        scores = cooc_model.score_histories([cooc_model.item_vocab.encode([1, 2])])[0].clone()
        scores[cooc_model.item_vocab.encode([1, 2])] = -torch.inf
        assert got == cooc_model.item_vocab.decode(torch.topk(scores, 5).indices.numpy())


def test_history_needs_a_history_model(tmp_path, dot_model):
    with client(dot_model, tmp_path) as c:
        r = c.post("/recommend", json={"history": [1, 2]})
        assert r.status_code == 422 and "cannot score ad-hoc histories" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"user_id": "u1", "k": 0}, "greater than or equal to 1"),
        ({"user_id": "u1", "k": 1001}, "less than or equal to 1000"),
        ({"user_id": "u1", "k": "10"}, "valid integer"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"user_id": "u1", "history": [1]}, "exactly one of user_id or history"),
        ({"k": 3}, "exactly one of user_id or history"),
        ({"user_id": "u1", "colour": "red"}, "Extra inputs are not permitted"),
        ({"user_id": "u1", "exclude_seen": "yes"}, "valid boolean"),
        ({"user_id": "u1", "exclude": "abc"}, "valid list"),
        ({"history": [{"a": 1}]}, "history"),
        ({"user_id": ""}, "at least 1 character"),
        ({"history": [1, 2], "times": [5]}, "one timestamp per history item"),
        ({"user_id": "u1", "times": [5]}, "times needs a history"),
        ({"history": [1], "times": [1.5]}, "times"),
    ],
)
def test_recommend_bad_input_is_422(pop, body, needle):
    r = pop.post("/recommend", json=body)
    assert r.status_code == 422
    assert needle in r.text


@pytest.mark.parametrize(
    ("route", "body", "needle"),
    [
        ("/recommend", b"{not json", "invalid JSON"),
        ("/recommend", b"[1, 2]", "valid dictionary"),
        ("/similar", b'{"item_id": 1, "k": -1}', "greater than or equal to 1"),
        ("/feedback", b'{"user_id": "u1"}', "item_id"),
        ("/feedback", b'{"user_id": "u1", "item_id": 1, "event": "Bad Event!"}', "pattern"),
        ("/feedback", b'{"user_id": "u1", "item_id": 1, "timestamp": "yesterday"}', "timestamp"),
    ],
)
def test_malformed_bodies_are_422(pop, route, body, needle):
    r = pop.post(route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert needle in r.text


def test_body_size_limit(popular_run, tmp_path):
    with client(popular_run, tmp_path, max_body_bytes=2048) as c:
        big = {"user_id": "u1", "exclude": [f"item-{i}" for i in range(500)]}
        r = c.post("/recommend", json=big)
        assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit must hold on the streamed bytes too
            yield b'{"user_id": "u1", "exclude": ['
            for i in range(400):
                yield f'"item-{i}",'.encode()
            yield b'"x"]}'

        r = c.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/recommend", json={"user_id": "u1"}).status_code == 200


def test_similar_cooccurrence_fallback(pop, popular_run, serve_log):
    out = pop.post("/similar", json={"item_id": 1, "k": 5}).json()
    assert out["method"] == "cooccurrence" and 1 not in [r["item"] for r in out["items"]]
    # Reference: cosine between binary item columns, computed densely here.
    x = serve_log.to_csr(binary=True).toarray()
    col = x[:, serve_log.item_vocab.encode([1])[0]]
    best = max(out["items"], key=lambda r: r["score"])
    j = serve_log.item_vocab.encode([best["item"]])[0]
    assert best["score"] == pytest.approx(col @ x[:, j] / np.sqrt(col.sum() * x[:, j].sum()), rel=1e-5)
    assert pop.post("/similar", json={"item_id": "ghost"}).status_code == 404


def test_similar_embedding(tmp_path, dot_model):
    with client(dot_model, tmp_path) as c:
        out = c.post("/similar", json={"item_id": 5, "k": 3}).json()
    v = torch.nn.functional.normalize(dot_model.item_vecs, dim=1)
    sims = v @ v[dot_model.item_vocab.encode([5])[0]]
    sims[0] = sims[dot_model.item_vocab.encode([5])[0]] = -torch.inf
    assert out["method"] == "embedding"
    assert [r["item"] for r in out["items"]] == dot_model.item_vocab.decode(torch.topk(sims, 3).indices.numpy())


@pytest.mark.parametrize(("index", "params"), [
    ("flat", {}), ("hnsw", {}), ("exact", {}), ("ivf", {"nlist": 2, "nprobe": 2}),  # nprobe = nlist: exhaustive
])
def test_embedding_model_through_retriever_equals_plain_scoring(tmp_path, dot_model, index, params):
    with client(dot_model, tmp_path, index=index, index_params=params) as c:
        ready = c.get("/ready").json()
        out = c.post("/recommend", json={"user_id": "u4", "k": 10, "exclude": [3]}).json()
    assert (ready["index"] or {}).get("kind") == (None if index == "exact" else index)
    expected = dot_model.recommend(["u4"], k=10, exclude=[3]).items[0]
    assert [r["item"] for r in out["items"]] == expected


def test_feedback_is_stored_and_changes_next_recommendation(tmp_path, cooc_model):
    with client(cooc_model, tmp_path) as c:
        before = c.post("/recommend", json={"user_id": "u2", "k": 5}).json()
        target = before["items"][0]["item"]
        r = c.post("/feedback", json={"user_id": "u2", "item_id": target, "event": "purchase", "timestamp": 1700000000})
        assert r.status_code == 200 and r.json()["known_item"] is True
        after = c.post("/recommend", json={"user_id": "u2", "k": 5}).json()
        assert after["source"] == "history" and target not in [x["item"] for x in after["items"]]
        # The next list is the model's scoring of the training history + the new event.
        hist = np.append(cooc_model.seen_[[cooc_model.user_vocab.encode(["u2"])[0]]].indices, cooc_model.item_vocab.encode([target]))
        scores = cooc_model.score_histories([hist])[0].clone()
        scores[torch.from_numpy(hist)] = -torch.inf
        # (ties follow the one ranking rule: lower item index first)
        assert [x["item"] for x in after["items"]] == cooc_model.item_vocab.decode(top_k(scores[None], 5).items[0].numpy())
        # A negative event does not extend the history.
        c.post("/feedback", json={"user_id": "u2", "item_id": after["items"][0]["item"], "event": "skip"})
        assert c.post("/recommend", json={"user_id": "u2", "k": 5}).json()["items"] == after["items"]
        # A brand-new user with feedback gets history-based recommendations instead of the popularity fallback.
        c.post("/feedback", json={"user_id": "newcomer", "item_id": 1})
        fresh = c.post("/recommend", json={"user_id": "newcomer", "k": 3}).json()
        assert fresh["source"] == "history" and not fresh["fallback"]
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    rows = store.rows()
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("u2", target, "purchase"),
        ("u2", after["items"][0]["item"], "skip"),
        ("newcomer", 1, "click"),
    ]
    assert rows[0][4] == 1700000000.0
    store.close()


def test_feedback_ids_keep_vocab_type(pop, tmp_path):
    r = pop.post("/feedback", json={"user_id": "u1", "item_id": "1"})  # item vocab holds ints: "1" means 1
    assert r.json()["known_item"] is True
    r = pop.post("/feedback", json={"user_id": "u1", "item_id": "brand-new"})
    assert r.json()["known_item"] is False
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    assert [row[2] for row in store.rows()] == [1, "brand-new"]
    store.close()


def test_metrics_prometheus_text(pop):
    for _ in range(3):
        pop.post("/recommend", json={"user_id": "u1"})
    pop.post("/recommend", json={"user_id": "u1", "k": 0})
    text = pop.get("/metrics").text
    assert 'recforge_requests_total{route="/recommend",method="POST",status="200"} 3' in text
    assert 'recforge_requests_total{route="/recommend",method="POST",status="422"} 1' in text
    assert 'recforge_request_duration_seconds_count{route="/recommend"} 4' in text
    assert 'recforge_request_duration_seconds_bucket{route="/recommend",le="+Inf"} 4' in text
    assert 'recforge_model_info{model="popular",version=' in text
    pop.get("/no/such/route")
    assert 'route="<other>",method="GET",status="404"' in pop.get("/metrics").text


def test_admin_auth(pop, popular_run, tmp_path):
    assert pop.post("/admin/reload", json={}).status_code == 401
    assert pop.post("/admin/reload", json={}, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert pop.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    with client(popular_run, tmp_path / "b") as no_admin:
        assert no_admin.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_reload_swaps_model_and_bad_reload_keeps_old(pop, serve_log, tmp_path):
    from recforge.models.popular import MostPopular

    auth = {"Authorization": f"Bearer {TOKEN}"}
    old = pop.get("/ready").json()["version"]
    newer = tmp_path / "newer"
    MostPopular().fit(serve_log.with_rows(np.arange(len(serve_log)) % 2 == 0)).save(newer / "artifact")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(newer, corrupt)
    (corrupt / "artifact" / "weights.safetensors").write_bytes(b"\x00garbage")
    for bad in [str(corrupt), str(tmp_path / "missing"), str(tmp_path)]:
        r = pop.post("/admin/reload", json={"path": bad}, headers=auth)
        assert r.status_code == 409 and f"still serving {old}" in r.json()["detail"]
        assert pop.get("/ready").json()["version"] == old
        assert pop.post("/recommend", json={"user_id": "u1"}).status_code == 200
    r = pop.post("/admin/reload", json={"path": str(newer)}, headers=auth)
    assert r.status_code == 200 and r.json()["version"] != old
    assert pop.post("/recommend", json={"user_id": "u1"}).json()["model_version"] == r.json()["version"]
    text = pop.get("/metrics").text
    assert 'recforge_reloads_total{result="error"} 3' in text and 'recforge_reloads_total{result="ok"} 1' in text


def _corrupt_json(run: Path) -> None:
    (run / "artifact" / "meta.json").write_text("{ not json")


def _truncate_weights(run: Path) -> None:
    w = run / "artifact" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:40])


def _flip_a_weight_bit(run: Path) -> None:
    w = run / "artifact" / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01
    w.write_bytes(bytes(raw))


def _unknown_model(run: Path) -> None:
    meta = run / "artifact" / "meta.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"name": "no-such-model"}))


def _other_table(run: Path) -> None:
    meta = run / "artifact" / "meta.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"table": "policy"}))


def _no_weights(run: Path) -> None:
    (run / "artifact" / "weights.safetensors").unlink()


def _no_artifact(run: Path) -> None:
    shutil.rmtree(run / "artifact")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (_corrupt_json, "corrupt artifact metadata"),
        (_truncate_weights, "artifact weights changed since they were written"),
        (_flip_a_weight_bit, "artifact weights changed since they were written"),
        (_unknown_model, "unknown model 'no-such-model'"),
        (_other_table, "holds a policy artifact, expected a model"),
        (_no_weights, "not an artifact (need meta.json and weights.safetensors)"),
        (_no_artifact, "not a run folder or artifact directory"),
    ],
)
def test_corrupt_artifact_refuses_to_start(popular_run, tmp_path, damage, needle, capsys):
    from recforge.cli import main

    run = tmp_path / "run"
    shutil.copytree(popular_run, run)
    damage(run)
    with pytest.raises(DataError, match=re.escape(needle)):
        create_app(run, ServeSettings(feedback_db=str(tmp_path / "f.sqlite")))
    assert main(["serve", str(run), "--feedback-db", str(tmp_path / "f.sqlite")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and len(err.splitlines()) == 1


def test_missing_artifact_refuses_to_start(tmp_path, capsys):
    from recforge.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 1
    assert "artifact not found" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--index-param", "nprobe"]) == 2
    assert "KEY=INT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"on_unknown": "ignore"}, "on_unknown"),
        ({"sync": "off"}, "sync"),
        ({"index": "lsh"}, "index"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"ann_threshold": 0}, "ann_threshold"),
        ({"max_history": 0}, "max_history"),
        ({"admin_token": "short"}, "admin_token"),
        ({"index_params": {"nprobe": 0}}, "index_params"),
        ({"index_params": {"bogus": 3}}, "index_params"),
    ],
)
def test_settings_validation(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        ServeSettings(**kwargs)


def test_feedback_export_cli(pop, tmp_path):
    import polars as pl

    from recforge.cli import main

    pop.post("/feedback", json={"user_id": "u1", "item_id": 2, "event": "click", "value": 1.5})
    pop.post("/feedback", json={"user_id": "u9", "item_id": 3, "event": "purchase"})
    out = tmp_path / "fb.parquet"
    assert main(["feedback", "export", "--db", str(tmp_path / "feedback.sqlite"), "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df["user_id"].to_list() == ["u1", "u9"] and df["item_id"].to_list() == [2, 3]
    assert df["event"].to_list() == ["click", "purchase"] and df["value"].to_list() == [1.5, None]
    assert main(["feedback", "export", "--db", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 1


def test_sasrec_feedback_extends_the_time_ordered_sequence(serve_log, tmp_path):
    from recforge.models.sasrec import SASRec
    from recforge.train.trainer import TrainConfig

    model = SASRec(dim=16, n_heads=1, n_layers=1, max_len=20, train=TrainConfig(epochs=1, device="cpu")).fit(serve_log)
    model.save(tmp_path / "run" / "artifact")
    with client(tmp_path / "run", tmp_path) as c:
        before = c.post("/recommend", json={"user_id": "u5", "k": 5}).json()
        assert before["source"] == "model"
        new_items = [before["items"][0]["item"], before["items"][1]["item"]]
        for item in new_items:
            assert c.post("/feedback", json={"user_id": "u5", "item_id": item}).status_code == 200
        after = c.post("/recommend", json={"user_id": "u5", "k": 5}).json()
    u = model.user_vocab.encode(["u5"])[0]
    ordered = serve_log.item[serve_log.user == u]  # the training sequence in time order
    history = np.concatenate([ordered, model.item_vocab.encode(new_items)])
    scores = model.score_histories([history])[0].clone()
    scores[torch.from_numpy(history)] = -torch.inf
    assert after["source"] == "history"
    assert [x["item"] for x in after["items"]] == model.item_vocab.decode(torch.topk(scores, 5).indices.numpy())


def test_hstu_history_with_timestamps(serve_log, tmp_path):
    """/recommend's ``times`` reach HSTU's time-gap bias, aligned with the known history items."""
    from recforge.models.hstu import HSTU
    from recforge.train.trainer import TrainConfig

    model = HSTU(dim=16, n_heads=1, n_layers=1, max_len=20, train=TrainConfig(epochs=1, device="cpu")).fit(serve_log)
    g = torch.Generator().manual_seed(0)
    for layer in model.net_.layers:  # a strong time-gap bias, so the timestamps visibly move the ranking
        layer.time_bias.weight.data = 3.0 * torch.randn(layer.time_bias.weight.shape, generator=g)
    model.save(tmp_path / "run" / "artifact")
    history, times = [1, "ghost", 2, 3], [0, 7, 10, 10**6]
    with client(tmp_path / "run", tmp_path) as c:
        out = c.post("/recommend", json={"history": history, "times": times, "k": 5}).json()
        plain = c.post("/recommend", json={"history": history, "k": 5}).json()
    recs, _ = model.recommend_history(history, k=5, times=times)
    assert out["ignored"] == ["ghost"] and [x["item"] for x in out["items"]] == recs.items[0]
    assert [x["item"] for x in plain["items"]] == model.recommend_history(history, k=5)[0].items[0]
    assert plain["items"] != out["items"]


def test_registered_als_serves_through_faiss(tmp_path, serve_log):
    """A registered embedding model (ALS) goes through the faiss index and agrees with its own exact top-k."""
    from recforge.models.als import ALS

    model = ALS(factors=8, iterations=3).fit(serve_log)
    users = np.arange(1, model.n_users + 1)
    q, v = model.user_embeddings(users), model.item_embeddings()
    torch.testing.assert_close(q @ v[1:].T, model.score(users)[:, 1:])
    with client(model, tmp_path, index="flat") as c:
        user = serve_log.user_vocab.decode([1])[0]
        out = c.post("/recommend", json={"user_id": user, "k": 5}).json()
    assert [row["item"] for row in out["items"]] == model.recommend([user], k=5).items[0]
