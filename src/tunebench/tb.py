"""TensorBoard event files per method, written from results.json (`tensorboard --logdir RUN/tb`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


def write_tensorboard(data: dict, folder: Path) -> None:
    """One event folder per record: training loss and lr per step, validation loss per epoch, final ROUGE."""
    shutil.rmtree(folder, ignore_errors=True)  # rebuilt from the results each time, never appended twice
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            continue
        writer = SummaryWriter(log_dir=str(folder / rec["name"]))
        train = rec.get("train") or {}
        for step, (loss, lr) in enumerate(zip(train.get("train_loss_per_step", []), train.get("lr_per_step", []),
                                              strict=True), start=1):
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalar("train/lr", lr, step)
        steps_per_epoch = max(1, train.get("steps", 0) // max(1, train.get("epochs", 1)))
        for epoch, loss in enumerate(train.get("val_loss_per_epoch", []), start=1):
            writer.add_scalar("val/loss", loss, epoch * steps_per_epoch)
        for key, value in rec["eval"]["rouge"].items():
            writer.add_scalar(f"test/{key}", value["mean"], train.get("steps", 0))
        writer.close()
