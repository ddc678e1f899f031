"""recforge.nn.optim.AdamW against torch.optim.AdamW: the same trajectory bit for bit, the same state layout, and no
torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.nn.optim import AdamW


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(30, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 30))


def _groups(model: nn.Module, wd: float) -> list[dict]:
    return [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]


def _train(model: nn.Module, opt, steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(t)
        x = torch.randint(0, 30, (16, 5), generator=g)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 30), x.flip(1).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:  # a schedule, as the Trainer sets it
            group["lr"] = 3e-3 * (0.9 ** t)
        opt.step()


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_torch_adamw(wd: float) -> None:
    ours, ref = _model(0), _model(0)
    _train(ours, AdamW(_groups(ours, wd), lr=3e-3), 25)
    _train(ref, torch.optim.AdamW(_groups(ref, wd), lr=3e-3), 25)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)  # same kernels in the same order: bit for bit
    assert not torch.equal(ours[0].weight, _model(0)[0].weight)  # it did move


def test_state_dict_round_trip_resumes_exactly() -> None:
    straight = _model(1)
    _train(straight, AdamW(_groups(straight, 0.05), lr=3e-3), 20)

    first = _model(1)
    opt = AdamW(_groups(first, 0.05), lr=3e-3)
    _train(first, opt, 8)
    saved = opt.state_dict()
    assert sorted(saved["state"]) == list(range(len(list(first.parameters()))))
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    resumed = _model(99)
    resumed.load_state_dict(first.state_dict())
    opt2 = AdamW(_groups(resumed, 0.05), lr=1.0)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    _train(resumed, opt2, 12, start=8)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_loads_torch_adamw_state() -> None:
    a, b = _model(2), _model(2)
    ref = torch.optim.AdamW(_groups(a, 0.1), lr=3e-3)
    _train(a, ref, 5)
    b.load_state_dict(a.state_dict())
    ours = AdamW(_groups(b, 0.1), lr=3e-3)
    ours.load_state_dict(ref.state_dict())
    _train(a, ref, 5, start=5)
    _train(b, ours, 5, start=5)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_parameter_without_gradient_keeps_its_own_step() -> None:
    model = _model(3)
    extra = nn.Parameter(torch.ones(4))
    opt = AdamW([{"params": list(model.parameters()) + [extra]}], weight_decay=0.0)
    _train(model, opt, 3)  # extra never gets a gradient
    assert extra not in opt.state and torch.equal(extra, torch.ones(4))
    extra.grad = torch.ones(4)
    opt.param_groups[0]["lr"] = 1e-2
    opt.step()
    assert float(opt.state[extra]["step"]) == 1.0 and float(opt.state[model[1].weight]["step"]) == 4.0
    # first Adam step moves by lr * sign(grad) (bias-corrected m / sqrt(v) = 1)
    torch.testing.assert_close(extra.detach(), torch.full((4,), 1 - 1e-2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"betas": (0.9, 1.0)}, {"betas": (-0.1, 0.9)}, {"eps": -1e-8},
                                 {"weight_decay": -0.1}])
def test_bad_settings(bad: dict) -> None:
    with pytest.raises(ConfigError, match="invalid AdamW settings"):
        AdamW(_model(4).parameters(), **bad)


def test_mismatched_state() -> None:
    model = _model(4)
    opt = AdamW(_groups(model, 0.0))
    with pytest.raises(ConfigError, match="does not match"):
        AdamW(model.parameters()).load_state_dict(opt.state_dict())


def test_training_does_not_import_dynamo() -> None:
    code = ("import sys, torch\nfrom recforge.nn.optim import AdamW\n"
            "m = torch.nn.Linear(3, 2); o = AdamW(m.parameters())\n"
            "m(torch.ones(1, 3)).sum().backward(); o.step(); o.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
