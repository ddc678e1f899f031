"""The Trainer: schedule, config validation, determinism, early stopping, exact resume, curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from recforge.data.split import leave_last_out
from recforge.data.synthetic import sequential_world
from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate
from recforge.models.bpr import BPR, BPRConfig
from recforge.models.sasrec import SASRec, SASRecConfig
from recforge.registry import get_model
from recforge.train.trainer import TrainConfig, Trainer, lr_factor


@pytest.fixture(scope="module")
def split():
    return leave_last_out(sequential_world(n_users=150, n_items=50, length=10, seed=1))


def _sasrec(**train) -> SASRec:
    base = {"epochs": 4, "batch_size": 32, "lr": 5e-3, "threads": 1, "patience": 0}
    return SASRec(SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=10, train=TrainConfig(**(base | train))))


def _state(model: SASRec) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.net_.state_dict().items()}


def test_lr_schedule_shapes():
    assert [lr_factor(s, 100, 4, "constant") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(52, 100, 4, "linear") == pytest.approx(0.5)
    assert lr_factor(99, 100, 0, "cosine") == pytest.approx(0.0, abs=1e-3)
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(0, 100, 0, "cosine") == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epochs", 0, "train.epochs"),
        ("batch_size", 0, "train.batch_size"),
        ("lr", 0.0, "train.lr"),
        ("clip", -1.0, "train.clip"),
        ("patience", -1, "train.patience"),
        ("schedule", "step", "train.schedule"),
        ("device", "tpu", "train.device"),
        ("eval_metric", "auc", "train.eval_metric"),
        ("eval_metric", "ndcg", "train.eval_metric"),
    ],
)
def test_bad_train_config(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_same_seed_same_weights_other_seed_other_weights(split):
    a = _state(_sasrec(epochs=2).fit(split.train))
    b = _state(_sasrec(epochs=2).fit(split.train))
    c = _state(_sasrec(epochs=2, seed=1).fit(split.train))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Interrupt(Exception):
    pass


def test_exact_resume_gives_the_uninterrupted_result(split, tmp_path):
    full = _sasrec(epochs=4, schedule="cosine", warmup=3).fit(split.train, split.valid, checkpoint_dir=tmp_path / "a")

    def stop_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise _Interrupt

    interrupted = _sasrec(epochs=4, schedule="cosine", warmup=3)
    interrupted.callbacks = [stop_after_two]
    with pytest.raises(_Interrupt):
        interrupted.fit(split.train, split.valid, checkpoint_dir=tmp_path / "b")
    assert json.loads((tmp_path / "b" / "trainer.json").read_text())["epoch"] == 2
    resumed = _sasrec(epochs=4, schedule="cosine", warmup=3).fit(split.train, split.valid,
                                                                  checkpoint_dir=tmp_path / "b", resume=True)
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.train_result_.history[-1]["loss"] == resumed.train_result_.history[-1]["loss"]
    assert [r["epoch"] for r in resumed.train_result_.history] == [1, 2, 3, 4]
    m_full = evaluate(full, split, n_boot=0, progress=False).metrics
    m_resumed = evaluate(resumed, split, n_boot=0, progress=False).metrics
    assert m_full == m_resumed


def test_resume_without_checkpoint_is_a_config_error(split, tmp_path):
    with pytest.raises(ConfigError, match="cannot resume"):
        _sasrec(epochs=1).fit(split.train, checkpoint_dir=tmp_path / "none", resume=True)


def test_bpr_checkpoints_and_resumes_exactly_like_the_sequential_models(split, tmp_path):
    def bpr() -> BPR:
        return BPR(BPRConfig(factors=8, train=TrainConfig(epochs=4, batch_size=256, lr=0.03, clip=0.0, patience=0,
                                                          threads=1)))

    full = bpr().fit(split.train, checkpoint_dir=tmp_path / "a")
    interrupted = bpr()

    def stop_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise _Interrupt

    interrupted.callbacks = [stop_after_two]
    with pytest.raises(_Interrupt):
        interrupted.fit(split.train, checkpoint_dir=tmp_path / "b")
    resumed = bpr().fit(split.train, checkpoint_dir=tmp_path / "b", resume=True)
    assert (tmp_path / "a" / "curves.json").is_file()
    users = np.arange(1, split.train.n_users + 1)
    assert torch.equal(full.score(users), resumed.score(users))


@pytest.mark.parametrize("name", ["popular", "ease", "als", "itemknn", "userknn", "random"])
def test_models_without_the_trainer_refuse_resume_and_ignore_checkpoint_dir(name, split, tmp_path):
    with pytest.raises(ConfigError, match=f"model '{name}' does not support --resume"):
        get_model(name)().fit(split.train, checkpoint_dir=tmp_path / "c", resume=True)
    get_model(name)().fit(split.train, checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


class _Linear(nn.Module):
    """A one-parameter model whose loss pulls the weight towards 3."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return ((self.w - 3.0) ** 2).sum() + 0.0 * batch["x"].float().sum()


