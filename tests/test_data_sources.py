"""Issue 3: every common form of a summarization corpus read correctly; bad rows skipped and counted."""

import json
import os
import subprocess
import sys

import pytest

from tunebench.config import DataConfig, load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.clean import strip_byline
from tunebench.errors import TunebenchError

ARTICLE = "Word " * 30
MULTILINE_HIGHLIGHTS = 'He said "yes, finally", to the plan.\nPrices, fees and "extras" rise.\nNew line three.'


def write_kaggle_csv(path, rows, newline="\n", bom=False):
    """A CSV in the Kaggle CNN/DailyMail layout (id, article, highlights), quoted like pandas writes it."""
    def quote(value):
        return '"' + value.replace('"', '""') + '"'
    lines = ["id,article,highlights"] + [",".join(quote(v) for v in row) for row in rows]
    text = ("\ufeff" if bom else "") + newline.join(lines) + newline
    path.write_bytes(text.encode("utf-8"))


def cfg_for(source, **overrides):
    return DataConfig(source=str(source), **overrides)


@pytest.mark.parametrize("newline, bom", [("\n", False), ("\r\n", True)])
def test_csv_multiline_quotes_commas_non_ascii(tmp_path, newline, bom):
    article = "Zürich, Switzerland -- A café said \"non\", then\nthe mayor spoke. " + ARTICLE
    write_kaggle_csv(tmp_path / "p.csv", [("a1", article, MULTILINE_HIGHLIGHTS), ("a2", ARTICLE + "two", "Short.")],
                     newline=newline, bom=bom)
    loaded = load_examples(cfg_for(tmp_path / "p.csv"))
    examples = loaded.splits["all"].examples
    assert [ex.id for ex in examples] == ["a1", "a2"]  # two articles, not one per line
    assert examples[0].summary == MULTILINE_HIGHLIGHTS  # every highlight, one per line, quotes and commas intact
    assert examples[0].article == article.replace("\r\n", "\n").strip()
    assert loaded.columns == {"text": "article", "summary": "highlights", "id": "id"}


def test_kaggle_directory_keeps_its_splits_and_fraction_counts_articles(tmp_path):
    for split, n in (("train", 40), ("validation", 10), ("test", 10)):
        write_kaggle_csv(tmp_path / f"{split}.csv", [(f"{split}{i}", f"{ARTICLE} {split} {i}", f"Sum {i}.\nTwo.")
                                                     for i in range(n)])
    cfg = cfg_for(tmp_path, fraction=0.5, n_val=3, n_test=4)
    loaded = load_examples(cfg)
    assert {k: v.rows_read for k, v in loaded.splits.items()} == {"train": 20, "val": 5, "test": 5}
    assert {k: v.rows_in_source for k, v in loaded.splits.items()} == {"train": 40, "val": 10, "test": 10}
    splits = select_splits(loaded, cfg)
    assert splits.sizes() == {"train": 20, "val": 3, "test": 4}
    assert all(i.startswith("test") for i in splits.ids()["test"])
    assert all(i.startswith("validation") for i in splits.ids()["val"])
    assert splits.ids() == select_splits(load_examples(cfg), cfg).ids()  # seeded


def test_bad_rows_are_skipped_and_counted_by_reason(tmp_path):
    rows = [("1", ARTICLE, "Fine."), ("2", "", "No article."), ("3", ARTICLE + "x", ""), ("4", "Too short.", "S."),
            ("1", ARTICLE + "dup id", "Dup."), ("5", ARTICLE, "Same article.")]
    write_kaggle_csv(tmp_path / "bad.csv", rows)
    with (tmp_path / "bad.csv").open("ab") as handle:
        handle.write(b'"6","' + ARTICLE.encode() + b'\xff\xfe","Bad bytes."\n')
    loaded = load_examples(cfg_for(tmp_path / "bad.csv", strip_bylines=False))
    split = loaded.splits["all"]
    assert [ex.id for ex in split.examples] == ["1"]
    assert split.rows_read == 7
    assert split.skipped == {"empty article": 1, "empty summary": 1, "article too short": 1, "duplicate": 1,
                             "duplicate id (column 'id')": 1, "undecodable bytes": 1}


