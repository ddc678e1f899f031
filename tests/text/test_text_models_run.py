"""text_knn and text_sasrec build from a TOML run config: the run path binds the dataset's catalogue (text vectors
cached under RECFORGE_CACHE_DIR), trains, evaluates on a cold-item split and saves a model that loads without the
catalogue; a dataset without a catalogue is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.errors import DataError
from recforge.experiments.runs import resolve_config, train_run
from recforge.models.base import load_model

TOML = """
seed = 0
[model]
name = "{name}"
embedder = {{ name = "hashing", dim = 64 }}
{extra}
[data]
name = "ml-latest-small"
[split]
name = "cold_item_holdout"
frac = 0.2
[eval]
metrics = ["recall@10"]
n_boot = 50
"""

SASREC = """dim = 16
n_layers = 1
n_heads = 1
max_len = 10
train = { epochs = 1, batch_size = 256, threads = 1 }"""


@pytest.mark.parametrize(("name", "extra"), [
    ("text_knn", ""), pytest.param("text_sasrec", SASREC, marks=pytest.mark.slow)])  # 25 s on 2 busy cores
def test_text_models_run_from_toml(tmp_path, monkeypatch, name, extra):
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    (tmp_path / "run.toml").write_text(TOML.format(name=name, extra=extra))
    cfg = resolve_config(config_file=tmp_path / "run.toml")
    run = train_run(cfg, out=tmp_path / "run", progress=False)
    assert 0.0 <= run.metrics["test"]["recall@10"]["mean"] <= 1.0
    assert any((tmp_path / "cache" / "text-vectors").iterdir())  # the vectors went through the cache
    loaded = load_model(tmp_path / "run" / "artifact")
    users = np.arange(1, 20)
    torch.testing.assert_close(loaded.score(users), run.model.score(users))


def test_a_dataset_without_catalogue_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "log.csv"
    log.write_text("user,item,time\n" + "".join(f"u{u},i{(u * 7 + k) % 30},{k}\n" for u in range(20) for k in range(8)))
    cfg = resolve_config("text_knn", str(log), overrides=["model.embedder.name=hashing"])
    with pytest.raises(DataError, match="no item catalogue"):
        train_run(cfg, out=tmp_path / "run", progress=False)
