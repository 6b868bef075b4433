"""Which of the primary's tokens an optimizer may place: readable, non-special tokens."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=16)
def _allowed(tokenizer_id: int, tokenizer, ascii_only: bool) -> torch.Tensor:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ok = []
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    for i, _tok in enumerate(tokens):
        if i in special:
            continue
        s = tokenizer.decode([i], clean_up_tokenization_spaces=False)
        if not s.strip() or "\ufffd" in s:
            continue
        if ascii_only and not (s.isascii() and s.isprintable()):
            continue
        if not any(c.isalnum() for c in s):
            continue
        ok.append(i)
    if not ok:
        raise ValueError("the tokenizer has no readable tokens to optimize over")
    return torch.tensor(ok, dtype=torch.long)


def allowed_tokens(tokenizer, ascii_only: bool = True) -> torch.Tensor:
    """Ids of tokens that decode to printable text with a letter or digit (specials excluded)."""
    return _allowed(id(tokenizer), tokenizer, ascii_only)
