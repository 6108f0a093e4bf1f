"""ANCHORS #4, #5, #6: exactly the method's parameters train; counts match hand-computed values."""

import copy

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from tunebench.config import load_config
from tunebench.methods import METHODS
from tunebench.methods.prompt_tuning import initial_prompt
from tunebench.models import count_parameters, random_model

# ANCHORS.md section 2, GPT-2 small (124,439,808 parameters, tied embeddings).
GPT2_TRAINABLE = {"prompt-tuning": 15_360, "lora": 442_368, "last-block": 45_686_784}


@pytest.fixture(scope="module")
def gpt2_small():
    return random_model("gpt2", 50257)  # the real GPT2Config() architecture, random weights


def test_gpt2_small_total(gpt2_small):
    assert count_parameters(gpt2_small) == (124_439_808, 124_439_808)


@pytest.mark.parametrize("name", list(GPT2_TRAINABLE))
def test_gpt2_small_trainable_counts(gpt2_small, tokenizer, name):
    cfg = load_config("seed")
    tuned = METHODS[name].apply(copy.deepcopy(gpt2_small), cfg, tokenizer)
    assert count_parameters(tuned)[1] == GPT2_TRAINABLE[name]
    if name == "last-block":  # untied head: +38,597,376 parameters, embedding frozen
        assert tuned.extra["head_params_added"] == 38_597_376
        assert not tuned.lm.get_input_embeddings().weight.requires_grad
        assert tuned.lm.get_output_embeddings().weight is not tuned.lm.get_input_embeddings().weight


def test_gpt2_lora_c_attn_only_and_conv1d(gpt2_small, tokenizer):
    cfg = load_config("seed", overrides=["method.lora.target_modules=[c_attn]"])
    tuned = METHODS["lora"].apply(copy.deepcopy(gpt2_small), cfg, tokenizer)
    assert count_parameters(tuned)[1] == 294_912
    assert tuned.adapter_config.fan_in_fan_out  # GPT-2's Conv1D stores (fan_in, fan_out)


def _expected_trainable(name, lm):
    if name == "prompt-tuning":
        return {"prefix.weight"}
    if name == "lora":
        return {f"lm.{n}" for n, _ in lm.named_parameters() if "lora_" in n}
    blocks = [n for n, _ in lm.named_parameters() if (".h.1." in n or ".layers.1." in n)]
    norms = [n for n, _ in lm.named_parameters() if n.startswith(("transformer.ln_f", "model.norm"))]
    return {f"lm.{n}" for n in blocks + norms} | {"lm.lm_head.weight"}


@pytest.mark.parametrize("name", list(METHODS))
def test_only_the_method_parameters_receive_gradients(tiny_lm, tokenizer, cfg, name):
    tuned = METHODS[name].apply(tiny_lm, cfg, tokenizer)
    expected = _expected_trainable(name, tuned.lm)
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == expected and trainable
    with torch.no_grad():  # B = 0 makes A's gradient exactly 0: give B a value so both must get one
        for n, p in tuned.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    ids = torch.randint(0, 256, (2, 12))
    tuned(ids, torch.ones_like(ids)).float().logsumexp(-1).sum().backward()
    for n, p in tuned.named_parameters():
        if n in expected:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_lora_with_b_zero_reproduces_the_base_logits(tiny_lm, tokenizer, cfg):
    base = copy.deepcopy(tiny_lm)
    tuned = METHODS["lora"].apply(tiny_lm, cfg, tokenizer)
    ids = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(tuned(ids, torch.ones_like(ids)), base(input_ids=ids).logits)
    assert all(p.abs().sum() == 0 for n, p in tuned.named_parameters() if "lora_B" in n)
    assert all(p.std() > 0 for n, p in tuned.named_parameters() if "lora_A" in n)


def test_lora_update_matches_the_math_on_conv1d(tokenizer):
    """With B != 0 the layer computes x W + (alpha / r) x A^T B^T, W stored (fan_in, fan_out) (ANCHORS #5)."""
    cfg = load_config("smoke", overrides=["method.lora.target_modules=[c_attn]"])
    lm = random_model("gpt2-tiny", len(tokenizer))
    tuned = METHODS["lora"].apply(lm, cfg, tokenizer)
    layer = tuned.lm.transformer.h[0].attn.c_attn
    assert isinstance(layer.base_layer, Conv1D)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        x = torch.randn(3, 64)
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        expected = x @ layer.base_layer.weight + layer.base_layer.bias + (8 / 4) * (x @ a.T @ b.T)
        torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("init", ["uniform", "vocab", "text"])
def test_soft_prompt_init(tokenizer, init):
    cfg = load_config("smoke", overrides=[f"method.prompt_tuning.init={init}",
                                          "method.prompt_tuning.num_virtual_tokens=20"])
    embedding = torch.randn(257, 64)
    prompt = initial_prompt(cfg, embedding, tokenizer)
    assert prompt.shape == (20, 64) and torch.isfinite(prompt).all()
    if init == "uniform":  # U(-0.5, 0.5) as the study meant it (ANCHORS #6)
        assert prompt.min() >= -0.5 and prompt.max() <= 0.5 and prompt.std() > 0.2
        assert abs(prompt.mean()) < 0.05
    else:
        rows = {tuple(r.tolist()) for r in embedding}
        assert all(tuple(r.tolist()) in rows for r in prompt)
    if init == "text":
        ids = tokenizer(cfg.method.prompt_tuning.init_text, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(prompt, embedding[torch.tensor(ids[:20])])


def test_soft_prompt_init_survives_apply_on_a_real_model(tiny_lm, tokenizer, cfg):
    tuned = METHODS["prompt-tuning"].apply(tiny_lm, cfg, tokenizer)
    torch.testing.assert_close(tuned.prefix.weight.detach(),
                               initial_prompt(cfg, tuned.lm.get_input_embeddings().weight, tokenizer))
