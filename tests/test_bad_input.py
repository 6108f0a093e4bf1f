"""Issue 16: bad input never gives a traceback, a silently wrong run, or lost results.

One table of bad inputs (settings, files, damaged run folders, command-line misuse), each run through
`tunebench.cli.main` in-process: exit code 2, exactly one line on stderr starting `tunebench: error:`, no traceback,
and nothing under the workspace (runs dir, inputs, the damaged run folders) created or changed. The damaged run
folders are copies of one small real run made once for this module. Then separate tests for what a table cannot
show: two writers of one run folder, folder names, resume with overrides, NaN weights, file modes, the offline Hub.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from tunebench.cli import main

SMALL = ["methods=[lora,last-block,prompt-tuning]", "eval.baselines=[lead]"]
"""The module's real run: two methods PEFT injects or that train blocks, one that cannot be merged, one baseline."""


@pytest.fixture(scope="module")
def made_run(tmp_path_factory) -> Path:
    """One small real run (smoke preset, tiny random model); cases copy it before damaging it."""
    runs = tmp_path_factory.mktemp("made")
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(runs), "--name", "r", "--quiet", "--set",
                 *SMALL]) == 0
    return runs / "r"


# --- building bad input: each returns nothing, writes into the workspace `w` (w / "runs" is the runs dir) ---

def _copy(w: Path, run: Path) -> Path:
    """A copy of the real run inside the workspace's runs dir, as `runs/copy`."""
    target = w / "runs" / "copy"
    if not target.exists():
        shutil.copytree(run, target)
    return target


def _write(relative: str, content: bytes | str):
    def make(w: Path, run: Path) -> None:
        path = w / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def _fifo(relative: str):
    """A named pipe nobody writes to: opening it for reading would block forever."""
    def make(w: Path, run: Path) -> None:
        path = w / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
    return make


def _folder(relative: str):
    def make(w: Path, run: Path) -> None:
        (w / relative).mkdir(parents=True, exist_ok=True)
    return make


def _damage(relative: str, content: bytes | str | None = None, edit=None):
    """Copy the run, then overwrite one of its files (or edit its text with `edit`)."""
    def make(w: Path, run: Path) -> None:
        path = _copy(w, run) / relative
        if edit is not None:
            path.write_text(edit(path.read_text()))
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def _results_edit(change):
    def edit(text: str) -> str:
        data = json.loads(text)
        change(data)
        return json.dumps(data)
    return edit


def _pickled_model_dir(w: Path, run: Path) -> None:
    folder = w / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def _mkdir(relative: str):
    def make(w: Path, run: Path) -> None:
        (w / relative).mkdir(parents=True)
    return make


def _both(*makers):
    def make(w: Path, run: Path) -> None:
        for maker in makers:
            maker(w, run)
    return make


NOT_UTF8_ROWS = b"article,summary\n" + b"".join(b"\xff\xfe bad bytes %d,\xff summary\n" % i for i in range(40))
LONG = " ".join(["word"] * 30)


FAST = ["methods=[last-block]", "eval.baselines=[lead]", "train.epochs=1"]
"""Before each case's own settings: should a bad value ever be let through again, its run is short."""


def compare(*settings: str) -> list[str]:
    return ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "bad", "--quiet", "--set", *FAST,
            *settings]


def data_source(path: str) -> list[str]:
    return compare(f"data.source={{w}}/{path}")


