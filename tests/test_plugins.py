"""Issue 25: metrics and trackers are plug-ins.

A metric is one file: a toy metric (summary length in words) written outside tunebench, named in eval.metrics,
reaches results.json, the paired tests, the report (md and html), a plot and TensorBoard with no other file
edited; a score where lower is better decides the verdict the right way round.
Trackers are fed live: the same run logs to MLflow, read back with MLflow's own client (one run per record, its
settings as parameters, one loss point per optimizer step, the scores, the report and predictions as artefacts),
and to TensorBoard, whose events are read while the run is still training."""

import json
import textwrap

import numpy as np
import pytest

from tunebench import metrics
from tunebench.cli import main
from tunebench.errors import TunebenchError

TOY = textwrap.dedent('''
    """Summary length in words: a toy metric of a user's own, one file."""
    from tunebench.metrics import Metric, Score

    def per_article(batch):
        return [{"words": float(len(p.split()))} for p in batch.predictions]

    METRIC = Metric("words_toy", [Score("words", "words", "summary length in words", digits=2,
                                        about="how long the summary is")], per_article)
''')


SEEN_WHILE_TRAINING: dict[str, list] = {}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tunebench.track import tensorboard

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "words_toy.py").write_text(TOY)
    runs = folder / "runs"
    live = tensorboard.Tracker.log

    def log_and_read_back(self, record, values, step):  # what TensorBoard shows while the record still trains
        live(self, record, values, step)
        if record == "lora" and "train/loss" in values:
            events = EventAccumulator(str(runs / "toy" / "tb" / "lora")).Reload()
            SEEN_WHILE_TRAINING.setdefault("lora", []).append(
                (step, [e.step for e in events.Scalars("train/loss")] if "train/loss" in events.Tags()["scalars"]
                 else []))

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        patch.setattr(tensorboard.Tracker, "log", log_and_read_back)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["compare", "--preset", "smoke", "--runs-dir", str(runs), "--name", "toy", "--quiet", "--set",
                     "methods=[lora,prompt-tuning]", "eval.baselines=[lead,zero-shot]",
                     "eval.metrics=[rouge,words_toy]", "track.to=[tensorboard,mlflow]"]) == 0
        yield runs / "toy"


@pytest.mark.e2e
def test_a_metric_of_ones_own_reaches_every_output(toy_run):
    data = json.loads((toy_run / "results.json").read_text())
    described = {"key": "words", "label": "words", "title": "summary length in words", "higher_is_better": True,
                 "digits": 2, "pairwise": True, "about": "how long the summary is", "descriptive": False,
                 "metric": "words_toy"}
    assert {k: data["metrics"]["words"][k] for k in described} == described
    assert "test_loss" not in data["metrics"]  # only what eval.metrics names
    for rec in data["records"]:
        predictions = [json.loads(line) for line in (toy_run / rec["name"] / "predictions.jsonl").read_text()
                       .splitlines()]
        words = {p["id"]: float(len(p["prediction"].split())) for p in predictions}
        assert {row["id"]: row["words"] for row in rec["eval"]["per_article"]} == words
        assert rec["eval"]["scores"]["words"]["mean"] == pytest.approx(np.mean(list(words.values())))
    tests = [t for t in data["comparisons"] if t["metric"] == "words"]
    assert len(tests) == 6  # every pair of the four records
    report = (toy_run / "report.md").read_text()
    table_header = next(line for line in report.splitlines() if line.startswith("| method | status |"))
    assert "| words |" in table_header
    assert " on words " in report and "Other signal, summary length in words" in report
    html = (toy_run / "report.html").read_text()
    assert "summary length in words" in html and "<th>words</th>" in html


