"""PNG plots drawn from results.json only, one colour per method across every plot."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tunebench.methods import METHODS, ZERO_SHOT  # noqa: E402
from tunebench.metrics import ROUGE_KEYS  # noqa: E402
from tunebench.verdict import pareto_front as _front  # noqa: E402
from tunebench.verdict import peak_rss_mb  # noqa: E402

LABELS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rougeLsum": "R-Lsum"}
FIXED = {"lead": "#7f7f7f", ZERO_SHOT.name: ZERO_SHOT.colour, "zero-shot-chat": "#e377c2",
         **{m.name: m.colour for m in METHODS.values()}}
SPARE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#ff7f0e"]


def colour(record: dict) -> str:
    """The same colour for a method in every plot (keyed by method, so its seeds share it)."""
    key = record["name"] if record.get("kind") == "baseline" else record.get("method", record["name"])
    key = "lead" if key.startswith("lead") else key
    return FIXED.get(key, SPARE[sum(map(ord, key)) % len(SPARE)])


def _ok(data: dict) -> list[dict]:
    return [r for r in data["records"] if r["status"] == "SUCCESS"]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)  # then renamed: a reader never sees half a PNG
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _trained(data: dict, key: str) -> bool:
    return any((rec.get("train") or {}).get(key) for rec in _ok(data))


def loss_curves(data: dict, path: Path) -> Path | None:
    """Training loss of every method against training tokens: raw faint, smoothed solid (None: nothing trained)."""
    if not _trained(data, "train_loss_per_step"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for rec in _ok(data):
        train = rec.get("train")
        if not train or not train["train_loss_per_step"]:
            continue
        loss = np.array(train["train_loss_per_step"])
        tokens = np.linspace(train["train_tokens"] / len(loss), train["train_tokens"], len(loss))
        ax.plot(tokens, loss, color=colour(rec), alpha=0.25, linewidth=1)
        window = max(1, len(loss) // 10)
        smooth = _smooth(loss, window)
        ax.plot(tokens[len(tokens) - len(smooth):], smooth, color=colour(rec), linewidth=2, label=rec["name"])
    ax.set(xlabel="training tokens", ylabel="loss (nats / summary token)", title="Training loss")
    ax.legend()
    return _save(fig, path)


def _per_step_series(data: dict, path: Path, key: str, xlabel: str, ylabel: str, title: str,
                     marker: str | None = None, size: tuple[float, float] = (6, 4)) -> Path | None:
    """One line per method of a list kept in its training record (indexed from 1); None when no record has it."""
    if not _trained(data, key):
        return None
    fig, ax = plt.subplots(figsize=size)
    for rec in _ok(data):
        values = (rec.get("train") or {}).get(key)
        if values:
            ax.plot(range(1, len(values) + 1), values, marker=marker, color=colour(rec), label=rec["name"])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def val_loss(data: dict, path: Path) -> Path | None:
    return _per_step_series(data, path, "val_loss_per_epoch", "epoch", "validation loss (nats / summary token)",
                            "Validation loss per epoch", marker="o")


def rouge_bars(data: dict, path: Path) -> Path:
    """Mean ROUGE per method with its 95% bootstrap interval as whiskers."""
    recs = _ok(data)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(recs), 1)
    for i, rec in enumerate(recs):
        rouge = rec["eval"]["rouge"]
        means = np.array([rouge[k]["mean"] for k in ROUGE_KEYS])
        lows = means - np.array([rouge[k]["ci95"][0] for k in ROUGE_KEYS])
        highs = np.array([rouge[k]["ci95"][1] for k in ROUGE_KEYS]) - means
        ax.bar(np.arange(len(ROUGE_KEYS)) + i * width, means, width, yerr=[lows, highs], capsize=3,
               color=colour(rec), label=rec["name"])
    ax.set_xticks(np.arange(len(ROUGE_KEYS)) + width * (len(recs) - 1) / 2, [LABELS[k] for k in ROUGE_KEYS])
    ax.set(ylabel="ROUGE F1 x 100", title="ROUGE on the test articles (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_front(costs: list[float], quality: list[float]) -> list[int]:
    """Indices of points no other point beats on both lower cost and higher quality, by cost."""
    front = _front({i: (c, -q) for i, (c, q) in enumerate(zip(costs, quality, strict=True))})
    return sorted(front, key=lambda i: costs[i])


def cost_of(rec: dict, what: str) -> float | None:
    train = rec.get("train")
    if not train:
        return None
    if what == "params":
        return rec["params"]["trainable"]
    if what == "time":
        return train["train_time_s"]
    return peak_rss_mb(rec)


def quality_vs_cost(data: dict, path: Path) -> Path:
    """R-2 against trainable parameters (log), training time and peak memory; the Pareto front dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (what, label) in zip(axes, (("params", "trainable parameters (log)"), ("time", "training time (s)"),
                                        ("memory", "peak RSS (MB)")), strict=True):
        recs = [r for r in _ok(data) if cost_of(r, what) is not None]
        costs = [cost_of(r, what) for r in recs]
        quality = [r["eval"]["rouge"]["rouge2"]["mean"] for r in recs]
        for rec, c, q in zip(recs, costs, quality, strict=True):
            ax.scatter(c, q, color=colour(rec), s=60, label=rec["name"], zorder=3)
        front = pareto_front(costs, quality) if recs else []
        ax.plot([costs[i] for i in front], [quality[i] for i in front], "k--", linewidth=1, label="Pareto front")
        if what == "params":
            ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="R-2 (F1 x 100)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Quality against cost")
    return _save(fig, path)


