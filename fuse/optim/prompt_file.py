"""The prompts file of ``fuse optimize --prompts FILE``: (messages, target) pairs that one span is optimized for.

JSON Lines (one object a line; blank lines and lines starting with ``#`` skipped) or one JSON document: a list of
such objects, or an object whose ``"prompts"`` (or ``"tasks"``, the form of ``benchmarks/tasks/transfer.json``) is
that list. Each object has a ``"target"`` and either ``"messages"`` (nanoGCG's form: ``[{"role", "content"}, ...]``
with ``{optim_str}`` once, rendered by each model's chat template) or ``"prompt"`` (a plain string with
``{optim_str}``, used as it is); ``"id"`` is optional. Several objects make a universal span: the objective is the
mean over prompts and models (:class:`~fuse.optim.prompt_chain.PromptChain`).

Example file (JSONL)::

    {"id": "joke", "messages": [{"role": "user", "content": "Tell me a joke{optim_str}"}], "target": "Sure"}
    {"prompt": "Q: name a color{optim_str}\\nA:", "target": " Purple"}
"""

from __future__ import annotations

import json
from pathlib import Path

from fuse.models.templates import PLACEHOLDER

__all__ = ["read_prompts"]

_FIELDS = {"id", "messages", "prompt", "target"}


def _pair(obj, where: str) -> tuple:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: each prompt is a JSON object with 'messages' (or 'prompt') and 'target', got {obj!r}")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; a prompt has {sorted(_FIELDS)}")
    if ("messages" in obj) == ("prompt" in obj):
        raise ValueError(f"{where}: give exactly one of 'messages' (a chat, rendered by each model's template) or "
                         f"'prompt' (a plain string with {PLACEHOLDER})")
    target = obj.get("target")
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"{where}: 'target' must be a non-empty string (what every model should generate)")
    body = obj.get("messages", obj.get("prompt"))
    text = body if isinstance(body, str) else json.dumps(body)
    if text.count(PLACEHOLDER) != 1:
        raise ValueError(f"{where}: the prompt must hold {PLACEHOLDER} exactly once, found it {text.count(PLACEHOLDER)} "
                         "times")
    return body, target


def read_prompts(path) -> list[tuple]:
    """``[(messages or prompt string, target), ...]`` from a prompts file, in file order (module docstring).

    Raises:
        ValueError: the file is missing, empty or malformed (naming the line or item and what to write instead).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompts file {str(path)!r} does not exist; give JSON Lines of "
                         '{"messages": [...], "target": "..."} (or a JSON list of them)')
    text = path.read_text(encoding="utf-8")
    items: list[tuple[object, str]] = []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                items.append((json.loads(line), f"{path}:{n}"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg}); write one JSON object per line, or one JSON "
                                 "list") from None
    if doc is not None:
        if isinstance(doc, dict) and not (_FIELDS & set(doc)):  # a wrapper object, not one prompt
            key = next((k for k in ("prompts", "tasks") if k in doc), None)
            if key is None:
                raise ValueError(f"{path}: a JSON object file needs a 'prompts' list")
            doc = doc[key]
        doc = doc if isinstance(doc, list) else [doc]
        items = [(obj, f"{path}: item {i}") for i, obj in enumerate(doc)]
    if not items:
        raise ValueError(f"prompts file {str(path)!r} holds no prompt")
    return [_pair(obj, where) for obj, where in items]
