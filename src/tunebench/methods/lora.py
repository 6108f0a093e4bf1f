"""LoRA (Hu et al. 2021) through PEFT: W + (alpha / r) B A on the target layers, B = 0 at the start.

GPT-2 stores c_attn / c_proj as `Conv1D` with a (fan_in, fan_out) weight; PEFT needs `fan_in_fan_out=True`
for those, which is set whenever the targets are Conv1D (docs/defects.md #5). `use_rslora` scales by alpha / sqrt(r)
(Kalajdzievski 2023). DoRA (dora.py) is this method with a learned magnitude per output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import require_at_least, require_below_one, require_choice, require_nonempty, require_positive
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    r: int = 8
    """Rank of the update B A."""
    alpha: float = 32.0
    """Scale of the update: alpha / r (alpha / sqrt(r) with use_rslora)."""
    dropout: float = 0.0
    """Dropout on the adapter's input while training."""
    target_modules: list[str] = field(default_factory=lambda: ["attention"])
    """`attention` (every projection inside the attention modules), `all-linear` (every Linear/Conv1D but the LM
    head), or layer names / dotted suffixes (`c_attn`, `q_proj`, `mlp.c_proj`)."""
    init_a: str = "gaussian"
    """A's init: `gaussian` (normal, as in the study) or `kaiming` (PEFT's default); B is always 0."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r)."""

    def check(self, key: str) -> None:
        require_at_least(f"{key}.r", self.r, 1)
        require_positive(f"{key}.alpha", self.alpha)
        require_choice(f"{key}.init_a", self.init_a, ("gaussian", "kaiming"))
        require_below_one(f"{key}.dropout", self.dropout)
        require_nonempty(f"{key}.target_modules", self.target_modules)


def peft_config(lm, settings: Settings, key: str, use_dora: bool = False):
    """PEFT's LoraConfig for `settings` on `lm` (targets resolved to layer names)."""
    from peft import LoraConfig

    from tunebench.methods.adapters import fan_in_fan_out, target_names

    names = target_names(lm, settings.target_modules, key)
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=names,
                      fan_in_fan_out=fan_in_fan_out(lm, names, key), use_rslora=settings.use_rslora,
                      use_dora=use_dora, init_lora_weights="gaussian" if settings.init_a == "gaussian" else True,
                      bias="none")


def check(lm, settings: Settings) -> None:
    """The targets match at least one layer of one kind (Linear or Conv1D)."""
    peft_config(lm, settings, "method.lora")


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.adapters import inject

    return inject(lm, peft_config(lm, settings, "method.lora"))


def export(tuned, settings: Settings, base_model: str, out_dir):
    """A PEFT adapter folder (`PeftModel.from_pretrained(base, out_dir)`)."""
    from tunebench.methods.adapters import export_adapter

    export_adapter(tuned, base_model, out_dir)


def merge(tuned, settings: Settings):
    """The model with the adapter merged into its weights (a plain transformers model)."""
    from tunebench.methods.adapters import merge_adapter

    return merge_adapter(tuned)