def resource_timelines(data: dict, path: Path) -> Path:
    """CPU % of this process and its RSS over each method's phases, end to end."""
    fig, (cpu_ax, mem_ax) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for rec in _ok(data):
        offset, times, cpu, rss = 0.0, [], [], []
        for phase in rec.get("phases", {}).values():
            for sample in phase.get("samples", []):
                times.append(offset + sample["t_s"])
                cpu.append(sample["cpu_pct"])
                rss.append(sample["rss_mb"])
            offset += phase["wall_s"]
        if times:
            cpu_ax.plot(times, cpu, color=colour(rec), label=rec["name"])
            mem_ax.plot(times, rss, color=colour(rec))
    cpu_ax.set(ylabel="CPU % (100 = one core)", title="Resources over each method's run")
    mem_ax.set(xlabel="seconds since the method started", ylabel="RSS (MB)")
    cpu_ax.legend(fontsize=8)
    return _save(fig, path)


def lr_schedule(data: dict, path: Path) -> Path | None:
    return _per_step_series(data, path, "lr_per_step", "optimizer step", "learning rate", "Learning-rate schedule",
                            size=(6, 3.5))


def lr_search(data: dict, path: Path) -> Path | None:
    """Validation loss against learning rate, one line per method; a pruned trial at its last reported loss (x).
    None when no search ran."""
    searched = [rec for rec in _ok(data) if rec.get("search")]
    if not searched:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for rec in searched:
        trials = rec["search"]["trials"]
        done = [t for t in trials if t["state"] == "COMPLETE"]
        ax.plot([t["lr"] for t in done], [t["val_loss"] for t in done], "o-", color=colour(rec), label=rec["name"])
        pruned = [t for t in trials if t["state"] == "PRUNED" and t["curve"]]
        ax.plot([t["lr"] for t in pruned], [list(t["curve"].values())[-1] for t in pruned], "x", color=colour(rec))
        best = next(t for t in done if t["lr"] == rec["search"]["best_lr"])
        ax.plot([best["lr"]], [best["val_loss"]], "*", markersize=14, color=colour(rec))
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation loss (nats / summary token)",
           title="Learning-rate search (star: chosen; x: stopped early)")
    ax.legend(fontsize=8)
    return _save(fig, path)


PLOTS = {"loss_curves.png": loss_curves, "val_loss.png": val_loss, "rouge.png": rouge_bars,
         "quality_vs_cost.png": quality_vs_cost, "resources.png": resource_timelines, "lr_schedule.png": lr_schedule,
         "lr_search.png": lr_search}
OPTIONAL = {"lr_search.png"}
"""Plots drawn only when the run has what they show, beyond training records (which a folder written by
`evaluate --data` lacks: then no training plot is drawn)."""


def draw_all(data: dict, folder: Path) -> list[Path]:
    """Every plot that has something to show into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = [draw(data, folder / name) for name, draw in PLOTS.items()]
    return [path for path in drawn if path is not None]