@pytest.mark.e2e
def test_the_toy_metric_is_drawn_and_logged(toy_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tunebench.report import plots

    data = json.loads((toy_run / "results.json").read_text())
    drawn = {}
    original = plots._save

    def keep(fig, path):
        drawn["titles"] = [ax.get_title() for ax in fig.axes]
        return original(fig, path)

    plots._save = keep
    try:
        plots.score_bars(data, toy_run / "plots" / "again.png")
    finally:
        plots._save = original
    assert "words (higher is better)" in drawn["titles"] and (toy_run / "plots" / "scores.png").is_file()
    events = EventAccumulator(str(toy_run / "tb" / "lora")).Reload()
    assert "test/words" in events.Tags()["scalars"]
    logged = events.Scalars("test/words")[-1].value
    lora = next(r for r in data["records"] if r["name"] == "lora")
    assert logged == pytest.approx(lora["eval"]["scores"]["words"]["mean"], rel=1e-5)


def test_deciding_on_a_score_where_lower_is_better():
    """decide_on a loss: the method with the lower loss is the one above the baselines."""
    from tunebench.verdict import add_statistics

    described = metrics.catalogue(metrics.chosen(["test_loss"]))
    rng = np.random.default_rng(0)
    base = rng.uniform(2, 4, 60)

    def record(name, losses, kind="method"):
        rec = {"name": name, "kind": kind, "status": "SUCCESS",
               "eval": {"per_article": [{"id": str(i), "test_loss": float(v)} for i, v in enumerate(losses)]},
               "phases": {"train": {"peak_rss_mb": 1.0}, "generation": {"wall_s": 1.0}}}
        if kind == "method":
            rec.update(train={"train_time_s": 1.0, "lr": 1e-3}, params={"trainable": 10})
        return rec

    data = add_statistics({"config": {"eval": {"decide_on": "test_loss"}, "data": {"seed": 0}},
                           "metrics": described,
                           "records": [record("zero-shot", base + 1, "baseline"), record("good", base - 1),
                                       record("bad", base + 2)]})
    assert data["verdict"]["action"] == "pick" and data["verdict"]["pick"] == "good"
    assert data["verdict"]["out"]["bad"].startswith("below")


def test_a_metric_that_is_not_there_is_one_line(tmp_path):
    from tunebench.config import load_config

    with pytest.raises(TunebenchError, match="no metric 'bleurt'"):
        load_config("smoke", overrides=["eval.metrics=[rouge,bleurt]"])
    with pytest.raises(TunebenchError, match="'eval.decide_on' must be one of"):
        load_config("smoke", overrides=["eval.metrics=[test_loss]"])  # decide_on rouge1 is not among its scores
    with pytest.raises(TunebenchError, match="'eval.decide_on' must be one of"):
        load_config("smoke", overrides=["eval.decide_on=novel_bigrams"])  # descriptive: it cannot decide
    cfg = load_config("smoke", overrides=["eval.metrics=[test_loss]", "eval.decide_on=test_loss"])
    assert cfg.eval.metrics == ["test_loss"]


@pytest.mark.e2e
def test_mlflow_holds_one_run_per_record_read_back_with_its_own_client(toy_run):
    from mlflow.tracking import MlflowClient

    data = json.loads((toy_run / "results.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{toy_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tunebench")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(r["name"] for r in data["records"])  # one run per record, nothing else
    for rec in data["records"]:
        run = runs[rec["name"]]
        assert run.info.status == "FINISHED"
        params = run.data.params
        assert params["train.epochs"] == str(data["config"]["train"]["epochs"])  # the run's settings
        assert params["eval.metrics"] == json.dumps(data["config"]["eval"]["metrics"])
        for key, score in rec["eval"]["scores"].items():  # every score, final (after every look)
            assert run.data.metrics[f"test/{key}"] == pytest.approx(score["mean"])
        artefacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
        assert {"report/report.md", "report/report.html", "report/results.json"} <= artefacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "predictions")] == [
            "predictions/first.md", "predictions/predictions.jsonl"]
        if rec["kind"] != "method":
            continue
        assert params["method.r" if rec["name"] == "lora" else "method.num_virtual_tokens"] == str(
            rec["settings"]["r" if rec["name"] == "lora" else "num_virtual_tokens"])
        assert float(params["train.lr_used"]) == rec["train"]["lr"]
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == list(range(1, rec["train"]["steps"] + 1))  # one point per step
        assert [m.value for m in history] == pytest.approx(rec["train"]["train_loss_per_step"])


@pytest.mark.e2e
def test_tensorboard_events_are_on_disk_while_training(toy_run):
    seen = SEEN_WHILE_TRAINING["lora"]
    data = json.loads((toy_run / "results.json").read_text())
    steps = next(r for r in data["records"] if r["name"] == "lora")["train"]["steps"]
    assert [step for step, _ in seen] == list(range(1, steps + 1))
    for step, on_disk in seen:  # every step so far readable before the next one is taken
        assert on_disk == list(range(1, step + 1))


@pytest.mark.e2e
def test_wandb_offline_when_its_package_is_installed(tmp_path):
    """W&B is optional (make setup does not install it): with its package, each record is one offline run that holds
    its curves, final scores, predictions and the report; without it, this is skipped and track.to=[wandb] is a
    one-line refusal (tests/test_bad_input.py)."""
    pytest.importorskip("wandb")
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "w", "--quiet", "--set",
                 "methods=[lora]", "eval.baselines=[lead]", "track.to=[wandb]"]) == 0
    runs = sorted((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # lead-1 and lora
    logs = [next(run.glob("run-*.wandb")).read_bytes() for run in runs]
    trained = [log for log in logs if b"train/loss" in log]
    assert len(trained) == 1 and b"test/rouge1" in trained[0]
    for run in runs:
        assert {"predictions.jsonl", "report.md", "results.json"} <= {p.name for p in (run / "files").iterdir()}
