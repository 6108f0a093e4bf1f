"""LoRA (Hu et al. 2021) through PEFT: B = 0 at the start, A normal ("gaussian") or Kaiming.

GPT-2 stores c_attn / c_proj as `Conv1D` with a (fan_in, fan_out) weight; PEFT needs
`fan_in_fan_out=True` for those, which we set whenever a target is a Conv1D (ANCHORS #5).
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.methods.base import TunedModel, freeze

PROJECTIONS = (nn.Linear, Conv1D)


def target_names(lm: nn.Module, targets: list[str]) -> list[str]:
    """Resolve `attention` to every projection inside an attention module; other entries are name suffixes."""
    names = []
    for name, module in lm.named_modules():
        if not isinstance(module, PROJECTIONS):
            continue
        parent = lm.get_submodule(name.rsplit(".", 1)[0]) if "." in name else lm
        in_attention = type(parent).__name__.endswith("Attention")
        if ("attention" in targets and in_attention) or any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise TunebenchError(f"method.lora.target_modules={targets} matches no Linear/Conv1D layer of this model")
    return names


def peft_config(lm: nn.Module, cfg: Config) -> PeftLoraConfig:
    lo = cfg.method.lora
    names = target_names(lm, lo.target_modules)
    conv1d = [isinstance(lm.get_submodule(n), Conv1D) for n in names]
    if any(conv1d) and not all(conv1d):
        raise TunebenchError("LoRA targets mix Conv1D and Linear layers; target one kind at a time")
    return PeftLoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=names,
                          fan_in_fan_out=all(conv1d), init_lora_weights="gaussian" if lo.init_a == "gaussian" else True,
                          bias="none")


def apply(lm: nn.Module, cfg: Config, tokenizer) -> TunedModel:
    freeze(lm)
    config = peft_config(lm, cfg)
    inject_adapter_in_model(config, lm)
    for name, param in lm.named_parameters():
        param.requires_grad_("lora_" in name)
    tuned = TunedModel(lm)
    tuned.adapter_config = config  # kept for export; targets cannot be re-resolved once layers are wrapped
    return tuned


def export(tuned: TunedModel, cfg: Config, out_dir: Path) -> None:
    """Also write a PEFT adapter (adapter_config.json + adapter_model.safetensors) for PeftModel.from_pretrained."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = tuned.adapter_config
    config.base_model_name_or_path = cfg.model.name
    config.save_pretrained(str(out_dir))
    state = get_peft_model_state_dict(tuned.lm, save_embedding_layers=False)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(out_dir / "adapter_model.safetensors"))


def describe(cfg: Config) -> dict:
    lo = cfg.method.lora
    return {"r": lo.r, "alpha": lo.alpha, "target_modules": lo.target_modules, "init_a": lo.init_a, "init_b": "zeros"}
