"""Trained methods outside tunebench: PEFT adapters and exported models, loaded by transformers and PEFT alone
(tests/outside.py, in a fresh process), generate exactly the tokens tunebench generates.

Each architecture gets one run of all eight methods on a tiny random model saved as a local model folder (so the
adapters' base_model_name_or_path is a real directory), trained hard enough that every method changes what the
model writes (checked: an adapter that loads as a no-op fails here). One outside process loads every artefact of
both architectures and of the bf16 run (each process start imports torch, transformers and PEFT); the real model's
round trip (slow) has one of its own, on the session's real run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REAL_METHODS, sharpen
from tunebench.cli import main
from tunebench.config import load_config
from tunebench.data.sources import load_examples
from tunebench.methods import METHODS
from tunebench.models import byte_tokenizer, random_model
from tunebench.trained import load_trained, summarize_articles

OUTSIDE = Path(__file__).with_name("outside.py")
PEFT_METHODS = {"lora": "generate", "dora": "generate", "ia3": "generate", "prompt-tuning": "generate_no_cache",
                "prefix-tuning": "greedy_forward"}
"""Every method PEFT can express, and how the outside script decodes with it (see outside.py's docstring)."""
MERGED = ["full", "lora", "dora", "ia3", "bitfit", "last-block"]
"""Methods `tunebench export` writes as a standalone model."""
SOFT = ["prompt-tuning", "prefix-tuning"]

pytestmark = pytest.mark.e2e  # whole runs and an outside process


def job_settings(run: Path, n: int, overrides: list[str] | None = None) -> tuple[list[str], dict]:
    """The last `n` articles of the run's source, and what every outside job needs to prompt and decode like
    the run (articles included)."""
    cfg = load_config(config_file=str(run / "config.yaml"), overrides=overrides or [])
    articles = [ex.article for ex in load_examples(cfg.data).splits["all"].examples[-n:]]
    return articles, {"articles": articles, "separator": cfg.data.separator,
                      "max_article_tokens": cfg.data.max_article_tokens,
                      "generate": {"max_new_tokens": cfg.eval.max_new_tokens, "num_beams": cfg.eval.num_beams}}


def run_outside(jobs: list[dict], folder: Path) -> list[dict]:
    (folder / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([sys.executable, str(OUTSIDE), str(folder / "jobs.json"), str(folder / "out.json")], check=True,
                   capture_output=True)
    return json.loads((folder / "out.json").read_text())


ARCHS = ["llama-tiny", "gpt2-tiny"]


def _tiny_trip(root: Path, arch: str) -> tuple[dict, dict]:
    """A run of every method on a saved tiny `arch` model, its exports and tunebench's own tokens; and the outside
    jobs for its adapters, exports and base model (by job name)."""
    tokenizer = byte_tokenizer()
    base = root / "base"
    sharpen(random_model(arch, len(tokenizer))).save_pretrained(base)
    tokenizer.save_pretrained(base)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(root), "--name", "run", "--quiet", "--set",
                 f"model.name={base}", "eval.baselines=[]", "train.lr=1e-2"]) == 0
    run = root / "run"
    articles, common = job_settings(run, 4)
    ours, jobs, export_codes = {}, {}, {}
    for name in METHODS:
        method_cfg, tuned, tok = load_trained(run, name)
        ours[name] = summarize_articles(method_cfg, tuned, tok, articles).tokens
        adapter = run / name / "peft_adapter"
        if adapter.is_dir():
            jobs[f"{name}/adapter"] = {"kind": "adapter", "path": str(adapter), "decode": PEFT_METHODS.get(name),
                                       **common}
            jobs[f"{name}/adapter-generate"] = {"kind": "adapter", "path": str(adapter), "decode": "generate",
                                                **common}
        export_codes[name] = main(["export", str(run / name), str(root / "export" / name)])
        if export_codes[name] == 0:
            jobs[f"{name}/export"] = {"kind": "model", "path": str(root / "export" / name), **common}
    jobs["base"] = {"kind": "base", "path": str(base), **common}
    return {"run": run, "root": root, "base": base, "ours": ours, "export_codes": export_codes}, jobs


def _bf16_trip(root: Path, base: Path) -> tuple[dict, dict]:
    """Issue 23's bf16 run (LoRA on the saved tiny Llama), its export and tunebench's tokens one article at a time;
    and the outside job that decodes the export as its model card says."""
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(root), "--name", "bf16", "--quiet", "--set",
                 f"model.name={base}", "eval.baselines=[]", "methods=[lora]", "train.precision=bf16",
                 "train.lr=1e-2"]) == 0
    run = root / "bf16"
    assert main(["export", str(run / "lora"), str(root / "bf16-export")]) == 0
    articles, common = job_settings(run, 4)
    cfg, tuned, tok = load_trained(run, "lora", overrides=["eval.batch_size=1"])
    ours = summarize_articles(cfg, tuned, tok, articles).tokens
    job = {"kind": "model", "path": str(root / "bf16-export"), "precision": "bf16", **common}
    return {"export": root / "bf16-export", "ours": ours}, {"bf16/export": job}


