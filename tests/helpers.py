"""Test helpers shared by several test files."""

import torch


@torch.no_grad()
def greedy_reference(tuned, prompt_ids, max_new_tokens, eos_id):
    """One sequence, no padding, no cache, no attention mask: recompute everything for every token."""
    ids, out = list(prompt_ids), []
    for _ in range(max_new_tokens):
        t = torch.tensor([ids])
        token = int(tuned(t, torch.ones_like(t))[0, -1].argmax())  # the method's own full forward, no cache
        if token == eos_id:
            break
        out.append(token)
        ids.append(token)
    return out
