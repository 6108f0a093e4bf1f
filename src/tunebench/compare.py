"""The main job: baselines, then each method, sequentially, on identical data; one results file."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from tunebench import distributed
from tunebench.checkpoint import check_training_state, has_training_state
from tunebench.config import Config, to_dict, to_yaml
from tunebench.errors import TunebenchError
from tunebench.export import adapter_card
from tunebench.files import atomic_write_json, atomic_write_text, check_runs_dir, claim_run_dir, follow_umask
from tunebench.jobs import run_jobs
from tunebench.looks import look_plan, sequential_evaluation
from tunebench.methods import METHODS, ZERO_SHOT, Method
from tunebench.methods.base import TunedModel
from tunebench.models import base_model_path, count_parameters
from tunebench.report import draw_share, write_outputs
from tunebench.resources import PhaseMonitor, release_free_memory
from tunebench.results import Record, ResultsFile, environment, read_splits
from tunebench.runtime import seed_everything
from tunebench.serving import serving_cost
from tunebench.text import lead_k
from tunebench.track import open_tracking
from tunebench.train import train
from tunebench.trained import attach
from tunebench.workbench import (
    Workbench,
    chat_prompts,
    evaluate_tuned,
    fresh_model,
    generate_and_score,
    prepare,
    score,
    scores_header,
    summarize_scores,
    training_flops,
)


def run_lead(bench: Workbench) -> dict:
    k = bench.cfg.eval.lead_k
    with PhaseMonitor() as phase:
        result = summarize_scores(bench, score(bench, [lead_k(ex.article, k) for ex in bench.splits.test], f"lead-{k}"))
    return Record(f"lead-{k}", "baseline", "SUCCESS", eval=result, phases={"generation": phase.as_dict()})


def run_method(bench: Workbench, method: Method, trained: bool, seed: int | None = None,
               name: str | None = None, prompts: list[list[int]] | None = None) -> Record:
    """Apply a method to a fresh copy of the base model, train it (unless a baseline), evaluate, save.

    `seed` overrides train.seed (initialisation and data order) for repeats; `name` names the record and
    its folder (default: the method's name); `prompts` replace the test prompts (the chat-template baseline).
    """
    cfg = bench.cfg
    if seed is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
    name = name or method.name
    out_dir = bench.run_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    release_free_memory()  # so this method's peak RSS does not include what earlier methods left behind
    record = Record(name, "method" if trained else "baseline", method=method.name, seed=cfg.train.seed,
                    settings=method.describe(cfg))
    with PhaseMonitor() as setup:
        seed_everything(cfg.train.seed)
        tuned = fresh_model(bench, lambda lm: method.build(lm, cfg, bench.tokenizer), copy_base=trained)
    total, trainable = count_parameters(tuned)
    record.params = {"total": total, "trainable": trainable, "trainable_pct": 100.0 * trainable / total,
                     "positions_added": method.settings(cfg).positions_added() if trained else 0, **tuned.facts}
    record.notes = list(tuned.notes)
    record.phases["setup"] = setup.as_dict()
    bench.tracking.params(name, {"kind": record.kind, "train.seed": cfg.train.seed,
                                 **{f"method.{k}": v for k, v in (record.settings or {}).items()}})
    if trained:
        lr = cfg.method_lr(method.name)
        if cfg.search.enabled:
            from tunebench.search import search_lr  # imports Optuna: only when a search runs

            with PhaseMonitor() as search_phase:
                record.search = search_lr(bench, method, cfg, out_dir / "search")
            record.phases["search"] = search_phase.as_dict()
            lr = record.search["best_lr"]
            seed_everything(cfg.train.seed)  # the trials drew random numbers: train as a run without a search
        with PhaseMonitor() as phase:
            result = train(tuned, bench.encoded["train"], bench.encoded["val"], cfg.train, lr, bench.runtime,
                           out_dir / "weights.safetensors", bench.tokenizer.pad_token_id, bench.show_progress,
                           state_dir=out_dir / "checkpoint", cache_dir=bench.run_dir / FROZEN_CACHE,
                           log=bench.tracking.logger(name))
        record.train = {"lr": lr, **asdict(result), **result.rates()}
        if result.memory_plan:  # train.memory_limit_mb chose the settings: say which, in the report's notes
            from tunebench.memory_plan import describe

            record.notes.append(describe(result.memory_plan))
        bench.tracking.params(name, {"train.lr_used": lr})
        record.phases["train"] = phase.as_dict()
        check_finite(tuned, name)
        weights = out_dir / "weights.safetensors"
        record.artifacts = {"weights": f"{name}/weights.safetensors", "weights_bytes": weights.stat().st_size}
        if method.export is not None:
            def export() -> None:
                base = base_model_path(cfg.model.name)
                note = method.export(whole_on_writer(bench, tuned, method.name, name), method.settings(cfg), base,
                                     out_dir / "peft_adapter")
                atomic_write_text(out_dir / "peft_adapter" / "README.md", adapter_card(cfg, name, base, note))
                follow_umask(out_dir / "peft_adapter")

            distributed.on_writer(export)
            record.artifacts["peft_adapter"] = f"{name}/peft_adapter"
            record.artifacts["peft_adapter_bytes"] = sum(p.stat().st_size for p in (out_dir / "peft_adapter").rglob(
                "*.safetensors"))
    record.eval, record.phases["generation"] = evaluate_tuned(bench, tuned, name, prompts)
    with PhaseMonitor() as serving_phase:
        record.serving = serving_cost(tuned, bench.tokenizer,
                                      prompts or [ex.prompt_ids for ex in bench.encoded["test"]],
                                      cfg.eval.serving_prompts, cfg.eval.serving_new_tokens, bench.runtime,
                                      record.params["positions_added"])
    if record.serving:
        record.phases["serving"] = serving_phase.as_dict()
    record.status = "SUCCESS"
    for scratch in ("checkpoint", "search"):  # done: the best weights and the record are all that is kept
        shutil.rmtree(out_dir / scratch, ignore_errors=True)
    return record


def check_finite(tuned: TunedModel, name: str) -> None:
    """Trained weights that are NaN or infinite make the method FAILED before it is evaluated (a finite loss does
    not prove finite weights: e.g. a parameter no example's loss reaches)."""
    import torch

    mine = [n for n, p in tuned.named_parameters()  # sharded: each process looks at its shards, all are told
            if p.requires_grad and not torch.isfinite(distributed.local(p.detach())).all()]
    bad = sorted({n for part in distributed.gather_objects(mine) for n in part}) \
        if distributed.is_sharded_model(tuned) else mine
    if bad:
        raise FloatingPointError(f"{name}: {len(bad)} trained tensor{'s' if len(bad) > 1 else ''} hold NaN or "
                                 f"infinite values after training (first: {bad[0]}); lower the lr or "
                                 "train.max_grad_norm")


def whole_on_writer(bench: Workbench, tuned: TunedModel, method: str, record: str) -> TunedModel:
    """`tuned` whole, for the writer to export: itself, or under FSDP a whole copy made on the writer's host from its
    base model and the record's saved weights (the one place a sharded run holds a second whole copy, while the
    adapter's files are written; the draws of the method's initialisation do not move the run's random state)."""
    if not bench.sharded:
        return tuned
    import torch

    with torch.random.fork_rng():
        return attach(bench.run_dir, bench.cfg, method, record, copy.deepcopy(bench.base_lm), bench.tokenizer)


FROZEN_CACHE = ".frozen-cache"
"""Folder of a run holding the frozen blocks' output, shared by seeds and resumes."""


def check_disk(run_dir: Path, lm, n_runs: int) -> None:
    """Stop before training if the run folder's disk cannot hold the worst case of weights and checkpoints.

    Worst case per method: trained tensors as large as the whole model (fp32), twice for AdamW's moments, and
    one checkpoint being replaced by the next; only one method's checkpoint exists at a time.
    """
    model_bytes = sum(p.numel() for p in lm.parameters()) * 4
    needed = model_bytes * 4 + model_bytes * n_runs
    existing = next(p for p in [run_dir, *run_dir.absolute().parents] if p.exists())
    check_runs_dir(run_dir)  # not writable: say so (its free space would say nothing useful)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise TunebenchError(f"{run_dir} has {_size(free)} free but the run may write up to {_size(needed)} of "
                             "weights and checkpoints; free space or use --runs-dir")


def _size(n: float) -> str:
    """Bytes in the unit that shows them (a tiny model's needs are not '0.0 GiB')."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def run_compare(cfg: Config, run_dir: Path, show_progress: bool = True, seeds: list[int] | None = None,
                resume: bool = False) -> Path:
    """Run baselines and methods (each once per seed) sequentially; write config, splits, results, report.

    With `resume`, records already finished are kept and the method in progress continues from its checkpoint.
    """
    distributed.setup(cfg.train.dist_timeout_s)
    with ExitStack() as held:  # the run folder's lock, released when the run ends or fails
        if resume:  # a folder another process writes is refused before anything else
            claim(run_dir, False, held)
        _run(cfg, run_dir, show_progress, seeds, resume, held)
    return run_dir / "results.json"


def claim(run_dir: Path, create: bool, held: ExitStack) -> None:
    """The writer locks the run folder (creating it with `create`) until `held` closes; a refusal is raised on
    every rank."""
    lock = distributed.writer_decides(lambda: claim_run_dir(run_dir, create))
    if lock is not None:  # the writer's: the other ranks hold no lock
        held.callback(lock.close)


def check_methods(cfg: Config, lm) -> None:
    """Each configured method's own checks against the loaded model (Method.check), before any file is written."""
    for name in cfg.methods:
        METHODS[name].check(lm, cfg)


def _run(cfg: Config, run_dir: Path, show_progress: bool, seeds: list[int] | None, resume: bool,
         held: ExitStack) -> None:
    tick = time.perf_counter()
    bench, data_facts = prepare(cfg, run_dir, show_progress)  # bad data or model fail before any file is written
    cfg = bench.cfg  # with the task settings derived from the data (`auto`) resolved
    prepare_s = time.perf_counter() - tick
    check_methods(cfg, bench.base_lm)
    check_disk(run_dir, bench.base_lm, len(cfg.methods) * len(seeds or [0]))
    if resume:
        results = ResultsFile.load(run_dir / "results.json")
        seeds = results.data["seeds"]
        check_unchanged(run_dir, results.data, cfg, bench)
        bench.runtime = bench.runtime.resumed(results.data["environment"])
        forget_records_without_files(run_dir, results)
    else:
        seeds = seeds or [cfg.train.seed]
        claim(run_dir, True, held)  # made here, exclusively: a folder that exists by now is refused
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
        looks = look_plan(bench)
        planned = looks["sizes"][-1] - looks["sizes"][0]  # the later looks' articles, in the order they are taken
        atomic_write_json(run_dir / "splits.json", {"seed": cfg.data.seed, **bench.splits.ids(),
                                                    "test_reserve": [ex.id for ex in bench.splits.reserve[:planned]]})
        data_facts["sha256"] = data_hashes(bench)
        results = ResultsFile(run_dir / "results.json", {"config": to_dict(cfg), "seeds": seeds, "data": data_facts,
                                                         "environment": environment(
                                                             {**bench.runtime.as_dict(),
                                                              "processes": distributed.world_size()}),
                                                         "prepare_s": prepare_s, "looks": looks,
                                                         **scores_header(bench, data_facts["source"]),
                                                         "provenance": provenance(cfg)})
        results.save()
    bench.tracking = open_tracking(cfg.track.to, to_dict(cfg), run_dir)
    held.callback(bench.tracking.close)
    jobs, sizes = baseline_jobs(bench), {}
    split = cfg.train.parallel == "jobs" and distributed.world_size() > 1  # the processes take the largest first
    for method in cfg.methods:
        size = job_size(bench, METHODS[method]) if split and distributed.is_writer() else 0.0
        for seed in seeds:
            name = method if len(seeds) == 1 else f"{method}@seed{seed}"
            jobs.append((name, lambda m=METHODS[method], s=seed, n=name: run_method(bench, m, True, s, n)))
            sizes[name] = size
    if resume:  # a damaged checkpoint is refused now, not found after the jobs before it have run again
        for name, _ in jobs:
            if has_training_state(run_dir / name / "checkpoint"):
                check_training_state(run_dir / name / "checkpoint")
    run_jobs(jobs, results, run_dir, bench.tracking, cfg.train.parallel, sizes=distributed.from_writer(sizes))
    sequential_evaluation(bench, results, rescorers(bench))
    drawn = False
    if split:  # the processes, which all see the run folder, draw the plots together too
        deferred = distributed.Deferred()
        with deferred.guard():
            draw_share(distributed.from_writer(results.data), run_dir, *distributed.job_rank())
        drawn = not any(distributed.gather_objects(deferred.error is not None))  # else the writer draws them all
    write_outputs(results.data, run_dir, drawn=drawn)
    bench.tracking.publish(results.data, run_dir)  # final scores (after every look), predictions, the report
    shutil.rmtree(run_dir / FROZEN_CACHE, ignore_errors=True)  # the run is complete; nothing will resume it
    distributed.barrier()  # every rank ends when the writer has written everything


def provenance(cfg: Config) -> dict:
    """sha256 of the model's weight files and of the data file(s), or their Hub revisions (provenance.py)."""
    from tunebench.data.sources import source_path
    from tunebench.provenance import data_provenance, model_provenance

    return {"model": model_provenance(cfg.model.name),
            "data": data_provenance(source_path(cfg.data.source), cfg.data.source)}


def data_hashes(bench: Workbench) -> dict[str, str]:
    """sha256 of each split's pairs (ids, articles, summaries, in order) and of the reserve of test articles: what
    a resumed run must find again."""
    out = {}
    for name in ("train", "val", "test", "reserve"):
        digest = hashlib.sha256()
        for ex in getattr(bench.splits, name):
            digest.update(json.dumps([ex.id, ex.article, ex.summary], ensure_ascii=False).encode())
        out[name] = digest.hexdigest()
    return out


def _changed(stored: dict, now: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config dicts (settings a run from an older tunebench did not
    store are not compared)."""
    out = []
    for key in sorted(set(stored) & set(now)):
        a, b = stored[key], now[key]
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} when started, {b!r} now)")
    return out


def check_unchanged(run_dir: Path, data: dict, cfg: Config, bench: Workbench) -> None:
    """A resume continues what was started: the same config (config.yaml edited by hand is refused) and the same
    data in every split (a training file changed between the kill and the resume is refused), in one line."""
    changed = _changed(data["config"], to_dict(cfg))
    if changed:
        raise TunebenchError(f"cannot resume {run_dir}: its config.yaml no longer says what the run started with: "
                             f"{changed[0]}" + (f" and {len(changed) - 1} more" if len(changed) > 1 else "")
                             + "; restore it, or start a new run")
    stored = data["data"].get("sha256") or {}
    now = data_hashes(bench)
    moved = [name for name in ("train", "val", "test", "reserve") if name in stored and stored[name] != now[name]]
    if moved:
        raise TunebenchError(f"cannot resume {run_dir}: its data changed since the run started (the "
                             f"{' and '.join(moved)} pairs differ); restore the data, or start a new run")
    if read_splits(run_dir)["test"] != bench.splits.ids()["test"]:
        raise TunebenchError(f"cannot resume {run_dir}: its data no longer gives the same test articles")


def forget_records_without_files(run_dir: Path, results: ResultsFile) -> None:
    """A finished method whose weights are gone (its folder deleted) is run again, not trusted."""
    for rec in list(results.data["records"]):
        weights = (rec.get("artifacts") or {}).get("weights")
        if rec["status"] == "SUCCESS" and weights and not (run_dir / weights).is_file():
            distributed.say(f"tunebench: {rec['name']}: its weights ({run_dir / weights}) are missing; running it "
                            "again")
            results.data["records"].remove(rec)
    results.save()


def job_size(bench: Workbench, method: Method) -> float:
    """The method's training FLOPs (`training_flops`), to order the jobs by; 0 where they cannot be counted (the
    method's own job then says what is wrong, if anything is)."""
    try:
        return training_flops(bench, method)
    except Exception as exc:  # an estimate for the order of the jobs must not end the run
        distributed.say(f"tunebench: {method.name}: its training FLOPs could not be counted ({exc}); it is taken "
                        "in the run's order")
        return 0.0


def baseline_jobs(bench: Workbench) -> list[tuple[str, object]]:
    """(record name, job) for each configured baseline: Lead-k, zero-shot, zero-shot through the chat template."""
    cfg = bench.cfg
    jobs = []
    if "lead" in cfg.eval.baselines:
        jobs.append((f"lead-{cfg.eval.lead_k}", lambda: run_lead(bench)))
    if "zero-shot" in cfg.eval.baselines:
        jobs.append(("zero-shot", lambda: run_method(bench, ZERO_SHOT, trained=False)))
    if "zero-shot-chat" in cfg.eval.baselines and getattr(bench.tokenizer, "chat_template", None):
        jobs.append(("zero-shot-chat", lambda: run_method(bench, ZERO_SHOT, False, name="zero-shot-chat",
                                                          prompts=chat_prompts(bench))))
    return jobs


def rescorers(bench: Workbench):
    """How each kind of record is scored on more test articles (sequential evaluation): Lead-k from the articles,
    the baselines with the base model, a trained method with its saved weights reloaded onto a copy of it."""
    cfg = bench.cfg

    def rescore(rec: dict, examples: list) -> list[dict]:
        if rec["name"] == f"lead-{cfg.eval.lead_k}":
            return score(bench, [lead_k(ex.article, cfg.eval.lead_k) for ex in examples], rec["name"], examples)
        if rec["kind"] == "baseline":
            tuned = fresh_model(bench, lambda lm: ZERO_SHOT.build(lm, cfg, bench.tokenizer), copy_base=False)
        else:
            tuned = fresh_model(bench, lambda lm: attach(bench.run_dir, cfg, rec["method"], rec["name"], lm,
                                                         bench.tokenizer))
        chat = chat_prompts(bench, examples) if rec["eval"].get("prompt") == "chat template" else None
        rows, _ = generate_and_score(bench, tuned, rec["name"], examples, chat)
        return rows

    return rescore
