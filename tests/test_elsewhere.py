"""Using a trained method on other articles: `summarize` of a CSV/JSONL, `evaluate --data` on another source."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from tunebench.cli import main
from tunebench.config import DataConfig
from tunebench.data.sources import load_examples


def _examples():
    return load_examples(DataConfig()).splits["all"].examples


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.e2e
def test_summarize_a_jsonl_of_articles_writes_what_the_run_predicted(smoke_run, tmp_path, capsys):
    predictions = [json.loads(line) for line in (smoke_run / "lora" / "predictions.jsonl").read_text().splitlines()]
    examples = {ex.id: ex for ex in _examples()}
    source = tmp_path / "articles.jsonl"
    source.write_text("".join(json.dumps({"id": p["id"], "article": examples[p["id"]].article}) + "\n"
                              for p in predictions))
    out = tmp_path / "summaries.jsonl"
    assert main(["summarize", "--from", str(smoke_run / "lora"), str(source), "--out", str(out), "--quiet"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == [{"id": p["id"], "summary": p["prediction"]} for p in predictions]
    # the same from a CSV with another column name, to standard output
    table = tmp_path / "articles.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["body"])
        writer.writerows([[examples[p["id"]].article] for p in predictions])
    capsys.readouterr()
    assert main(["summarize", "--from", str(smoke_run / "lora"), str(table), "--column", "body", "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["summary"] for line in lines] == [p["prediction"] for p in predictions]
    assert [line["id"] for line in lines] == [str(i) for i in range(len(predictions))]


@pytest.mark.parametrize("content, name, message", [
    ('{"article": "A long enough article."}\n{"article": "  "}\n', "a.jsonl", "row 2: the article"),
    ('{"body": "text"}\n', "a.jsonl", "has no column of articles (its columns: body)"),
    ("", "a.txt", "is empty"),
])
@pytest.mark.e2e
def test_summarize_refuses_bad_input_before_loading_the_model(smoke_run, tmp_path, capsys, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    assert main(["summarize", "--from", str(smoke_run / "lora"), str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunebench: error: ") and message in err[0]


@pytest.mark.e2e
def test_evaluate_on_other_data_writes_a_new_folder_and_leaves_the_run_alone(smoke_run, tmp_path, capsys):
    before = {p.name: _digest(p) for p in smoke_run.glob("*.json")}
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"document": ex.article, "summary": ex.summary}) + "\n"
                             for ex in _examples()[-12:]))
    out = tmp_path / "scored"
    assert main(["evaluate", str(smoke_run / "lora"), "--data", str(other), "--n", "5", "--out", str(out),
                 "--quiet"]) == 0
    assert {p.name: _digest(p) for p in smoke_run.glob("*.json")} == before
    data = json.loads((out / "results.json").read_text())
    assert data["evaluation"]["scored_on"] == str(other)
    assert data["evaluation"]["trained_on"] == "xsum-sample"
    names = [r["name"] for r in data["records"]]
    assert "lora" in names and "zero-shot" in names and all(r["status"] == "SUCCESS" for r in data["records"])
    lora = next(r for r in data["records"] if r["name"] == "lora")
    assert lora["eval"]["n_articles"] == 5 and "train" not in lora
    assert not (out / "plots" / "loss_curves.png").exists()  # nothing was trained for this folder
    assert (out / "plots" / "scores.png").exists()
    report = (out / "report.md").read_text()
    assert f"trained in `{smoke_run}` on `xsum-sample`" in report and f"scored here on `{other}`" in report
    assert "Scored on other data" in (out / "report.html").read_text()
    # the scores come from the trained weights: summarizing the same articles gives the same predictions
    predictions = [json.loads(line) for line in (out / "lora" / "predictions.jsonl").read_text().splitlines()]
    source = tmp_path / "five.jsonl"
    articles = {str(i): ex.article for i, ex in enumerate(_examples()[-12:])}
    source.write_text("".join(json.dumps({"id": p["id"], "article": articles[p["id"].split("-")[-1]]}) + "\n"
                              for p in predictions))
    capsys.readouterr()
    assert main(["summarize", "--from", str(smoke_run / "lora"), str(source), "--quiet"]) == 0
    assert [json.loads(line)["summary"] for line in capsys.readouterr().out.splitlines()] == \
        [p["prediction"] for p in predictions]
    # a second evaluation into the same folder is refused; --n without --data is refused
    assert main(["evaluate", str(smoke_run / "lora"), "--data", str(other), "--out", str(out), "--quiet"]) == 2
    assert main(["evaluate", str(smoke_run / "lora"), "--n", "3"]) == 2


@pytest.mark.e2e
def test_evaluate_on_the_runs_own_source_leaves_out_what_it_trained_on(smoke_run, tmp_path):
    out = tmp_path / "more"
    assert main(["evaluate", str(smoke_run / "lora"), "--data", "xsum-sample", "--n", "30", "--out", str(out),
                 "--quiet"]) == 0
    used = json.loads((smoke_run / "splits.json").read_text())
    scored = json.loads((out / "splits.json").read_text())["test"]
    assert len(scored) == 30 and not set(scored) & (set(used["train"]) | set(used["val"]))
    assert "leaving out the 20 pairs that run trained or validated on" in (out / "report.md").read_text()


@pytest.mark.e2e
def test_summarize_refuses_settings_other_than_decoding(smoke_run, tmp_path, capsys):
    article = tmp_path / "a.txt"
    article.write_text(_examples()[0].article)
    assert main(["summarize", "--from", str(smoke_run / "lora"), str(article), "--set", "train.lr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decoding settings (eval.*) and train.precision" in err[0]


def test_data_show_has_no_run_folder_options(capsys):
    assert main(["data", "show", "--preset", "smoke", "--name", "x"]) == 2  # misuse: one line, exit code 2
    assert "unrecognized arguments: --name x" in capsys.readouterr().err
