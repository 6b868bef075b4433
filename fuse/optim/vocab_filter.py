"""Which of the primary's tokens an optimizer may place: readable, non-special tokens."""

from __future__ import annotations

import re

import torch

from fuse.core.vocab import vocab_hash

# Placeholders and control markup that decode to text but carry no language: BERT's [unused12],
# Gemma's <unused7> and [multimodal], StarCoder-style <file_sep>. Never trained or never prose.
_PLACEHOLDER = re.compile(r"^[\[<]\|?[A-Za-z_][\w\-|]*[\]>]$")


#: readable tokens by vocabulary content ``(vocab hash, decoder, special ids, ascii_only)``: a pure function's memo
_BY_CONTENT: dict[tuple, torch.Tensor] = {}
_MEMO_SIZE = 8


def _readable(decoded: list[str], special: set, ascii_only: bool) -> torch.Tensor:
    ok = []
    for i, s in enumerate(decoded):
        if i in special:
            continue
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
    """Ids of tokens that decode to printable text with a letter or digit (specials and placeholders excluded).

    Memoized by the vocabulary's content (its hash, the fast tokenizer's decoder and the special ids; a slow
    tokenizer is computed afresh), never by the tokenizer object: a tokenizer that gains tokens gets a new answer,
    and two tokenizers with one vocabulary share one. The hash costs 0.06 s for SmolLM2's 49,152 tokens, the
    decoding it saves 0.2 s (every captioned image builds an optimizer).
    """
    special = frozenset(getattr(tokenizer, "all_special_ids", []) or [])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
        return _readable(decoded, special, bool(ascii_only))
    key = (vocab_hash(tokenizer), str(backend.decoder), special, bool(ascii_only))
    if key not in _BY_CONTENT:
        decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
        if len(_BY_CONTENT) >= _MEMO_SIZE:
            _BY_CONTENT.pop(next(iter(_BY_CONTENT)))
        _BY_CONTENT[key] = _readable(decoded, special, bool(ascii_only))
    return _BY_CONTENT[key].clone()
