"""Fine-tuning methods, registered by name. Each module has `apply(lm, cfg, tokenizer) -> TunedModel`
(everything frozen except the method's own parameters), `describe(cfg)` and optionally `export`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from tunebench.methods import last_block, lora, prompt_tuning, zero_shot


@dataclass(frozen=True)
class Method:
    name: str
    module: ModuleType

    @property
    def apply(self) -> Callable:
        return self.module.apply

    @property
    def describe(self) -> Callable:
        return self.module.describe

    @property
    def export(self) -> Callable | None:
        return getattr(self.module, "export", None)


METHODS: dict[str, Method] = {
    "prompt-tuning": Method("prompt-tuning", prompt_tuning),
    "lora": Method("lora", lora),
    "last-block": Method("last-block", last_block),
}
ZERO_SHOT = Method("zero-shot", zero_shot)
