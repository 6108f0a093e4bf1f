"""What every record of a run shares (data, base model, tokenizer, runtime: the workbench) and how a record is
scored on a list of test articles: generation, the chosen metrics per article (metrics/), predictions saved."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from tunebench import distributed, metrics
from tunebench.config import Config
from tunebench.data import Splits, load_examples, select_splits, test_split
from tunebench.data.format import Encoded, encode_chat_prompt, encode_continuation, encode_example
from tunebench.data.sources import Example
from tunebench.data.task import is_auto, resolve_task
from tunebench.errors import TunebenchError
from tunebench.files import atomic_write_text
from tunebench.generate import DECODE_KEYS, generate_summaries
from tunebench.layers import transformer_blocks
from tunebench.methods import METHODS, Method
from tunebench.methods.base import TunedModel
from tunebench.metrics import Articles, Metric
from tunebench.models import count_parameters, load_model, load_tokenizer, meta_model
from tunebench.resources import PhaseMonitor
from tunebench.runtime import Runtime, resolve_runtime, seed_everything
from tunebench.track import Tracking
from tunebench.train import per_article_loss, plan, replays_trunk


@dataclass
class Workbench:
    """Everything the baselines and methods share: config, data, base model, tokenizer, runtime."""

    cfg: Config
    run_dir: Path
    splits: Splits
    encoded: dict[str, list[Encoded]]
    base_lm: object
    tokenizer: object
    runtime: Runtime
    show_progress: bool = True
    metrics: list[Metric] = field(default_factory=list)
    """eval.metrics, loaded."""
    tracking: Tracking = field(default_factory=lambda: Tracking([], {}))
    """The experiment trackers the records log to (none until the run folder exists)."""

    @property
    def sharded(self) -> bool:
        """train.fsdp under torchrun: every record's model is sharded over the processes (`fresh_model`); the base
        model is then whole on the writer's host only (the other processes hold its modules on `meta`)."""
        return sharded(self.cfg)


def sharded(cfg: Config) -> bool:
    """train.fsdp under torchrun (more than one process working together)."""
    return cfg.train.fsdp and distributed.world_size() > 1


def fresh_model(bench: Workbench, build: Callable[[object], TunedModel], copy_base: bool = True) -> TunedModel:
    """`build(lm)` on a copy of the base model (on the base model itself without `copy_base`), on the run's device.

    Sharded (train.fsdp under torchrun): the writer builds on a copy of its whole base model, every other process on
    a copy of its `meta` one (the same modules, no memory), and the result is sharded over the processes with the
    writer's values (distributed.shard): no process holds the whole model on its device, and a method's random
    initialisation is the writer's, as in one process."""
    if not bench.sharded:
        return build(copy.deepcopy(bench.base_lm) if copy_base else bench.base_lm).to(bench.runtime.device)
    return distributed.shard(build(copy.deepcopy(bench.base_lm)), bench.runtime.device)


def built_on_meta(bench: Workbench, method: Method) -> TunedModel:
    """`method` built on the base model's modules on the `meta` device: what it trains and freezes, without memory,
    values or random numbers drawn (this process's random state is as before)."""
    lm = bench.base_lm
    with torch.random.fork_rng(devices=[]):
        return method.build(meta_model(lm.config, next(lm.parameters()).dtype, bench.cfg.model.trust_remote_code),
                            bench.cfg, bench.tokenizer)


def training_flops(bench: Workbench, method: Method) -> float:
    """About how many FLOPs training `method` takes in this run, from its shape alone (`built_on_meta`; nothing
    runs).

    Per token (a learned prompt's positions included): 2 per weight of the blocks in the forward, 2 per weight of
    the blocks the gradient flows back through (from the lowest one that trains up: `frozen_depth`) and 2 per trained
    weight; a frozen trunk the cache replays (`train.cache_frozen`, more than one epoch) runs forward once per training
    example instead of once per step. The LM head, attention's own products and the optimizer are left out, and
    every method trains the same steps on the same examples. What it is for: `train.parallel=jobs` starts the
    largest jobs first (jobs.py), so a long one does not start last; no result reports it."""
    cfg, tuned = bench.cfg, built_on_meta(bench, method)
    blocks = [sum(p.numel() for p in block.parameters()) for block in transformer_blocks(tuned.lm)]
    depth, trained = tuned.frozen_depth(), count_parameters(tuned)[1]
    train_set, budget = bench.encoded["train"], plan(bench.encoded["train"], cfg.train)
    steps = budget["planned_steps"]
    examples = steps * cfg.train.batch_size * cfg.train.grad_accum_steps
    cached = replays_trunk(cfg.train, budget, depth)  # jobs mode never shards
    prompt = method.settings(cfg).positions_added() if tuned.prefix is not None else 0  # a key/value prefix does
    tokens = sum(len(example) for example in train_set) / max(len(train_set), 1) + prompt  # not pass through weights
    upper, trunk = sum(blocks[depth:]), sum(blocks[:depth])
    trunk_passes = len(train_set) if cached else examples
    return tokens * (examples * (2 * upper + 2 * upper + 2 * trained) + trunk_passes * 2 * trunk)


