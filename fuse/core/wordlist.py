"""The shared word list an adapter is fitted on, split by seed into fitted and held-out words.

Sources: the frequent words of a language from ``wordfreq`` (English by default; Japanese and
Chinese ship offline too), a user's file of words (one per line), or the most frequent words of a
user's own documents (:func:`corpus_words`).
"""

from __future__ import annotations

import collections
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from fuse.core.units import has_cjk

logger = logging.getLogger(__name__)

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
    return split_pool(frequent_words(n_fit + n_holdout, lang), n_fit, n_holdout, seed, source=f"wordfreq:{lang}:top")


def split_pool(pool: list[str], n_fit: int, n_holdout: int, seed: int, source: str = WORD_SOURCE) -> WordSplit:
    if n_fit + n_holdout > len(pool):
        raise ValueError(f"pool of {len(pool)} words is too small for {n_fit} fit + {n_holdout} held-out words")
    order = list(pool)
    random.Random(seed).shuffle(order)
    return WordSplit(fit=order[n_holdout : n_holdout + n_fit], holdout=order[:n_holdout], source=source, seed=seed)


def read_words(path: str | Path) -> list[str]:
    """Distinct words of a UTF-8 file, one per line, in file order (blank lines and ``#`` comments skipped).

    A line with whitespace inside keeps its first field (``word<TAB>count`` lists work as they are).
    """
    out, seen = [], set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split()[0]
        if w not in seen:
            seen.add(w)
            out.append(w)
    if not out:
        raise ValueError(f"{path} holds no words (one word per line)")
    return out


_TOKEN = re.compile(r"[^\W_][\w'’\-.]*[^\W_]|[^\W_]", re.UNICODE)


def corpus_words(path: str | Path, n: int | None = None, *, batch_size: int = 10_000) -> list[str]:
    """The most frequent words of a user's documents (a UTF-8 text file), most frequent first.

    Text is cut at whitespace and punctuation; runs of CJK script are cut into dictionary words by
    the optional segmenters (``pip install fuse-tensor-bridge[cjk]``). Ties keep first appearance.
    Lines are read ``batch_size`` at a time.
    """
    counts: collections.Counter = collections.Counter()
    batch: list[str] = []

    def flush():
        for line in batch:
            for tok in _TOKEN.findall(line):
                if has_cjk(tok):
                    counts.update(_segment(tok))
                else:
                    counts[tok] += 1
        batch.clear()

    with open(path, encoding="utf-8") as f:
        for line in f:
            batch.append(line)
            if len(batch) >= batch_size:
                flush()
    flush()
    words = [w for w, _ in counts.most_common() if any(c.isalpha() for c in w)]
    if not words:
        raise ValueError(f"{path} holds no words")
    logger.info("corpus %s: %d distinct words", path, len(words))
    return words[:n] if n is not None else words


def _segment(run: str) -> list[str]:
    from fuse.core.units import segment_cuts

    try:
        cuts = segment_cuts(run)
    except ImportError as err:
        raise ImportError(f"{run[:20]!r}…: cutting a CJK corpus into words needs the segmenters "
                          "(pip install fuse-tensor-bridge[cjk]); or pass a word list with --words-file") from err
    b = [0, *cuts, len(run)]
    return [run[b[i] : b[i + 1]] for i in range(len(b) - 1) if not run[b[i] : b[i + 1]].isspace()]


def fit_split(config) -> WordSplit:
    """The fit/held-out split an :class:`~fuse.core.fit_config.AdapterFitConfig` names."""
    if config.words_file is None and config.corpus is None:
        return split_words(config.n_words, config.n_holdout, config.seed, config.language)
    pool = read_words(config.words_file) if config.words_file is not None else corpus_words(config.corpus)
    pool = [w for w in pool if not any(c.isspace() for c in w)]
    n_hold = min(config.n_holdout, len(pool) // 5)  # a short list keeps four fifths for fitting
    n_fit = min(config.n_words, len(pool) - n_hold)
    if n_fit < 1:
        raise ValueError(f"{config.word_source} has only {len(pool)} words")
    if n_hold < config.n_holdout:
        logger.warning("%s: %d words; holding out %d (not %d) for evaluation", config.word_source, len(pool), n_hold,
                       config.n_holdout)
    if config.corpus is not None:  # frequency order matters: fit the most frequent, hold out a seeded sample of them
        pool = pool[: n_fit + n_hold]
    return split_pool(pool, n_fit, n_hold, config.seed, source=config.word_source)
