"""Padding a batch of token sequences without touching the user's tokenizer."""

from __future__ import annotations

import torch


def pad_ids(seqs: list[list[int]], pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(B, L)`` ids and a ``(B, L)`` attention mask."""
    if not seqs:
        raise ValueError("empty batch")
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def encode_batch(tokenizer, texts: list[str], device=None, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize like the model does in use (special tokens added), right-padded."""
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=max_length is not None, max_length=max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_ids([list(x) for x in enc["input_ids"]], pad, device)
