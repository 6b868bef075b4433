"""The shared word list an adapter is fitted on: frequent English words from ``wordfreq``, split by seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

WORD_SOURCE = "wordfreq:en:top"


@dataclass(frozen=True)
class WordSplit:
    fit: list[str]
    holdout: list[str]
    source: str
    seed: int


def frequent_words(n: int, lang: str = "en") -> list[str]:
    """The ``n`` most frequent words of ``lang`` that contain a letter and no whitespace."""
    from wordfreq import top_n_list

    if n < 1:
        raise ValueError(f"need at least one word, got n={n}")
    words = []
    pool = top_n_list(lang, max(2 * n + 1000, 5000))
    for w in pool:
        if w and not any(c.isspace() for c in w) and any(c.isalpha() for c in w):
            words.append(w)
        if len(words) >= n:
            break
    if len(words) < n:
        raise ValueError(f"wordfreq has only {len(words)} usable {lang!r} words, asked for {n}")
    return words


def split_words(n_fit: int, n_holdout: int = 2000, seed: int = 0, lang: str = "en") -> WordSplit:
    """Seeded split of the top ``n_fit + n_holdout`` words: the held-out words are never fitted.

    The held-out set depends only on ``(n_holdout, seed)`` and the pool size, so adapters fitted on
    different ``n_fit`` from the same pool can be compared on one held-out set when ``pool`` is fixed
    by the caller (see :func:`split_pool`).
    """
    return split_pool(frequent_words(n_fit + n_holdout, lang), n_fit, n_holdout, seed)


def split_pool(pool: list[str], n_fit: int, n_holdout: int, seed: int) -> WordSplit:
    if n_fit + n_holdout > len(pool):
        raise ValueError(f"pool of {len(pool)} words is too small for {n_fit} fit + {n_holdout} held-out words")
    order = list(pool)
    random.Random(seed).shuffle(order)
    return WordSplit(fit=order[n_holdout : n_holdout + n_fit], holdout=order[:n_holdout], source=WORD_SOURCE, seed=seed)
