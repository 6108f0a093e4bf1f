"""Issue 23: task settings left at `auto` follow the user's data (summary length, cut, Lead-k, chat instruction),
are shown by `data show`, recorded in results.json and the report; settings that are pinned stay as set."""

import csv
import json

import pytest

from tunebench.cli import main
from tunebench.config import load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.task import is_auto, resolve_task
from tunebench.models import byte_tokenizer

AUTO = ["eval.cut=auto", "eval.lead_k=auto", "eval.chat_instruction=auto", "data.max_summary_tokens=auto",
        "eval.max_new_tokens=auto"]


def _cnn_style(path, rows=60):
    """CNN/DailyMail-shaped pairs: columns `story` and `abstract`; each abstract is 3 highlights on 3 lines."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["story", "abstract"])
        for i in range(rows):
            sentences = [f"Officials in town {i} said on Monday that the plan number {j} would go ahead after a "
                         f"long debate among residents." for j in range(12)]
            story = "(CNN) -- " + " ".join(sentences)
            abstract = "\n".join(f"Plan {j} in town {i} goes ahead after a long debate among residents ."
                                 for j in range(3))
            out.writerow([story, abstract])
    return path


def _resolved(cfg):
    loaded = load_examples(cfg.data)
    return resolve_task(cfg, select_splits(loaded, cfg.data), byte_tokenizer())


def test_xsum_summaries_give_one_line_one_sentence_lead_1():
    cfg = load_config("smoke", overrides=AUTO)
    resolved, derived = _resolved(cfg)
    assert set(derived) == {k.split("=")[0] for k in AUTO} | {"method.prompt_tuning.init_text",
                                                               "method.prefix_tuning.init_text"}
    assert resolved.eval.cut == "first_line" and resolved.eval.lead_k == 1
    assert resolved.eval.chat_instruction.startswith("Summarize the following article in one sentence")
    assert "BBC" not in resolved.eval.chat_instruction
    assert resolved.method.prompt_tuning.init_text == resolved.eval.chat_instruction
    assert resolved.eval.max_new_tokens >= resolved.data.max_summary_tokens >= 16
    assert not is_auto(resolved)


def test_cnn_style_summaries_give_several_lines_and_lead_3(tmp_path):
    source = _cnn_style(tmp_path / "pairs.csv")
    cfg = load_config("smoke", overrides=[*AUTO, f"data.source={source}", "data.max_train=40"])
    resolved, derived = _resolved(cfg)
    assert resolved.eval.cut == "blank_line" and resolved.eval.lead_k == 3
    assert "3 sentences" in resolved.eval.chat_instruction
    lengths = [len(byte_tokenizer()(s.replace("\r", ""))["input_ids"]) for s in
               [row["abstract"] for row in csv.DictReader(source.open())]]
    assert resolved.data.max_summary_tokens >= max(lengths) - 8  # the 95th percentile, rounded up
    assert "3 sentence" in derived["eval.lead_k"]["why"]


def test_pinned_settings_are_kept():
    cfg = load_config("smoke")  # smoke pins cut, lead_k, chat instruction and both token limits
    resolved, derived = _resolved(cfg)
    assert (resolved.eval.cut, resolved.eval.lead_k, resolved.data.max_summary_tokens) == ("eos", 1, 32)
    assert set(derived) == {"method.prompt_tuning.init_text", "method.prefix_tuning.init_text"}


def test_data_show_prints_what_it_derived_and_warns_with_the_fix(tmp_path, capsys):
    source = _cnn_style(tmp_path / "pairs.csv")
    assert main(["data", "show", "--preset", "smoke", "--set", f"data.source={source}", "eval.cut=first_line",
                 "data.max_summary_tokens=16", "eval.lead_k=auto"]) == 0
    out = capsys.readouterr().out
    assert "eval.lead_k=3: the median summary has 3 sentence(s)" in out
    assert "warning: data.max_summary_tokens=16 cuts 100% of the training summaries" in out
    assert "--set data.max_summary_tokens=" in out
    assert "warning: eval.cut=first_line keeps one line of each summary" in out and "eval.cut=blank_line" in out
    assert "data.strip_bylines=auto strips them only for a CNN/DailyMail source" in out



@pytest.mark.parametrize("settings, shown", [
    ([], "the budget (epochs) gives 8 optimizer steps per method over 2 epoch(s)"),  # 16 pairs, batch 4, 2 epochs
    (["train.budget=steps", "train.max_steps=3"], "the budget (steps) gives 3 optimizer steps per method over 1 "),
    (["train.max_steps=5"], "the budget (epochs) gives 5 optimizer steps per method over 2 epoch(s)"),
])
def test_data_show_counts_the_steps_training_will_take(capsys, settings, shown):
    """`data show` gives the optimizer steps of train.plan, the plan training follows, whatever train.budget is."""
    assert main(["data", "show", "--preset", "smoke", *(["--set", *settings] if settings else [])]) == 0
    assert shown in capsys.readouterr().out

@pytest.mark.e2e
def test_a_run_records_the_derived_settings(tmp_path):
    source = _cnn_style(tmp_path / "pairs.csv", rows=40)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet", "--set",
                 f"data.source={source}", "methods=[lora]", "eval.baselines=[lead]", "train.epochs=1",
                 "eval.cut=auto", "eval.lead_k=auto"]) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["config"]["eval"]["cut"] == "blank_line" and data["config"]["eval"]["lead_k"] == 3
    assert data["data"]["derived"]["eval.lead_k"]["value"] == 3
    assert [r["name"] for r in data["records"]][0] == "lead-3"
    assert "Derived from the training summaries" in (tmp_path / "r" / "report.md").read_text()
    assert "cut: blank_line" in (tmp_path / "r" / "config.yaml").read_text()  # resolved: resume and evaluate agree


@pytest.mark.parametrize("value", ["often", "-3"])
def test_auto_or_a_number(value):
    from tunebench.errors import TunebenchError

    with pytest.raises(TunebenchError, match="eval.lead_k"):
        load_config("smoke", overrides=[f"eval.lead_k={value}"])
