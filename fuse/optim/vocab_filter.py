"""Which of the primary's tokens an optimizer may place: readable (or any printable), non-special tokens.

Two vocabularies (``OptimizerConfig.vocabulary``): ``"readable"`` (the default), tokens with a letter or digit;
``"printable"``, every printable token, punctuation and spaces included (nanoGCG's set). Both drop special tokens,
placeholders such as ``<unused7>``, tokens that decode to a broken character, and with ``ascii_only`` non-ASCII ones.
"""

from __future__ import annotations

import re

import torch

from fuse.core.vocab import vocab_hash

# Placeholders and control markup that decode to text but carry no language: BERT's [unused12],
# Gemma's <unused7> and [multimodal], StarCoder-style <file_sep>. Never trained or never prose.
_PLACEHOLDER = re.compile(r"^[\[<]\|?[A-Za-z_][\w\-|]*[\]>]$")


#: the vocabularies an optimizer can draw from
VOCABULARIES = ("readable", "printable")

#: allowed tokens by vocabulary content ``(vocab hash, decoder, special ids, ascii_only, vocabulary)``: a pure memo
_BY_CONTENT: dict[tuple, torch.Tensor] = {}
_MEMO_SIZE = 8


def _allowed(decoded: list[str], special: set, ascii_only: bool, vocabulary: str) -> torch.Tensor:
    readable = vocabulary == "readable"
    ok = []
    for i, s in enumerate(decoded):
        if i in special:
            continue
        blank = not s.strip() if readable else not (s and s.isprintable())  # printable keeps " " and "  "
        if blank or "\ufffd" in s:
            continue
        if ascii_only and not (s.isascii() and s.isprintable()):
            continue
        if readable and not any(c.isalnum() for c in s):
            continue
        if _PLACEHOLDER.match(s.strip()):
            continue
        ok.append(i)
    if not ok:
        raise ValueError(f"the tokenizer has no {vocabulary} tokens to optimize over"
                         + (" (ascii_only=True: try ascii_only=False)" if ascii_only else ""))
    return torch.tensor(ok, dtype=torch.long)


def allowed_tokens(tokenizer, ascii_only: bool = True, vocabulary: str = "readable") -> torch.Tensor:
    """Ids of tokens that decode to printable text with a letter or digit (``vocabulary="readable"``) or to any
    printable text (``"printable"``); specials and placeholders excluded.

    Memoized by the vocabulary's content (its hash, the fast tokenizer's decoder and the special ids; a slow
    tokenizer is computed afresh), never by the tokenizer object: a tokenizer that gains tokens gets a new answer,
    and two tokenizers with one vocabulary share one. The hash costs 0.06 s for SmolLM2's 49,152 tokens, the
    decoding it saves 0.2 s (every captioned image builds an optimizer).
    """
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; use one of {VOCABULARIES}")
    special = frozenset(getattr(tokenizer, "all_special_ids", []) or [])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
        return _allowed(decoded, special, bool(ascii_only), vocabulary)
    key = (vocab_hash(tokenizer), str(backend.decoder), special, bool(ascii_only), vocabulary)
    if key not in _BY_CONTENT:
        decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
        if len(_BY_CONTENT) >= _MEMO_SIZE:
            _BY_CONTENT.pop(next(iter(_BY_CONTENT)))
        _BY_CONTENT[key] = _allowed(decoded, special, bool(ascii_only), vocabulary)
    return _BY_CONTENT[key].clone()
