"""docs/defects.md #1, #2: one sequence per example, loss only on summary + final EOS, padding never counted."""

import pytest

from tunebench.data.format import IGNORE, collate, encode_example
from tunebench.errors import TunebenchError

SEP = "\nTL;DR:\n"


def test_one_sequence_article_separator_summary_eos(tokenizer):
    ex = encode_example(tokenizer, "a", "The article.", "Short sum.", SEP, 100, 50)
    text = tokenizer.decode(ex.prompt_ids + ex.target_ids)
    assert text == "The article." + SEP + "Short sum." + tokenizer.eos_token
    assert ex.target_ids[-1] == tokenizer.eos_token_id


def test_article_is_truncated_not_the_summary(tokenizer):
    ex = encode_example(tokenizer, "a", "x" * 500, "keep all of me", SEP, 20, 50)
    assert len(ex.prompt_ids) == 20 + len(tokenizer(SEP)["input_ids"])
    assert tokenizer.decode(ex.target_ids[:-1]) == "keep all of me"
    assert ex.article_cut and not encode_example(tokenizer, "b", "x" * 20, "s", SEP, 20, 50).article_cut


def test_labels_only_on_summary_and_eos_when_pad_is_eos(tokenizer):
    # The byte tokenizer's pad token *is* its EOS (as in SmolLM2): the final EOS must still be a target.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    long = encode_example(tokenizer, "a", "A much longer article here.", "Sum one.", SEP, 100, 50)
    short = encode_example(tokenizer, "b", "Tiny.", "S2.", SEP, 100, 50)
    batch = collate([long, short], tokenizer.pad_token_id)
    for row, ex in enumerate([long, short]):
        labels = batch["labels"][row].tolist()
        targets = [t for t in labels if t != IGNORE]
        assert targets == ex.target_ids  # summary tokens + EOS, nothing else
        assert targets[-1] == tokenizer.eos_token_id
        assert labels[-len(ex.target_ids):] == ex.target_ids
        padding = batch["attention_mask"][row].tolist().count(0)
        assert all(t == IGNORE for t in labels[:padding + len(ex.prompt_ids)])
    assert int(batch["logits_to_keep"]) == max(len(long.target_ids), len(short.target_ids)) + 1
    # the positions whose logits the loss uses: each predicts the next token of its own row
    keep, width = int(batch["logits_to_keep"]), batch["input_ids"].shape[1]
    for index, row, target in zip(batch["target_index"].tolist(), batch["target_row"].tolist(),
                                  batch["target_ids"].tolist(), strict=True):
        assert index // keep == row
        position = width - keep + index % keep
        assert batch["labels"][row, position + 1] == target
    assert batch["target_count"].tolist() == [len(long.target_ids), len(short.target_ids)]
    assert len(batch["target_ids"]) == len(long.target_ids) + len(short.target_ids)


def test_empty_article_is_a_clear_error(tokenizer):
    with pytest.raises(TunebenchError, match="article is empty"):
        encode_example(tokenizer, "a", "   ", "sum", SEP, 10, 10)


def test_chat_prompt_wraps_the_article_and_cuts_only_the_article(tokenizer):
    import copy

    from tunebench.data.format import encode_chat_prompt

    chat = copy.deepcopy(tokenizer)
    chat.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ids = encode_chat_prompt(chat, "An article about rain.", "Summarize.", 100)
    assert chat.decode(ids) == "<|user|>Summarize.\n\nAn article about rain.\n<|assistant|>"
    cut = encode_chat_prompt(chat, "An article about rain.", "Summarize.", 5)
    assert chat.decode(cut) == "<|user|>Summarize.\n\nAn ar\n<|assistant|>"
