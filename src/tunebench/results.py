"""The versioned results file: every table and plot is drawn from it, and it is always written atomically."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from tunebench import metrics
from tunebench.errors import TunebenchError, is_folder_name
from tunebench.files import atomic_write_json
from tunebench.verdict import add_statistics

SCHEMA_VERSION = 5
"""5: scores by metric: `metrics` describes each score (label, direction, format; from the metric registry),
records hold `eval.scores` (mean, interval and the metric's extras per score key) instead of `eval.rouge` and
`eval.test_loss`; `published` holds the published figures shown beside measured rows.
4: `looks` (sequential evaluation: planned article counts, the ids of each look taken, why it stopped); the
verdict is an action (pick / none / undecided) from group-sequential, Holm-corrected tests on `eval.decide_on`,
records carry per-article test losses and CPU seconds. 3: paired tests (`comparisons`) and the verdict stored
beside the records; `evaluation` in a folder written by `evaluate --data`. 1 to 3 are read and their tests and
verdict recomputed (as one look over the articles each pair has in common); 1 to 4 get their scores described
as the built-in metrics describe them."""
PACKAGES = ("tunebench", "torch", "transformers", "peft", "rouge-score", "safetensors", "tokenizers", "datasets",
            "numpy")


def environment(runtime: dict) -> dict:
    """Package versions, hardware and the runtime decisions of this run."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu, "gpu": gpu,
            "cpu_count": os.cpu_count(), "packages": versions, "git_commit": _git_commit(), **runtime}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@dataclass
class Record:
    """One baseline or method of a run, as stored in `records` of results.json (None fields are left out)."""

    name: str
    """The record's name: the method's, `<method>@seed<N>` for repeats, `lead-<k>` for Lead-k."""
    kind: str
    """`method` (trained) or `baseline`."""
    status: str = "RUNNING"
    """`SUCCESS`, `FAILED` or `RUNNING`."""
    method: str | None = None
    seed: int | None = None
    settings: dict | None = None
    """The method's own settings (`method.<name>`)."""
    params: dict | None = None
    """total, trainable, trainable_pct and the method's own facts (e.g. head_params_added)."""
    notes: list[str] = field(default_factory=list)
    """What the method did that a reader should know (e.g. an untied head), in words."""
    phases: dict = field(default_factory=dict)
    """Per phase (setup, train, generation): wall time, RSS, CPU/GPU samples."""
    search: dict | None = None
    """The learning-rate search, if one ran: trials (lr, state, validation loss, curve, seconds), best lr, cost."""
    train: dict | None = None
    eval: dict | None = None
    artifacts: dict | None = None
    serving: dict | None = None
    """The fixed decoding job's figures (serving.py): tokens/s, time to first token, memory, layers merged."""
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def failed(cls, name: str, kind: str, exc: BaseException, trace: str) -> Record:
        return cls(name, kind, "FAILED", error=f"{type(exc).__name__}: {exc}", traceback=trace)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class ResultsFile:
    """`results.json` of a run: a header plus one record per baseline/method, rewritten after each."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.data = {"schema_version": SCHEMA_VERSION,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     **header, "records": []}

    @classmethod
    def load(cls, path: Path) -> ResultsFile:
        """An existing results file, to add records to (resume, evaluate)."""
        results = cls(path, {})
        results.data = read_results(path.parent)
        return results

    def add(self, record: Record | dict) -> None:
        record = record.as_dict() if isinstance(record, Record) else record
        self.data["records"] = [r for r in self.data["records"] if r["name"] != record["name"]] + [record]
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, add_statistics(self.data))


def read_results(run_dir: Path) -> dict:
    """Load and check a run's results.json."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise TunebenchError(f"{run_dir} has no results.json; give a run folder written by `tunebench compare`")
    data = read_json(path, "results file")
    if data.get("schema_version") not in (1, 2, 3, 4, SCHEMA_VERSION):
        raise TunebenchError(f"{path} has schema_version {data.get('schema_version')!r}; this tunebench reads "
                             f"1 to {SCHEMA_VERSION}")
    check_results(data, path)
    if data["schema_version"] < SCHEMA_VERSION:
        # version 1 stored no tests, 2 bootstrap-only ones, 3 a verdict without looks or multiplicity correction:
        # compute them from the per-article scores
        data = {**add_statistics(upgrade_scores(data)), "schema_version": SCHEMA_VERSION}
    return data


