"""MLflow: one MLflow run per record, in experiment `track.experiment`, tagged with the run folder and the record
(`tunebench.run_dir`, `tunebench.record`). The store is MLFLOW_TRACKING_URI (or track.mlflow_uri) when set, else a
SQLite file in the run folder (RUN/mlflow.db, artefacts in RUN/mlartifacts/): `mlflow ui --backend-store-uri
sqlite:///RUN/mlflow.db`. Talks to the store through MlflowClient (no global active run), so several records,
and a resumed run, each address their own MLflow run."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

MAX_PARAM = 6000
"""MLflow's limit on a parameter value's length."""


class Tracker:
    def __init__(self, run_dir: Path, config: dict):
        for noisy in ("mlflow", "alembic"):  # creating a store logs its migrations at INFO: not a user's business
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        track = config.get("track") or {}
        self.run_dir = run_dir.resolve()
        uri = track.get("mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        local = not uri
        if local:
            uri = f"sqlite:///{self.run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = track.get("experiment") or "tunebench"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            self.experiment = found.experiment_id
        else:
            artifacts = (self.run_dir / "mlartifacts").as_uri() if local else None
            self.experiment = self.client.create_experiment(name, artifact_location=artifacts)
        self.runs: dict[str, str] = {}

    def _find(self, record: str) -> list:
        return self.client.search_runs([self.experiment], filter_string=(
            f"tags.`tunebench.run_dir` = '{self.run_dir}' and tags.`tunebench.record` = '{record}'"))

    def _run(self, record: str) -> str:
        """The MLflow run of a record (started by an earlier process, for a record kept on resume)."""
        if record not in self.runs:
            found = self._find(record)
            if not found:
                self.start(record, {})
            else:
                self.runs[record] = found[0].info.run_id
        return self.runs[record]

    def start(self, record: str, params: dict[str, Any]) -> None:
        for old in self._find(record):  # a record run again (resume, or a folder reused) replaces its run
            self.client.delete_run(old.info.run_id)
        run = self.client.create_run(self.experiment, run_name=record, tags={
            "tunebench.run_dir": str(self.run_dir), "tunebench.record": record, "tunebench.run": self.run_dir.name})
        self.runs[record] = run.info.run_id
        self.params(record, params)

    def params(self, record: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        run = self._run(record)
        logged = self.client.get_run(run).data.params
        new = [Param(k, str(v)[:MAX_PARAM]) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run, params=new[i:i + 100])

    def log(self, record: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self._run(record), metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def end(self, record: str, status: str) -> None:
        if record in self.runs:
            self.client.set_terminated(self.runs[record], "FINISHED" if status == "SUCCESS" else "FAILED")

    def publish(self, record: str, final: dict[str, float], step: int, params: dict[str, Any], text: str | None,
                files: list[tuple[Path, str]]) -> None:
        run = self._run(record)
        self.params(record, params)
        self.log(record, final, step)
        if text:
            self.client.log_text(run, text, "predictions/first.md")
        for path, folder in files:
            self.client.log_artifact(run, str(path), folder)

    def close(self) -> None:
        self.runs.clear()
