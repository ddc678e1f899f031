"""The ``mock`` backend: scripted answers, for tests and for dry runs of a pipeline without a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recforge.errors import ConfigError
from recforge.llm.base import Usage, check_capabilities, require_verb
from recforge.protocols import Generation, GenerationRequest

Script = Callable[[GenerationRequest], str]


@dataclass(frozen=True)
class MockConfig:
    replies: tuple[str, ...] = ()
    """Answers returned in turn (cycling); empty = echo the last message's content."""
    capabilities: tuple[str, ...] = ("generate", "score", "embed")
    """The verbs this mock claims to support (the others raise ConfigError)."""
    dim: int = 16
    """Dimension of ``embed``'s (hashed, deterministic) vectors."""


class MockLLM:
    """Scripted: ``script(request) -> text`` when given, else ``replies`` in turn, else an echo. ``score`` returns
    minus the continuation's length in characters (a deterministic stand-in); ``embed`` hashes characters."""

    name = "mock"
    config_class = MockConfig

    def __init__(self, config: MockConfig | None = None, script: Script | None = None, **overrides: Any):
        self.config = config or MockConfig(**overrides)
        self.capabilities = check_capabilities(self.name, self.config.capabilities)
        self.script = script
        self.usage = Usage()
        self.requests: list[GenerationRequest] = []
        self._turn = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        require_verb(self.name, self.capabilities, "generate")
        out = []
        for req in requests:
            if not req.messages:
                raise ConfigError("a generation request needs at least one message")
            self.requests.append(req)
            if self.script is not None:
                text = self.script(req)
            elif self.config.replies:
                text = self.config.replies[self._turn % len(self.config.replies)]
                self._turn += 1
            else:
                text = req.messages[-1][1]
            prompt = sum(len(m[1].split()) for m in req.messages)
            self.usage.add(requests=1, prompt_tokens=prompt, completion_tokens=len(text.split()))
            out.append(Generation(text=text, finish_reason="stop", prompt_tokens=prompt,
                                  completion_tokens=len(text.split())))
        return out

    def score(self, context: str, continuations: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "score")
        self.usage.add(requests=len(continuations))
        return -np.asarray([float(len(c)) for c in continuations], dtype=np.float64)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "embed")
        self.usage.add(requests=len(texts))
        out = np.zeros((len(texts), self.config.dim), np.float32)
        for i, t in enumerate(texts):
            for j, ch in enumerate(t.encode("utf-8")):
                out[i, (ch + j) % self.config.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