def test_jsonl_json_parquet_with_column_mapping(tmp_path):
    rows = [{"uid": str(i), "body": f"{ARTICLE} {i}", "tldr": f"Summary {i}."} for i in range(6)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.json", "d.parquet"):
        cfg = cfg_for(tmp_path / name, text_column="body", summary_column="tldr", id_column="uid")
        examples = load_examples(cfg).splits["all"].examples
        assert [(ex.id, ex.summary) for ex in examples] == [(str(i), f"Summary {i}.") for i in range(6)], name


@pytest.mark.parametrize("content, settings, message", [
    ('id,article,highlights\n"1","unterminated', {}, "cannot parse CSV"),
    ("id,article,highlights\n1,a,b,c\n", {}, "more fields than the header"),
    ("id,body,tldr\n1,a,b\n", {"text_column": "article"}, "column 'article' (data.text_column) is not in"),
    ("id,body,tldr\n1,a,b\n", {}, "cannot tell which column"),
    ("", {}, "is empty"),
])
def test_unparseable_files_and_missing_columns_are_one_line_errors(tmp_path, content, settings, message):
    (tmp_path / "x.csv").write_text(content)
    with pytest.raises(TunebenchError) as info:
        load_examples(cfg_for(tmp_path / "x.csv", **settings))
    assert message in str(info.value) and "\n" not in str(info.value)
    if "column" in message:
        assert "id, body, tldr" in str(info.value)  # names the columns that exist


def test_missing_path_bad_jsonl_and_fraction(tmp_path):
    with pytest.raises(TunebenchError, match="neither a file"):
        load_examples(cfg_for(tmp_path / "nope.csv"))
    (tmp_path / "b.jsonl").write_text('{"article": "a"}\n{not json\n')
    with pytest.raises(TunebenchError, match=r"b.jsonl:2 is not valid JSON"):
        load_examples(cfg_for(tmp_path / "b.jsonl"))
    with pytest.raises(TunebenchError, match="must be in"):
        load_config("smoke", overrides=["data.fraction=0"])


def test_cnn_bylines_are_stripped_by_default_for_cnn_layout(tmp_path):
    article = "LONDON, England (CNN) -- " + ARTICLE
    mail = "By . Daily Mail Reporter . PUBLISHED: . 12:01 EST, 1 May 2013 . | . UPDATED: . 12:30 EST, 1 May 2013 . " \
           + ARTICLE + "mail"
    write_kaggle_csv(tmp_path / "c.csv", [("1", article, "S."), ("2", mail, "T.")])
    examples = load_examples(cfg_for(tmp_path / "c.csv")).splits["all"].examples
    assert [ex.article for ex in examples] == [ARTICLE.strip(), (ARTICLE + "mail").strip()]
    kept = load_examples(cfg_for(tmp_path / "c.csv", strip_bylines=False)).splits["all"].examples
    assert kept[0].article.startswith("LONDON, England (CNN) --")
    assert strip_byline("No (byline) here.") == "No (byline) here."


def test_hub_layout_from_a_local_directory(tmp_path):
    """CNN/DailyMail's Hub layout (<config>/<split>-*.parquet) read with `datasets`, no network needed."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = tmp_path / "cnn_dailymail" / "3.0.0"
    root.mkdir(parents=True)
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        rows = [{"article": f"(CNN) -- {ARTICLE}{split} {i}", "highlights": f"H {i}.\nMore.", "id": f"{split}{i}"}
                for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), root / f"{split}-00000-of-00001.parquet")
    cfg = cfg_for(f"hf:{tmp_path / 'cnn_dailymail'}:3.0.0", n_val=2, n_test=3)
    loaded = load_examples(cfg)
    assert {k: len(v.examples) for k, v in loaded.splits.items()} == {"train": 12, "val": 4, "test": 4}
    assert loaded.strip_bylines
    splits = select_splits(loaded, cfg)
    assert splits.sizes() == {"train": 12, "val": 2, "test": 3}
    assert splits.test[0].summary.endswith("\nMore.") and not splits.test[0].article.startswith("(CNN)")


@pytest.mark.e2e
def test_hub_without_network_names_the_alternatives(tmp_path):
    # a fresh interpreter, so the offline switches are read at import time
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "tunebench", "compare", "--preset", "smoke", "--runs-dir",
                           str(tmp_path), "--name", "hub", "--set", "data.source=hf:cnn_dailymail:3.0.0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("tunebench: error: could not load Hub dataset 'cnn_dailymail' (3.0.0)")
    assert "xsum-sample" in message and "not in the local Hugging Face cache" in message
    assert not (tmp_path / "hub").exists()


def test_data_show_reports_every_split_before_training(capsys):
    from tunebench.cli import main

    assert main(["data", "show", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "all: 1000 rows in source, 1000 read, 999 kept; skipped: 1 empty article" in out
    for line in ("train: 16 pairs", "val: 4 pairs", "test: 4 pairs", "% cut at 96", "optimizer steps per method"):
        assert line in out
    assert out.count("example ") == 2


def test_an_id_that_repeats_with_another_article_is_skipped_naming_the_id_column(tmp_path):
    """Issue 24: distinct articles under one id are not "duplicates" of each other: the reason names the column."""
    from tunebench.config import DataConfig
    from tunebench.data import load_examples

    path = tmp_path / "ids.csv"
    body = " ".join(["word"] * 30)
    path.write_text("ref,article,summary\n" + "".join(f"{i % 5},{body} {i},summary {i}\n" for i in range(10)))
    loaded = load_examples(DataConfig(source=str(path), id_column="ref"))
    assert len(loaded.splits["all"].examples) == 5
    assert loaded.splits["all"].skipped == {"duplicate id (column 'ref')": 5}