# (id, argv with {w} workspace / {runs} runs dir / {copy} damaged run copy, how to build the input, message part)
CASES = [
    # settings out of their documented range: refused before any model loads
    ("data.seed<0", compare("data.seed=-1"), None, "'data.seed' must be >= 0"),
    ("train.seed<0", compare("train.seed=-1"), None, "'train.seed' must be >= 0"),
    ("lr nan", compare("train.lr=nan"), None, "'train.lr' must be a finite number > 0, got nan"),
    ("lr 0", compare("train.lr=0"), None, "'train.lr' must be a finite number > 0"),
    ("lr<0", compare("train.lr=-1e-4"), None, "'train.lr' must be a finite number > 0"),
    ("lr text", compare("train.lr=fast"), None, "'train.lr' must be a number"),
    ("method lr nan", compare("method.lora.lr=.nan"), None, "'method.lora.lr' must be a finite number > 0"),
    ("max_grad_norm<0", compare("train.max_grad_norm=-1"), None, "'train.max_grad_norm' must be a finite number > 0"),
    ("max_grad_norm inf", compare("train.max_grad_norm=.inf"), None, "'train.max_grad_norm' must be a finite"),
    ("weight_decay<0", compare("train.weight_decay=-0.1"), None, "'train.weight_decay' must be a finite number >= 0"),
    ("max_steps 0", compare("train.max_steps=0"), None, "'train.max_steps' must be >= 1, got 0"),
    ("epochs 0", compare("train.epochs=0"), None, "'train.epochs' must be >= 1"),
    ("batch 0", compare("train.batch_size=0"), None, "'train.batch_size' must be >= 1"),
    ("grad_accum 0", compare("train.grad_accum_steps=0"), None, "'train.grad_accum_steps' must be >= 1"),
    ("warmup<0", compare("train.warmup_steps=-1"), None, "'train.warmup_steps' must be >= 0"),
    ("max_tokens 0", compare("train.budget=tokens", "train.max_tokens=0"), None, "'train.max_tokens' must be >= 1"),
    ("budget without amount", compare("train.budget=steps"), None, "train.budget=steps needs train.max_steps"),
    ("max_seconds nan", compare("train.budget=seconds", "train.max_seconds=nan"), None,
     "'train.max_seconds' must be a finite number > 0"),
    ("unknown budget", compare("train.budget=minutes"), None, "'train.budget' must be one of epochs"),
    ("threads 0", compare("train.threads=0"), None, "'train.threads' must be >= 1"),
    ("dist timeout 0", compare("train.dist_timeout_s=0"), None, "'train.dist_timeout_s' must be a finite"),
    ("n_test 0", compare("data.n_test=0"), None, "'data.n_test' must be >= 1, got 0"),
    ("n_val<0", compare("data.n_val=-1"), None, "'data.n_val' must be >= 0"),
    ("max_train<0", compare("data.max_train=-1"), None, "'data.max_train' must be >= 1, got -1"),
    ("max_train 0", compare("data.max_train=0"), None, "'data.max_train' must be >= 1, got 0"),
    ("fraction 0", compare("data.fraction=0"), None, "'data.fraction' must be in (0, 1]"),
    ("fraction nan", compare("data.fraction=.nan"), None, "'data.fraction' must be in (0, 1]"),
    ("article tokens 0", compare("data.max_article_tokens=0"), None, "'data.max_article_tokens' must be >= 1"),
    ("max_new_tokens 0", compare("eval.max_new_tokens=0"), None, "'eval.max_new_tokens' must be >= 1"),
    ("eval batch 0", compare("eval.batch_size=0"), None, "'eval.batch_size' must be >= 1"),
    ("beams 0", compare("eval.num_beams=0"), None, "'eval.num_beams' must be >= 1"),
    ("length penalty nan", compare("eval.length_penalty=.nan"), None, "'eval.length_penalty' must be a finite"),
    ("resamples 0", compare("eval.bootstrap_resamples=0"), None, "'eval.bootstrap_resamples' must be >= 1"),
    ("lora r 0", compare("method.lora.r=0"), None, "'method.lora.r' must be >= 1"),
    ("lora alpha nan", compare("method.lora.alpha=.nan"), None, "'method.lora.alpha' must be a finite number > 0"),
    ("lora dropout<0", compare("method.lora.dropout=-0.5"), None, "'method.lora.dropout' must be in [0, 1)"),
    ("virtual tokens 0", compare("method.prompt_tuning.num_virtual_tokens=0"), None,
     "'method.prompt_tuning.num_virtual_tokens' must be >= 1"),
    ("init range<0", compare("method.prompt_tuning.init_range=-1"), None,
     "'method.prompt_tuning.init_range' must be a finite number > 0"),
    ("prefix tokens 0", compare("method.prefix_tuning.num_virtual_tokens=0"), None,
     "'method.prefix_tuning.num_virtual_tokens' must be >= 1"),
    ("nothing to run", compare("methods=[]", "eval.baselines=[]"), None, "leave nothing to run"),
    ("unknown method", compare("methods=[lorra]"), None, "unknown method 'lorra' (did you mean 'lora'?)"),
    ("unknown method in a list", compare("methods=[lora,dorra]"), None,
     "unknown method 'dorra' (did you mean 'dora'?)"),
    ("search trials 0", compare("search.trials=0"), None, "'search.trials' must be >= 1"),
    ("search fraction 0", compare("search.budget_fraction=0"), None, "'search.budget_fraction' must be in (0, 1]"),
    ("unknown key", compare("train.lrr=1"), None, "unknown config key 'train.lrr' (did you mean 'lr'?)"),
    # settings the loaded model cannot take: refused after it loads, before the run folder exists
    ("last-block too deep", compare("methods=[last-block]", "method.last_block.num_blocks=100"), None,
     "num_blocks=100 but the model has 2 blocks"),
    ("lora targets nothing", compare("methods=[lora]", "method.lora.target_modules=[nope]"), None,
     "method.lora.target_modules=['nope'] matches no Linear/Conv1D layer"),
    ("dora targets nothing", compare("methods=[dora]", "method.dora.target_modules=[nope]"), None,
     "method.dora.target_modules=['nope'] matches no"),
    ("ia3 targets nothing", compare("methods=[ia3]", "method.ia3.target_modules=[nope]"), None,
     "method.ia3.target_modules=['nope'] matches no"),
    ("bitfit without biases", compare("methods=[bitfit]", "method.bitfit.norms=never"), None, "has no biases"),
    ("context too long", compare("data.max_article_tokens=600"), None,
     "but random:llama-tiny reads at most 512; lower data.max_article_tokens"),
    # bad files
    ("pickled model", compare("model.name={w}/pickled"), _pickled_model_dir, "only non-safetensors weights"),
    ("missing model dir", compare("model.name=./no/such/model"), None, "model directory './no/such/model' does not"),
    ("all rows not UTF-8", data_source("bad.csv"), _write("bad.csv", NOT_UTF8_ROWS),
     "all 40 rows of data source"),
    ("header-only CSV", data_source("h.csv"), _write("h.csv", "article,summary\n"), "has a header (article, summary) "
     "but no rows"),
    ("empty CSV", data_source("e.csv"), _write("e.csv", ""), "is empty: a CSV of pairs needs a header row"),
    ("unterminated quote", data_source("q.csv"), _write("q.csv", f'article,summary\n"{LONG},s\n'), "cannot parse CSV"),
    ("JSONL not JSON", data_source("b.jsonl"), _write("b.jsonl", '{"article": "a"}\nnot json\n'),
     "b.jsonl:2 is not valid JSON"),
    ("JSON not a list", data_source("b.json"), _write("b.json", '{"x": 1}'), "must hold a list of objects"),
    ("garbage Parquet", data_source("b.parquet"), _write("b.parquet", b"PAR1 garbage"), "cannot be read as Parquet"),
    ("missing data", compare("data.source=nope"), None, "data source 'nope' is neither a file"),
    ("binary config", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}", "--name", "bad"],
     _write("c.yaml", b"\xff\xd8\xff\xe0 binary"), "is not UTF-8 text"),
    ("config a list", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}", "--name", "bad"],
     _write("c.yaml", "- a\n- b\n"), "must hold a mapping of config keys"),
    ("config missing", ["compare", "--config", "{w}/none.yaml", "--runs-dir", "{runs}"], None, "does not exist"),
    ("config bad YAML", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}"], _write("c.yaml", "a: [1,\n"),
     "is not valid YAML"),
    # command-line misuse
    ("no command", [], None, "the following arguments are required: command"),
    ("unknown flag", ["compare", "--bogus"], None, "unrecognized arguments: --bogus"),
    ("unknown preset", ["compare", "--preset", "nope"], None, "invalid choice: 'nope'"),
    ("train without method", ["train", "--preset", "smoke", "--runs-dir", "{runs}"], None, "train needs --method"),
    ("train unknown method", ["train", "--method", "lorra", "--preset", "smoke", "--runs-dir", "{runs}"], None,
     "unknown method 'lorra'"),
    ("seeds not numbers", compare() + ["--seeds", "0,a"], None, "must be whole numbers"),
    ("seeds negative", compare() + ["--seeds", "-1"], None, "must be seeds >= 0"),
    ("seeds empty", compare() + ["--seeds", ""], None, "must list distinct seeds"),
    ("seeds -1,2", compare() + ["--seeds", "-1,2"], None, "argument --seeds: expected one argument (a value that "
                                                          "starts with '-' is read as an option"),
    ("seeds=-1,2", compare() + ["--seeds=-1,2"], None, "must be seeds >= 0"),
    ("seeds only commas", compare() + ["--seeds", ",,"], None, "must list distinct seeds"),
    ("config key twice", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}", "--name", "bad"],
     _write("c.yaml", "train:\n  lr: 1.0e-3\n  lr: 2.0e-3\n"), "key 'lr' is given twice (line 3)"),
    ("config section twice", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}", "--name", "bad"],
     _write("c.yaml", "train:\n  lr: 1.0e-3\neval:\n  batch_size: 2\ntrain:\n  epochs: 2\n"),
     "key 'train' is given twice (line 5)"),
    ("separator no", compare("data.separator=no"), None, "quote the text, e.g. data.separator='no'"),
    ("lead_k words", compare("eval.lead_k=three"), None, "'eval.lead_k' must be a number or auto"),
    ("decide_on unknown", compare("eval.decide_on=bleu"), None, "'eval.decide_on' must be one of"),
    ("decide_on descriptive", compare("eval.decide_on=novel_bigrams"), None, "'eval.decide_on' must be one of"),
    ("metric unknown", compare("eval.metrics=[rouge,bleurt]"), None, "eval.metrics: no metric 'bleurt'"),
    ("metric not a name", compare("eval.metrics=[rouge,'a b']"), None, "eval.metrics: 'a b' is not a metric name"),
    ("eval.test_loss text", compare("eval.test_loss=maybe"), None, "eval.test_loss was replaced by eval.metrics"),
    ("tracker unknown", compare("track.to=[neptune]"), None, "unknown tracker 'neptune' in track.to"),
    ("max_test below n_test", compare("eval.max_test=2"), None, "is below data.n_test"),
    ("decide_seconds 0", compare("eval.decide_seconds=0"), None, "'eval.decide_seconds' must be"),
    ("serving_prompts -1", compare("eval.serving_prompts=-1"), None, "'eval.serving_prompts' must be"),
    ("pick of a run without one", ["summarize", "--from", "{copy}/pick", "{w}/a.txt"], _copy,
     "verdict picks no method"),
    ("name ../x", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "../x"], None,
     "must be one folder name"),
    ("name a/b", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "a/b"], None, "one folder name"),
    ("name absolute", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "{w}/abs"], None,
     "one folder name"),
    ("name empty", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", ""], None, "one folder name"),
    ("name 300 characters", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "n" * 300], None,
     "at most 255 bytes"),
    ("name .", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "."], None, "one folder name"),
    ("name ..", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", ".."], None, "one folder name"),
    ("name of a finished run", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "copy"],
     _copy, "run folder {runs}/copy already exists"),
    ("name of an empty folder", ["compare", "--preset", "smoke", "--runs-dir", "{runs}", "--name", "empty"],
     _mkdir("runs/empty"), "already exists"),
    ("runs dir is a file", ["compare", "--preset", "smoke", "--runs-dir", "{w}/f", "--name", "x"],
     _write("f", "a file"), "is not a folder"),
    ("resume with --set", ["compare", "--resume", "{copy}", "--set", "train.lr=1"], _copy,
     "with the config it was started with, which is fixed: --set cannot change it"),
    ("resume with --preset", ["compare", "--resume", "{copy}", "--preset", "demo"], _copy, "--preset cannot change"),
    ("train resume with --method", ["train", "--resume", "{copy}", "--method", "lora"], _copy, "--method cannot"),
    ("resume not a run", ["compare", "--resume", "{w}"], None, "cannot resume"),
    # damaged run folders
    ("resume results []", ["compare", "--resume", "{copy}"], _damage("results.json", "[]"),
     "holds a JSON list, not the object a results file is"),
    ("resume splits damaged", ["compare", "--resume", "{copy}"], _damage("splits.json", '{"test": 5}'),
     "splits.json: field 'train' must be a list of article ids"),
    ("resume config binary", ["compare", "--resume", "{copy}"], _damage("config.yaml", b"\x00\xff\xfe\x01"),
     "config.yaml' is not UTF-8 text"),
    ("resume config bad value", ["compare", "--resume", "{copy}"],
     _damage("config.yaml", edit=lambda t: t.replace("lr: 0.001", "lr: .nan", 1)), "'train.lr' must be a finite"),
    ("evaluate results not UTF-8", ["evaluate", "{copy}/lora", "--quiet"], _damage("results.json", b"\xff\xfe{}"),
     "results.json is not UTF-8 text"),
    ("evaluate results no records", ["evaluate", "{copy}/lora", "--quiet"],
     _damage("results.json", edit=_results_edit(lambda d: d.pop("records"))), "field 'records' must be a list"),
    ("evaluate record no status", ["evaluate", "{copy}/lora", "--quiet"],
     _damage("results.json", edit=_results_edit(lambda d: d["records"][0].pop("status"))),
     "field 'records[0].status' must be SUCCESS or FAILED or RUNNING"),
    ("evaluate weights no longer fit", ["evaluate", "{copy}/lora", "--quiet"],
     _damage("config.yaml", edit=lambda t: t.replace("r: 4", "r: 8", 1)), "has shape"),
    ("evaluate other method config", ["evaluate", "{copy}/prompt-tuning", "--quiet"],
     _damage("config.yaml", edit=lambda t: t.replace("num_virtual_tokens: 4", "num_virtual_tokens: 5", 1)),
     "cannot be loaded into 'prompt-tuning'"),
    ("evaluate weights garbage", ["evaluate", "{copy}/lora", "--quiet"],
     _damage("lora/weights.safetensors", b"\x00garbage"), "weights.safetensors cannot be loaded into 'lora'"),
    ("evaluate splits a list", ["evaluate", "{copy}/lora", "--quiet"], _damage("splits.json", "[1, 2]"),
     "holds a JSON list, not the object a split file is"),
    ("evaluate not a method", ["evaluate", "{copy}/nope"], _copy, "'nope' is not a method"),
    ("evaluate not a run", ["evaluate", "{w}/lora"], None, "is not RUN/METHOD"),
    ("evaluate --n 0", ["evaluate", "{copy}/lora", "--data", "xsum-sample", "--n", "0"], _copy, "give at least 1"),
    ("evaluate --out alone", ["evaluate", "{copy}/lora", "--out", "{w}/o"], _copy, "go with --data SOURCE"),
    ("summarize not UTF-8", ["summarize", "--from", "{copy}/lora", "{w}/a.txt"], _both(_copy, _write("a.txt",
     b"\xff\xfe\x00\x01")), "is not UTF-8 text"),
    ("summarize NUL bytes", ["summarize", "--from", "{copy}/lora", "{w}/a.txt"], _both(_copy, _write("a.txt",
     b"\x00\x01\x02 text\x00")), "looks binary"),
    ("summarize empty", ["summarize", "--from", "{copy}/lora", "{w}/a.txt"], _both(_copy, _write("a.txt", "  \n")),
     "is empty"),
    ("summarize missing", ["summarize", "--from", "{copy}/lora", "{w}/none.txt"], _copy, "does not exist"),
    ("summarize CSV header only", ["summarize", "--from", "{copy}/lora", "{w}/a.csv"],
     _both(_copy, _write("a.csv", "article\n")), "has a header (article) but no rows"),
    ("summarize train setting", ["summarize", "--from", "{copy}/lora", "{w}/a.txt", "--set", "train.lr=1"],
     _copy, "decoding settings (eval.*) and train.precision"),
    ("summarize bad decoding", ["summarize", "--from", "{copy}/lora", "{w}/a.txt", "--set",
                                "eval.max_new_tokens=0"], _copy, "'eval.max_new_tokens' must be >= 1"),
    ("summarize no --from", ["summarize", "{w}/a.txt"], None, "the following arguments are required: --from"),
    ("export into a full folder", ["export", "{copy}/lora", "{w}/full"], _both(_copy, _write("full/x", "x")),
     "is not an empty folder"),
    ("export prompt tuning", ["export", "{copy}/prompt-tuning", "{w}/out"], _copy, "cannot be merged"),
    ("export a baseline", ["export", "{copy}/zero-shot", "{w}/out"], _copy, "is a baseline"),
    ("export missing record", ["export", "{copy}/dora", "{w}/out"], _copy, "has no finished 'dora'"),
    ("export a FAILED record", ["export", "{copy}/lora", "{w}/out"],
     _damage("results.json", edit=_results_edit(lambda d: next(r for r in d["records"] if r["name"] == "lora")
                                                .update(status="FAILED", error="FloatingPointError: loss nan"))),
     "'lora' FAILED in {copy} (FloatingPointError: loss nan), so it has no trained weights to export"),
    ("report results []", ["report", "{copy}"], _damage("results.json", "[]"), "holds a JSON list"),
    ("report results not UTF-8", ["report", "{copy}"], _damage("results.json", b"\xff\xfe\xfd"), "is not UTF-8"),
    ("report record without name", ["report", "{copy}"],
     _damage("results.json", edit=_results_edit(lambda d: d["records"][1].pop("name"))),
     "field 'records[1].name' must be a name"),
    ("report NaN ROUGE", ["report", "{copy}"],
     _damage("results.json", edit=lambda t: t.replace('"mean": ', '"mean": NaN, "was": ', 1)),
     ".mean' must be a finite number"),
    ("report no results", ["report", "{w}"], None, "has no results.json"),
    # not everything at a path is a regular file (issue 24): refused before opening, saying what it is
    ("data source a FIFO", compare("data.source={w}/pipe.csv"), _fifo("pipe.csv"),
     "data source '{w}/pipe.csv' is a named pipe (FIFO)"),
    ("data source a device", compare("data.source=/dev/zero"), None, "data source '/dev/zero' is a character device"),
    ("data folder entry a FIFO", compare("data.source={w}/d"), _both(_write("d/train.csv", "id,article,summary\n"),
                                                                      _fifo("d/test.csv")),
     "an entry of data folder '{w}/d', '{w}/d/test.csv' is a named pipe (FIFO)"),
    ("config a FIFO", ["compare", "--config", "{w}/c.yaml", "--runs-dir", "{runs}", "--name", "bad"],
     _fifo("c.yaml"), "config file '{w}/c.yaml' is a named pipe (FIFO)"),
    ("config a directory", ["compare", "--config", "{w}/cdir", "--runs-dir", "{runs}", "--name", "bad"],
     _folder("cdir"), "config file '{w}/cdir' is a directory"),
    ("summarize input a FIFO", ["summarize", "--from", "{copy}/lora", "{w}/in.txt"], _both(_copy, _fifo("in.txt")),
     "input file '{w}/in.txt' is a named pipe (FIFO)"),
    ("summarize input a directory", ["summarize", "--from", "{copy}/lora", "{w}/indir"],
     _both(_copy, _folder("indir")), "input file '{w}/indir' is a directory"),
    ("data source empty", compare("data.source="), None, "data.source is empty"),
    ("CSV in UTF-16", compare("data.source={w}/u16.csv"),
     _write("u16.csv", ("article,summary\n" + "".join(f"{LONG} {i},s {i}\n" for i in range(12))).encode("utf-16")),
     "u16.csv is UTF-16 text: save it as UTF-8"),
    ("JSONL gzipped", compare("data.source={w}/gz.jsonl"), _write("gz.jsonl", __import__("gzip").compress(
        b'{"article": "a", "summary": "b"}\n')), "gz.jsonl is gzip-compressed: decompress it first"),
    ("CSV zipped", compare("data.source={w}/z.csv"), _write("z.csv", b"PK\x03\x04rest of a zip"),
     "z.csv is a zip archive"),
    ("article a JSON object", compare("data.source={w}/obj.jsonl"),
     _write("obj.jsonl", "".join(json.dumps({"id": i, "article": {"text": LONG} if i == 5 else f"{LONG} {i}",
                                             "summary": f"s {i}"}) + "\n" for i in range(12))),
     "row 6: column 'article' holds a dict ({'text': 'word word"),
    ("summary a list", compare("data.source={w}/list.jsonl"),
     _write("list.jsonl", "".join(json.dumps({"id": i, "article": f"{LONG} {i}",
                                              "summary": ["a", "b"] if i == 2 else f"s {i}"}) + "\n"
                                  for i in range(12))),
     "row 3: column 'summary' holds a list (['a', 'b']), not text"),
    ("data folder without train", compare("data.source={w}/only"),
     _write("only/test.csv", "id,article,summary\n" + "".join(f"{i},{LONG} {i},summary {i}\n" for i in range(12))),
     "has split files (test) but no train split"),
    *[(f"report record named {name}", ["report", "{copy}"],
       _damage("results.json", edit=_results_edit(lambda d, i=index, n=name: d["records"][i].update(name=n))),
       f"field 'records[{index}].name' must be one folder name")
      for index, name in ((1, "../../x"), (2, "/tmp/tb-escape"), (0, "a/b/c"), (3, ".."))],
    ("data show bad source", ["data", "show", "--preset", "smoke", "--set", "data.source=nope"], None, "neither a"),
    ("data show n_test 0", ["data", "show", "--preset", "smoke", "--set", "data.n_test=0"], None, "'data.n_test'"),
    ("data show run option", ["data", "show", "--preset", "smoke", "--name", "x"], None, "unrecognized arguments"),
    ("config show nan", ["config", "show", "--preset", "smoke", "--set", "train.lr=nan"], None, "'train.lr' must be"),
    ("config show bad override", ["config", "show", "--set", "train.lr"], None, "must look like key=value"),
    ("config show no subcommand", ["config"], None, "required: config_command"),
]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`: (kind, size, mtime) by relative path."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            out[str(path.relative_to(root))] = (path.is_dir(), info.st_size if not path.is_dir() else 0,
                                                info.st_mtime_ns)
    return out


def test_the_table_is_large_and_every_case_names_its_message():
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)
    assert all(case[3] for case in CASES)


@pytest.mark.parametrize("argv, make, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(made_run, tmp_path, capsys, argv, make, message):
    workspace = tmp_path / "w"
    (workspace / "runs").mkdir(parents=True)
    if make is not None:
        make(workspace, made_run)
    places = {"{w}": str(workspace), "{runs}": str(workspace / "runs"), "{copy}": str(workspace / "runs" / "copy")}

    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    before = snapshot(workspace)
    capsys.readouterr()
    code = main([fill(arg) for arg in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("tunebench: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert fill(message) in lines[0]
    assert snapshot(workspace) == before  # no run folder created, nothing changed


# --- item 4: concurrent writers, folder names ---

def test_a_run_folder_is_locked_while_written(made_run, tmp_path, capsys):
    from tunebench.errors import TunebenchError
    from tunebench.files import claim_run_dir

    run = tmp_path / "copy"
    shutil.copytree(made_run, run)
    with claim_run_dir(run, create=False):
        with pytest.raises(TunebenchError, match="in use by another tunebench process"):
            claim_run_dir(run, create=False)  # a second open file: flock refuses it as another process
        before = snapshot(run)
        assert main(["compare", "--resume", str(run), "--quiet"]) == 2
        assert main(["evaluate", str(run / "lora"), "--quiet"]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 2 and all("is in use by another tunebench process" in e for e in errors)
        assert snapshot(run) == before
    claim_run_dir(run, create=False).close()  # released with the file
    with pytest.raises(TunebenchError, match="already exists"):
        claim_run_dir(run, create=True)


@pytest.mark.e2e
def test_two_compares_started_at_once_never_share_a_folder(tmp_path):
    cmd = [sys.executable, "-m", "tunebench", "compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name",
           "same", "--quiet", "--set", "methods=[last-block]", "eval.baselines=[lead]"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "tunebench: error: run folder" in refused and "already exists" in refused and "Traceback" not in refused
    data = json.loads((tmp_path / "same" / "results.json").read_text())
    assert [r["status"] for r in data["records"]] == ["SUCCESS", "SUCCESS"]


@pytest.mark.parametrize("name", ["../escape", "a/b", "/tmp/abs", "", ".", ".."])
def test_name_is_one_folder_name(tmp_path, capsys, name):
    runs = tmp_path / "runs"
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(runs), "--name", name, "--quiet"]) == 2
    assert "must be one folder name" in capsys.readouterr().err
    assert not runs.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_runs_dir_that_cannot_be_written_says_so(tmp_path, capsys, monkeypatch):
    # the tests may run as root, whom permissions do not stop: the check asks os.access, so ask it to say no
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "x", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--runs-dir {tmp_path} is not writable" in err and "GiB" not in err


# --- item 3: resume with overrides ---

def test_resume_with_overrides_is_refused_and_the_run_untouched(made_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(made_run, run)
    before = snapshot(run)
    assert main(["compare", "--resume", str(run), "--quiet", "--set", "train.lr=1", "methods=[full]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "which is fixed" in err[0] and "start a new run instead" in err[0]
    assert snapshot(run) == before


# --- item 2: non-finite trained weights ---

@pytest.mark.e2e
def test_nan_weights_after_training_make_the_method_failed(tmp_path, monkeypatch):
    import torch

    from tunebench import compare

    real = compare.train

    def poisoned(tuned, *args, **kwargs):  # training "succeeds" but leaves a NaN in a trained tensor
        result = real(tuned, *args, **kwargs)
        with torch.no_grad():
            next(p for p in tuned.parameters() if p.requires_grad).view(-1)[0] = float("nan")
        return result

    monkeypatch.setattr(compare, "train", poisoned)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "nan", "--quiet", "--set",
                 "methods=[lora]", "eval.baselines=[lead]"]) == 0
    data = json.loads((tmp_path / "nan" / "results.json").read_text())
    status = {r["name"]: r["status"] for r in data["records"]}
    assert status == {"lead-1": "SUCCESS", "lora": "FAILED"}
    failed = data["records"][1]
    assert "NaN or infinite values after training" in failed["error"] and "eval" not in failed
    assert not (tmp_path / "nan" / "lora" / "predictions.jsonl").exists()  # never evaluated


# --- item 5: file modes ---

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_users_umask(tmp_path, mask, mode):
    from tunebench.files import atomic_write_json, atomic_write_text

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "text")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.json").read_text() == '{\n  "a": 1\n}\n'


# --- item 1: every numeric setting has a documented range that validate checks ---

def test_every_numeric_setting_documents_its_range_and_is_checked():
    from tunebench import config
    from tunebench.settings_doc import field_docs

    checked = set(config.COUNTS) | set(config.NON_NEGATIVE) | set(config.POSITIVE) | set(config.FRACTIONS) | \
        {"train.weight_decay", "eval.length_penalty"}
    numeric = set()
    for section in ("data", "train", "eval", "search"):
        cls = type(getattr(config.Config(), section))
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if hint in (int, float) or hint in (int | None, float | None, int | str):  # int | str: a number or auto
                numeric.add(f"{section}.{f.name}")
                assert "Range:" in docs[f.name], f"{section}.{f.name}"
    assert numeric == checked


# --- item 7: messages ---

def test_a_semicolon_csv_is_read_with_its_delimiter(tmp_path):
    from tunebench.config import DataConfig
    from tunebench.data import load_examples

    path = tmp_path / "s.csv"
    path.write_text("id;article;summary\n" + "".join(f"{i};{LONG} {i};summary {i}\n" for i in range(12)))
    loaded = load_examples(DataConfig(source=str(path)))
    assert len(loaded.splits["all"].examples) == 12
    assert loaded.splits["all"].examples[3].summary == "summary 3"


def test_hub_id_without_network_fails_within_seconds(tmp_path, monkeypatch):
    from tunebench import models
    from tunebench.errors import TunebenchError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    models.hub_unreachable.cache_clear()
    try:
        if models.hub_unreachable() is None:
            pytest.skip("the Hub can be reached from here; this test needs the network to be unavailable")
        models.hub_unreachable.cache_clear()
        tick = time.perf_counter()
        with pytest.raises(TunebenchError, match="could not load the model from Hub id 'gpt2': no network"):
            models.load_model("gpt2")
        assert time.perf_counter() - tick < 10
    finally:
        models.hub_unreachable.cache_clear()


@pytest.mark.e2e
def test_hub_dataset_without_network_fails_within_seconds_in_one_line(tmp_path):
    from tunebench import models

    models.hub_unreachable.cache_clear()
    try:
        reachable = models.hub_unreachable() is None
    finally:
        models.hub_unreachable.cache_clear()
    if reachable:
        pytest.skip("the Hub can be reached from here; this test needs the network to be unavailable")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing to fall back on

    def data_show(source: str) -> tuple[subprocess.CompletedProcess, float]:
        # a subprocess: the libraries' retry messages go to the stderr their loggers were set up with
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tunebench", "data", "show", "--set", f"data.source={source}"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        return done, time.perf_counter() - tick

    words = "a thing and then another thing " * 8
    rows = "\n".join(f'"Article {i} says {words}.","Summary {i}."' for i in range(80))
    (tmp_path / "local.csv").write_text("article,summary\n" + rows + "\n")
    peer, local_s = data_show("local.csv")  # the same command on a local file: what this machine takes anyway
    assert peer.returncode == 0, peer.stderr
    done, seconds = data_show("hf:abisee/cnn_dailymail:3.0.0")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunebench: error: could not load Hub dataset 'abisee/"
                                                   "cnn_dailymail' (3.0.0): no network"), done.stderr
    # retrying with back-off would add tens of seconds; a loaded machine slows both commands alike
    assert seconds < local_s + 10, f"{seconds:.0f} s against {local_s:.0f} s for a local file: the libraries " \
        "retried instead of reading only their cache"


def test_a_full_disk_while_writing_the_report_is_one_line(made_run, tmp_path, monkeypatch, capsys):
    """Issue 24: ENOSPC (and the machine's other limits) are one line and exit 2, not a traceback."""
    import errno

    from tunebench import files

    copy = tmp_path / "copy"
    shutil.copytree(made_run, copy)

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(files, "atomic_write_text", full)
    monkeypatch.setattr("tunebench.report.markdown.atomic_write_text", full)
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device writing" in err[0] and "free some space" in err[0]


@pytest.mark.e2e
@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_file_of_a_run_follows_the_umask(tmp_path, mask, file_mode, dir_mode):
    """Issue 24: weights, checkpoints' survivors, reports, plots, TensorBoard logs and adapters all get the mode any
    new file of the user gets."""
    old = os.umask(mask)
    try:
        assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet", "--set",
                     "methods=[lora]", "eval.baselines=[lead]", "train.epochs=1"]) == 0
    finally:
        os.umask(old)
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in (tmp_path / "r").rglob("*")
             if p.name != ".tunebench.lock" and p.stat().st_mode & 0o777 != (dir_mode if p.is_dir() else file_mode)}
    assert not wrong
