"""Words and the tokens that make them up.

Text is cut at whitespace into words. Every tokenizer marks word boundaries its own way (``Ġ``
in byte-level BPE, ``▁`` in SentencePiece, ``##`` in WordPiece, ``</w>`` in CLIP), so tokens are
assigned to words by *character offsets* from one tokenization of the whole text, never by
re-tokenizing words one at a time (that changes the tokens).

Rules, for every fast tokenizer:

* special tokens (BOS/EOS/CLS/SEP/pad added by the tokenizer) belong to no word;
* a token is assigned to the word whose characters it overlaps (byte-level BPE tokens such as
  ``Ġworld`` overlap the space before the word too; that space belongs to no word);
* a token made only of whitespace (``Ġ``, ``▁▁``, ``\\n``) joins the *next* word, or the last
  word at the end of the text;
* a token that straddles a whitespace boundary merges the words it touches into one word, so that
  every token lies in exactly one word and words never overlap;
* **text without whitespace** (CJK, long URLs): when the whole text is one run of non-space
  characters, it is split at the tokenizer's own pre-token boundaries (its pre-tokenizer), and
  the rules above apply to those pieces. A tokenizer whose pre-tokenizer does not split the run
  leaves it one word.

When two tokenizations must agree on the words (the gradient bridge), the merges of both are
applied to both (:func:`align`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

__all__ = ["WordGroups", "word_spans", "group_text", "group_ids", "align", "decode_with_offsets"]

_WORD = re.compile(r"\S+")


@dataclass
class WordGroups:
    """One tokenization of a text, with every token assigned to a word.

    Attributes:
        text: the text.
        ids: token ids as the tokenizer produced them (special tokens included).
        offsets: ``(start, end)`` character span of every token in ``text``.
        word_of_token: word index per token; ``-1`` for special tokens.
        spans: ``(start, end)`` character span of every word (its non-space characters).
    """

    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]
    word_of_token: list[int]
    spans: list[tuple[int, int]]
    _positions: list[list[int]] | None = field(default=None, repr=False)

    @property
    def n_words(self) -> int:
        return len(self.spans)

    @property
    def words(self) -> list[str]:
        return [self.text[s:e] for s, e in self.spans]

    def positions(self) -> list[list[int]]:
        """Token positions of each word, in order."""
        if self._positions is None:
            pos: list[list[int]] = [[] for _ in self.spans]
            for i, w in enumerate(self.word_of_token):
                if w >= 0:
                    pos[w].append(i)
            self._positions = pos
        return self._positions

    def counts(self) -> list[int]:
        """Number of tokens in each word."""
        return [len(p) for p in self.positions()]


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty or only whitespace; give at least one word")
    return text


def word_spans(text: str, tokenizer=None) -> list[tuple[int, int]]:
    """Character spans of the whitespace-delimited words of ``text``.

    If the text is a single run of non-space characters and a fast ``tokenizer`` is given, the run
    is split at that tokenizer's pre-token boundaries (see the module docstring).
    """
    _check_text(text)
    spans = [m.span() for m in _WORD.finditer(text)]
    if len(spans) == 1 and tokenizer is not None:
        s0, e0 = spans[0]
        cuts = [c for c in _pretoken_starts(text, tokenizer) if s0 < c < e0]
        if cuts:
            bounds = [s0, *sorted(set(cuts)), e0]
            return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    return spans


def _pretoken_starts(text: str, tokenizer) -> list[int]:
    """Start offsets of the tokenizer's own pre-tokens (``Encoding.word_ids``)."""
    if not getattr(tokenizer, "is_fast", False):
        return []
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts: dict[int, int] = {}
    for wid, (s, e) in zip(enc.word_ids(), enc["offset_mapping"]):
        if wid is not None and e > s:
            starts[wid] = min(starts.get(wid, s), s)
    return list(starts.values())


def _touching(spans: list[tuple[int, int]], starts: list[int], s: int, e: int) -> tuple[int, int]:
    """Indices [lo, hi) of the word spans that overlap characters [s, e)."""
    lo = bisect.bisect_right(starts, s) - 1
    if lo < 0 or spans[lo][1] <= s:
        lo += 1
    hi = bisect.bisect_left(starts, e)
    return lo, max(lo, hi)


