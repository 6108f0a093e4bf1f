"""`tunebench export RUN/METHOD OUT`: a trained method as a standalone Hugging Face model folder.

The folder holds what `AutoModelForCausalLM.from_pretrained(OUT)` and `AutoTokenizer.from_pretrained(OUT)` need
(config, safetensors weights, tokenizer), a generation_config.json with the run's decoding, and a model card
(README.md) with the base model, the method and its settings, the data and the run's scores with intervals.
Adapters are merged into the weights by PEFT; methods that put learned positions in front of the prompt cannot be
merged and are pointed to their PEFT adapter instead.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from tunebench.config import load_config
from tunebench.errors import TunebenchError
from tunebench.files import follow_umask
from tunebench.generate import generation_config
from tunebench.methods import METHODS
from tunebench.models import EMBEDDED_ORIGIN, base_model_path
from tunebench.results import read_results
from tunebench.trained import load_trained, split_target


def export_model(target: str, out: Path) -> Path:
    """Write the trained method `target` (RUN/METHOD) as a model folder `out` (which must not hold files yet)."""
    run_dir, name, record_name = split_target(target)
    if name not in METHODS:
        raise TunebenchError(f"'{name}' is a baseline, not a trained method: export the base model itself")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunebenchError(f"{out} already exists and is not an empty folder; give a new folder to export to")
    results = read_results(run_dir)
    record = next((r for r in results["records"] if r["name"] == record_name), None)
    if record is not None and record.get("status") == "FAILED":
        raise TunebenchError(f"'{record_name}' FAILED in {run_dir} ({record.get('error') or 'no reason recorded'}), so "
                             "it has no trained weights to export; change what made it fail (report.md, Notes) and "
                             "train it in a new run")
    if record is None or record.get("status") != "SUCCESS":
        raise TunebenchError(f"{run_dir}/results.json has no finished '{record_name}'; train it first "
                             f"(`tunebench compare --resume {run_dir}`)")
    method = METHODS[name]
    if method.settings(load_config(config_file=str(run_dir / "config.yaml"))).positions_added():
        adapter = run_dir / record_name / "peft_adapter"
        raise TunebenchError(f"{name} cannot be merged into the model's weights (it puts learned positions in front "
                             f"of every prompt); use its PEFT adapter {adapter} with PeftModel.from_pretrained")
    cfg, tuned, tokenizer = load_trained(run_dir, name, record_name)
    lm = method.merged(tuned, cfg)
    lm.generation_config = generation_config(tokenizer, cfg.eval)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    except OSError as exc:
        raise TunebenchError(f"cannot create {out}: {exc.strerror}; give a new folder in a writable place") from None
    try:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(results, record, cfg, base_model_path(cfg.model.name)),
                                       encoding="utf-8")
        follow_umask(tmp)  # mkdtemp makes the folder 0700, save_pretrained's safetensors are 0600
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _scores_line(results: dict, record: dict) -> str:
    """A record's scores in words, as the run's metrics describe them: title, mean [95% interval]."""
    scores = (record.get("eval") or {}).get("scores") or {}
    described = results.get("metrics") or {}

    def num(key: str, x: float) -> str:
        return f"{x:.{described.get(key, {}).get('digits', 1) + 1}f}"
    return ", ".join(f"{described.get(key, {}).get('title', key)} {num(key, v['mean'])} [{num(key, v['ci95'][0])}, "
                     f"{num(key, v['ci95'][1])}]" for key, v in scores.items()) or "not evaluated"


def model_card(results: dict, record: dict, cfg, base_path: str) -> str:
    """The README.md of an exported folder: what it is, where it came from, how good it was, how to prompt it."""
    facts, env = results["data"], results["environment"]
    train = record.get("train") or {}
    params = record.get("params") or {}
    sizes = facts["split_sizes"]
    baselines = [r for r in results["records"] if r.get("kind") == "baseline" and r.get("status") == "SUCCESS"]
    ev = cfg.eval
    decoding = "greedy" if ev.num_beams == 1 else f"beam search, {ev.num_beams} beams"
    spec = cfg.model.name
    hub_id = EMBEDDED_ORIGIN.get(spec) or (None if Path(base_path).is_absolute() else spec)  # None: a local folder
    origin = f" (dequantised from the Q4_1 GGUF of `{hub_id}`)" if spec in EMBEDDED_ORIGIN else ""
    lines = [
        "---", *([f"base_model: {hub_id}"] if hub_id and not spec.startswith("random:") else []),
        "library_name: transformers", "pipeline_tag: text-generation",
        f"tags: [tunebench, summarization, {record['method']}]", "---", "",
        f"# {record['method']} of `{cfg.model.name}` for summarization (tunebench)", "",
        f"- **Base model**: `{spec}`{origin}, weights read from `{base_path}`.",
        f"- **Method**: {record['method']}, settings `{json.dumps(record.get('settings') or {})}`; "
        f"{params.get('trainable', 0):,} trained parameters of {params.get('total', 0):,}; merged into the weights.",
        f"- **Trained on**: `{facts['source']}`, {sizes['train']} pairs (validation {sizes['val']}, split seed "
        f"{facts['split_seed']}); learning rate {train.get('lr', 0):g}, {train.get('steps', 0)} optimizer steps, "
        f"train seed {record.get('seed')}; {env.get('device')}, {env.get('precision')}.",
        f"- **Scored on**: {sizes['test']} held-out test articles of the same source, {decoding}, at most "
        f"{ev.max_new_tokens} new tokens, cut at `{ev.cut}`: {_scores_line(results, record)} (mean [95% bootstrap "
        "interval]).",
        *[f"- Baseline `{b['name']}` on the same articles: {_scores_line(results, b)}." for b in baselines],
        "", "## Use", "",
        "The prompt is the article followed by the separator the method was trained with; the summary is what "
        f"the model writes after it, up to EOS, cut at `{ev.cut}`. The article's tokens (with the tokenizer's "
        f"special tokens) are cut to {cfg.data.max_article_tokens} before the separator is added.", "",
        "```python", "import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        *_prompt_recipe(cfg), *_generate_lines(env),
        "summary = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)",
        *_cut_lines(ev.cut, ev.max_sentences), "```", "",
        *_precision_note(env.get("precision"), record["name"]), "",
    ]
    return "\n".join(lines)


def _generate_lines(env: dict) -> list[str]:
    """`generate` as the run decoded: under bf16 autocast on the run's kind of device for a bf16 run."""
    cuda = str(env.get("device", "cpu")).startswith("cuda")
    ids = 'torch.tensor([ids], device="cuda")' if cuda else "torch.tensor([ids])"
    call = f"out = model.generate({ids})  # decoding from generation_config.json"
    if env.get("precision") != "bf16":
        return [*(['model.to("cuda")'] if cuda else []), call]
    device = "cuda" if cuda else "cpu"
    return [*(['model.to("cuda")'] if cuda else []),
            f'with torch.autocast("{device}", dtype=torch.bfloat16):  # the run decoded in bf16, as here',
            f"    {call}"]


