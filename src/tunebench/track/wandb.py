"""Weights & Biases, only if its package is installed (never required): one W&B run per record, offline unless
WANDB_MODE says otherwise (files in RUN/wandb/; `wandb sync` uploads them). An offline run cannot be reopened, so
a record's run stays open from its start until the run's final figures are published (a record kept from an
earlier, killed process gets a run of its own for them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class Tracker:
    def __init__(self, run_dir: Path, config: dict):
        self.run_dir = run_dir
        self.experiment = (config.get("track") or {}).get("experiment") or "tunebench"
        self.runs: dict[str, Any] = {}

    def start(self, record: str, params: dict[str, Any]) -> None:
        import wandb

        self._finish(record, 0)
        self.runs[record] = wandb.init(project=self.experiment, name=f"{self.run_dir.name}/{record}",
                                       group=self.run_dir.name, config=params, dir=str(self.run_dir),
                                       mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new")

    def params(self, record: str, params: dict[str, Any]) -> None:
        if record in self.runs:
            self.runs[record].config.update(params, allow_val_change=True)

    def log(self, record: str, values: dict[str, float], step: int) -> None:
        if record in self.runs:
            self.runs[record].log(values, step=step)

    def end(self, record: str, status: str) -> None:
        """A failed record's run ends now; a finished one stays open for `publish`."""
        if status not in ("SUCCESS", ""):
            self._finish(record, 1)

    def _finish(self, record: str, code: int) -> None:
        run = self.runs.pop(record, None)
        if run is not None:
            run.finish(exit_code=code)

    def publish(self, record: str, final: dict[str, float], step: int, params: dict[str, Any], text: str | None,
                files: list[tuple[Path, str]]) -> None:
        if record not in self.runs:
            self.start(record, params)
        run = self.runs[record]
        run.config.update(params, allow_val_change=True)
        run.summary.update(final)
        for path, _ in files:
            run.save(str(path), base_path=str(path.parent), policy="now")
        self._finish(record, 0)

    def close(self) -> None:
        for record in list(self.runs):
            self._finish(record, 0)
