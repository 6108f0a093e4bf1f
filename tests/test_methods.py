"""docs/defects.md #4, #5, #6 for every method: exactly its parameters train; counts match hand counts and PEFT."""

import copy

import pytest
import torch
from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from transformers.pytorch_utils import Conv1D

from tunebench.config import load_config
from tunebench.methods import METHODS
from tunebench.methods.prompt_tuning import initial_prompt
from tunebench.models import count_parameters, random_model

# Hand-computed for GPT-2 small (124,439,808 parameters, tied embeddings); the seed preset's settings.
GPT2_TRAINABLE = {"prompt-tuning": 15_360, "lora": 442_368, "last-block": 45_686_784, "prefix-tuning": 368_640,
                  "ia3": 64_512, "full": 124_439_808,
                  "dora": 442_368 + 12 * (2304 + 768),  # LoRA + one magnitude per output of c_attn and attn.c_proj
                  # every bias, LayerNorm's included: 12 x (ln_1 768 + c_attn 2304 + attn.c_proj 768 + ln_2 768
                  # + c_fc 3072 + mlp.c_proj 768) + ln_f 768
                  "bitfit": 12 * (768 + 2304 + 768 + 768 + 3072 + 768) + 768}


def test_the_registry_is_what_this_file_covers():
    assert set(METHODS) == set(GPT2_TRAINABLE)


@pytest.fixture(scope="module")
def gpt2_small():
    return random_model("gpt2", 50257)  # the real GPT2Config() architecture, random weights


def test_gpt2_small_total(gpt2_small):
    assert count_parameters(gpt2_small) == (124_439_808, 124_439_808)
    assert sum(p.numel() for n, p in gpt2_small.named_parameters() if n.endswith(".bias")) == GPT2_TRAINABLE["bitfit"]


@pytest.mark.parametrize("name", list(GPT2_TRAINABLE))
def test_gpt2_small_trainable_counts(gpt2_small, tokenizer, name):
    cfg = load_config("seed")
    tuned = METHODS[name].build(copy.deepcopy(gpt2_small), cfg, tokenizer)
    assert count_parameters(tuned)[1] == GPT2_TRAINABLE[name]
    if name == "last-block":  # untied head: +38,597,376 parameters, embedding frozen
        assert tuned.facts["head_params_added"] == 38_597_376
        assert not tuned.lm.get_input_embeddings().weight.requires_grad
        assert tuned.lm.get_output_embeddings().weight is not tuned.lm.get_input_embeddings().weight
    if name == "full":  # tied embeddings stay tied
        assert tuned.lm.get_output_embeddings().weight is tuned.lm.get_input_embeddings().weight


def _peft_equivalent(name, lm, tuned):
    """PEFT's own config for the same method and settings (targets as tunebench resolved them)."""
    adapter = getattr(tuned, "adapter_config", None)
    if name in ("lora", "dora"):
        return LoraConfig(r=adapter.r, lora_alpha=adapter.lora_alpha, target_modules=sorted(adapter.target_modules),
                          fan_in_fan_out=adapter.fan_in_fan_out, use_dora=name == "dora", task_type="CAUSAL_LM")
    if name == "ia3":
        return IA3Config(target_modules=sorted(adapter.target_modules),
                         feedforward_modules=sorted(adapter.feedforward_modules),
                         fan_in_fan_out=adapter.fan_in_fan_out, task_type="CAUSAL_LM")
    if name == "prefix-tuning":
        return PrefixTuningConfig(num_virtual_tokens=tuned.kv_prefix.weight.shape[0], task_type="CAUSAL_LM")
    return PromptTuningConfig(num_virtual_tokens=tuned.prefix.weight.shape[0], task_type="CAUSAL_LM")


@pytest.mark.parametrize("name", ["lora", "dora", "ia3", "prefix-tuning", "prompt-tuning"])
@pytest.mark.parametrize("arch", ["gpt2", "llama-tiny"])
def test_trainable_count_equals_what_peft_reports(gpt2_small, tokenizer, name, arch):
    lm = copy.deepcopy(gpt2_small) if arch == "gpt2" else random_model(arch, len(tokenizer))
    cfg = load_config("seed")
    tuned = METHODS[name].build(copy.deepcopy(lm), cfg, tokenizer)
    peft_model = get_peft_model(lm, _peft_equivalent(name, lm, tuned))
    assert count_parameters(tuned)[1] == peft_model.get_nb_trainable_parameters()[0]
    if name == "prefix-tuning":  # and the same layout: PEFT's prefix encoder has our weight's shape
        assert peft_model.prompt_encoder["default"].embedding.weight.shape == tuned.kv_prefix.weight.shape


def test_gpt2_lora_c_attn_only_and_conv1d(gpt2_small, tokenizer):
    cfg = load_config("seed", overrides=["method.lora.target_modules=[c_attn]"])
    tuned = METHODS["lora"].build(copy.deepcopy(gpt2_small), cfg, tokenizer)
    assert count_parameters(tuned)[1] == 294_912
    assert tuned.adapter_config.fan_in_fan_out  # GPT-2's Conv1D stores (fan_in, fan_out)


def test_lora_all_linear_leaves_the_head_out(tiny_lm, tokenizer, cfg):
    cfg.method.lora.target_modules = ["all-linear"]
    linear = {f"lm.{n}" for n, m in tiny_lm.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in tuned.named_parameters() if ".lora_A." in n}
    assert "lm.lm_head" in linear and len(linear) > 2
    assert wrapped == linear - {"lm.lm_head"}