def _cut_lines(cut: str, max_sentences: int | None) -> list[str]:
    """The run's cut (eval.cut) as code, so the snippet ends its summary where tunebench does."""
    lines = {"eos": ["summary = summary.strip()  # tunebench's cut: at EOS"],
             "first_line": ["summary = next((line.strip() for line in summary.splitlines() if line.strip()), \"\")"
                            "  # tunebench's cut: the first line"],
             "blank_line": ["summary = summary.strip().split(\"\\n\\n\", 1)[0].strip()  # tunebench's cut: the first "
                            "blank line"]}[cut]
    if max_sentences is not None:
        lines.append(f"# tunebench then keeps the first {max_sentences} sentence(s) (eval.max_sentences)")
    return lines


def _precision_note(precision: str | None, record: str) -> list[str]:
    if precision == "bf16":
        return ["The weights are float32; the run decoded under bf16 autocast, and so does the snippet. One article at "
                "a time it writes the same tokens as `tunebench summarize --from RUN/" + record + " --set "
                "eval.batch_size=1` (tested on tiny models). In bf16 a padded batch of several articles (tunebench's "
                "default, eval.batch_size) rounds differently from one article and can change a few summaries; for "
                "summaries that do not depend on batching, decode in float32 here (drop the autocast) and with "
                "`tunebench summarize --set train.precision=fp32`."]
    return ["The weights are float32 and the run decoded in float32, as the snippet does: it writes the same tokens "
            "as `tunebench summarize` (tested for every method tunebench can merge)."]


def _prompt_recipe(cfg) -> list[str]:
    return [f"ids = tokenizer(article)[\"input_ids\"][:{cfg.data.max_article_tokens}] + "
            f"tokenizer({cfg.data.separator!r}, add_special_tokens=False)[\"input_ids\"]"]


def adapter_card(cfg, record: str, base_path: str, note: str | None) -> str:
    """README.md of a run's `peft_adapter/` folder: how to load it with PEFT alone and how to prompt it."""
    ev = cfg.eval
    return "\n".join([
        f"# `{record}` adapter for `{cfg.model.name}` (tunebench)", "",
        f"PEFT's own file layout; `base_model_name_or_path` is `{base_path}`. The run's results.json and report.md "
        "hold its settings and scores.", "",
        "```python", "import torch", "from peft import AutoPeftModelForCausalLM",
        "from transformers import AutoTokenizer",
        "", 'model = AutoPeftModelForCausalLM.from_pretrained("THIS_FOLDER")',
        f'tokenizer = AutoTokenizer.from_pretrained("{base_path}")', *_prompt_recipe(cfg),
        f"out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens={ev.max_new_tokens}, do_sample=False, "
        f"num_beams={ev.num_beams})",
        "summary = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)", "```", "",
        f"tunebench keeps the summary up to EOS, cut at `{ev.cut}`.", *([note] if note else []), ""])