def _assign(text: str, spans: list[tuple[int, int]], tokenizations: list[tuple[list[tuple[int, int]], list[bool]]]):
    """Assign every non-special token of every tokenization to a word, merging words as needed."""
    n = len(spans)
    starts = [s for s, _ in spans]
    merge_next = [False] * n  # word i is merged with word i+1
    raw: list[list[tuple[int, int] | None]] = []
    for offsets, special in tokenizations:
        rows = []
        for (s, e), sp in zip(offsets, special):
            if sp:
                rows.append(None)
                continue
            lo, hi = _touching(spans, starts, s, e) if e > s else (n, n)
            if hi <= lo:  # whitespace-only or zero-width token: join the next word, else the last one
                nxt = bisect.bisect_left(starts, max(e, s))
                lo = hi = nxt if nxt < n else n - 1
                hi = lo + 1
            for j in range(lo, hi - 1):
                merge_next[j] = True
            rows.append((lo, hi))
        raw.append(rows)
    merged_index = []
    merged_spans: list[tuple[int, int]] = []
    for i, (s, e) in enumerate(spans):
        if i > 0 and merge_next[i - 1]:
            merged_spans[-1] = (merged_spans[-1][0], e)
        else:
            merged_spans.append((s, e))
        merged_index.append(len(merged_spans) - 1)
    out = []
    for rows in raw:
        out.append([-1 if r is None else merged_index[r[0]] for r in rows])
    return merged_spans, out


def _encode(tokenizer, text: str, add_special_tokens: bool):
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; character offsets need one "
            "(AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_special_tokens_mask=True, truncation=False)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = [bool(m) for m in enc["special_tokens_mask"]]
    return ids, offsets, special


def group_text(tokenizer, text: str, *, add_special_tokens: bool = True) -> WordGroups:
    """Tokenize ``text`` once and assign every token to a word."""
    _check_text(text)
    ids, offsets, special = _encode(tokenizer, text, add_special_tokens)
    spans, (wot,) = _assign(text, word_spans(text, tokenizer), [(offsets, special)])
    return WordGroups(text, ids, offsets, wot, spans)


def _special_ids(tokenizer) -> set[int]:
    """Ids that belong to no word: special tokens, except UNK (it stands for real characters)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    ids.discard(unk)
    return ids


def decode_with_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]], list[bool]]:
    """Decode ``ids`` to text and find each token's character span in it.

    Special tokens are dropped from the text and get an empty span. Spans come from decoding
    growing prefixes; byte pieces of one UTF-8 character (whose prefix decodes to ``\ufffd``)
    share the span of the character that completes them.
    """
    special_ids = _special_ids(tokenizer)
    keep = [i for i in ids if i not in special_ids]

    def dec(x):
        return tokenizer.decode(x, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    text = dec(keep)
    offsets: list[tuple[int, int]] = []
    special: list[bool] = []
    stable = ""
    pending: list[int] = []
    j = 0
    for tid in ids:
        if tid in special_ids:
            offsets.append((len(stable), len(stable)))
            special.append(True)
            continue
        j += 1
        cur = dec(keep[:j])
        offsets.append((0, 0))
        special.append(False)
        pending.append(len(offsets) - 1)
        if cur.endswith("\ufffd") and j < len(keep):
            continue  # an incomplete character: wait for the token that completes it
        common = 0
        for a, b in zip(stable, cur):
            if a != b:
                break
            common += 1
        span = (min(common, len(text)), min(len(cur), len(text)))
        for p in pending:
            offsets[p] = span
        pending = []
        stable = cur
    return text, offsets, special


def group_ids(tokenizer, ids: list[int]) -> WordGroups:
    """Decode ``ids`` and assign every token to a word of the decoded text."""
    ids = [int(i) for i in ids]
    text, offsets, special = decode_with_offsets(tokenizer, ids)
    _check_text(text)
    spans, (wot,) = _assign(text, word_spans(text, tokenizer), [(offsets, special)])
    return WordGroups(text, ids, offsets, wot, spans)


def align(source: WordGroups, target_tokenizer, *, add_special_tokens: bool = True) -> tuple[WordGroups, WordGroups]:
    """Tokenize ``source.text`` with ``target_tokenizer`` and regroup both so their words agree.

    Returns ``(source', target)``: the same words (same ``spans``) in both, every token of each
    assigned to one of them.
    """
    ids_b, off_b, sp_b = _encode(target_tokenizer, source.text, add_special_tokens)
    special_a = [w < 0 for w in source.word_of_token]
    base = word_spans(source.text)
    spans, (wa, wb) = _assign(source.text, base, [(source.offsets, special_a), (off_b, sp_b)])
    a = WordGroups(source.text, source.ids, source.offsets, wa, spans)
    b = WordGroups(source.text, ids_b, off_b, wb, spans)
    return a, b
