"""The default objective of a backbone by its kind."""

from __future__ import annotations

from fuse.objectives.base import Objective
from fuse.objectives.language import Fluency
from fuse.objectives.text_encoder import ClassifierLabel, Similarity


def as_objective(thing, *, target_text: str | None = None, label: str | None = None) -> Objective:
    """An objective for a backbone by its kind: LM → fluency, encoder → similarity to ``target_text``,
    classifier → ``label``."""
    if isinstance(thing, Objective):
        return thing
    kind = getattr(thing, "kind", None)
    if kind == "causal_lm":
        return Fluency(thing)
    if kind == "encoder":
        if target_text is None:
            raise ValueError(f"{thing.name} is a text encoder: give target_text to compare the prompt against")
        return Similarity(thing, target_text)
    if kind == "classifier":
        if label is None:
            raise ValueError(f"{thing.name} is a classifier: give the label to steer towards")
        return ClassifierLabel(thing, label)
    raise ValueError(f"cannot make an objective from {thing!r}: pass a fuse Objective or a backbone from fuse.load")
