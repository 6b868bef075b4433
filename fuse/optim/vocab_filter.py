"""Which of the primary's tokens an optimizer may place: readable (or any printable), non-special tokens.

Vocabularies (``OptimizerConfig.vocabulary``): ``"readable"`` (the default), tokens with a letter or digit;
``"printable"``, every printable token, punctuation and spaces included (nanoGCG's set); ``"japanese"`` and
``"chinese"``, tokens written in that language's scripts only (kana and kanji, or hanzi, with their punctuation;
a leading space allowed), for a span that stays in the language (they need ``ascii_only=False``). All drop special
tokens, placeholders such as ``<unused7>``, tokens that decode to a broken character, and with ``ascii_only``
non-ASCII ones.
"""

from __future__ import annotations

import re

import torch

from fuse.core.vocab import vocab_hash

# Placeholders and control markup that decode to text but carry no language: BERT's [unused12],
# Gemma's <unused7> and [multimodal], StarCoder-style <file_sep>. Never trained or never prose.
_PLACEHOLDER = re.compile(r"^[\[<]\|?[A-Za-z_][\w\-|]*[\]>]$")


#: the vocabularies an optimizer can draw from
VOCABULARIES = ("readable", "printable", "japanese", "chinese")

_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
_CJK_PUNCT = ((0x3000, 0x303F), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF5B, 0xFF65))  # 、。「」々〆 ，！？：；（）
#: the code-point ranges of each script vocabulary (letters and punctuation)
SCRIPTS = {
    "japanese": _HAN + _CJK_PUNCT + ((0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "chinese": _HAN + _CJK_PUNCT,
}


def in_script(text: str, vocabulary: str) -> bool:
    """Whether ``text`` is written in the script vocabulary's characters only, holding a letter (spaces allowed)."""
    ranges = SCRIPTS[vocabulary]
    body = text.strip()
    return bool(body) and any(c.isalpha() for c in body) and all(
        c.isspace() or any(lo <= ord(c) <= hi for lo, hi in ranges) for c in body)

#: allowed tokens by vocabulary content ``(vocab hash, decoder, special ids, ascii_only, vocabulary)``: a pure memo
_BY_CONTENT: dict[tuple, torch.Tensor] = {}
_MEMO_SIZE = 8


def _allowed(decoded: list[str], special: set, ascii_only: bool, vocabulary: str) -> torch.Tensor:
    readable = vocabulary != "printable"  # the script vocabularies are readable ones, narrowed to a script
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
        if vocabulary in SCRIPTS and not in_script(s, vocabulary):
            continue
        if _PLACEHOLDER.match(s.strip()):
            continue
        ok.append(i)
    if not ok:
        raise ValueError(f"the tokenizer has no {vocabulary} tokens to optimize over"
                         + (" (ascii_only=True: try ascii_only=False)" if ascii_only else ""))
    return torch.tensor(ok, dtype=torch.long)


def allowed_tokens(tokenizer, ascii_only: bool = True, vocabulary: str = "readable") -> torch.Tensor:
    """Ids of tokens that decode to printable text with a letter or digit (``vocabulary="readable"``), to any
    printable text (``"printable"``), or to text in one language's scripts (``"japanese"``, ``"chinese"``);
    specials and placeholders excluded.

    Memoized by the vocabulary's content (its hash, the fast tokenizer's decoder and the special ids; a slow
    tokenizer is computed afresh), never by the tokenizer object: a tokenizer that gains tokens gets a new answer,
    and two tokenizers with one vocabulary share one. The hash costs 0.06 s for SmolLM2's 49,152 tokens, the
    decoding it saves 0.2 s (every captioned image builds an optimizer).
    """
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; use one of {VOCABULARIES}")
    if vocabulary in SCRIPTS and ascii_only:
        raise ValueError(f"vocabulary {vocabulary!r} holds no ASCII tokens; set ascii_only=False")
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
