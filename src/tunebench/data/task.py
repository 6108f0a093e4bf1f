"""Task settings that follow the data: a setting left at `auto` is derived from the training references before any
model loads, and what was derived (and from what) is recorded with the run.

A run on the user's CNN/DailyMail-style data must not silently inherit the demo's XSum choices (one line, 40 new
tokens, Lead-1, "one sentence"): summary length, where a summary ends, Lead-k and the chat instruction are read
off the references the methods train on.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tunebench.config import Config, get_setting
from tunebench.data.split import Splits
from tunebench.text import split_sentences

AUTO = "auto"
TASK_KEYS = ("data.max_summary_tokens", "eval.max_new_tokens", "eval.cut", "eval.lead_k", "eval.chat_instruction")
"""The settings that may be `auto`."""
CUT_SHARE = 0.5
"""data show warns when a setting cuts more than this share of the articles or summaries."""


def _round_up(value: float, step: int = 8) -> int:
    return int(step * math.ceil(value / step))


def _method_texts(cfg: Config) -> list[str]:
    """Method settings that start from a text (`init_text`) left at auto: they take the chat instruction."""
    return [f"method.{f.name}.init_text" for f in dataclasses.fields(cfg.method)
            if getattr(getattr(cfg.method, f.name), "init_text", None) == AUTO]


def is_auto(cfg: Config) -> list[str]:
    """The task settings of `cfg` left at auto (method init texts included)."""
    return [key for key in TASK_KEYS if get_setting(cfg, key) == AUTO] + _method_texts(cfg)


def reference_facts(splits: Splits, tokenizer) -> dict:
    """Length and shape of the training references (all pairs when there is no training split)."""
    examples = splits.train or splits.test
    summaries = [ex.summary for ex in examples]
    tokens = np.array([len(ids) for ids in tokenizer(summaries, add_special_tokens=False)["input_ids"]]) \
        if summaries else np.zeros(1)
    sentences = np.array([max(len(split_sentences(s)), 1) for s in summaries] or [1])
    lines = np.array([max(len([x for x in s.splitlines() if x.strip()]), 1) for s in summaries] or [1])
    words = np.array([len(s.split()) for s in summaries] or [0])
    return {"references": len(summaries), "tokens_median": float(np.median(tokens)),
            "tokens_p95": float(np.percentile(tokens, 95)), "sentences_median": float(np.median(sentences)),
            "lines_median": float(np.median(lines)), "words_median": float(np.median(words))}


def derive(facts: dict) -> dict[str, tuple[object, str]]:
    """The value each task setting takes from the reference facts, with the reason in words."""
    n, p95 = facts["references"], facts["tokens_p95"]
    summary_tokens = min(max(_round_up(p95), 16), 512)
    new_tokens = min(max(_round_up(1.25 * p95), 16), 512)
    sentences = max(int(round(facts["sentences_median"])), 1)
    one_line = facts["lines_median"] <= 1 and sentences == 1
    words = int(round(facts["words_median"]))
    length = "one sentence" if sentences == 1 else f"{sentences} sentences"
    return {
        "data.max_summary_tokens": (summary_tokens, f"95th percentile of the {n} training summaries: {p95:.0f} "
                                                    "tokens, rounded up to a multiple of 8"),
        "eval.max_new_tokens": (new_tokens, f"1.25 x that percentile ({p95:.0f} tokens), rounded up: room to end "
                                            "on its own"),
        "eval.cut": ("first_line" if one_line else "blank_line",
                     "the median summary is one line and one sentence" if one_line else
                     f"the median summary has {facts['lines_median']:.0f} line(s) and {sentences} sentences: a "
                     "summary ends at its first blank line, not its first line"),
        "eval.lead_k": (sentences, f"the median summary has {facts['sentences_median']:.0f} sentence(s)"),
        "eval.chat_instruction": (f"Summarize the following article in {length} (about {words} words).",
                                  f"the median summary: {length}, {words} words"),
    }


def resolve_task(cfg: Config, splits: Splits, tokenizer) -> tuple[Config, dict]:
    """`cfg` with every auto task setting replaced by the value derived from the training references, and what
    was derived: {setting: {"value", "why"}} (empty when nothing was auto)."""
    auto = is_auto(cfg)
    if not auto:
        return cfg, {}
    derived = derive(reference_facts(splits, tokenizer))
    sections: dict[str, dict] = {"data": {}, "eval": {}}
    for key in auto:
        if key in TASK_KEYS:
            section, name = key.split(".")
            sections[section][name] = derived[key][0]
    resolved = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **sections["data"]),
                                   eval=dataclasses.replace(cfg.eval, **sections["eval"]))
    texts = {key: resolved.eval.chat_instruction for key in _method_texts(cfg)}
    if texts:
        methods = {key.split(".")[1]: dataclasses.replace(getattr(cfg.method, key.split(".")[1]), init_text=text)
                   for key, text in texts.items()}
        resolved = dataclasses.replace(resolved, method=dataclasses.replace(cfg.method, **methods))
        for key in texts:
            derived[key] = (resolved.eval.chat_instruction, "the chat instruction (eval.chat_instruction)")
    return resolved, {key: {"value": derived[key][0], "why": derived[key][1]} for key in auto}
