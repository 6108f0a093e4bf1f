"""Prompt tuning (Lester et al. 2021): learned soft-token embeddings in front of the input.

Deliberately not PEFT's prompt tuning: PEFT's causal-LM wrapper drops `position_ids` for prompt learning
("Position ids are not supported ... Ignoring"), so left-padded batches get shifted positions, and its `generate`
on left-padded batches was measured to produce garbage (R-1 8.8 vs 24.8 for the same prompt prepended by hand).
Prepending embeddings ourselves (TunedModel.prefix) keeps one code path for training and batched generation.
PEFT also has no U(-a, a) init, which the original study used. The weight has PEFT's shape (n, hidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import require_at_least, require_choice, require_positive
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    lr_range: list[float] = field(default_factory=lambda: [1e-3, 3e-1])
    num_virtual_tokens: int = 20
    """Soft tokens in front of every prompt."""
    init: str = "uniform"
    """`uniform` (U(-init_range, init_range), as in the study), `vocab` (random rows of the embedding) or `text`
    (the embeddings of `init_text`, repeated to fill the prompt, as PEFT's TEXT init)."""
    init_range: float = 0.5
    """a in U(-a, a) (init: uniform)."""
    init_text: str = "auto"
    """The text whose token embeddings start the soft prompt (init: text); `auto`: the chat instruction derived from the
    data (eval.chat_instruction; "Summarize the following article:" where nothing was derived)."""

    def check(self, key: str) -> None:
        require_at_least(f"{key}.num_virtual_tokens", self.num_virtual_tokens, 1)
        require_choice(f"{key}.init", self.init, ("uniform", "vocab", "text"))
        require_positive(f"{key}.init_range", self.init_range)

    def positions_added(self) -> int:
        return self.num_virtual_tokens


def _init_text(settings: Settings) -> str:
    return "Summarize the following article:" if settings.init_text == "auto" else settings.init_text


def initial_prompt(settings: Settings, embedding, tokenizer):
    """The configured init (torch's global generator, seeded by the caller with train.seed)."""
    import torch

    n, width = settings.num_virtual_tokens, embedding.shape[1]
    if settings.init == "uniform":
        return (torch.rand(n, width) * 2 - 1) * settings.init_range
    if settings.init == "vocab":
        ids = torch.randint(0, embedding.shape[0], (n,))
    else:
        text_ids = tokenizer(_init_text(settings), add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        ids = torch.tensor((text_ids * (n // len(text_ids) + 1))[:n])
    return embedding[ids].detach().clone().float()


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.base import LearnedRows, TunedModel, freeze

    freeze(lm)
    return TunedModel(lm, prefix=LearnedRows(initial_prompt(settings, lm.get_input_embeddings().weight, tokenizer)))


def export(tuned, settings: Settings, base_model: str, out_dir):
    """A PEFT prompt-tuning adapter folder (`PeftModel.from_pretrained(base, out_dir)`): the soft tokens are PEFT's
    `prompt_embeddings`, the same (n, hidden) tensor; PEFT puts them in front of the input as we do."""
    from peft import PromptTuningConfig

    from tunebench.methods.adapters import save_peft

    config = tuned.lm.config
    peft_config = PromptTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, token_dim=config.hidden_size,
                                     num_transformer_submodules=1, num_attention_heads=config.num_attention_heads,
                                     num_layers=config.num_hidden_layers)
    save_peft(peft_config, {"prompt_embeddings": tuned.prefix.weight}, base_model, out_dir)
    return ("With PEFT 0.21.2 and transformers 5.24, generate with `use_cache=False`: with the cache, PEFT's "
            "generate writes wrong tokens after the first (tunebench's tests/test_outside.py checks both).")
