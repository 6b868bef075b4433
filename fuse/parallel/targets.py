"""The targets file of ``fuse optimize --targets FILE``: one optimization per line.

Two forms, line by line (blank lines and lines starting with ``#`` are skipped):

- plain text: the line is the target text; its key (in the output and for resuming) is the text;
- a JSON object: ``{"target_text": "...", "id": "...", "prefix": ..., "seed": ..., "n_tokens": ...,
  "budget": ...}``; ``target_text`` is required, ``id`` (default: the target text) is the key, the
  other fields override the command's options for this target only.

Example file::

    a sailing ship at sea
    {"id": "ship-seed1", "target_text": "a sailing ship at sea", "seed": 1}
    {"target_text": "a red apple", "prefix": "A photo of", "n_tokens": 6}
"""

from __future__ import annotations

import json
from pathlib import Path

#: per-target overrides and their types
OVERRIDES = {"prefix": str, "seed": int, "n_tokens": int, "budget": int}


def _item(line: str, where: str) -> tuple[str, dict]:
    if not line.startswith("{"):
        return line, {"target_text": line}
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg}); write a plain target text or one JSON object per line") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a JSON line must be an object with a 'target_text'")
    text = obj.pop("target_text", None)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: 'target_text' must be a non-empty string")
    key = obj.pop("id", text)
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{where}: 'id' must be a non-empty string")
    unknown = sorted(set(obj) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; a target may set id, target_text and {sorted(OVERRIDES)}")
    for name, value in obj.items():
        kind = OVERRIDES[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{where}: {name!r} must be a {kind.__name__}, got {value!r}")
    return key, {"target_text": text, **obj}


def read_targets(path) -> list[tuple[str, dict]]:
    """``(key, {"target_text": ..., overrides})`` for each target in the file, in file order.

    Raises:
        ValueError: the file is missing or empty, a line is malformed, or two targets share a key.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"targets file {str(path)!r} does not exist; give a text file with one target per line")
    out, seen = [], {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        key, item = _item(line, where)
        if key in seen:
            raise ValueError(f"{where}: target {key!r} repeats line {seen[key]}; give each one a distinct 'id'")
        seen[key] = n
        out.append((key, item))
    if not out:
        raise ValueError(f"targets file {str(path)!r} holds no targets")
    return out
