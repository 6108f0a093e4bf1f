"""Full fine-tuning: every parameter trains. The reference row of every parameter-efficient comparison.

Tied input embedding and LM head stay tied (one tensor, trained once). AdamW keeps two moments per trained value,
so optimizer state is twice the model's size; the record reports it (`optimizer_state_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    """Only a learning rate: full fine-tuning wants a far smaller one than the adapters."""
    lr_range: list[float] = field(default_factory=lambda: [1e-5, 3e-4])


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.base import TunedModel

    for param in lm.parameters():
        param.requires_grad_(True)
    tuned = TunedModel(lm)
    if lm.get_output_embeddings() is not None and \
            lm.get_output_embeddings().weight is lm.get_input_embeddings().weight:
        tuned.notes.append("the LM head is tied to the input embedding: one tensor, trained once.")
    return tuned
