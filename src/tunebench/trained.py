"""Reload a trained method from a run folder: the run's config, the base model, the saved tensors."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from tunebench.config import Config, load_config
from tunebench.data.format import encode_prompt
from tunebench.errors import TunebenchError
from tunebench.generate import Generated, generate_summaries
from tunebench.methods import METHODS, ZERO_SHOT
from tunebench.methods.base import TunedModel, load_trainable_state
from tunebench.models import load_model
from tunebench.runtime import resolve_runtime

PICK = "pick"
"""`RUN/pick`: the method the run's verdict picked (or names to take if one must pick now)."""


def picked(run_dir: Path) -> str:
    """The record the run's verdict recommends; a one-line refusal when it recommends none."""
    from tunebench.results import read_results

    verdict = read_results(run_dir).get("verdict") or {}
    if verdict.get("pick"):
        return verdict["pick"]
    why = {"none": "no trained method beats the baselines"}.get(verdict.get("action"), "it has no verdict")
    raise TunebenchError(f"{run_dir}/pick: the run's verdict picks no method ({why}); give RUN/METHOD to use one "
                         "anyway (see its report.md)")


def split_target(target: str) -> tuple[Path, str, str]:
    """`RUN/METHOD` (or `RUN/METHOD@seedN` for repeats, or `RUN/pick` for the verdict's pick) -> (run folder,
    method name, record name), checked."""
    path = Path(target)
    run_dir, record, name = path.parent, path.name, path.name.split("@", 1)[0]
    if not (run_dir / "config.yaml").is_file():
        raise TunebenchError(f"'{target}' is not RUN/METHOD: {run_dir} has no config.yaml "
                             "(give e.g. runs/demo-20261128-101500/lora)")
    if record == PICK:
        record = picked(run_dir)
        name = record.split("@", 1)[0]
    if name not in METHODS and name != ZERO_SHOT.name:
        raise TunebenchError(f"'{name}' is not a method (choose one of {', '.join(METHODS)}, zero-shot)")
    return run_dir, name, record


def load_trained(run_dir: Path, name: str, record: str | None = None,
                 overrides: list[str] | None = None) -> tuple[Config, TunedModel, object]:
    """(config with `overrides` applied, TunedModel with the saved trained tensors, tokenizer) for a method (record)
    of a run."""
    cfg = load_config(config_file=str(run_dir / "config.yaml"), overrides=overrides or [])
    lm, tokenizer = load_model(cfg.model.name, cfg.model.trust_remote_code)
    return cfg, attach(run_dir, cfg, name, record, lm, tokenizer), tokenizer


def attach(run_dir: Path, cfg: Config, name: str, record: str | None, lm, tokenizer) -> TunedModel:
    """Apply the method `name` to `lm` (in place) and load the run's trained tensors of `record` into it."""
    method = METHODS.get(name, ZERO_SHOT)
    tuned = method.build(lm, cfg, tokenizer)
    if name in METHODS:
        weights = run_dir / (record or name) / "weights.safetensors"
        if not weights.is_file():
            raise TunebenchError(f"{weights} is missing: was '{name}' trained in this run?")
        try:
            state = load_file(str(weights))
            load_trainable_state(tuned, state)
        except (SafetensorError, ValueError, OSError) as exc:
            raise TunebenchError(f"{weights} cannot be loaded into '{name}': {str(exc).splitlines()[0]}") from None
    return tuned.eval()


def summarize_articles(cfg: Config, tuned: TunedModel, tokenizer, articles: list[str], progress=None) -> Generated:
    """Summaries of `articles` as the run's evaluation writes them: its prompt, decoding, device and precision,
    batched by `eval.batch_size`."""
    runtime = resolve_runtime(cfg.train.precision, cfg.train.threads, cfg.train.device)
    prompts = [encode_prompt(tokenizer, text, cfg.data.separator, cfg.data.max_article_tokens) for text in articles]
    tuned.to(runtime.device)
    return generate_summaries(tuned, tokenizer, prompts, cfg.eval.batch_size, cfg.eval, runtime.device,
                              runtime.autocast(), progress)
