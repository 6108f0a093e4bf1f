"""`tunebench evaluate RUN/METHOD`: score a trained method again on its run's own test articles, in the run
(`evaluate_in_run`); with `--data SOURCE`, on other data, and the baselines for context, in a new folder, the run
it was trained in only read (`evaluate_on`)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tunebench.compare import baseline_jobs, provenance
from tunebench.config import load_config, to_dict, to_yaml
from tunebench.errors import TunebenchError
from tunebench.files import atomic_write_json, atomic_write_text, claim_run_dir
from tunebench.jobs import run_jobs
from tunebench.report import write_outputs
from tunebench.results import Record, ResultsFile, environment, read_results, read_splits
from tunebench.trained import attach, load_trained, split_target
from tunebench.workbench import evaluate_tuned, fresh_model, prepare, scores_header

RESET_DATA = ["data.text_column=null", "data.summary_column=null", "data.id_column=null", "data.fraction=1.0",
              "data.strip_bylines=null"]
"""What of the run's data settings describes its source, not the prompt: back to automatic for the new source."""


def default_out(run_dir: Path, record: str, source: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source).stem if Path(source).suffix else source).strip("-")
    return run_dir.parent / f"{run_dir.name}-{record.replace('@', '-')}-on-{slug or 'data'}"


def evaluate_on(target: str, source: str, n: int | None, out: Path | None, overrides: list[str],
                show_progress: bool = True) -> Path:
    """Score the trained method `target` (RUN/METHOD) on `n` test articles of `source`; returns the new folder."""
    run_dir, name, record_name = split_target(target)
    run = read_results(run_dir)
    trained = next((r for r in run["records"] if r["name"] == record_name and r.get("status") == "SUCCESS"), None)
    if trained is None:
        raise TunebenchError(f"{run_dir}/results.json has no finished '{record_name}' to evaluate")
    out = out or default_out(run_dir, record_name, source)
    if out.exists():
        raise TunebenchError(f"{out} already exists; give another folder with --out")
    settings = [f"data.source={source}", *RESET_DATA, f"methods=[{name}]", *([f"data.n_test={n}"] if n else []),
                *overrides]
    cfg = load_config(config_file=str(run_dir / "config.yaml"), overrides=settings)
    tick = time.perf_counter()
    seen = set()
    if source == run["config"]["data"]["source"]:  # the run's own source: never score on what it trained on
        used = read_splits(run_dir)
        seen = set(used["train"]) | set(used["val"])
    bench, facts = prepare(cfg, out, show_progress, test_only=True, exclude=seen)  # bad input fails before files
    cfg = bench.cfg
    lock = claim_run_dir(out, create=True)  # noqa: F841 (held while this process writes the folder)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    atomic_write_json(out / "splits.json", {"seed": cfg.data.seed, **bench.splits.ids()})
    origin = {"run": str(run_dir), "record": record_name, "trained_on": run["data"]["source"],
              "trained_pairs": run["data"]["split_sizes"]["train"], "scored_on": source,
              "excluded_trained_or_validated": len(seen)}
    results = ResultsFile(out / "results.json", {
        "config": to_dict(cfg), "seeds": [trained.get("seed")], "data": facts, "evaluation": origin,
        "environment": environment(bench.runtime.as_dict()), "prepare_s": time.perf_counter() - tick,
        **scores_header(bench, facts["source"]), "provenance": provenance(cfg)})
    results.save()

    def score_trained() -> Record:  # after the baselines: it changes the shared base model in place
        tuned = fresh_model(bench, lambda lm: attach(run_dir, cfg, name, record_name, lm, bench.tokenizer),
                            copy_base=False)
        record = Record(record_name, "method", method=name, seed=trained.get("seed"),
                        settings=trained.get("settings"), params=trained.get("params"),
                        notes=[f"trained in {run_dir} on {origin['trained_on']} ({origin['trained_pairs']} pairs); "
                               "scored here without further training."])
        record.eval, record.phases["generation"] = evaluate_tuned(bench, tuned, record_name)
        record.status = "SUCCESS"
        return record

    run_jobs([*baseline_jobs(bench), (record_name, score_trained)], results, out)
    write_outputs(results.data, out, tensorboard=True)
    return out


def evaluate_in_run(target: str, show_progress: bool = True) -> tuple[str, dict, dict]:
    """Score the trained method `target` (RUN/METHOD) again on its run's test articles and write its record and the
    run's report; returns (record name, its evaluation, the run's description of its scores)."""
    run_dir, method, name = split_target(target)
    ResultsFile.load(run_dir / "results.json")  # damaged read-back files are refused before any model loads
    read_splits(run_dir)
    with claim_run_dir(run_dir, create=False):  # no other process writes the run meanwhile
        cfg, tuned, tokenizer = load_trained(run_dir, method, name)
        bench, _ = prepare(cfg, run_dir, show_progress=show_progress, model=(tuned.lm, tokenizer))
        recorded = read_splits(run_dir)["test"]
        if bench.splits.ids()["test"] != recorded:
            raise TunebenchError(f"the test articles of {run_dir} can no longer be rebuilt from its data source; "
                                 "the source changed since the run")
        tuned.to(bench.runtime.device)
        evaluation, phase = evaluate_tuned(bench, tuned, name)
        results = ResultsFile.load(run_dir / "results.json")
        record = next((r for r in results.data["records"] if r["name"] == name),
                      {"name": name, "kind": "method", "phases": {}})
        record.update(status="SUCCESS", eval=evaluation)
        record.setdefault("phases", {})["generation"] = phase
        results.add(record)
        write_outputs(results.data, run_dir, tensorboard=True)
    return name, evaluation, results.data.get("metrics") or {}
