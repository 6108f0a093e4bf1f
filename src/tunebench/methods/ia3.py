"""IA3 (Liu et al. 2022) through PEFT: learned vectors that rescale the keys, values and feed-forward activations;
the fewest trained values of all methods. They start at 1, so training starts from the base model.

`target_modules=[auto]` takes PEFT's defaults for the model type: GPT-2 `c_attn` and `mlp.c_proj` (64,512 values
on GPT-2 small), Llama-style `k_proj`, `v_proj`, `down_proj`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import TunebenchError, require_nonempty
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    lr_range: list[float] = field(default_factory=lambda: [1e-3, 1e-1])
    target_modules: list[str] = field(default_factory=lambda: ["auto"])
    """`auto` (PEFT's defaults for the model type), `attention`, `all-linear`, or layer names / dotted suffixes."""
    feedforward_modules: list[str] = field(default_factory=lambda: ["auto"])
    """Targets whose input (not output) is rescaled: `auto` (PEFT's defaults) or layer names / dotted suffixes."""

    def check(self, key: str) -> None:
        require_nonempty(f"{key}.target_modules", self.target_modules)


def _defaults(lm, table: dict, what: str) -> list[str]:
    model_type = lm.config.model_type
    if model_type not in table:
        raise TunebenchError(f"PEFT has no default IA3 {what} for model type '{model_type}'; set "
                             f"method.ia3.{what} to layer names (e.g. [k_proj, v_proj, down_proj])")
    return list(table[model_type])


def _config(lm, settings: Settings):
    """PEFT's IA3Config for `settings` on `lm` (targets resolved to layer names)."""
    from peft import IA3Config
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    )

    from tunebench.methods.adapters import fan_in_fan_out, target_names

    key = "method.ia3"
    targets = settings.target_modules
    if targets == ["auto"]:
        targets = _defaults(lm, TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING, "target_modules")
    feedforward = settings.feedforward_modules
    if feedforward == ["auto"]:
        feedforward = _defaults(lm, TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING, "feedforward_modules")
    names = target_names(lm, targets, key)
    ff_names = [n for n in names if any(n == f or n.endswith("." + f) for f in feedforward)]
    return IA3Config(target_modules=names, feedforward_modules=ff_names, fan_in_fan_out=fan_in_fan_out(lm, names, key))


def check(lm, settings: Settings) -> None:
    """The targets (PEFT's defaults for the model type, or the named layers) match at least one layer."""
    _config(lm, settings)


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.adapters import inject

    return inject(lm, _config(lm, settings))


def export(tuned, settings: Settings, base_model: str, out_dir):
    """A PEFT adapter folder (`PeftModel.from_pretrained(base, out_dir)`)."""
    from tunebench.methods.adapters import export_adapter

    export_adapter(tuned, base_model, out_dir)


def merge(tuned, settings: Settings):
    """The model with the adapter merged into its weights (a plain transformers model)."""
    from tunebench.methods.adapters import merge_adapter

    return merge_adapter(tuned)
