"""BitFit (Ben Zaken et al. 2022): train the biases only.

Models without biases in their layers (Llama-style, SmolLM2) would train nothing; there the norm weights train as
well (`norms: auto`), and the record's notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import require_choice
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    lr_range: list[float] = field(default_factory=lambda: [1e-4, 3e-2])
    norms: str = "auto"
    """Also train the weights of the normalisation layers: `auto` (only when the model has no other biases),
    `always` or `never`."""

    def check(self, key: str) -> None:
        require_choice(f"{key}.norms", self.norms, ("auto", "always", "never"))


def _is_norm(module) -> bool:
    return "Norm" in type(module).__name__


def _trained(lm, settings: Settings) -> tuple[list, list, list]:
    """(every bias, the layers' own biases, the norm weights that train) of `lm` under `settings`."""
    from tunebench.errors import TunebenchError

    norm_names = {name for name, m in lm.named_modules() if _is_norm(m)}
    biases = [p for name, p in lm.named_parameters() if name.endswith(".bias")]
    layer_biases = [p for name, p in lm.named_parameters()
                    if name.endswith(".bias") and name.rsplit(".", 1)[0] not in norm_names]
    use_norms = settings.norms == "always" or (settings.norms == "auto" and not layer_biases)
    norm_weights = [p for name, p in lm.named_parameters()
                    if name.endswith(".weight") and name.rsplit(".", 1)[0] in norm_names] if use_norms else []
    if not biases and not norm_weights:
        raise TunebenchError(f"{type(lm).__name__} has no biases; set method.bitfit.norms=auto or always")
    return biases, layer_biases, norm_weights


def check(lm, settings: Settings) -> None:
    """The model has biases, or norm weights that may train."""
    _trained(lm, settings)


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.base import TunedModel, freeze

    biases, layer_biases, norm_weights = _trained(lm, settings)
    freeze(lm)
    for param in biases + norm_weights:
        param.requires_grad_(True)
    tuned = TunedModel(lm)
    tuned.facts.update(bias_values=sum(p.numel() for p in biases),
                       norm_weight_values=sum(p.numel() for p in norm_weights))
    if norm_weights:
        why = "this model's layers have no biases, so" if not layer_biases else "as configured,"
        tuned.notes.append(f"{why} the weights of its {len(norm_weights)} norm layers trained as well "
                           f"({tuned.facts['norm_weight_values']:,} values, besides {tuned.facts['bias_values']:,} "
                           "bias values).")
    return tuned
