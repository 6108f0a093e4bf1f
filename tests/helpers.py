"""Test helpers shared by several test files."""

import torch


@torch.no_grad()
def greedy_reference(tuned, prompt_ids, max_new_tokens, eos_id):
    """One sequence, no padding, no cache, no attention mask: recompute everything for every token."""
    ids, out = list(prompt_ids), []
    for _ in range(max_new_tokens):
        t = torch.tensor([ids])
        embeds, _ = tuned.embed(t, torch.ones_like(t))
        token = int(tuned.lm(inputs_embeds=embeds, use_cache=False).logits[0, -1].argmax())
        if token == eos_id:
            break
        out.append(token)
        ids.append(token)
    return out
