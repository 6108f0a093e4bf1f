"""Prefix tuning (Li & Liang 2021): learned keys and values in front of every attention layer.

The prefix enters the model as a key/value cache of `num_virtual_tokens` positions (TunedModel.kv_prefix), for
training and batched generation alike; not PEFT's wrapper, whose causal-LM `generate` on left-padded batches
shifts positions (see prompt_tuning.py). The weight has PEFT's layout without reparametrisation,
(n, layers * 2 * kv_width): 368,640 values for 20 tokens on GPT-2 small.

`init: text` starts from the keys and values the model itself computes for `init_text` (Li & Liang's
initialisation with real activations, which they found trains far more stably than random); `random` is
PEFT's N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import require_at_least, require_choice
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    lr_range: list[float] = field(default_factory=lambda: [1e-3, 3e-1])
    num_virtual_tokens: int = 20
    """Prefix positions in every layer."""
    init: str = "text"
    """`text` (the model's own keys/values for `init_text`, repeated to fill the prefix) or `random` (N(0, 1))."""
    init_text: str = "auto"
    """The text whose keys and values start the prefix (init: text); `auto`: the chat instruction derived from the
    data (eval.chat_instruction; "Summarize the following article:" where nothing was derived)."""

    def check(self, key: str) -> None:
        require_at_least(f"{key}.num_virtual_tokens", self.num_virtual_tokens, 1)
        require_choice(f"{key}.init", self.init, ("text", "random"))

    def positions_added(self) -> int:
        return self.num_virtual_tokens


def _init_text(settings: Settings) -> str:
    return "Summarize the following article:" if settings.init_text == "auto" else settings.init_text


def _text_keys_values(lm, settings: Settings, tokenizer):
    """(n, layers * 2 * kv_width): the keys and values of the init text's tokens, in the prefix layout."""
    import torch

    ids = tokenizer(_init_text(settings), add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    n = settings.num_virtual_tokens
    ids = torch.tensor([(ids * (n // len(ids) + 1))[:n]], device=lm.device)
    with torch.no_grad():
        cache = lm(input_ids=ids, use_cache=True).cache
    # per layer (1, heads, n, head_dim) keys and values -> (n, 2 * layers, heads, head_dim), as TunedModel reads it
    rows = [t[0].transpose(0, 1) for layer in cache.layers for t in (layer.keys, layer.values)]
    return torch.stack(rows, dim=1).reshape(n, -1).float()


def _kv_shape(config) -> tuple[int, int]:
    """(key/value heads, head width) of a model: PEFT's `num_attention_heads` and `token_dim // heads`."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return heads, head_dim


def apply(lm, settings: Settings, tokenizer):
    import torch

    from tunebench.methods.base import LearnedRows, TunedModel, freeze

    freeze(lm)
    heads, head_dim = _kv_shape(lm.config)
    width = lm.config.num_hidden_layers * 2 * heads * head_dim
    if settings.init == "text":
        weight = _text_keys_values(lm, settings, tokenizer)
    else:
        weight = torch.randn(settings.num_virtual_tokens, width)
    return TunedModel(lm, kv_prefix=LearnedRows(weight))


def export(tuned, settings: Settings, base_model: str, out_dir):
    """A PEFT prefix-tuning adapter folder (`PeftModel.from_pretrained(base, out_dir)`), without reparametrisation:
    the weight is PEFT's `prompt_embeddings` in its layout; `token_dim` and `num_attention_heads` count key/value
    heads, as PEFT sets them for grouped-query attention."""
    from peft import PrefixTuningConfig

    from tunebench.methods.adapters import save_peft

    heads, head_dim = _kv_shape(tuned.lm.config)
    peft_config = PrefixTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, token_dim=heads * head_dim,
                                     encoder_hidden_size=heads * head_dim, num_transformer_submodules=1,
                                     num_attention_heads=heads, num_layers=tuned.lm.config.num_hidden_layers,
                                     prefix_projection=False)
    save_peft(peft_config, {"prompt_embeddings": tuned.kv_prefix.weight}, base_model, out_dir)
    return ("With PEFT 0.21.2 and transformers 5.24, PEFT's `generate` writes wrong tokens after the first few "
            "for prefix tuning, with or without the cache, while the PeftModel's forward is right: decode greedily "
            "by calling the model on the growing sequence (no `generate`), or use `tunebench summarize` "
            "(tunebench's tests/test_outside.py checks both).")
