"""Learning-rate search on validation data: log-spaced trials, the poor ones stopped early (successive halving).

Each trial trains a fresh copy of the method with one learning rate for the first `search.budget_fraction` of
the budget (the same warmup/decay schedule as the real run, cut short) and reports its validation loss at
rungs; Optuna's SuccessiveHalvingPruner stops trials that fall behind the others at a rung. The learning rate
with the lowest validation loss then trains the whole budget. The test set is never looked at.

Trials are kept in an Optuna journal file in the method's folder: a killed search resumes where it stopped
(finished and pruned trials are kept; the trial in flight is run again).

Under torchrun the writer (rank 0) alone opens the journal and drives Optuna; every rank trains each trial
data-parallel, as the real run does (the validation losses are summed over ranks, so every rank sees the same),
and the writer's pruning decision at each rung is broadcast, so every rank stops the same trial at the same step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tunebench import distributed
from tunebench.config import Config
from tunebench.methods import Method
from tunebench.runtime import seed_everything
from tunebench.train import Probe, plan, train
from tunebench.workbench import fresh_model

optuna.logging.set_verbosity(optuna.logging.WARNING)


def grid(cfg: Config, method: Method) -> list[float]:
    """The learning rates tried: `search.trials` values log-spaced over the method's `lr_range`."""
    low, high = method.settings(cfg).lr_range
    return [float(f"{lr:.3g}") for lr in np.geomspace(low, high, cfg.search.trials)]


def search_lr(bench, method: Method, cfg: Config, folder: Path) -> dict:
    """Run (or resume) the search for one method; returns its record: trials, best lr, seconds spent."""
    folder.mkdir(parents=True, exist_ok=True)
    lrs = grid(cfg, method)
    budget = plan(bench.encoded["train"], cfg.train)
    trial_steps = max(1, math.ceil(budget["planned_steps"] * cfg.search.budget_fraction))
    rung = max(1, trial_steps // cfg.search.rungs)
    study = distributed.on_writer(lambda: open_study(folder, method.name, rung))  # None on the other ranks
    settled = distributed.from_writer(None if study is None else {t.params["lr"] for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))})

    def trial_loss(lr: float, decide: Callable[[int, float], bool]) -> float:
        """Train one trial; `decide(step, val_loss)` at each rung says whether to stop it (pruned)."""
        def report(step: int, val_loss: float) -> None:
            if distributed.from_writer(decide(step, val_loss)):  # the writer's decision, on every rank
                raise optuna.TrialPruned()

        seed_everything(cfg.train.seed)
        tuned = fresh_model(bench, lambda lm: method.build(lm, cfg, bench.tokenizer))
        result = train(tuned, bench.encoded["train"], bench.encoded["val"], cfg.train, lr, bench.runtime,
                       folder / "trial.safetensors", bench.tokenizer.pad_token_id, show_progress=False,
                       probe=Probe(trial_steps, rung, report))
        if not math.isfinite(result.best_val_loss):
            raise optuna.TrialPruned()  # diverged: no validation loss to rank
        return result.best_val_loss

    def objective(trial: optuna.Trial) -> float:  # the writer's: Optuna records the trial
        tick = time.perf_counter()

        def decide(step: int, val_loss: float) -> bool:
            trial.report(val_loss, step)
            return trial.should_prune()

        try:
            return trial_loss(trial.suggest_float("lr", min(lrs), max(lrs), log=True), decide)
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - tick)

    queued = set() if study is None else {_lr(t) for t in study.get_trials(deepcopy=False,
                                                                          states=(TrialState.WAITING,))}
    for lr in lrs:  # one at a time, in grid order: a resumed search prunes as the uninterrupted one did
        if lr in settled:
            continue
        if study is None:  # another rank: the same trial, stopped where the writer's Optuna stops it
            try:
                trial_loss(lr, lambda step, val_loss: False)
            except (optuna.TrialPruned, FloatingPointError):
                pass  # as Optuna takes them on the writer
            continue
        if lr not in queued:
            study.enqueue_trial({"lr": lr})
        study.optimize(objective, n_trials=1, catch=(FloatingPointError,))
    distributed.on_writer(lambda: (folder / "trial.safetensors").unlink(missing_ok=True))
    outcome = distributed.from_writer(None if study is None else _outcome(study, lrs, trial_steps, rung))
    if isinstance(outcome, str):
        raise RuntimeError(outcome)
    return outcome


def open_study(folder: Path, name: str, rung: int) -> optuna.Study:
    """The method's study in its journal (created, or loaded to resume); a trial a kill left running is failed, so
    its learning rate runs again."""
    storage = JournalStorage(JournalFileBackend(str(folder / "search.journal")))
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=rung, reduction_factor=2))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    return study


def _outcome(study: optuna.Study, lrs: list[float], trial_steps: int, rung: int) -> dict | str:
    """The summary, or why there is none (a message every rank raises)."""
    try:
        return summary(study, lrs, trial_steps, rung)
    except RuntimeError as exc:
        return str(exc)


def _lr(trial: optuna.trial.FrozenTrial) -> float | None:
    """A trial's learning rate: its parameter, or the one it was queued with (a trial not yet started)."""
    return trial.params.get("lr", trial.system_attrs.get("fixed_params", {}).get("lr"))


def summary(study: optuna.Study, lrs: list[float], trial_steps: int, rung: int) -> dict:
    """What the results file keeps of a search."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) or t.params.get("lr") not in lrs:
            continue
        if t.state == TrialState.FAIL and any(o.params == t.params and o.state != TrialState.FAIL
                                              for o in study.trials):
            continue  # a killed trial that was run again
        curve = {int(step): float(v) for step, v in sorted(t.intermediate_values.items())}
        trials.append({"lr": t.params["lr"], "state": t.state.name, "val_loss": t.value, "curve": curve,
                       "seconds": t.user_attrs.get("seconds", 0.0)})
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    if not complete:
        raise RuntimeError("every learning-rate trial diverged or was pruned; widen method.<name>.lr_range")
    best = min(complete, key=lambda t: t["val_loss"])
    return {"best_lr": best["lr"], "trials": sorted(trials, key=lambda t: t["lr"]), "trial_steps": trial_steps,
            "rung_steps": rung, "seconds": sum(t["seconds"] for t in trials)}
