"""The one artifact format: round trip, verification at load, one-line errors, versions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recforge.artifacts import load_artifact, save_artifact
from recforge.errors import ArtifactError, DataError


def _save(path, config=None, **kw):
    return save_artifact(path, table="model", name="toy", config=config or {"dim": 4},
                         tensors={"w": torch.arange(6.0).reshape(2, 3), "ids": np.array([1, 2, 3])}, **kw)


def test_round_trip_keeps_tensors_meta_and_extra(tmp_path):
    _save(tmp_path / "a", extra={"vocab": ["x", "y"], "count": np.int64(3)})
    art = load_artifact(tmp_path / "a", table="model")
    assert art.table == "model" and art.name == "toy" and art.config == {"dim": 4}
    assert art.extra == {"vocab": ["x", "y"], "count": 3}
    assert torch.equal(art.tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert art.tensors["ids"].dtype == torch.int64 and art.tensors["ids"].tolist() == [1, 2, 3]
    assert {"python", "torch", "numpy"} <= set(art.meta["versions"])


def test_changed_weights_are_refused(tmp_path):
    _save(tmp_path / "a")
    weights = tmp_path / "a" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit inside the tensor data, header intact
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="changed since they were written"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "meta.json").unlink(), "not an artifact"),
    (lambda d: (d / "meta.json").write_text("{not json"), "corrupt artifact metadata"),
    (lambda d: (d / "meta.json").write_text("[]"), "not a recforge-artifact"),
    (lambda d: (d / "meta.json").write_text(json.dumps({"format": "recforge-artifact/1"})), "missing"),
])
def test_damaged_metadata_is_one_clear_error(tmp_path, damage, message):
    _save(tmp_path / "a")
    damage(tmp_path / "a")
    with pytest.raises(DataError, match=message):
        load_artifact(tmp_path / "a")


def test_wrong_table_and_missing_folder(tmp_path):
    _save(tmp_path / "a")
    with pytest.raises(DataError, match="holds a model artifact, expected a policy"):
        load_artifact(tmp_path / "a", table="policy")
    with pytest.raises(DataError, match="not found"):
        load_artifact(tmp_path / "nowhere")


def test_version_follows_config_and_weights(tmp_path):
    v1 = load_artifact(_save(tmp_path / "a")).version
    assert load_artifact(_save(tmp_path / "b")).version == v1  # same name, config, weights: same version
    assert load_artifact(_save(tmp_path / "c", config={"dim": 5})).version != v1
    assert v1.startswith("toy-") and len(v1) == len("toy-") + 12
