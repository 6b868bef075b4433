"""Loss terms computed by frozen backbones, each from ``inputs_embeds`` (differentiable) or from text (exact).

Every objective maps a batch to a ``(B,)`` loss (lower is better) and knows its backbone. The
exact path (:meth:`Objective.loss_texts`) tokenizes each text with the backbone's own tokenizer,
one forward per batch; the differentiable path (:meth:`Objective.loss`) takes embeddings and ids
(from the bridge for a secondary model, or the primary's own).
"""

from fuse.objectives.base import Objective
from fuse.objectives.factory import as_objective
from fuse.objectives.image_text import ImageText
from fuse.objectives.language import Continuation, Fluency
from fuse.objectives.text_encoder import ClassifierLabel, Similarity

__all__ = ["Objective", "Fluency", "Continuation", "Similarity", "ClassifierLabel", "ImageText", "as_objective"]