class _Rows:
    def __len__(self) -> int:
        return 8

    def order(self, batch_size, generator):
        return torch.randperm(8, generator=generator)

    def batch(self, rows, generator):
        return {"x": rows}


def test_early_stopping_restores_the_best_weights(tmp_path):
    scores = iter([0.1, 0.3, 0.2, 0.1, 0.05, 0.9])
    weights = []
    module = _Linear()

    def evaluate_fn() -> float:
        weights.append(float(module.w.detach()))
        return next(scores)

    cfg = TrainConfig(epochs=6, batch_size=4, lr=0.1, patience=2, threads=1)
    result = Trainer(cfg).fit(module, _Rows(), evaluate_fn, checkpoint_dir=tmp_path)
    assert result.stopped_early and result.best_epoch == 2 and result.best_metric == pytest.approx(0.3)
    assert len(result.history) == 4
    assert float(module.w.detach()) == pytest.approx(weights[1])
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [r["epoch"] for r in curves] == [1, 2, 3, 4] and "valid_ndcg@10" in curves[0]
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_sequential_model_learns_the_planted_rule(split):
    model = _sasrec(epochs=10, patience=3).fit(split.train, split.valid)
    from recforge.models.popular import MostPopular

    ours = evaluate(model, split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    pop = evaluate(MostPopular().fit(split.train), split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    assert ours["ci_low"] > pop["ci_high"] and ours["mean"] > 0.5, (ours, pop)
    assert np.isfinite(model.train_result_.best_metric)


def test_thread_count_is_honoured(split):
    before = torch.get_num_threads()
    try:
        _sasrec(epochs=1, threads=1).fit(split.train)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_bf16_autocast_learns_and_scores_on_cpu(split):
    model = _sasrec(epochs=10, device="cuda", amp=True).fit(split.train, split.valid)
    assert next(model.net_.parameters()).device.type == "cpu"  # handed back on CPU for scoring and saving
    ours = evaluate(model, split, metrics=("ndcg@10",), progress=False).mean("ndcg@10")
    assert ours > 0.5


def test_time_budget_stops_after_the_epoch_that_spends_it():
    module = _Linear()
    result = Trainer(TrainConfig(epochs=50, batch_size=4, budget_s=1e-9, threads=1)).fit(module, _Rows())
    assert result.out_of_budget and len(result.history) == 1


def test_cpu_time_budget_counts_this_process_cpu_seconds():
    # A CPU budget no epoch can spend on this tiny module never stops the fit; one any epoch spends stops it at once.
    roomy = Trainer(TrainConfig(epochs=3, batch_size=4, budget_s=3600, budget_clock="cpu", threads=1))
    assert not roomy.fit(_Linear(), _Rows()).out_of_budget
    tight = Trainer(TrainConfig(epochs=50, batch_size=4, budget_s=1e-9, budget_clock="cpu", threads=1))
    result = tight.fit(_Linear(), _Rows())
    assert result.out_of_budget and len(result.history) == 1
    with pytest.raises(ConfigError, match="budget_clock"):
        TrainConfig(budget_clock="gpu")
