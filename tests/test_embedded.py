"""End to end on the real embedded model (SmolLM2-135M-Instruct from the GGUF) and real XSum pairs: the session's
one real run (conftest.py's `real_run`, shared with test_outside.py's round trip)."""

import json

import pytest

from conftest import REAL_METHODS
from helpers import greedy_reference
from tunebench.config import DataConfig, EvalConfig
from tunebench.data import load_examples
from tunebench.data.format import encode_prompt
from tunebench.generate import generate_summaries
from tunebench.models import load_model
from tunebench.trained import load_trained

pytestmark = pytest.mark.slow


def smollm2_counts():
    """Hand-computed trainable parameters for SmolLM2-135M (d=576, 30 layers, kv width 192, mlp 1536)."""
    d, kv, mlp, vocab, layers, r = 576, 192, 1536, 49152, 30, 8
    lora_per_layer = r * (d + d) + 2 * r * (d + kv) + r * (d + d)  # q, k, v, o
    block = d * d * 2 + d * kv * 2 + 3 * d * mlp + 2 * d
    return {"prompt-tuning": 20 * d, "lora": layers * lora_per_layer, "last-block": block + d + vocab * d}


def test_real_model_and_data_end_to_end(real_run):
    data = json.loads((real_run / "results.json").read_text())
    records = {r["name"]: r for r in data["records"]}
    assert list(records) == ["lead-1", "zero-shot", "zero-shot-chat", *REAL_METHODS]
    assert records["zero-shot-chat"]["eval"]["prompt"] == "chat template"  # SmolLM2-Instruct has one
    assert all(r["status"] == "SUCCESS" for r in records.values())
    sample = data["data"]["splits"]["all"]
    assert (sample["rows_read"], sample["rows_kept"]) == (1000, 999)  # one row has an empty article or summary
    assert data["data"]["split_sizes"] == {"train": 8, "val": 2, "test": 4}
    assert data["looks"]["sizes"] == [4]  # eval.decide=false: one look
    served = {name for name, r in records.items() if r.get("serving")}  # the serving job, on the real model
    assert served == set(records) - {"lead-1"} and all(records[n]["serving"]["new_tokens"] == 4 for n in served)
    expected = smollm2_counts()
    for name, count in expected.items():
        assert records[name]["params"]["trainable"] == count, name
    for name in REAL_METHODS:
        assert records[name]["params"]["total"] >= 134_515_008
        assert records[name]["train"]["steps"] == 2
    assert records["last-block"]["params"]["head_params_added"] == 49152 * 576
    for rec in records.values():
        rouge = {k: v for k, v in rec["eval"]["scores"].items() if data["metrics"][k]["metric"] == "rouge"}
        assert len(rouge) == 4 and all(0 <= v["mean"] <= 100 for v in rouge.values())
    assert records["lead-1"]["eval"]["scores"]["rouge1"]["mean"] > 5  # real text overlaps its reference
    assert records["lora"]["eval"]["scores"]["test_loss"]["token_weighted"] < 10


def test_no_prediction_contains_its_prompt(real_run):
    """Only new tokens are decoded (the original code returned the prompt with them). A model may quote its
    article (Lead-1 does nothing else), so the check is on what an echo of the prompt must hold: the methods'
    prompt ends with the separator, the chat prompt holds the instruction before the article and the template's
    markers after it."""
    data = json.loads((real_run / "results.json").read_text())
    instruction = data["config"]["eval"]["chat_instruction"]
    for method in ("zero-shot", "zero-shot-chat", *REAL_METHODS):
        for line in (real_run / method / "predictions.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert "TL;DR" not in row["prediction"] and "<|im_" not in row["prediction"], (method, row["id"])
            assert instruction not in row["prediction"] and "assistant\n" not in row["prediction"], (method, row["id"])


@pytest.mark.parametrize("method", ["prompt-tuning", "lora"])
def test_real_model_batched_generation_equals_unbatched_greedy(real_run, method):
    cfg, tuned, tokenizer = load_trained(real_run, method)
    articles = [ex.article for ex in load_examples(DataConfig()).splits["all"].examples[:3]]
    prompts = [encode_prompt(tokenizer, a[: 100 + 150 * i], cfg.data.separator, 128) for i, a in enumerate(articles)]
    out = generate_summaries(tuned, tokenizer, prompts, batch_size=3, settings=EvalConfig(max_new_tokens=12))
    for prompt, text, count in zip(prompts, out.texts, out.new_tokens, strict=True):
        expected = greedy_reference(tuned, prompt, 12, tokenizer.eos_token_id)
        assert text == tokenizer.decode(expected, skip_special_tokens=True).strip()
        assert count == min(len(expected) + 1, 12)


@pytest.fixture(scope="module")
def zero_shot_to_the_limit(real_run):
    """Zero-shot on 4 real articles decoded to 40 new tokens (cut at EOS only), in one batch: what both cuts are
    checked against."""
    from tunebench.methods import ZERO_SHOT

    cfg, _, tokenizer = load_trained(real_run, "lora")
    lm, _ = load_model(cfg.model.name)
    tuned = ZERO_SHOT.build(lm, cfg, tokenizer)
    articles = [ex.article for ex in load_examples(DataConfig()).splits["all"].examples[:4]]
    prompts = [encode_prompt(tokenizer, a, cfg.data.separator, 128) for a in articles]
    return tuned, tokenizer, prompts, generate_summaries(tuned, tokenizer, prompts, 4,
                                                         EvalConfig(max_new_tokens=40, cut="eos"))


@pytest.mark.parametrize("cut", ["first_line", "blank_line"])
def test_decoding_ends_at_the_cut_with_the_same_text(zero_shot_to_the_limit, cut):
    """Zero-shot on real articles runs on past its first line; ending each summary where the cut ends it keeps the
    text identical to decoding to the limit and cutting afterwards, with fewer tokens generated."""
    from tunebench.generate import cut_text

    tuned, tokenizer, prompts, full = zero_shot_to_the_limit
    early = generate_summaries(tuned, tokenizer, prompts, 4, EvalConfig(max_new_tokens=40, cut=cut))
    assert early.texts == [cut_text(tokenizer.decode(t, skip_special_tokens=True), cut) for t in full.tokens]
    assert sum(early.new_tokens) < sum(full.new_tokens)  # some summary ended early
    assert all(full.tokens[i][:len(t)] == t for i, t in enumerate(early.tokens))
