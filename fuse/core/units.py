"""The aligned unit: which source tokens and which target tokens are paired in one gradient row.

Words come from whitespace (:mod:`fuse.core.words`); a word that either model splits into more
than ``k`` tokens, or a run of text written without spaces (Japanese, Chinese, a long URL), is cut
further. Three rules (``unit=``):

* ``"word"``: today's rule, kept for measurement — a word longer than ``k`` tokens is cut into
  ``m = max(⌈s_A/k⌉, ⌈s_B/k⌉)`` chunks of near-equal size on both sides and chunk ``i`` is paired
  with chunk ``i``; the chunks need not cover the same characters.
* ``"boundary"`` (default): a word longer than ``k`` tokens on either side is cut where *both*
  tokenizations have a token boundary at the same character (tokenkit's cross-tokenizer
  alignment), and the pieces are merged left to right up to ``k`` tokens each side. A byte-level
  BPE may split one character into several byte tokens; those tokens share the character's span,
  so no cut falls inside a character. Every row then pairs tokens that cover the same characters.
* ``"segmenter"``: a word written in CJK script is cut at a dictionary segmenter's word
  boundaries (MeCab through ``fugashi`` + ``unidic-lite`` when the word holds kana, else
  ``jieba``) wherever both tokenizations also have a boundary there; other words as
  ``"boundary"``. Needs the optional extra ``pip install fuse-tensor-bridge[cjk]``.

With ``"boundary"`` or ``"segmenter"``, a piece that has no common boundary and more than ``k``
tokens on a side (rare) falls back to position chunks; :func:`word_rows` marks such rows inexact and
the bridge logs a warning naming the span.

Example:
    >>> rows = word_rows("東京タワー", (0, 5), [0, 1, 2], [0, 1], [(0, 1), (0, 1), (1, 5)],
    ...                  [(0, 2), (2, 5)], k=2, unit="boundary")                          # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["UNITS", "DEFAULT_UNIT", "Row", "word_rows", "common_cuts", "segment_cuts", "has_cjk", "covered_chars"]

UNITS = ("word", "boundary", "segmenter")
DEFAULT_UNIT = "boundary"

# Han, kana, CJK punctuation, full-width forms, Hangul: scripts written (mostly) without spaces.
_CJK = re.compile(r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  r"\uf900-\ufaff\uff00-\uffef\uac00-\ud7af\U00020000-\U0003134f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")


@dataclass(frozen=True)
class Row:
    """One gradient row: source and target token positions, the characters they stand for.

    Attributes:
        src, tgt: token positions (at most ``k`` each).
        span: ``(start, end)`` characters of the text this row covers.
        exact: both sides' tokens cover the same non-space characters (position chunks of a unit longer
            than ``k`` are never exact).
    """

    src: tuple[int, ...]
    tgt: tuple[int, ...]
    span: tuple[int, int]
    exact: bool


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a character of a script written without spaces (CJK)."""
    return _CJK.search(text) is not None


def covered_chars(text: str, offsets, positions) -> frozenset[int]:
    """Non-space character indices covered by the tokens at ``positions``."""
    out = set()
    for p in positions:
        s, e = offsets[p]
        out.update(i for i in range(s, e) if not text[i].isspace())
    return frozenset(out)


def _cuts_one(offsets, positions, lo: int, hi: int) -> set[int]:
    """Characters ``c`` in ``(lo, hi)`` where one tokenization has a token boundary (a token starts
    or ends at ``c``, and no token spans across ``c``)."""
    n = hi - lo
    blocked = [0] * (n + 2)
    cand = set()
    for p in positions:
        s, e = offsets[p]
        if e <= s:
            continue
        cand.add(s)
        cand.add(e)
        a, b = max(s + 1, lo), min(e - 1, hi)  # characters strictly inside the token
        if a <= b:
            blocked[a - lo] += 1
            blocked[b - lo + 1] -= 1
    out, run = set(), 0
    for i in range(n + 1):
        run += blocked[i]
        c = lo + i
        if lo < c < hi and run == 0 and c in cand:
            out.add(c)
    return out


def common_cuts(span, pos_a, pos_b, off_a, off_b) -> list[int]:
    """Sorted characters inside ``span`` where both tokenizations have a boundary."""
    lo, hi = span
    return sorted(_cuts_one(off_a, pos_a, lo, hi) & _cuts_one(off_b, pos_b, lo, hi))


@functools.lru_cache(maxsize=1)
def _mecab():
    import fugashi  # optional extra "cjk"

    return fugashi.Tagger()


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba  # optional extra "cjk"

    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment_cuts(text: str) -> list[int]:
    """Word boundaries inside ``text`` from a dictionary segmenter (MeCab if it holds kana, else jieba).

    Raises:
        ImportError: when the optional segmenters are missing (``pip install fuse-tensor-bridge[cjk]``).
    """
    try:
        if _KANA.search(text):
            pieces = [w.surface for w in _mecab()(text)]
        else:
            pieces = list(_jieba().cut(text, HMM=True))
    except ImportError as err:
        raise ImportError("unit='segmenter' needs the dictionary segmenters: pip install fuse-tensor-bridge[cjk] "
                          "(fugashi, unidic-lite, jieba); unit='boundary' needs none") from err
    cuts, pos = [], 0
    for w in pieces:
        j = text.find(w, pos)
        if j < 0:  # the segmenter normalised something: stop cutting rather than guess
            break
        if j > 0:
            cuts.append(j)
        pos = j + len(w)
        if pos < len(text):
            cuts.append(pos)
    return sorted(set(c for c in cuts if 0 < c < len(text)))


