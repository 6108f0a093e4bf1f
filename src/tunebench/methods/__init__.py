"""The method registry: a name -> its module, imported only when used. Imports no torch.

A method is one module under `methods/` that owns:
- `Settings`: a dataclass deriving from `MethodSettings` (field docstrings, its own `check`, its own `lr`);
  configured as `method.<name>` (dashes become underscores: `method.prompt_tuning.num_virtual_tokens=20`);
- `apply(lm, settings, tokenizer) -> TunedModel`: freeze the model except what the method trains;
- optionally `check(lm, settings)`: refuse, with a TunebenchError, settings the loaded model cannot take (called
  before the run folder is created; it must leave `lm` unchanged);
- optionally `export(tuned, settings, base_model, out_dir)`: write the trained method as a PEFT adapter folder
  (`base_model`: what `from_pretrained` resolves to the base model); it may return a sentence on how to generate
  with the adapter in PEFT, for the folder's README;
- optionally `merge(tuned, settings)`: the trained model as a plain transformers model, for a method that keeps
  extra layers (a method that only changes the model's own weights needs none; one that puts learned positions in
  front of the prompt cannot be merged).

A module keeps its top level free of torch and PEFT (they are imported inside `apply`/`export`), so reading
and checking a configuration loads neither. Adding a method = one module, one line below, its preset entries.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


@dataclass
class MethodSettings:
    """What every method's settings have: a learning rate of its own."""

    lr: float | None = None
    """Learning rate of this method (None: train.lr)."""
    lr_range: list[float] = field(default_factory=lambda: [1e-4, 3e-3])
    """Where the learning-rate search (search.enabled) looks: [low, high], searched on a log scale."""

    def check(self, key: str) -> None:
        """Range and choice checks of this method's settings; `key` is `method.<name>` for the messages."""

    def positions_added(self) -> int:
        """Positions the method puts in front of every prompt (soft tokens, key/value prefixes)."""
        return 0


@dataclass(frozen=True)
class Method:
    name: str
    module_name: str
    colour: str
    """The method's colour in every plot."""

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"tunebench.methods.{self.module_name}")

    @property
    def settings_class(self) -> type[MethodSettings]:
        return self.module.Settings

    @property
    def key(self) -> str:
        """Its key under `method.` in the configuration."""
        return self.name.replace("-", "_")

    def settings(self, cfg: Any) -> MethodSettings:
        return getattr(cfg.method, self.key)

    def build(self, lm, cfg: Any, tokenizer):
        """Apply the method, with its settings from `cfg`, to `lm` (changed in place); returns a TunedModel."""
        settings = self.settings(cfg) if hasattr(cfg.method, self.key) else None
        return self.module.apply(lm, settings, tokenizer)

    def check(self, lm, cfg: Any) -> None:
        """Check the method's settings against the loaded model (layers that exist, a depth it has), so a setting
        that cannot work is refused before any run folder is written. A module's optional `check(lm, settings)`
        does it (it must not change `lm`); without one there is nothing to check."""
        check = getattr(self.module, "check", None)
        if check is not None and hasattr(cfg.method, self.key):
            check(lm, self.settings(cfg))

    def describe(self, cfg: Any) -> dict:
        """The method's settings as recorded in results.json."""
        return dataclasses.asdict(self.settings(cfg)) if hasattr(cfg.method, self.key) else {}

    @property
    def export(self):
        return getattr(self.module, "export", None)

    def merged(self, tuned, cfg: Any):
        """The trained model as a plain transformers model. A method that puts learned positions in front of the
        prompt (`positions_added`) cannot be merged into weights: check that first."""
        if self.settings(cfg).positions_added():
            raise ValueError(f"{self.name} puts learned positions in front of the prompt; it cannot be merged")
        merge = getattr(self.module, "merge", None)
        return merge(tuned, self.settings(cfg)) if merge else tuned.lm


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("full", "full", "#000000"),
    Method("lora", "lora", "#d62728"),
    Method("dora", "dora", "#ff7f0e"),
    Method("ia3", "ia3", "#8c564b"),
    Method("prefix-tuning", "prefix_tuning", "#9467bd"),
    Method("prompt-tuning", "prompt_tuning", "#1f77b4"),
    Method("bitfit", "bitfit", "#17becf"),
    Method("last-block", "last_block", "#2ca02c"),
]}
ZERO_SHOT = Method("zero-shot", "zero_shot", "#bcbd22")
"""The untrained base model with the methods' prompt: a baseline, not a method."""
DEFAULT_METHODS = ["prompt-tuning", "lora", "last-block"]
"""The original study's three methods."""
