"""AdamW for the Trainer, on torch's multi-tensor (``_foreach``) kernels.

Why not ``torch.optim.AdamW``: its ``step`` and ``add_param_group`` import ``torch._dynamo`` on first use (to mark
themselves uncompilable), which adds ~71 MB of resident memory to every training process — a third of a small
job's footprint (GRU4Rec on ML-100K: 425 MB peak, of which 218 MB is ``import torch``). The update below is the same
decoupled-weight-decay Adam (Loshchilov & Hutter, 2019) in the same order of operations as torch's foreach path, and
``state_dict`` / ``load_state_dict`` use torch's layout (per-parameter ``step`` / ``exp_avg`` / ``exp_avg_sq``,
groups with ``lr``, ``betas``, ``eps``, ``weight_decay``), so checkpoints and exact resume are unchanged; a test
pins the trajectory to ``torch.optim.AdamW``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from recforge.errors import ConfigError


class AdamW:
    """Adam with decoupled weight decay over parameter groups (dicts with ``params`` and optional overrides)."""

    def __init__(self, params: Iterable[dict[str, Any]] | Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"invalid AdamW settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        items = list(params)
        groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = [defaults | g | {"params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:
                    self.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                     "exp_avg_sq": torch.zeros_like(p)}
            states = [self.state[p] for p in params]
            for s in states:
                s["step"] += 1
            self._update(params, [p.grad for p in params], states, group)

    @staticmethod
    def _update(params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                group: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        # A parameter without a gradient in some steps falls behind in step count: bias corrections per count.
        by_step: dict[float, list[int]] = {}
        for i, s in enumerate(states):
            by_step.setdefault(float(s["step"]), []).append(i)
        for step, idx in by_step.items():
            step_size = lr / (1 - beta1**step)
            bias2_sqrt = (1 - beta2**step) ** 0.5  # as torch computes it
            denom = torch._foreach_sqrt([exp_avg_sq[i] for i in idx])
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_([params[i] for i in idx], [exp_avg[i] for i in idx], denom, -step_size)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``state`` keyed by the parameter's index over all groups, groups list those indices."""
        index: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(p, len(index))
                ids.append(index[p])
            groups.append({k: v for k, v in group.items() if k != "params"} | {"params": ids})
        state = {index[p]: dict(s) for p, s in self.state.items() if p in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore moments and group settings saved by :meth:`state_dict` (or by ``torch.optim.AdamW``)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ConfigError("optimizer state does not match these parameter groups")
        self.state = {}
        for s, group in zip(saved, self.param_groups):
            group.update({k: (tuple(v) if k == "betas" else v) for k, v in s.items() if k != "params"})
            for idx, p in zip(s["params"], group["params"]):
                slots = state_dict["state"].get(idx, state_dict["state"].get(str(idx)))
                if slots is not None:
                    self.state[p] = {"step": torch.as_tensor(slots["step"], dtype=torch.float32).clone(),
                                     "exp_avg": slots["exp_avg"].to(p.device, p.dtype).clone(),
                                     "exp_avg_sq": slots["exp_avg_sq"].to(p.device, p.dtype).clone()}
