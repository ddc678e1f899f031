"""text_sasrec with PersonalLoRA: off by default (the network is unchanged), a pure addition at initialisation, and
after training different users' adapted last layers differ; save/load keeps the scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.models.base import load_model
from recforge.models.text_sasrec import TextSASRec, TextSASRecConfig, TextSASRecNet
from recforge.testing import contract_catalog, contract_split
from recforge.text import bind_items

SMALL = {"embedder": {"name": "hashing", "dim": 64}, "dim": 32, "n_layers": 1, "n_heads": 1, "max_len": 20,
         "calibration": "none", "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "threads": 1}}


def _net(**kw) -> TextSASRecNet:
    torch.manual_seed(0)
    cfg = TextSASRecConfig(**{**SMALL, **kw})
    n = 30
    warm = torch.ones(n + 1)
    warm[0] = 0
    return TextSASRecNet(cfg, torch.randn(n + 1, 16), torch.zeros(n + 1, 0), warm)


def test_default_is_off_and_the_option_is_a_pure_addition_at_initialisation():
    plain, personal = _net(), _net(personal_lora_experts=3, personal_lora_rank=2)
    assert TextSASRecConfig().personal_lora_experts == 0
    assert not any("personal" in k for k in plain.state_dict())
    extra = set(personal.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("personal.") for k in extra)
    personal.load_state_dict(plain.state_dict(), strict=False)  # same shared weights; LoRA B starts at zero
    plain.eval(), personal.eval()
    items = torch.tensor([[0, 0, 3, 7, 9], [1, 2, 3, 4, 5]])
    assert torch.allclose(plain.encode(items), personal.encode(items), atol=1e-6)
    assert torch.allclose(plain.last_hidden(items), personal.last_hidden(items), atol=1e-6)


def test_history_mean_is_causal_and_skips_padding():
    items = torch.tensor([[0, 2, 5]])
    vectors = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]]])
    mean = TextSASRecNet.history_mean(items, vectors)
    assert mean[0, 1].tolist() == [1.0, 0.0] and mean[0, 2].tolist() == [0.5, 0.5]


def test_trained_personal_layers_differ_between_users(tmp_path):
    split = contract_split()
    model = TextSASRec(**SMALL, personal_lora_experts=4, personal_lora_rank=2)
    bind_items(model, contract_catalog(split), split.train, use_cache=False)
    model.fit(split.train)
    net = model.net_
    assert net.personal.lora_b.abs().max() > 0  # the adapters were trained
    items, offsets = split.train.sequences()
    table = net.tower()
    clusters = split.train.meta["user_cluster"][[int(str(u)[1:]) for u in split.train.user_vocab.ids]]
    users = [1 + int(np.flatnonzero(clusters == c)[0]) for c in range(3)]  # one dense user of three planted clusters
    reps = []
    for u in users:
        hist = torch.from_numpy(np.array(items[offsets[u]: offsets[u + 1]], dtype=np.int64))[None]
        reps.append(TextSASRecNet.history_mean(hist, torch.nn.functional.normalize(table[hist], dim=-1))[0, -1])
    with torch.no_grad():
        gates = net.personal.gates(torch.stack(reps))
        deltas = net.personal.delta_weight(torch.stack(reps))
    size = deltas.abs().max()
    for a, b in ((0, 1), (0, 2), (1, 2)):  # different users: different gates, updates differing by > 5 % of their size
        assert (gates[a] - gates[b]).abs().max() > 0.02
        assert (deltas[a] - deltas[b]).abs().max() > 0.05 * size
    model.save(tmp_path / "m")
    users = np.arange(1, 30)
    assert torch.equal(load_model(tmp_path / "m").score(users), model.score(users))


def test_bad_personal_lora_settings_are_config_errors():
    with pytest.raises(ConfigError, match="personal_lora"):
        TextSASRecConfig(personal_lora_experts=-1)
    with pytest.raises(ConfigError, match="personal_lora"):
        TextSASRecConfig(personal_lora_rank=0)