def _norm_weights(lm):
    norms = {n for n, m in lm.named_modules() if "Norm" in type(m).__name__}
    return {n for n, _ in lm.named_parameters() if n.rsplit(".", 1)[0] in norms and n.endswith(".weight")}


def _expected_trainable(name, lm):
    """What each method trains, written out independently of the method modules."""
    names = [n for n, _ in lm.named_parameters()]
    if name == "full":
        return {f"lm.{n}" for n in names}
    if name == "prompt-tuning":
        return {"prefix.weight"}
    if name == "prefix-tuning":
        return {"kv_prefix.weight"}
    if name in ("lora", "dora", "ia3"):
        return {f"lm.{n}" for n in names if ("ia3_" if name == "ia3" else "lora_") in n}
    if name == "bitfit":
        biases = {n for n in names if n.endswith(".bias")}
        return {f"lm.{n}" for n in (biases or _norm_weights(lm))}  # llama-tiny has no biases: its norms train
    blocks = [n for n in names if (".h.1." in n or ".layers.1." in n)]
    norms = [n for n in names if n.startswith(("transformer.ln_f", "model.norm"))]
    return {f"lm.{n}" for n in blocks + norms} | {"lm.lm_head.weight"}


@pytest.mark.parametrize("name", list(METHODS))
def test_only_the_method_parameters_receive_gradients(tiny_lm, tokenizer, cfg, name):
    tuned = METHODS[name].build(tiny_lm, cfg, tokenizer)
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


@pytest.mark.parametrize("name", ["lora", "dora", "ia3"])
def test_adapters_start_as_the_base_model(tiny_lm, tokenizer, cfg, name):
    """LoRA/DoRA with B = 0 and IA3 with its vectors at 1 reproduce the base logits before training."""
    base = copy.deepcopy(tiny_lm)
    tuned = METHODS[name].build(tiny_lm, cfg, tokenizer)
    ids = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(tuned(ids, torch.ones_like(ids)), base(input_ids=ids).logits)


def test_lora_starts_with_b_zero_and_a_random(tiny_lm, tokenizer, cfg):
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    assert all(p.abs().sum() == 0 for n, p in tuned.named_parameters() if "lora_B" in n)
    assert all(p.std() > 0 for n, p in tuned.named_parameters() if "lora_A" in n)


def test_lora_update_matches_the_math_on_conv1d(tokenizer):
    """With B != 0 the layer computes x W + (alpha / r) x A^T B^T, W stored (fan_in, fan_out) (docs/defects.md #5)."""
    cfg = load_config("smoke", overrides=["method.lora.target_modules=[c_attn]"])
    lm = random_model("gpt2-tiny", len(tokenizer))
    tuned = METHODS["lora"].build(lm, cfg, tokenizer)
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
                                          "method.prompt_tuning.num_virtual_tokens=20",
                                          "method.prompt_tuning.init_text=Summarize the following article in one "
                                          "sentence (about 20 words)."])
    embedding = torch.randn(257, 64)
    prompt = initial_prompt(cfg.method.prompt_tuning, embedding, tokenizer)
    assert prompt.shape == (20, 64) and torch.isfinite(prompt).all()
    if init == "uniform":  # U(-0.5, 0.5) as the study meant it (docs/defects.md #6)
        assert prompt.min() >= -0.5 and prompt.max() <= 0.5 and prompt.std() > 0.2
        assert abs(prompt.mean()) < 0.05
    else:
        rows = {tuple(r.tolist()) for r in embedding}
        assert all(tuple(r.tolist()) in rows for r in prompt)
    if init == "text":
        ids = tokenizer(cfg.method.prompt_tuning.init_text, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(prompt, embedding[torch.tensor(ids[:20])])


def test_soft_prompt_init_survives_apply_on_a_real_model(tiny_lm, tokenizer, cfg):
    torch.manual_seed(0)
    tuned = METHODS["prompt-tuning"].build(tiny_lm, cfg, tokenizer)
    torch.manual_seed(0)
    torch.testing.assert_close(tuned.prefix.weight.detach(), initial_prompt(
        cfg.method.prompt_tuning, tuned.lm.get_input_embeddings().weight, tokenizer))


def test_prefix_text_init_is_the_model_reading_that_text(tiny_lm, tokenizer, cfg):
    """Keys/values from `init_text` in every layer: the model then continues as if the text stood in front, which
    checks the cache layout (layers, keys vs values, heads) and the positions (the prompt starts after the prefix)."""
    cfg.method.prefix_tuning.init, cfg.method.prefix_tuning.init_text = "text", "Summarize this."
    cfg.method.prefix_tuning.num_virtual_tokens = 15
    base = copy.deepcopy(tiny_lm)
    tuned = METHODS["prefix-tuning"].build(tiny_lm, cfg, tokenizer)
    text = tokenizer("Summarize this.", add_special_tokens=False)["input_ids"]
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        expected = base(input_ids=torch.cat([torch.tensor([text] * 2), ids], dim=1)).logits[:, len(text):]
        torch.testing.assert_close(tuned(ids, torch.ones_like(ids)), expected, rtol=1e-4, atol=1e-4)
