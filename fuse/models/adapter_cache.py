"""Adapters built on first use and cached under ``<cache>/adapters`` (atomic, shared by processes)."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from fuse.core.adapter import TensorAdapter
from fuse.core.fit_config import AdapterFitConfig
from fuse.models.cache import atomic_dir, cache_dir

logger = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:40]


def adapter_key(source, target, **fit_kwargs) -> str:
    """Folder name for an adapter: readable names plus a hash of both vocabularies and the fit options."""
    opts = ",".join(f"{k}={fit_kwargs[k]}" for k in sorted(fit_kwargs))
    digest = hashlib.sha256(f"{source.vocab_hash}|{target.vocab_hash}|{source.dim}|{target.dim}|{opts}".encode()).hexdigest()[:12]
    return f"{_slug(source.name)}--{_slug(target.name)}--{digest}"


def cached_adapter(source, target, config: AdapterFitConfig | None = None, *, progress: bool = False,
                   **fit_kwargs) -> TensorAdapter:
    """Load the adapter for this pair and these fit options from the cache, fitting it on first use.

    Args:
        config: an :class:`~fuse.core.fit_config.AdapterFitConfig` (defaults: 8,000 English words,
            k=8, λ=1e-3, padded, seed 0, unit ``"boundary"``); keyword options override its fields
            (the older call ``cached_adapter(a, b, n_words=8000, k=8, ...)`` still works).

    The cache key holds the original five options always and the newer ones (language, unit, word
    source, …) only when they differ from the defaults, so an English adapter cached earlier is found.
    """
    words = fit_kwargs.pop("words", None)  # an explicit word list (all fitted), named in the key as before
    config = AdapterFitConfig(**fit_kwargs) if config is None else (
        config.override(**fit_kwargs) if fit_kwargs else config)
    key_opts = config.cache_options() | ({"words": words} if words is not None else {})
    dest = cache_dir("adapters") / adapter_key(source, target, **key_opts)
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                logger.info("building adapter %s → %s (first use; cached in %s)", source.name, target.name, dest)
                TensorAdapter.fit(source, target, config, words=words, progress=progress).save_pretrained(tmp)
    return TensorAdapter.from_pretrained(Path(dest), source=source, target=target, device=source.device)
