"""One LLM client, three verbs (generate, score, embed), behind ``protocols.LLMClient``; prompts and strict grounding.

Backends (registry table ``llm``): ``mock`` (scripted), ``openai_compat`` (any OpenAI-style HTTP endpoint) and
``hf_local`` (a transformers model folder, GGUF file or in-memory model). Layer 5: recommenders take an LLMClient or a
``protocols.CandidateReranker`` built here, never this package.
"""

from recforge.llm.base import LLMError, Usage
from recforge.llm.mock import MockLLM

__all__ = ["LLMError", "MockLLM", "Usage"]
