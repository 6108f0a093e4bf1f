"""Experiment trackers, fed live: one tracker run per record, started when the record starts, its training loss and
learning rate at every optimizer step and its validation loss at every validation while it trains, its settings
as parameters, its final scores, predictions and the run's report when the run is complete.

`track.to` lists the trackers: `tensorboard` (RUN/tb/<record>/, on by default), `mlflow` (a SQLite store in the
run folder, RUN/mlflow.db with artefacts in RUN/mlartifacts/, or MLFLOW_TRACKING_URI / track.mlflow_uri) and
`wandb` (offline unless WANDB_MODE says otherwise; only if its package is installed, never required). A tracker is
one module of this package with a class `Tracker` that has the methods of `Tracker` below. Only the writer process
(rank 0 under torchrun) tracks; the others get a `Tracking` that does nothing. Imports no torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol

from tunebench.errors import TunebenchError
from tunebench.files import is_writer

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""track.to name -> module of this package."""
PREDICTIONS_SHOWN = 5
REPORT_FILES = ("report.md", "report.html", "results.json")


class Tracker(Protocol):
    """What a tracker does; `record` is the record's name (`lora`, `lora@seed1`, `lead-1`)."""

    def start(self, record: str, params: dict[str, Any]) -> None:
        """A record starts (again: whatever was tracked for it before is replaced); its run-level settings."""

    def params(self, record: str, params: dict[str, Any]) -> None:
        """More settings of the record, known once it is built (its method's settings, seed, learning rate)."""

    def log(self, record: str, values: dict[str, float], step: int) -> None:
        """Scalars at an optimizer step (`train/loss`, `train/lr`, `val/loss`, `test/<score>`)."""

    def end(self, record: str, status: str) -> None:
        """The record ended (SUCCESS or FAILED); nothing more is logged live."""

    def publish(self, record: str, final: dict[str, float], step: int, params: dict[str, Any], text: str | None,
                files: list[tuple[Path, str]]) -> None:
        """When the run is complete: the record's final scores (`test/<score>`, after every look), its parameters
        (again, for trackers that pair them with the scores), a few predictions as text, and files to keep
        (path, folder): its predictions, the run's report."""

    def close(self) -> None:
        """Flush and release."""


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys with scalar values (lists and None as JSON text)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def run_params(config: dict) -> dict[str, Any]:
    """The run's settings every record shares (the methods' own sections left out: each record adds its own)."""
    return flat({k: v for k, v in config.items() if k != "method"})


def record_params(rec: dict) -> dict[str, Any]:
    """A record's own settings: kind, method settings, seed and the learning rate it trained with."""
    out: dict[str, Any] = {"record": rec["name"], "kind": rec.get("kind", "")}
    out.update(flat(rec.get("settings") or {}, "method."))
    if rec.get("seed") is not None:
        out["train.seed"] = rec["seed"]
    if rec.get("train"):
        out["train.lr_used"] = rec["train"]["lr"]
    return out


class Tracking:
    """The configured trackers as one: each call goes to every tracker. Empty (does nothing) on a process that
    does not write, or with track.to=[]."""

    def __init__(self, trackers: list[Tracker], config: dict):
        self.trackers = trackers
        self.config = config

    def start(self, record: str) -> None:
        for t in self.trackers:
            t.start(record, run_params(self.config))

    def params(self, record: str, params: dict[str, Any]) -> None:
        for t in self.trackers:
            t.params(record, params)

    def log(self, record: str, values: dict[str, float], step: int) -> None:
        for t in self.trackers:
            t.log(record, values, step)

    def logger(self, record: str):
        """`log(values, step)` for one record: the hook the training loop calls."""
        return (lambda values, step: self.log(record, values, step)) if self.trackers else None

    def end(self, record: str, status: str) -> None:
        for t in self.trackers:
            t.end(record, status)

    def publish(self, data: dict, run_dir: Path) -> None:
        """Every finished record's final scores, parameters, predictions, and the run's report files."""
        if not self.trackers:
            return
        report = [(run_dir / name, "report") for name in REPORT_FILES if (run_dir / name).is_file()]
        for rec in data["records"]:
            if rec["status"] != "SUCCESS":
                continue
            final = {f"test/{key}": v["mean"] for key, v in rec["eval"]["scores"].items()}
            predictions = run_dir / rec["name"] / "predictions.jsonl"
            files = ([(predictions, "predictions")] if predictions.is_file() else []) + report
            step = (rec.get("train") or {}).get("steps", 0)
            params = {**run_params(data["config"]), **record_params(rec)}
            for t in self.trackers:
                t.publish(rec["name"], final, step, params, predictions_text(predictions), files)

    def replay(self, data: dict, run_dir: Path) -> None:
        """Track a finished run from its results alone (a merged report, a folder of `evaluate --data`): every
        record's curves as they were logged live, then `publish`."""
        for rec in data["records"]:
            if rec["status"] != "SUCCESS":
                continue
            self.start(rec["name"])
            self.params(rec["name"], record_params(rec))
            replay_training(rec.get("train") or {}, self.logger(rec["name"]))
            self.end(rec["name"], rec["status"])
        self.publish(data, run_dir)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def replay_training(train: dict, log) -> None:
    """A record's stored curves through a `log(values, step)` hook, as the training loop called it."""
    if log is None:
        return
    steps_per_epoch = (train.get("budget") or {}).get("steps_per_epoch") or \
        max(1, train.get("steps", 0) // max(1, train.get("epochs", 1)))
    for step, (loss, lr) in enumerate(zip(train.get("train_loss_per_step", []), train.get("lr_per_step", []),
                                          strict=True), start=1):
        log({"train/loss": loss, "train/lr": lr}, step)
    for epoch, loss in enumerate(train.get("val_loss_per_epoch", []), start=1):
        log({"val/loss": loss}, min(epoch * steps_per_epoch, train.get("steps", 0)))


def predictions_text(path: Path) -> str | None:
    """The first test predictions of a record beside their references, as markdown; None if the file is absent."""
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:PREDICTIONS_SHOWN]]
    return "\n\n".join(f"**{r['id']}**  \nreference: {r['reference']}  \nprediction: {r['prediction']}" for r in rows)


def open_tracking(names: list[str], config: dict, run_dir: Path) -> Tracking:
    """The trackers of `track.to` for a run folder (none on a process that does not write)."""
    if not is_writer():
        return Tracking([], config)
    trackers = []
    for name in names:
        module = importlib.import_module(f"tunebench.track.{TRACKERS[name]}")
        trackers.append(module.Tracker(run_dir, config))
    return Tracking(trackers, config)


def replay_tensorboard(data: dict, run_dir: Path) -> None:
    """RUN/tb rebuilt from the results alone (a folder no run logged to live, or whose scores changed after)."""
    import shutil

    if not is_writer():
        return
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    tracking = open_tracking(["tensorboard"], data["config"], run_dir)
    tracking.replay(data, run_dir)
    tracking.close()


def check_trackers(names: list[str]) -> None:
    """track.to names known, and their packages installed: refused before anything runs, in one line."""
    for name in names:
        if name not in TRACKERS:
            raise TunebenchError(f"unknown tracker '{name}' in track.to; known: {', '.join(TRACKERS)}")
        package = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}[name]
        if importlib.util.find_spec(package) is None:
            raise TunebenchError(f"track.to lists {name} but its package is not installed: pip install "
                                 f"{'mlflow-skinny' if name == 'mlflow' else package}, or leave {name} out of "
                                 "track.to")
