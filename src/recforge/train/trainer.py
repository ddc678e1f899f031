"""The one training loop for every neural model: the model owns its loss, the Trainer owns everything else.

AdamW with a warm-up + decay learning-rate schedule, gradient clipping, early stopping on a validation metric,
a checkpoint every epoch (safetensors for tensors, JSON for scalars — no pickle) with exact resume, determinism
with a seed, CPU thread count, CUDA with bf16 autocast, and multi-process data parallelism through
``torch.distributed`` (``torchrun --nproc_per_node N -m recforge train ...``; gloo on CPU, NCCL on GPU).

Exact resume works because nothing random is carried between epochs: epoch ``e`` draws its data order, negatives,
masks and dropout from generators seeded by ``(seed, e, rank)``, and the learning rate is a pure function of the
step. Restoring weights, optimizer moments and the step therefore replays the remaining epochs bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recforge.config import check_choices, to_dict
from recforge.errors import ConfigError, DataError
from recforge.metrics.ranking import parse_metric
from recforge.nn.optim import AdamW
from recforge.progress import enabled as progress_enabled

log = logging.getLogger(__name__)

CHECKPOINT_WEIGHTS = "last.safetensors"
BEST_WEIGHTS = "best.safetensors"
CHECKPOINT_STATE = "trainer.json"


@dataclass(frozen=True)
class TrainConfig:
    """How to train a neural model (shared by every neural model as its ``train`` config table)."""

    epochs: int = 50  # maximum number of passes over the training windows
    batch_size: int = 256  # sequences per optimizer step (summed over all processes)
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.0  # AdamW decoupled weight decay on matrices (not on biases / norms)
    warmup: int = 0  # optimizer steps of linear warm-up from 0 to lr
    schedule: Literal["constant", "linear", "cosine"] = "constant"  # decay after warm-up, over all epochs' steps
    clip: float = 1.0  # max global gradient norm; 0 disables clipping
    patience: int = 5  # stop after this many evaluations without improvement; 0 = never stop early
    eval_metric: str = "ndcg@10"  # validation metric for early stopping (higher is better)
    eval_every: int = 1  # evaluate on validation every this many epochs
    eval_users: int = 0  # early-stop on a seeded sample of this many validation users (0 = all of them)
    budget_s: float = 0.0  # stop after the first epoch that ends past this many seconds of fitting (0 = no limit)
    # what budget_s counts: wall seconds, or this process's CPU seconds (every thread; the steadier budget when
    # several fits share a machine's cores)
    budget_clock: Literal["wall", "cpu"] = "wall"
    seed: int = 0  # seeds initialisation, data order, negatives, masks and dropout
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)

    def __post_init__(self) -> None:
        check_choices(self, prefix="train.")
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "clip", "warmup", "patience", "threads", "eval_users", "budget_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        try:
            parse_metric(self.eval_metric)
        except ConfigError as exc:
            raise ConfigError(f"train.eval_metric: {exc}") from None


class BatchSource(Protocol):
    """Training data: ``len()`` rows, each epoch's row ``order``, and ``batch(rows, generator)`` -> the model's input.

    ``order(batch_size, generator)`` returns a permutation of ``range(len())`` (int64); it must depend only on the
    generator (exact resume replays it). Most sources return ``torch.randperm(len(self), generator=generator)``;
    sequence data buckets by length."""

    def __len__(self) -> int: ...

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor: ...

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]: ...


@dataclass
class TrainResult:
    """What a fit did: per-epoch ``history`` rows, the best epoch and its validation metric, timings."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    out_of_budget: bool = False
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is a config error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); initialises the default process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    # Distinct, reproducible seeds per (seed, epoch, rank, stream); large primes keep them from colliding.
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + stream) % (2**63 - 1)