@pytest.fixture(scope="module")
def trips(tmp_path_factory):
    """Per architecture: the run of every method, its exports, tunebench's tokens and the outside process's, per
    job name ("outside"); and the bf16 run ("bf16"). One outside process answers every job."""
    trips, jobs = {}, {}
    for arch in ARCHS:
        trips[arch], arch_jobs = _tiny_trip(tmp_path_factory.mktemp(arch), arch)
        jobs.update({f"{arch}:{name}": job for name, job in arch_jobs.items()})
    bf16, bf16_jobs = _bf16_trip(trips["llama-tiny"]["root"], trips["llama-tiny"]["base"])
    jobs.update(bf16_jobs)
    results = run_outside(list(jobs.values()), tmp_path_factory.mktemp("outside"))
    answers, modules = dict(zip(jobs, results[:-1], strict=True)), results[-1]["modules"]
    for arch in ARCHS:
        trips[arch].update(modules=modules, outside={name.split(":", 1)[1]: answer for name, answer in answers.items()
                                                     if name.startswith(f"{arch}:")})
    return {**trips, "bf16": {**bf16, "outside": answers["bf16/export"]}}


@pytest.fixture(params=ARCHS)
def trip(request, trips):
    """The run of every method on a tiny random model of each architecture, and what came of it outside."""
    return trips[request.param]


def check_same_and_not_base(trip: dict, name: str, job: str) -> None:
    outside = trip["outside"][job]
    assert outside["tokens"] == trip["ours"][name], f"{job}: outside tunebench the tokens differ"
    changed = sum(a != b for a, b in zip(outside["tokens"], trip["outside"]["base"]["tokens"], strict=True))
    assert changed >= 1, f"{job} writes what the base model writes: the trained method did not load"
    key_warnings = [w for w in outside["warnings"] if "key" in w.lower() or "missing" in w.lower()]
    assert not key_warnings, f"{job}: {key_warnings}"


def test_every_peft_method_writes_an_adapter(trip):
    written = {name for name in METHODS if (trip["run"] / name / "peft_adapter" / "adapter_config.json").is_file()}
    assert written == set(PEFT_METHODS)


