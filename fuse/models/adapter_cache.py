"""Adapters built on first use and cached under ``<cache>/adapters`` (atomic, shared by processes)."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from fuse.core.adapter import TensorAdapter
from fuse.models.cache import atomic_dir, cache_dir

logger = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:40]


def adapter_key(source, target, **fit_kwargs) -> str:
    """Folder name for an adapter: readable names plus a hash of both vocabularies and the fit options."""
    opts = ",".join(f"{k}={fit_kwargs[k]}" for k in sorted(fit_kwargs))
    digest = hashlib.sha256(f"{source.vocab_hash}|{target.vocab_hash}|{source.dim}|{target.dim}|{opts}".encode()).hexdigest()[:12]
    return f"{_slug(source.name)}--{_slug(target.name)}--{digest}"


def cached_adapter(source, target, *, progress: bool = False, **fit_kwargs) -> TensorAdapter:
    """Load the adapter for this pair and these fit options from the cache, fitting it on first use."""
    dest = cache_dir("adapters") / adapter_key(source, target, **fit_kwargs)
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                logger.info("building adapter %s → %s (first use; cached in %s)", source.name, target.name, dest)
                TensorAdapter.fit(source, target, progress=progress, **fit_kwargs).save_pretrained(tmp)
    return TensorAdapter.from_pretrained(Path(dest), source=source, target=target, device=source.device)
