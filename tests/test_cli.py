"""The command line end to end on the smoke preset (tiny random model, real XSum pairs), and bad input."""

import json
import os
import subprocess
import sys

import pytest

from tunebench.cli import main
from tunebench.config import DataConfig
from tunebench.data import load_examples
from tunebench.errors import TunebenchError
from tunebench.methods import METHODS
from tunebench.report.sections import advice, header, table, table_rows
from tunebench.results import SCHEMA_VERSION

pytestmark = pytest.mark.e2e  # the session smoke run and a `tunebench` process


def test_compare_writes_the_run_folder(smoke_run):
    for rel in ["config.yaml", "results.json", "report.md", "splits.json", "lead-1/predictions.jsonl",
                "zero-shot/predictions.jsonl", "lora/peft_adapter/adapter_config.json",
                "lora/peft_adapter/adapter_model.safetensors"]:
        assert (smoke_run / rel).is_file(), rel
    for method in METHODS:
        assert (smoke_run / method / "weights.safetensors").stat().st_size > 0
        lines = (smoke_run / method / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 4 and set(json.loads(lines[0])) == {"id", "reference", "prediction"}


def test_results_schema_and_identical_test_articles(smoke_run):
    data = json.loads((smoke_run / "results.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 5
    assert [r["name"] for r in data["records"]] == ["lead-1", "zero-shot", *METHODS]
    assert all(r["status"] == "SUCCESS" for r in data["records"])
    test_ids = json.loads((smoke_run / "splits.json").read_text())["test"]
    for rec in data["records"]:
        assert [a["id"] for a in rec["eval"]["per_article"]] == test_ids  # same articles for everyone
    trained = [r for r in data["records"] if r["kind"] == "method"]
    for rec in trained:
        assert rec["train"]["best_epoch"] in (1, 2) and rec["train"]["steps"] == 8
        assert 0 < rec["params"]["trainable"] <= rec["params"]["total"]  # full fine-tuning: all of them
    assert data["environment"]["packages"]["torch"]


def test_report_table_is_drawn_from_results(smoke_run):
    data = json.loads((smoke_run / "results.json").read_text())
    report = (smoke_run / "report.md").read_text()
    assert "| " + " | ".join(table(data).header) + " |" in report  # HEADER without columns no record fills
    for row, shown, rec in zip(table_rows(data), table(data).rows, data["records"], strict=True):
        assert "| " + " | ".join(shown) + " |" in report
        columns = header(data)
        rouge2 = rec["eval"]["scores"]["rouge2"]
        assert row[columns.index("R-2")].startswith(f"{rouge2['mean']:.1f} [")
        if "test_loss" in rec["eval"]["scores"]:
            assert row[columns.index("test loss")].startswith(f"{rec['eval']['scores']['test_loss']['mean']:.3f} [")
        if rec.get("params"):
            assert row[columns.index("trainable params")] == f"{rec['params']['trainable']:,}"
        if rec.get("train"):
            assert row[columns.index("train s")] == f"{rec['train']['train_time_s']:.0f}"
    # every pair of records is compared in words, on the same articles
    names = [r["name"] for r in data["records"]]
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert f"- {first} vs {second}: " in report


@pytest.mark.parametrize("method", list(METHODS))
def test_evaluate_and_summarize_reload_the_trained_method(smoke_run, capsys, tmp_path, method):
    before = json.loads((smoke_run / "results.json").read_text())
    record = next(r for r in before["records"] if r["name"] == method)
    assert main(["evaluate", str(smoke_run / method), "--quiet"]) == 0
    after = json.loads((smoke_run / "results.json").read_text())
    again = next(r for r in after["records"] if r["name"] == method)
    assert again["eval"]["per_article"] == record["eval"]["per_article"]  # reloaded weights, same summaries
    # summarizing a test article from a file gives the prediction the run recorded for it
    first = json.loads((smoke_run / method / "predictions.jsonl").read_text().splitlines()[0])
    examples = {ex.id: ex for ex in load_examples(DataConfig()).splits["all"].examples}
    article = tmp_path / "a.txt"
    article.write_text(examples[first["id"]].article)
    capsys.readouterr()
    assert main(["summarize", "--from", str(smoke_run / method), str(article)]) == 0
    assert capsys.readouterr().out == first["prediction"] + "\n"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tunebench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_the_cli_process_exits_2_with_one_stderr_line_and_no_run_folder(tmp_path):
    """The real `tunebench` process, not main() in-process: exit code 2, exactly one stderr line, no traceback, no
    run folder. (Every other bad input is a row of test_bad_input.py's in-process table, which checks the same.)
    Here a Hub model id with the Hub switched off, a switch read only when a process starts."""
    proc = _cli("compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "hub", "--quiet",
                "--set", "model.name=gpt2", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("tunebench: error: "), proc.stderr
    assert "could not load the model from Hub id 'gpt2'" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "hub").exists()


def test_the_program_takes_its_imports_out_of_the_collectors_scans_and_a_call_with_argv_does_not(tmp_path,
                                                                                                 monkeypatch):
    """`tunebench compare` as a program freezes what its imports made (resources.settle_imports: collections
    between methods and the exit no longer walk torch's and transformers' objects) before any data or model exists;
    main(argv) called in a process of someone else's (a test, a notebook) leaves that process's collector alone."""
    import gc

    import tunebench.compare

    probe = ("import gc, sys\n"
             "import tunebench.compare\n"
             "from tunebench import cli\n"
             "def run(cfg, *args, **kwargs):\n"
             "    print('frozen', gc.get_freeze_count())\n"
             "    raise SystemExit(0)\n"
             "tunebench.compare.run_compare = run\n"
             f"sys.argv = ['tunebench', 'compare', '--preset', 'smoke', '--runs-dir', {str(tmp_path)!r}]\n"
             "sys.exit(cli.main())\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    frozen = int(proc.stdout.split()[1])
    assert frozen > 100_000, proc.stdout  # torch and transformers alone make several hundred thousand objects
    before = gc.get_freeze_count()
    def stop(*args, **kwargs):
        raise TunebenchError("stopped where the run would start")

    monkeypatch.setattr(tunebench.compare, "run_compare", stop)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--quiet"]) == 2
    assert gc.get_freeze_count() <= before  # (a frozen object freed meanwhile lowers it; a freeze adds 100,000s)


def test_console_summary_matches_results(smoke_run):
    from tunebench.report.markdown import console_summary

    data = json.loads((smoke_run / "results.json").read_text())
    text = console_summary(data)
    for rec in data["records"]:
        row = next(line for line in text.splitlines() if line.startswith(rec["name"] + " "))
        assert f"{rec['eval']['scores']['rouge2']['mean']:.1f}" in row.split()
    assert advice(data)[0] in text and advice(data)[0].startswith(("Pick ", "Cannot tell yet"))


def test_run_pick_is_the_verdicts_pick_or_a_one_line_refusal(smoke_run, tmp_path, capsys):
    """`RUN/pick` (summarize, export, evaluate) is the method the verdict picked; none picked: one line, exit 2."""
    import shutil

    from tunebench.trained import split_target

    data = json.loads((smoke_run / "results.json").read_text())
    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    for verdict, expected in (({**data["verdict"], "action": "pick", "pick": "lora"}, "lora"),
                              ({**data["verdict"], "action": "none", "pick": None}, None)):
        (copy / "results.json").write_text(json.dumps({**data, "verdict": verdict}))
        if expected:
            assert split_target(str(copy / "pick")) == (copy, "lora", "lora")
        else:
            article = tmp_path / "article.txt"
            article.write_text("An article about a town. " * 30)
            capsys.readouterr()
            assert main(["summarize", "--from", str(copy / "pick"), str(article)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("tunebench: error: ")
            assert "verdict picks no method (no trained method beats the baselines)" in err
