"""Tower features of image files, computed once and cached (safetensors under the user cache)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fuse.models.cache import atomic_dir, cache_dir

logger = logging.getLogger(__name__)


def cached_image_features(paths: list[Path | str], tower, *, batch_size: int = 32, progress: bool = False) -> dict[str, torch.Tensor]:
    """``{"features": (N, D), "logits": (N, 1000)}`` of image files, from the cache or computed and cached.

    The cache key hashes the tower name and the file paths with their sizes and modification times.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no image paths given")
    h = hashlib.sha256(tower.name.encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    dest = cache_dir("image-features") / f"{tower.name}-{len(paths)}-{h.hexdigest()[:16]}"
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                logger.info("encoding %d images with %s (cached in %s)", len(paths), tower.name, dest)
                feats, logits = tower.encode(paths, batch_size=batch_size, progress=progress)
                out = {"features": feats.contiguous()}
                if logits is not None:
                    out["logits"] = logits.contiguous()
                save_file(out, str(tmp / "features.safetensors"), metadata={"format": "pt"})
    return load_file(str(dest / "features.safetensors"))