def upgrade_scores(data: dict) -> dict:
    """A file of schema 1 to 4 (ROUGE in `eval.rouge`, the test loss in `eval.test_loss`) with its scores as
    schema 5 keeps them: described by the built-in metrics, `eval.scores` per record; eval.test_loss in its
    config read as eval.metrics."""
    ev_cfg = data["config"].setdefault("eval", {})
    has_loss = any(x.get("test_loss") is not None for rec in data["records"] if rec["status"] == "SUCCESS"
                   for x in rec["eval"]["per_article"])
    names = ["rouge"] + (["test_loss"] if has_loss else [])
    ev_cfg.pop("test_loss", None)
    ev_cfg.setdefault("metrics", names)
    ev_cfg.setdefault("decide_on", "rouge1")
    chosen = metrics.chosen(names)
    data["metrics"] = metrics.catalogue(chosen)
    data["published"] = metrics.published(chosen, (data.get("data") or {}).get("source", ""))
    seed, resamples = data["config"].get("data", {}).get("seed", 0), ev_cfg.get("bootstrap_resamples", 1000)
    for rec in data["records"]:
        ev = rec.get("eval")
        if rec["status"] != "SUCCESS" or not isinstance(ev, dict) or "scores" in ev:
            continue
        rouge = ev.pop("rouge", {})
        ev.pop("test_loss", None)
        ev.pop("test_perplexity", None)
        ev["scores"] = {**rouge, **{k: v for k, v in metrics.summarize(chosen, ev["per_article"], seed, resamples)
                                    .items() if k not in rouge}}
    return data


def read_json(path: Path, what: str) -> dict:
    """A JSON object that tunebench wrote; not UTF-8, not JSON or not an object is a one-line error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TunebenchError(f"{path} is not UTF-8 text; the {what} is damaged: restore it or rerun") from None
    except json.JSONDecodeError as exc:
        raise TunebenchError(f"{path} is not valid JSON ({exc.msg}); the file is damaged") from None
    except OSError as exc:
        raise TunebenchError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise TunebenchError(f"{path} holds a JSON {type(data).__name__}, not the object a {what} is; the file is "
                             "damaged: restore it or rerun")
    return data


STATUSES = ("SUCCESS", "FAILED", "RUNNING")


def _expect(ok: bool, path: Path, field_name: str, expected: str, value: object) -> None:
    if not ok:
        shown = repr(value) if len(repr(value)) < 60 else type(value).__name__
        raise TunebenchError(f"{path}: field '{field_name}' must be {expected}, got {shown}; the file is damaged or "
                             "was edited: restore it or rerun")


MISSING = object()


def check_results(data: dict, path: Path) -> None:
    """The shape every reader of results.json relies on: a config, and records with a name, kind and status; a
    finished record has its scores (each score's mean, and per-article scores)."""
    _expect(isinstance(data.get("config"), dict), path, "config", "an object", data.get("config", MISSING))
    for key in ("data", "environment"):
        if key in data:
            _expect(isinstance(data[key], dict), path, key, "an object", data[key])
    if "seeds" in data:
        seeds = data["seeds"]
        _expect(isinstance(seeds, list) and bool(seeds) and
                all(s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0) for s in seeds), path,
                "seeds", "a list of seeds >= 0", seeds)
    if "looks" in data:
        looks = data["looks"]
        _expect(isinstance(looks, dict) and isinstance(looks.get("sizes"), list) and bool(looks["sizes"])
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in looks["sizes"]),
                path, "looks.sizes", "a list of article counts", looks.get("sizes") if isinstance(looks, dict)
                else looks)
        _expect(isinstance(looks.get("ids"), list) and all(isinstance(batch, list) and
                                                           all(isinstance(i, str) for i in batch)
                                                           for batch in looks["ids"]),
                path, "looks.ids", "a list of lists of article ids", looks.get("ids", MISSING))
    records = data.get("records", MISSING)
    _expect(isinstance(records, list), path, "records", "a list", records)
    for index, rec in enumerate(records):
        where = f"records[{index}]"
        _expect(isinstance(rec, dict), path, where, "an object", rec)
        _expect(isinstance(rec.get("name"), str) and bool(rec.get("name")), path, f"{where}.name", "a name",
                rec.get("name", MISSING))
        # a record's name becomes folders (its predictions, weights, TensorBoard logs): one folder name, or
        # `<run>/<record>` in a merged report
        _expect(len(rec["name"].split("/")) <= 2 and all(is_folder_name(p) for p in rec["name"].split("/")), path,
                f"{where}.name", "one folder name (or run/name in a merged report; no '..', no absolute path)",
                rec["name"])
        _expect(rec.get("kind") in ("method", "baseline"), path, f"{where}.kind", "method or baseline",
                rec.get("kind", MISSING))
        _expect(rec.get("status") in STATUSES, path, f"{where}.status", " or ".join(STATUSES),
                rec.get("status", MISSING))
        for key in ("train", "params", "phases", "settings", "artifacts", "search"):
            if rec.get(key) is not None:
                _expect(isinstance(rec[key], dict), path, f"{where}.{key}", "an object", rec[key])
        if rec["status"] != "SUCCESS":
            continue
        evaluation = rec.get("eval", MISSING)
        _expect(isinstance(evaluation, dict), path, f"{where}.eval", "an object", evaluation)
        field_name = "scores" if data.get("schema_version", SCHEMA_VERSION) >= 5 else "rouge"
        scores = evaluation.get(field_name, MISSING)
        _expect(isinstance(scores, dict) and bool(scores), path, f"{where}.eval.{field_name}", "an object", scores)
        for key, stats in scores.items():
            mean = stats.get("mean", MISSING) if isinstance(stats, dict) else stats
            _expect(isinstance(mean, (int, float)) and not isinstance(mean, bool) and math.isfinite(mean), path,
                    f"{where}.eval.{field_name}.{key}.mean", "a finite number", mean)
        articles = evaluation.get("per_article", MISSING)
        _expect(isinstance(articles, list) and all(isinstance(a, dict) and "id" in a for a in articles), path,
                f"{where}.eval.per_article", "a list of per-article scores", articles)


