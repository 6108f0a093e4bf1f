"""What the methods that PEFT injects into the model's layers (LoRA, DoRA, IA3) share: which layers they target,
how GPT-2's Conv1D is handled, the injection itself, the adapter written in PEFT's format, the merge.

Imported only from inside those methods' `apply`/`export` (it imports torch and PEFT).
"""

from __future__ import annotations

import copy
from pathlib import Path

from peft import get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from tunebench.errors import TunebenchError
from tunebench.methods.base import TunedModel, freeze

PROJECTIONS = (nn.Linear, Conv1D)


def target_names(lm: nn.Module, targets: list[str], key: str) -> list[str]:
    """Resolve the entries of `targets` to layer names.

    `attention`: every projection inside an attention module; `all-linear`: every Linear/Conv1D except the LM head
    (as PEFT's own `all-linear`); anything else: a layer name or a dotted suffix of one (`c_attn`, `mlp.c_proj`).
    """
    head = lm.get_output_embeddings()
    names = []
    for name, module in lm.named_modules():
        if not isinstance(module, PROJECTIONS) or module is head:
            continue
        parent = lm.get_submodule(name.rsplit(".", 1)[0]) if "." in name else lm
        in_attention = type(parent).__name__.endswith("Attention")
        if ("attention" in targets and in_attention) or "all-linear" in targets or \
                any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise TunebenchError(f"{key}.target_modules={targets} matches no Linear/Conv1D layer of "
                             f"{type(lm).__name__}; name layers such as q_proj or c_attn, or use attention/all-linear")
    return names


def fan_in_fan_out(lm: nn.Module, names: list[str], key: str) -> bool:
    """True when the targets are GPT-2 Conv1D layers, whose weight is stored (fan_in, fan_out) (docs/defects.md #5)."""
    conv1d = [isinstance(lm.get_submodule(n), Conv1D) for n in names]
    if any(conv1d) and not all(conv1d):
        raise TunebenchError(f"{key}.target_modules mix Conv1D and Linear layers; target one kind at a time")
    return all(conv1d)


def inject(lm: nn.Module, peft_config) -> TunedModel:
    """Freeze the model, add the adapter's layers; only the adapter trains. The config is kept for export."""
    freeze(lm)
    inject_adapter_in_model(peft_config, lm)
    tuned = TunedModel(lm)
    tuned.adapter_config = peft_config  # targets cannot be re-resolved once layers are wrapped
    return tuned


PEFT_PREFIX = "base_model.model."
"""What PeftModel puts in front of the base model's layer names in the adapter files it writes and reads."""


def save_peft(config, state: dict, base_model: str, out_dir: Path) -> None:
    """Write `adapter_config.json` + `adapter_model.safetensors` as `PeftModel.save_pretrained` does, for the base
    model `base_model` (a Hub id or directory `from_pretrained` resolves), for causal language modelling."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config.base_model_name_or_path = base_model
    config.task_type = "CAUSAL_LM"
    config.inference_mode = True
    config.save_pretrained(str(out_dir))
    # copies: the tensors may be views into storage their model manages (FSDP's gathered parameters)
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in state.items()},
              str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def export_adapter(tuned: TunedModel, base_model: str, out_dir: Path) -> None:
    """The injected adapter in PEFT's files, loadable by `PeftModel.from_pretrained(base, out_dir)`.

    `get_peft_model_state_dict` gives the layer names of the model it was injected into; PeftModel wraps the base
    model, so its files name them under `base_model.model.`."""
    state = get_peft_model_state_dict(tuned.lm, save_embedding_layers=False)
    save_peft(copy.copy(tuned.adapter_config), {PEFT_PREFIX + k: v for k, v in state.items()}, base_model, out_dir)


def merge_adapter(tuned: TunedModel) -> nn.Module:
    """The model with the adapter merged into its weights by PEFT's own `merge`, its wrapper layers replaced by the
    merged base layers: a plain transformers model."""
    lm = tuned.lm
    for name, module in list(lm.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            setattr(lm.get_submodule(parent_name) if parent_name else lm, child, module.get_base_layer())
    return lm
