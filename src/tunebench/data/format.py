"""Decoder-only format: one sequence `article + separator + summary + EOS` per example.

Labels are -100 on the article, the separator and padding, so the loss covers the summary tokens
and the final EOS only. Labels are built from lengths, never by masking the pad id: SmolLM2's pad
token *is* its EOS token, and masking by id would delete the EOS target (docs/defects.md #2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunebench.errors import TunebenchError

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    id: str
    prompt_ids: list[int]
    """Truncated article + separator: what the model sees before it writes."""
    target_ids: list[int]
    """Summary (truncated to max_summary_tokens) + EOS: what the loss is computed on."""
    article_cut: bool = False
    """Whether the article was longer than max_article_tokens and cut."""

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.target_ids)


def _article_ids(tokenizer, article: str) -> list[int]:
    if not article.strip():
        raise TunebenchError("an article is empty; give non-empty text to summarize")
    return tokenizer(article, add_special_tokens=True)["input_ids"]


def encode_prompt(tokenizer, article: str, separator: str, max_article_tokens: int) -> list[int]:
    """Article tokens (special prefix tokens like BOS included) cut to the limit, then the separator."""
    article_ids = _article_ids(tokenizer, article)[:max_article_tokens]
    return article_ids + tokenizer(separator, add_special_tokens=False)["input_ids"]


def encode_chat_prompt(tokenizer, article: str, instruction: str, max_article_tokens: int) -> list[int]:
    """The article inside the model's chat template, as a user turn after `instruction`, with the assistant's turn
    opened; the article (only) is cut to the limit."""
    marker = "\x00ARTICLE\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": f"{instruction}\n\n{marker}"}],
                                         add_generation_prompt=True, tokenize=False)
    before, after = text.split(marker)
    article_ids = tokenizer(article, add_special_tokens=False)["input_ids"] if article.strip() else []
    if not article_ids:
        raise TunebenchError("an article is empty; give non-empty text to summarize")

    def ids(part: str) -> list[int]:
        return tokenizer(part, add_special_tokens=False)["input_ids"]

    return ids(before) + article_ids[:max_article_tokens] + ids(after)


def encode_example(tokenizer, ident: str, article: str, summary: str, separator: str,
                   max_article_tokens: int, max_summary_tokens: int) -> Encoded:
    """Encode one pair; the article is truncated to fit, the summary only beyond its own limit."""
    article_ids = _article_ids(tokenizer, article)
    summary_ids = tokenizer(summary, add_special_tokens=False)["input_ids"][:max_summary_tokens]
    prompt = article_ids[:max_article_tokens] + tokenizer(separator, add_special_tokens=False)["input_ids"]
    return Encoded(ident, prompt, summary_ids + [tokenizer.eos_token_id], len(article_ids) > max_article_tokens)


def encode_continuation(tokenizer, ident: str, text: str, context_tokens: int, target_tokens: int) -> Encoded:
    """Plain text as a language-modelling example: its first `context_tokens` tokens (special prefix tokens
    included) as the prompt, the next `target_tokens` as the target; a shorter text is split in half. No separator,
    no EOS: the loss is on the text's own continuation (forgetting, metrics/forgetting.py)."""
    ids = _article_ids(tokenizer, text)
    cut = min(context_tokens, max(1, len(ids) // 2))
    return Encoded(ident, ids[:cut], ids[cut:cut + target_tokens] or ids[-1:], len(ids) > cut + target_tokens)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask: sequence ends line up, which generation and the loss use."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded training batch. `labels` align with `input_ids`; only target positions are not -100.

    Left padding puts every target at the end of its row, so the loss needs the last `max target length + 1`
    positions only (`logits_to_keep`), and among them only those whose next token is a target: their flat
    indices in the (batch, logits_to_keep) grid (`target_index`), their row (`target_row`) and the token
    they predict (`target_ids`). Built here on the CPU, so the training step needs no host sync to find them.
    """
    ids, mask = left_pad([ex.prompt_ids + ex.target_ids for ex in batch], pad_id)
    labels = torch.full_like(ids, IGNORE)
    for row, ex in enumerate(batch):
        labels[row, ids.shape[1] - len(ex.target_ids):] = torch.tensor(ex.target_ids, dtype=torch.long)
    keep = max(len(ex.target_ids) for ex in batch) + 1
    predicts = labels[:, -keep + 1:]  # what the kept positions but the last predict
    chosen = torch.nn.functional.pad(predicts != IGNORE, (0, 1))
    index = chosen.flatten().nonzero().squeeze(1)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits_to_keep": torch.tensor(keep),
            "target_index": index, "target_row": index // keep, "target_ids": predicts[predicts != IGNORE],
            "target_count": torch.tensor([len(ex.target_ids) for ex in batch])}