class Trainer:
    """Runs :class:`TrainConfig` on a module whose ``forward(batch) -> scalar loss``.

    ``evaluate_fn()`` (optional) returns the validation metric of the current weights (higher is better); it is
    called on rank 0 only, every ``eval_every`` epochs, with the module in eval mode. ``callbacks`` are called as
    ``cb(epoch, row)`` after each epoch's checkpoint (a callback may raise to interrupt training).
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callable[[int, dict[str, float]], None]] = ()):
        self.config = config
        self.callbacks = list(callbacks)

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        module: nn.Module,
        data: BatchSource,
        evaluate_fn: Callable[[], float] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> TrainResult:
        cfg = self.config
        t_start = time.perf_counter()
        budget_start = self._budget_clock()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        rank, world = distributed_context()
        device = resolve_device(cfg.device)
        module.to(device)
        optimizer = self._optimizer(module)
        n_rows = len(data)
        steps_per_epoch = math.ceil(n_rows / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None

        result = TrainResult()
        state = {"epoch": 0, "step": 0, "bad_evals": 0}
        best_state: dict[str, torch.Tensor] | None = None
        if resume:
            if ckpt is None or not (ckpt / CHECKPOINT_STATE).is_file():
                raise ConfigError(f"cannot resume: no checkpoint in {ckpt}")
            best_state = self._load_checkpoint(ckpt, module, optimizer, state, result, device)
            log.info("resumed from %s at epoch %d (step %d)", ckpt, state["epoch"], state["step"])

        train_module: nn.Module = module
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.amp else nullcontext()
        )
        show = progress_enabled() and rank == 0
        bar = _Bar(show, cfg.epochs)
        with bar:
            for epoch in range(state["epoch"], cfg.epochs):
                t0 = time.perf_counter()
                module.train()
                order_gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 0, 0))
                order = data.order(cfg.batch_size, order_gen)
                gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, rank, 1))
                torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank, 2))  # dropout draws from the global generator
                total_loss, n_batches = 0.0, 0
                bar.start_epoch(epoch, steps_per_epoch)
                for start in range(0, n_rows, cfg.batch_size):
                    # Every process sees the same global batch order and takes its own share of each batch.
                    rows = order[start : start + cfg.batch_size][rank::world]
                    batch = {k: v.to(device, non_blocking=True) for k, v in data.batch(rows, gen).items()}
                    for group in optimizer.param_groups:
                        group["lr"] = cfg.lr * lr_factor(state["step"], total_steps, cfg.warmup, cfg.schedule)
                    with autocast:
                        loss = train_module(batch)
                    if not torch.isfinite(loss):
                        raise DataError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}; lower train.lr")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip:
                        nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
                    optimizer.step()
                    state["step"] += 1
                    total_loss += float(loss.detach())
                    n_batches += 1
                    bar.advance(total_loss / n_batches)
                epoch_loss = total_loss / max(n_batches, 1)
                if world > 1:  # report the loss of the whole global batch stream, not one process's share
                    import torch.distributed as dist

                    mean = torch.tensor([epoch_loss], dtype=torch.float64, device=device)
                    dist.all_reduce(mean)
                    epoch_loss = float(mean.cpu()[0]) / world
                row: dict[str, float] = {
                    "epoch": epoch + 1,
                    "loss": epoch_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_s": round(time.perf_counter() - t0, 3),
                }
                stop, improved = False, False
                if evaluate_fn is not None and (epoch + 1) % cfg.eval_every == 0:
                    metric = self._evaluate(module, evaluate_fn, rank, world, device)
                    row[f"valid_{cfg.eval_metric}"] = metric
                    if result.best_metric is None or metric > result.best_metric:
                        result.best_metric, result.best_epoch = metric, epoch + 1
                        best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                        state["bad_evals"], improved = 0, True
                    else:
                        state["bad_evals"] += 1
                        stop = bool(cfg.patience) and state["bad_evals"] >= cfg.patience
                result.history.append(row)
                bar.end_epoch(row, cfg.eval_metric)
                log.info("epoch %d: %s", epoch + 1, row)
                state["epoch"] = epoch + 1
                if ckpt is not None and rank == 0:
                    self._save_checkpoint(ckpt, module, optimizer, state, result, best_state, improved)
                for cb in self.callbacks:
                    cb(epoch + 1, row)
                if cfg.budget_s and not stop and self._over_budget(budget_start, world, device):
                    log.info("time budget of %.0f %s s spent after epoch %d", cfg.budget_s, cfg.budget_clock,
                             epoch + 1)
                    result.out_of_budget = True
                    break
                if stop:
                    result.stopped_early = True
                    log.info("early stop after epoch %d (best %s=%.5f at epoch %d)", epoch + 1, cfg.eval_metric,
                             result.best_metric, result.best_epoch)
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        result.seconds = time.perf_counter() - t_start
        if ckpt is not None and rank == 0:
            save_curves(result, ckpt, cfg.eval_metric)
        return result

    # ------------------------------------------------------------------ pieces
    def _optimizer(self, module: nn.Module) -> AdamW:
        decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return AdamW([g for g in groups if g["params"]], lr=self.config.lr)

    @staticmethod
    def _evaluate(module: nn.Module, evaluate_fn: Callable[[], float], rank: int, world: int,
                  device: torch.device) -> float:
        module.eval()
        value = torch.zeros(1, dtype=torch.float64)
        if rank == 0:
            with torch.inference_mode():
                value[0] = float(evaluate_fn())
        if world > 1:
            import torch.distributed as dist

            value = value.to(device)
            dist.broadcast(value, src=0)  # every process takes the same early-stopping decision
        module.train()
        return float(value.cpu()[0])

    def _budget_clock(self) -> float:
        return time.process_time() if self.config.budget_clock == "cpu" else time.perf_counter()

    def _over_budget(self, budget_start: float, world: int, device: torch.device) -> bool:
        spent = self._budget_clock() - budget_start
        over = torch.tensor([float(spent > self.config.budget_s)], device=device)
        if world > 1:  # rank 0's clock decides, so every process stops after the same epoch
            import torch.distributed as dist

            dist.broadcast(over, src=0)
        return bool(over.cpu()[0])

    def _save_checkpoint(self, ckpt: Path, module: nn.Module, optimizer: AdamW,
                         state: dict[str, int], result: TrainResult, best_state: dict[str, torch.Tensor] | None,
                         best_changed: bool) -> None:
        ckpt.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        opt = optimizer.state_dict()
        for idx, slots in opt["state"].items():
            for key, value in slots.items():
                tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        _atomic_save(tensors, ckpt / CHECKPOINT_WEIGHTS)
        if best_state is not None and best_changed:
            _atomic_save({k: v.contiguous() for k, v in best_state.items()}, ckpt / BEST_WEIGHTS)
        meta = {
            **state,
            "param_groups": [{k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
                             for g in opt["param_groups"]],
            "history": result.history,
            "best_epoch": result.best_epoch,
            "best_metric": result.best_metric,
            "has_best": best_state is not None,
            "config": to_dict(self.config),
        }
        tmp = ckpt / (CHECKPOINT_STATE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        tmp.replace(ckpt / CHECKPOINT_STATE)

    def _load_checkpoint(self, ckpt: Path, module: nn.Module, optimizer: AdamW,
                         state: dict[str, int], result: TrainResult, device: torch.device
                         ) -> dict[str, torch.Tensor] | None:
        meta = json.loads((ckpt / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(ckpt / CHECKPOINT_WEIGHTS))
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, slot = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[slot] = value
        template = optimizer.state_dict()
        groups = []
        for saved, current in zip(meta["param_groups"], template["param_groups"]):
            if saved["n_params"] != len(current["params"]):
                raise DataError(f"checkpoint {ckpt} does not match this model (parameter groups differ)")
            groups.append({k: v for k, v in saved.items() if k != "n_params"} | {"params": current["params"]})
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        for key in ("epoch", "step", "bad_evals"):
            state[key] = int(meta[key])
        result.history = list(meta["history"])
        result.best_epoch, result.best_metric = meta["best_epoch"], meta["best_metric"]
        if meta.get("has_best") and (ckpt / BEST_WEIGHTS).is_file():
            return load_file(str(ckpt / BEST_WEIGHTS))
        return None


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # Write then rename, so an interrupted save never leaves a half-written checkpoint behind.
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def save_curves(result: TrainResult, folder: Path, metric: str) -> None:
    """Training curves: ``curves.json`` (the history rows) and ``curves.png`` (loss and validation metric)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curves.json").write_text(json.dumps(result.history, indent=1), encoding="utf-8")
    if not result.history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in result.history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [r["loss"] for r in result.history], color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    key = f"valid_{metric}"
    evals = [(r["epoch"], r[key]) for r in result.history if key in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), color="tab:orange", marker="o", label=key)
        ax2.set_ylabel(key, color="tab:orange")
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=100)
    plt.close(fig)


class _Bar:
    """A rich progress bar per epoch showing the running loss, then the epoch's validation metric."""

    def __init__(self, show: bool, epochs: int):
        self.show, self.epochs = show, epochs
        self.progress = None
        self.task = None

    def __enter__(self) -> _Bar:
        if self.show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}", total=steps, info="")

    def advance(self, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, info=f"loss {loss:.4f}")

    def end_epoch(self, row: dict[str, float], metric: str) -> None:
        if self.progress is not None:
            valid = row.get(f"valid_{metric}")
            info = f"loss {row['loss']:.4f}" + (f"  valid {metric} {valid:.4f}" if valid is not None else "")
            self.progress.update(self.task, info=info)
