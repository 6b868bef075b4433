"""Which of the primary's tokens an optimizer may place: readable, non-special tokens."""

from __future__ import annotations

import functools
import re

import torch

# Placeholders and control markup that decode to text but carry no language: BERT's [unused12],
# Gemma's <unused7> and [multimodal], StarCoder-style <file_sep>. Never trained or never prose.
_PLACEHOLDER = re.compile(r"^[\[<]\|?[A-Za-z_][\w\-|]*[\]>]$")


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
        if _PLACEHOLDER.match(s.strip()):
            continue
        ok.append(i)
    if not ok:
        raise ValueError("the tokenizer has no readable tokens to optimize over")
    return torch.tensor(ok, dtype=torch.long)


def allowed_tokens(tokenizer, ascii_only: bool = True) -> torch.Tensor:
    """Ids of tokens that decode to printable text with a letter or digit (specials and placeholders excluded)."""
    return _allowed(id(tokenizer), tokenizer, ascii_only)
