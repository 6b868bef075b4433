"""The options of an adapter fit, validated in one place (used by ``TensorAdapter.fit``, the cache and the CLI).

Example:
    >>> from fuse.core.fit_config import AdapterFitConfig
    >>> AdapterFitConfig(language="ja").leading_space_resolved
    False
    >>> AdapterFitConfig().override(language="ja").k   # language-dependent defaults follow the new language
    12
    >>> AdapterFitConfig(k=0)
    Traceback (most recent call last):
    ...
    ValueError: k must be >= 1, got 0
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fuse.core.units import DEFAULT_UNIT, UNITS

__all__ = ["AdapterFitConfig", "SCHEMES", "NO_SPACE_LANGUAGES"]

SCHEMES = ("padded", "bucket")
NO_SPACE_LANGUAGES = ("ja", "zh", "th", "lo", "km", "my")  # written without spaces between words


@dataclass(frozen=True)
class AdapterFitConfig:
    """How to fit an adapter.

    Attributes:
        n_words: words fitted (at most; a user list may hold fewer); default 8000, or 32000 for a language
            written without spaces (on Japanese, SmolLM2 ↔ Gemma-3, 4× the words raised held-out top-1 by
            13-30 %; on English it changed nothing: benchmarks/results/nospace_bounds_adapters.md).
        n_holdout: words held out for the quality report, never fitted.
        k: tube length (tokens per unit the map covers); default 8, or 12 for a language written without
            spaces (a byte-level BPE spends up to 3 tokens on one CJK character; at k = 8, 5 % of the
            rows of real Japanese text cannot pair the same characters, at 12 under 0.3 %).
        lam: relative ridge weight λ.
        scheme: ``"padded"`` or ``"bucket"``.
        seed: seed of the fit/held-out split.
        language: ``wordfreq`` language of the default word list (``"en"``, ``"ja"``, ``"zh"``, …).
        unit: how the bridge cuts text into rows (:mod:`fuse.core.units`); recorded with the adapter.
        words_file: a UTF-8 file of words, one per line (instead of ``wordfreq``).
        corpus: a UTF-8 text file; its most frequent words are fitted (instead of ``wordfreq``).
        leading_space: tokenize words as ``" " + word`` (as inside running English text); default
            ``True`` except for languages written without spaces.
        compute_dtype: dtype of the per-frequency solves.
    """

    n_words: int | None = None
    n_holdout: int = 2000
    k: int | None = None
    lam: float = 1e-3
    scheme: str = "padded"
    seed: int = 0
    language: str = "en"
    unit: str = DEFAULT_UNIT
    words_file: str | None = None
    corpus: str | None = None
    leading_space: bool | None = None
    compute_dtype: str = "float64"

    def __post_init__(self):
        # Fields left to their language-dependent default; override() re-derives them for a new language.
        object.__setattr__(self, "_derived", frozenset(n for n in ("n_words", "k") if getattr(self, n) is None))
        no_space = self.language in NO_SPACE_LANGUAGES
        if self.n_words is None:
            object.__setattr__(self, "n_words", 32000 if no_space else 8000)
        if self.k is None:
            object.__setattr__(self, "k", 12 if no_space else 8)
        for name in ("n_words", "n_holdout", "k", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{name} must be an int, got {v!r}")
        if self.n_words < 1:
            raise ValueError(f"n_words must be >= 1, got {self.n_words}")
        if self.n_holdout < 0:
            raise ValueError(f"n_holdout must be >= 0, got {self.n_holdout}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not isinstance(self.lam, (int, float)) or self.lam < 0:
            raise ValueError(f"lam must be a number >= 0, got {self.lam!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; use one of {SCHEMES}")
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; use one of {UNITS}")
        if not isinstance(self.language, str) or not self.language.isascii() or not 2 <= len(self.language) <= 8:
            raise ValueError(f"language must be a wordfreq language code such as 'en', 'ja', 'zh'; got {self.language!r}")
        if self.words_file is not None and self.corpus is not None:
            raise ValueError(f"give words_file ({self.words_file!r}) or corpus ({self.corpus!r}), not both")
        for name in ("words_file", "corpus"):
            v = getattr(self, name)
            if v is not None and not Path(v).is_file():
                raise ValueError(f"{name} {v!r} is not a file")
        if self.leading_space not in (None, True, False):
            raise ValueError(f"leading_space must be True, False or None, got {self.leading_space!r}")
        if self.compute_dtype not in ("float32", "float64"):
            raise ValueError(f"compute_dtype must be 'float32' or 'float64', got {self.compute_dtype!r}")

    def override(self, **changes) -> "AdapterFitConfig":
        """A copy with ``changes``; ``n_words`` and ``k`` left to their defaults follow a changed ``language``.

        (``dataclasses.replace`` keeps the defaults of the old language: ``replace(AdapterFitConfig(),
        language="ja").k`` is 8, ``AdapterFitConfig().override(language="ja").k`` is 12.)
        """
        names = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"unknown adapter option(s) {unknown}; the options are the fields of AdapterFitConfig: "
                             f"{names}")
        kept = {n: getattr(self, n) for n in names if n not in self._derived}
        return AdapterFitConfig(**(kept | changes))

    @property
    def leading_space_resolved(self) -> bool:
        if self.leading_space is not None:
            return self.leading_space
        return self.language not in NO_SPACE_LANGUAGES

    @property
    def word_source(self) -> str:
        """Where the words come from: ``wordfreq:LANG:top``, ``file:NAME#SHA`` or ``corpus:NAME#SHA``."""
        for kind, path in (("file", self.words_file), ("corpus", self.corpus)):
            if path is not None:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
                return f"{kind}:{Path(path).name}#{digest}"
        return f"wordfreq:{self.language}:top"

    def cache_options(self) -> dict:
        """The options that name a cached adapter.

        The five options of the original cache key always appear (so an English adapter cached before
        the other options existed is still found); the others only when they differ from the default.
        """
        base = ("n_words", "k", "lam", "scheme", "seed")
        default = AdapterFitConfig()
        out = {name: getattr(self, name) for name in base}
        for name, v in asdict(self).items():
            if name in base or name in ("words_file", "corpus") or v == getattr(default, name):
                continue
            out[name] = v
        if self.words_file is not None or self.corpus is not None:
            out["words"] = self.word_source
        return out
