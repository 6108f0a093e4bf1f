"""What a user does with tunebench's artefacts in their own code: this script imports only transformers and PEFT.

Run as `python tests/outside.py JOBS.json OUT.json` by the round-trip tests, in a fresh process. Each job loads one
artefact the way its README / model card says, and greedily summarizes the given articles one at a time (unpadded):

- `adapter`: `AutoPeftModelForCausalLM.from_pretrained(<adapter folder>)`, which loads the base model from the
  adapter's `base_model_name_or_path`; any warning while loading (e.g. PEFT's "missing adapter keys") is reported.
  With `onto_loaded_base`, `PeftModel.from_pretrained(<a copy of that base model>, <adapter folder>)` instead, the
  base model loaded once by an earlier job of this process (`base`, or loaded here and kept) (a real model's
  round trip loads it once, not once per adapter);
- `model`: `AutoModelForCausalLM.from_pretrained(<exported folder>)`, decoding with its own generation_config.json;
- `base`: the base model alone (to show that an artefact changes what the model writes).

`decode`: `generate` (the model's `generate`), `generate_no_cache` (`generate(..., use_cache=False)`) or
`greedy_forward` (argmax of the model's forward on the growing sequence, no cache, no `generate`). `precision`:
`bf16` decodes under bf16 autocast, as the model card of a bf16 run says. With PEFT
0.21.2 and transformers 5.24, PEFT's `generate` with a cache gives wrong tokens after the first few for prompt
tuning and prefix tuning (the adapter's own forward is right); see test_outside.py.

The prompt is the recipe of the model card: the article's tokens (with the tokenizer's special tokens) cut to
`max_article_tokens`, then the separator's tokens. Output: per job the new token ids, up to (without) EOS.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import warnings

import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

BASES: dict[str, torch.nn.Module] = {}
"""Base models loaded by this process, by path, never modified (adapters go onto copies)."""


def base_model(path: str) -> torch.nn.Module:
    if path not in BASES:
        BASES[path] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return BASES[path]


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def load(job: dict, collect: Collect):
    """(model, tokenizer, generation settings, how it was loaded) for a job; warnings while loading go to
    `collect`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if job["kind"] == "model":
            model = AutoModelForCausalLM.from_pretrained(job["path"], dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(job["path"])
            settings, loaded = model.generation_config, "AutoModelForCausalLM"
        else:
            base_path = job["path"]
            if job["kind"] == "adapter":
                with open(f"{job['path']}/adapter_config.json", encoding="utf-8") as f:
                    base_path = json.load(f)["base_model_name_or_path"]
                if job.get("onto_loaded_base"):
                    model = PeftModel.from_pretrained(copy.deepcopy(base_model(base_path)), job["path"])
                    loaded = "PeftModel onto a copy of the base"
                else:  # the base model comes from the adapter's base_model_name_or_path
                    model = AutoPeftModelForCausalLM.from_pretrained(job["path"], dtype=torch.float32)
                    loaded = "AutoPeftModelForCausalLM"
            else:
                model, loaded = base_model(base_path), "AutoModelForCausalLM"
            tokenizer = AutoTokenizer.from_pretrained(base_path)
            settings = GenerationConfig(do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                                        **job["generate"])
    collect.messages += [str(w.message) for w in caught]
    return model.eval(), tokenizer, settings, loaded


def greedy_forward(model, ids: list[int], max_new_tokens: int, eos: int) -> list[int]:
    """Greedy decoding by calling the model's forward on the whole sequence for every new token."""
    new: list[int] = []
    while len(new) < max_new_tokens:
        sequence = torch.tensor([ids + new])
        logits = model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits
        new.append(int(logits[0, -1].argmax()))
        if new[-1] == eos:
            break
    return new


def summarize(job: dict) -> dict:
    collect = Collect()
    for name in ("transformers", "peft"):
        logging.getLogger(name).addHandler(collect)
    model, tokenizer, settings, loaded = load(job, collect)
    separator = tokenizer(job["separator"], add_special_tokens=False)["input_ids"]
    outputs = []
    for article in job["articles"]:
        ids = tokenizer(article)["input_ids"][:job["max_article_tokens"]] + separator
        eos = settings.eos_token_id if isinstance(settings.eos_token_id, int) else tokenizer.eos_token_id
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            if job.get("decode") == "greedy_forward":
                new = greedy_forward(model, ids, settings.max_new_tokens, eos)
            else:  # a bf16 run's model card decodes under bf16 autocast, as the run did
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=job.get("precision") == "bf16"):
                    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                         generation_config=settings,
                                         use_cache=job.get("decode") != "generate_no_cache")
                new = out[0, len(ids):].tolist()
        outputs.append(new[:new.index(eos)] if eos in new else new)
    return {"tokens": outputs, "warnings": collect.messages, "class": type(model).__name__, "loaded": loaded}


def main() -> None:
    jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
    results = [summarize(job) for job in jobs]
    results.append({"modules": sorted(m for m in sys.modules if m.split(".")[0] == "tunebench")})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
