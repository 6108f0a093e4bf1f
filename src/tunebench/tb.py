"""TensorBoard event files per record, written from results.json (`tensorboard --logdir RUN/tb`): curves, the
run's settings as hparams (the HPARAMS tab compares records on them) and a few test predictions as text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

PREDICTIONS_SHOWN = 5


def flat(tree: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys with values TensorBoard's hparams take (lists and None as text)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def record_hparams(data: dict, rec: dict) -> dict:
    """The settings a record ran with: the run's config (other methods' sections left out), its own method
    settings, seed and the learning rate it trained with."""
    cfg = {k: v for k, v in data["config"].items() if k != "method"}
    out = {"record": rec["name"], "kind": rec.get("kind", ""), **flat(cfg)}
    out.update(flat(rec.get("settings") or {}, "method."))
    if rec.get("seed") is not None:
        out["train.seed"] = rec["seed"]
    if rec.get("train"):
        out["train.lr"] = rec["train"]["lr"]
    return out


def _predictions_text(path: Path) -> str | None:
    """The first test predictions of a record beside their references, as markdown; None if the file is absent
    (a merged report lives away from its runs' folders)."""
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:PREDICTIONS_SHOWN]]
    return "\n\n".join(f"**{r['id']}**  \nreference: {r['reference']}  \nprediction: {r['prediction']}" for r in rows)


def write_tensorboard(data: dict, folder: Path) -> None:
    """One event folder per record: training loss and lr per step, validation loss per epoch, final scores,
    hparams, and the first few predictions."""
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
        for key, value in rec["eval"]["scores"].items():
            writer.add_scalar(f"test/{key}", value["mean"], train.get("steps", 0))
        # what SummaryWriter.add_hparams writes, into this record's own folder (add_hparams opens a sub-folder)
        metrics = {f"hparam/{key}": value["mean"] for key, value in rec["eval"]["scores"].items()}
        for summary in hparams(record_hparams(data, rec), metrics):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
        text = _predictions_text(folder.parent / rec["name"] / "predictions.jsonl")
        if text:
            writer.add_text("test/predictions", text)
        writer.close()
