"""TensorBoard: one event folder per record (RUN/tb/<record>/, `tensorboard --logdir RUN/tb`), written while the
record trains (flushed at every step, so a killed run keeps what it logged); its settings as hparams beside its
final scores (the HPARAMS tab compares records on them) and a few test predictions as text when the run ends."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tunebench.files import follow_umask


class Tracker:
    def __init__(self, run_dir: Path, config: dict):
        self.folder = run_dir / "tb"
        self.writers: dict[str, Any] = {}

    def _writer(self, record: str):
        from torch.utils.tensorboard import SummaryWriter

        if record not in self.writers:
            self.writers[record] = SummaryWriter(log_dir=str(self.folder / record))
        return self.writers[record]

    def start(self, record: str, params: dict[str, Any]) -> None:
        self.end(record, "")
        shutil.rmtree(self.folder / record, ignore_errors=True)  # a record run again replaces its curves
        self._writer(record)

    def params(self, record: str, params: dict[str, Any]) -> None:
        """Kept for `publish`: TensorBoard's hparams are written once, with the scores they are compared on."""

    def log(self, record: str, values: dict[str, float], step: int) -> None:
        writer = self._writer(record)
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        writer.flush()

    def end(self, record: str, status: str) -> None:
        writer = self.writers.pop(record, None)
        if writer is not None:
            writer.close()
            follow_umask(self.folder / record)

    def publish(self, record: str, final: dict[str, float], step: int, params: dict[str, Any], text: str | None,
                files: list[tuple[Path, str]]) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self._writer(record)
        for key, value in final.items():
            writer.add_scalar(key, value, step)
        metrics = {f"hparam/{key.split('/', 1)[1]}": value for key, value in final.items()}
        # what SummaryWriter.add_hparams writes, into this record's own folder (add_hparams opens a sub-folder)
        for summary in hparams(params, metrics):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
        if text:
            writer.add_text("test/predictions", text)
        self.end(record, "")

    def close(self) -> None:
        for record in list(self.writers):
            self.end(record, "")