def prepare(cfg: Config, run_dir: Path, show_progress: bool = True,
            model: tuple[object, object] | None = None, test_only: bool = False,
            exclude: set[str] | None = None) -> tuple[Workbench, dict]:
    """Load data and model (unless given), split and encode; returns the workbench and the data facts.

    `test_only`: only test articles are taken from the source (scoring a method trained elsewhere), none of
    whose ids are in `exclude`."""
    runtime = resolve_runtime(cfg.train.precision, cfg.train.threads, cfg.train.device)
    seed_everything(cfg.train.seed)
    with distributed.writer_first():  # under torchrun, one process fetches the data and converts the model
        loaded = load_examples(cfg.data)
        splits = test_split(loaded, cfg.data, exclude) if test_only else select_splits(loaded, cfg.data)
        if is_auto(cfg):  # task settings from the data, before the model loads (only its tokenizer is needed)
            cfg, derived = resolve_task(cfg, splits, model[1] if model else load_tokenizer(
                cfg.model.name, cfg.model.trust_remote_code))
        else:
            derived = {}
        split = sharded(cfg)
        if split and not distributed.is_writer() and not model:  # the writer's modules on `meta` (below)
            base_lm, tokenizer = None, load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
        else:
            base_lm, tokenizer = model or load_model(cfg.model.name, cfg.model.trust_remote_code)
    if split:  # the base model stays whole on the writer's host alone: fresh_model shards each record's copy
        base_lm = distributed.skeleton(base_lm, cfg.model.trust_remote_code)
    else:
        base_lm.to(runtime.device)
    d = cfg.data
    check_context(cfg, base_lm, tokenizer)
    encoded = {name: encode(cfg, tokenizer, getattr(splits, name)) for name in ("train", "val", "test")}
    truncated = {name: sum(ex.article_cut for ex in examples) for name, examples in encoded.items()}
    data_facts = {"source": d.source, **loaded.facts(), "split_sizes": splits.sizes(), "split_seed": d.seed,
                  "articles_truncated": truncated, "split_ids_file": "splits.json", "derived": derived}
    return Workbench(cfg, run_dir, splits, encoded, base_lm, tokenizer, runtime,
                     show_progress and distributed.is_writer(), metrics.chosen(cfg.eval.metrics)), data_facts


def scores_header(bench: Workbench, source: str) -> dict:
    """What results.json says about the scores before any record: their descriptions and published figures."""
    return {"metrics": metrics.catalogue(bench.metrics), "published": metrics.published(bench.metrics, source)}


def check_context(cfg: Config, lm, tokenizer) -> None:
    """The longest sequence a method sees must fit the model's context (soft prompt included)."""
    limit = getattr(lm.config, "max_position_embeddings", None) or getattr(lm.config, "n_positions", None)
    if not limit:
        return
    d = cfg.data
    prefix = max((METHODS[name].settings(cfg).positions_added() for name in cfg.methods), default=0)
    longest = prefix + d.max_article_tokens + len(tokenizer(d.separator, add_special_tokens=False)["input_ids"]) + \
        max(d.max_summary_tokens + 1, cfg.eval.max_new_tokens)
    if longest > limit:
        raise TunebenchError(f"sequences may reach {longest} tokens (learned prefix {prefix} + data.max_article_tokens "
                             f"{d.max_article_tokens} + separator + summary) but {cfg.model.name} reads at most "
                             f"{limit}; lower data.max_article_tokens")


def encode(cfg: Config, tokenizer, examples: list[Example]) -> list[Encoded]:
    """Pairs as the methods see them: the article cut to data.max_article_tokens, the separator, the summary."""
    d = cfg.data
    return [encode_example(tokenizer, ex.id, ex.article, ex.summary, d.separator, d.max_article_tokens,
                           d.max_summary_tokens) for ex in examples]