def read_splits(run_dir: Path) -> dict[str, list[str]]:
    """A run's splits.json: the ids of its train, validation and test articles, checked."""
    path = run_dir / "splits.json"
    if not path.is_file():
        raise TunebenchError(f"{run_dir} has no splits.json; give a run folder written by `tunebench compare`")
    data = read_json(path, "split file")
    for key in ("train", "val", "test"):
        ids = data.get(key, MISSING)
        _expect(isinstance(ids, list) and all(isinstance(i, str) for i in ids), path, key, "a list of article ids",
                ids)
    return data


DECODING = ("max_new_tokens", "num_beams", "no_repeat_ngram_size", "length_penalty", "cut", "max_sentences")
"""How summaries were decoded (the same keys as generate.DECODE_KEYS, kept here so reading results needs no torch)."""
DATA_KEYS = ("source", "separator", "max_article_tokens", "max_summary_tokens")
"""How test articles were read and shown to the model."""


def _test_ids(data: dict) -> list[str] | None:
    return next((([x["id"] for x in rec["eval"]["per_article"]]) for rec in data["records"]
                 if rec["status"] == "SUCCESS" and rec.get("eval")), None)


def differences(a: dict, b: dict) -> list[str]:
    """What makes two runs' scores incomparable: model, test articles, decoding, how data was read."""
    out = []
    if a["config"]["model"]["name"] != b["config"]["model"]["name"]:
        out.append(f"model {a['config']['model']['name']} vs {b['config']['model']['name']}")
    ids_a, ids_b = _test_ids(a), _test_ids(b)
    if ids_a != ids_b:
        same = len(set(ids_a or []) & set(ids_b or []))
        out.append(f"test articles ({len(ids_a or [])} vs {len(ids_b or [])}, {same} in common)")
    for what in ("model", "data"):  # the same name, other weights or another data file
        pa, pb = (a.get("provenance") or {}).get(what), (b.get("provenance") or {}).get(what)
        if pa and pb and (pa.get("sha256"), pa.get("revision")) != (pb.get("sha256"), pb.get("revision")):
            out.append(f"{what} files (sha256 or Hub revision differ)")
    for section, keys in (("eval", DECODING), ("data", DATA_KEYS)):
        for key in keys:
            va, vb = a["config"][section].get(key), b["config"][section].get(key)
            if va != vb:
                out.append(f"{section}.{key} {va!r} vs {vb!r}")
    return out


def merge_results(runs: list[tuple[str, dict]], allow_different: bool = False) -> dict:
    """Several runs' results as one: records renamed `<run>/<name>`; header (config, data) from the first run.

    Runs that differ in model, test articles, decoding or data are refused (TunebenchError naming the first
    difference) unless `allow_different`; then the differences are recorded (`merged_differences`) and the report
    says so. Rows are never pooled across runs (the report keys seeds by `<run>/<method>`)."""
    names = [name for name, _ in runs]
    if len(set(names)) != len(names):
        raise TunebenchError(f"two runs to merge have the same folder name ({names}); records are labelled by it, "
                             "so copy or rename one")
    first_name, first = runs[0]
    found = []
    for name, data in runs[1:]:
        found += [f"{first_name} vs {name}: {d}" for d in differences(first, data)]
    if found and not allow_different:
        raise TunebenchError(f"cannot merge runs that are not comparable: {found[0]}"
                             + (f" (and {len(found) - 1} more differences)" if len(found) > 1 else "")
                             + "; merge comparable runs, or pass --allow-different to show them side by side, "
                             "labelled by run")
    merged = {**first, "merged_from": names, "merged_differences": found, "records": [],
              "metrics": {k: v for _, data in reversed(runs) for k, v in (data.get("metrics") or {}).items()}}
    for name, data in runs:
        merged["records"] += [{**rec, "name": f"{name}/{rec['name']}"} for rec in data["records"]]
    return add_statistics(merged)
