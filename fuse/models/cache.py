"""The user cache: where dequantized models and built adapters live.

``FUSE_CACHE`` overrides the location; the default is the XDG cache dir (``~/.cache/fuse``).
Writes are atomic: a folder is built under a temporary name beside its destination and renamed
into place under a file lock, so two processes can never leave a half-written entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

logger = logging.getLogger(__name__)


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), or a sub-folder of it."""
    root = os.environ.get("FUSE_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "fuse"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_key(config) -> str:
    """12 hex digits naming a dataclass config (sorted JSON of its fields): one cache entry per config."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:12]


def trained_once(dest: Path, train: Callable[[], object]) -> Path:
    """Make sure the folder ``dest`` holds a trained model: if missing, ``train()`` (an object with
    ``save(folder)``) and write it atomically. Returns ``dest``."""
    dest = Path(dest)
    if not dest.exists():
        model = train()
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                model.save(tmp)
    return dest


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path | None]:
    """Build the folder ``dest`` atomically.

    Yields a temporary folder to write into, or ``None`` when ``dest`` already exists (another
    process finished it first). On success the temporary folder is renamed to ``dest``; on an
    error it is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.exists():
            yield None
            return
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
        try:
            yield tmp
            os.replace(tmp, dest)
            logger.info("cached %s", dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