def score(bench: Workbench, predictions: list[str], name: str, examples: list[Example] | None = None,
          losses: list[tuple[float, int]] | None = None,
          text_losses: list[tuple[float, int]] | None = None) -> list[dict]:
    """The chosen metrics per article of `examples` (default: the first look's test articles; `losses`: the
    per-article loss on the references, for a metric that needs it); the predictions are added to the record's
    predictions.jsonl (id, reference, prediction)."""
    examples = bench.splits.test if examples is None else examples
    out = metrics.score_articles(bench.metrics, Articles(
        [ex.id for ex in examples], predictions, [ex.summary for ex in examples], [ex.article for ex in examples],
        losses, text_losses))
    lines = [json.dumps({"id": ex.id, "reference": ex.summary, "prediction": pred}, ensure_ascii=False)
             for ex, pred in zip(examples, predictions, strict=True)]
    path = bench.run_dir / name / "predictions.jsonl"
    kept = []
    if examples is not bench.splits.test and path.is_file():  # a later look: keep what earlier looks wrote
        new = {ex.id for ex in examples}
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line and json.loads(line)["id"] not in new]
    atomic_write_text(path, "\n".join(kept + lines) + "\n")
    return out


def summarize_scores(bench: Workbench, per_article: list[dict]) -> dict:
    """The record-level figures from its per-article scores: each score's mean with its bootstrap interval."""
    return {"n_articles": len(per_article),
            "scores": metrics.summarize(bench.metrics, per_article, bench.cfg.data.seed,
                                        bench.cfg.eval.bootstrap_resamples),
            "per_article": per_article}


def generate_and_score(bench: Workbench, tuned: TunedModel, name: str, examples: list[Example],
                       prompts: list[list[int]] | None = None) -> tuple[list[dict], object]:
    """Summaries of `examples` (with the methods' prompt, or `prompts`), scored per article; the loss on each
    reference too when a chosen metric needs it and the methods' prompt is used. Returns (rows, generated)."""
    cfg, rt = bench.cfg, bench.runtime
    encoded = bench.encoded["test"] if examples is bench.splits.test else encode(cfg, bench.tokenizer, examples)
    own_prompts = prompts is not None
    prompts = prompts if own_prompts else [ex.prompt_ids for ex in encoded]
    bar = tqdm(total=len(prompts), desc=f"{name}: generate", unit="summary", disable=not bench.show_progress,
               leave=False)
    generated = generate_summaries(tuned, bench.tokenizer, prompts, cfg.eval.batch_size, cfg.eval, rt.device,
                                   rt.autocast(), progress=bar)
    bar.close()
    losses = text_losses = None
    if any(m.needs_loss for m in bench.metrics) and not own_prompts:
        losses = per_article_loss(tuned, encoded, cfg.eval.batch_size, bench.tokenizer.pad_token_id, rt)
    span = next((m.needs_text_loss for m in bench.metrics if m.needs_text_loss), None)
    if span and not own_prompts:
        texts = [encode_continuation(bench.tokenizer, ex.id, ex.article, *span) for ex in examples]
        text_losses = per_article_loss(tuned, texts, cfg.eval.batch_size, bench.tokenizer.pad_token_id, rt)
    return score(bench, generated.texts, name, examples, losses, text_losses), generated


def evaluate_tuned(bench: Workbench, tuned: TunedModel, name: str,
                   prompts: list[list[int]] | None = None) -> tuple[dict, dict]:
    """Generate the first look's test summaries and score them.

    `prompts`: other prompts for the test articles than the methods' one (then no loss on the references)."""
    cfg = bench.cfg
    with PhaseMonitor() as gen_phase:
        per_article, generated = generate_and_score(bench, tuned, name, bench.splits.test, prompts)
    result = summarize_scores(bench, per_article)
    result["decoding"] = {key: getattr(cfg.eval, key) for key in DECODE_KEYS}
    if prompts is not None:
        result["prompt"] = "chat template"
    n = max(len(per_article), 1)
    result["mean_new_tokens"] = sum(generated.new_tokens) / n
    result["share_hit_max_new_tokens"] = sum(generated.hit_max) / n
    result["summaries_per_s"] = len(per_article) / gen_phase.wall_s if gen_phase.wall_s else 0.0
    return result, gen_phase.as_dict()


def chat_prompts(bench: Workbench, examples: list[Example] | None = None) -> list[list[int]]:
    """Test articles as the model is meant to be asked: through its chat template, with an instruction."""
    d = bench.cfg.data
    return [encode_chat_prompt(bench.tokenizer, ex.article, bench.cfg.eval.chat_instruction, d.max_article_tokens)
            for ex in (bench.splits.test if examples is None else examples)]
