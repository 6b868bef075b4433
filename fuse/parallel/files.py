"""The items of a dataset job given on the command line: files, or folders standing for their files."""

from __future__ import annotations

import os
from pathlib import Path


def expand_folders(paths, suffixes) -> list[str]:
    """Each path as given, except that a folder becomes its files with one of ``suffixes`` (e.g.
    ``{".png", ".jpg"}``, compared case-insensitively), sorted by name, not recursing.

    Raises:
        ValueError: a folder holds no such file, or a path is given twice (after expansion).
    """
    wanted = {s.lower() for s in suffixes}
    out: list[str] = []
    for p in paths:
        path = Path(os.fspath(p))
        if path.is_dir():
            found = sorted(str(f) for f in path.iterdir() if f.is_file() and f.suffix.lower() in wanted)
            if not found:
                raise ValueError(f"folder {str(path)!r} holds no files ending in {sorted(wanted)[:8]}…")
            out += found
        else:
            out.append(os.fspath(p))
    seen: set[str] = set()
    for p in out:
        if p in seen:
            raise ValueError(f"{p!r} is given twice; each item is processed once")
        seen.add(p)
    return out