@pytest.mark.parametrize("name", sorted(PEFT_METHODS))
def test_adapter_in_peft_alone_generates_what_tunebench_generates(trip, name):
    check_same_and_not_base(trip, name, f"{name}/adapter")
    config = json.loads((trip["run"] / name / "peft_adapter" / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).is_absolute()
    assert config["task_type"] == "CAUSAL_LM"
    assert trip["outside"][f"{name}/adapter"]["class"] == "PeftModelForCausalLM"


@pytest.mark.parametrize("name", sorted(PEFT_METHODS))
def test_adapter_files_hold_peft_names(trip, name):
    """The tensors are named as PeftModel.save_pretrained names them (what a missing prefix once broke)."""
    keys = load_file(str(trip["run"] / name / "peft_adapter" / "adapter_model.safetensors")).keys()
    assert keys and all(k.startswith("base_model.model.") or k == "prompt_embeddings" for k in keys)


@pytest.mark.parametrize("name", MERGED)
def test_exported_model_generates_what_tunebench_generates(trip, name):
    assert trip["export_codes"][name] == 0
    check_same_and_not_base(trip, name, f"{name}/export")
    assert "Peft" not in trip["outside"][f"{name}/export"]["class"]  # a plain transformers model
    card = (trip["root"] / "export" / name / "README.md").read_text()
    results = json.loads((trip["run"] / "results.json").read_text())
    rouge1 = next(r for r in results["records"] if r["name"] == name)["eval"]["scores"]["rouge1"]
    title = results["metrics"]["rouge1"]["title"]  # the card names a score as the metric registry describes it
    assert f"{title} {rouge1['mean']:.2f} [{rouge1['ci95'][0]:.2f}, {rouge1['ci95'][1]:.2f}]" in card


def test_soft_prompt_methods_are_pointed_to_their_adapter(trip, capsys):
    for name in SOFT:
        assert trip["export_codes"][name] == 2
        out = trip["root"] / "again"
        assert main(["export", str(trip["run"] / name), str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "peft_adapter" in err[0] and "cannot be merged" in err[0]
        assert not out.exists()


def test_last_block_export_keeps_its_untied_head(trip):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(trip["root"] / "export" / "last-block")
    assert not lm.config.tie_word_embeddings
    assert not torch.equal(lm.get_output_embeddings().weight, lm.get_input_embeddings().weight)


def test_the_outside_process_never_imported_tunebench(trip):
    assert trip["modules"] == []


def test_export_refuses_a_folder_that_holds_files(trip, capsys):
    target = trip["root"] / "export" / "lora"
    before = sorted(p.name for p in target.iterdir())
    assert main(["export", str(trip["run"] / "lora"), str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == before


def test_summarize_takes_decoding_settings(trip, tmp_path, capsys):
    """`--set eval.*` changes how this summary is decoded: greedy with 3 new tokens is the start of the 8-token
    summary (the run's setting), as token-level prefixes of the same greedy decoding."""
    article = tmp_path / "a.txt"
    article.write_text(job_settings(trip["run"], 1)[0][0])

    def summarize(*settings: str) -> str:
        capsys.readouterr()
        assert main(["summarize", "--from", str(trip["run"] / "lora"), str(article), "--set", "eval.cut=eos",
                     *settings]) == 0
        return capsys.readouterr().out.rstrip("\n")

    whole, short = summarize(), summarize("eval.max_new_tokens=3")
    assert whole.startswith(short) and len(short) < len(whole)


@pytest.mark.xfail(strict=True, reason="PEFT 0.21.2 + transformers 5.24: PEFT's generate with a cache is wrong for "
                   "prompt learning; when this passes, drop the workarounds in outside.py and the adapters' README")
@pytest.mark.parametrize("name", SOFT)
def test_peft_generate_with_cache_for_prompt_learning(trip, name):
    assert trip["outside"][f"{name}/adapter-generate"]["tokens"] == trip["ours"][name]


@pytest.mark.slow
def test_embedded_model_round_trip(real_run, tmp_path):
    """The real SmolLM2 with its real tokenizer on real XSum articles (the session's real run): every PEFT adapter in
    PEFT alone, and the exported LoRA and last-block models in transformers alone, write the tokens `tunebench
    summarize --set train.precision=fp32 eval.cut=eos` writes (fp32 on both sides; tokens compared up to EOS: the
    demo's first-line cut ends decoding at a line break). The outside process loads the base model once: the first
    adapter through AutoPeftModelForCausalLM (its base_model_name_or_path), the others onto copies of it."""
    assert set(PEFT_METHODS) <= set(REAL_METHODS)
    decoding = ["train.precision=fp32", "eval.cut=eos"]
    articles, common = job_settings(real_run, 2, decoding)
    base = json.loads((real_run / "lora" / "peft_adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    ours, jobs = {}, {"base": {"kind": "base", "path": base, **common}}
    for name in [*PEFT_METHODS, "last-block"]:
        method_cfg, tuned, tok = load_trained(real_run, name, overrides=decoding)
        ours[name] = summarize_articles(method_cfg, tuned, tok, articles).tokens
        if name in PEFT_METHODS:
            jobs[f"{name}/adapter"] = {"kind": "adapter", "path": str(real_run / name / "peft_adapter"),
                                       "decode": PEFT_METHODS[name], "onto_loaded_base": len(jobs) > 1, **common}
        if name in ("lora", "last-block"):
            assert main(["export", str(real_run / name), str(tmp_path / name)]) == 0
            jobs[f"{name}/export"] = {"kind": "model", "path": str(tmp_path / name), **common}
    results = run_outside(list(jobs.values()), tmp_path)
    found = {"ours": ours, "outside": dict(zip(jobs, results[:-1], strict=True)), "modules": results[-1]["modules"]}
    assert [found["outside"][job]["loaded"] for job in jobs if job.endswith("/adapter")] == \
        ["AutoPeftModelForCausalLM"] + ["PeftModel onto a copy of the base"] * (len(PEFT_METHODS) - 1)
    for job in jobs:
        if job != "base":
            check_same_and_not_base(found, job.split("/")[0], job)
        if job.endswith("/adapter"):
            assert found["outside"][job]["class"] == "PeftModelForCausalLM"
    assert found["modules"] == []


def test_a_bf16_run_is_reproduced_by_its_model_card(trips):
    """Issue 23: a run decoded in bf16 (autocast) exports a folder whose model card decodes under bf16 autocast
    too; transformers alone, doing what the card says, writes the tokens `tunebench summarize` writes one article
    at a time. The card says so, and what to do for batch-independent summaries."""
    bf16 = trips["bf16"]
    card = (bf16["export"] / "README.md").read_text()
    assert 'with torch.autocast("cpu", dtype=torch.bfloat16):' in card and "eval.batch_size=1" in card
    assert bf16["outside"]["tokens"] == bf16["ours"]