def _chunks(pos: list[int], m: int) -> list[list[int]]:
    n = len(pos)
    bounds = [round(i * n / m) for i in range(m + 1)]
    return [pos[bounds[i] : bounds[i + 1]] for i in range(m)]


def _positional(text, span, pa, pb, off_a, off_b, k) -> list[Row]:
    """Today's rule: near-equal chunks paired by position."""
    if not pa or not pb:
        return []
    m = max(math.ceil(len(pa) / k), math.ceil(len(pb) / k))
    if m <= 1:
        return [Row(tuple(pa), tuple(pb), span, covered_chars(text, off_a, pa) == covered_chars(text, off_b, pb))]
    # chunks paired by position: inexact even where the characters happen to agree (tokens may be left out)
    return [Row(tuple(cs), tuple(ct), span, False) for cs, ct in zip(_chunks(pa, m), _chunks(pb, m)) if cs and ct]


def _atoms(span, cuts, pa, pb, off_a, off_b):
    """Split both sides' tokens into the pieces between ``cuts``: ``[(start, end, pos_a, pos_b)]``."""
    lo, hi = span
    bounds = [lo, *cuts, hi]
    atoms = [(bounds[i], bounds[i + 1], [], []) for i in range(len(bounds) - 1)]
    for positions, offsets, side in ((pa, off_a, 2), (pb, off_b, 3)):
        for p in positions:
            s = max(offsets[p][0], lo)
            atoms[min(bisect.bisect_right(cuts, s), len(atoms) - 1)][side].append(p)
    return atoms


def _merge(atoms, k: int, starts: set[int] | None = None):
    """Merge consecutive atoms into groups of at most ``k`` tokens each side (greedy, left to right).

    With ``starts``, a new group begins at (and only at) an atom starting at one of those characters
    (a segmenter's word starts), whatever its size. A piece with no token on one side (a tokenizer
    that drops or normalises away characters) is merged with its neighbour when that fits in ``k``;
    else it stays alone and passes no gradient.
    """
    groups: list[list] = []
    for s, e, a, b in atoms:
        if not groups:
            groups.append([s, e, list(a), list(b)])
            continue
        g = groups[-1]
        fits = len(g[2]) + len(a) <= k and len(g[3]) + len(b) <= k
        lonely = (not g[2] or not g[3] or not a or not b) and fits
        if starts is not None:
            join = s not in starts or lonely
        else:
            join = fits
        if join:
            g[1], g[2], g[3] = e, g[2] + a, g[3] + b
        else:
            groups.append([s, e, list(a), list(b)])
    if len(groups) > 1 and (not groups[-1][2] or not groups[-1][3]) and \
            len(groups[-1][2]) + len(groups[-2][2]) <= k and len(groups[-1][3]) + len(groups[-2][3]) <= k:
        last = groups.pop()
        g = groups[-1]
        g[1], g[2], g[3] = last[1], g[2] + last[2], g[3] + last[3]
    return groups


def word_rows(text: str, span: tuple[int, int], pa: list[int], pb: list[int], off_a, off_b, k: int,
              unit: str = DEFAULT_UNIT) -> list[Row]:
    """The gradient rows of one word (both sides' token positions ``pa``, ``pb`` in order).

    Args:
        text: the whole text; ``span`` the word's characters in it.
        off_a, off_b: character offsets of every token of each tokenization.
        k: at most ``k`` tokens per side in a row.
        unit: ``"word"``, ``"boundary"`` or ``"segmenter"`` (module docstring).
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; use one of {UNITS}")
    if not pa or not pb:
        return []
    long = len(pa) > k or len(pb) > k
    segment = unit == "segmenter" and has_cjk(text[span[0] : span[1]])
    if unit == "word" or not (long or segment):
        return _positional(text, span, pa, pb, off_a, off_b, k)
    cuts = common_cuts(span, pa, pb, off_a, off_b)
    if not cuts:
        return _positional(text, span, pa, pb, off_a, off_b, k)
    atoms = _atoms(span, cuts, pa, pb, off_a, off_b)
    if segment:
        seg = {span[0] + c for c in segment_cuts(text[span[0] : span[1]])}
        groups = []
        for g in _merge(atoms, k, starts=seg):  # dictionary words; a word over k is cut again at common cuts
            if len(g[2]) > k or len(g[3]) > k:
                inner = [c for c in cuts if g[0] < c < g[1]]
                groups += _merge(_atoms((g[0], g[1]), inner, g[2], g[3], off_a, off_b), k) if inner else [g]
            else:
                groups.append(g)
    else:
        groups = _merge(atoms, k)
    rows = []
    for s, e, a, b in groups:
        rows += _positional(text, (s, e), a, b, off_a, off_b, k)
    return rows
