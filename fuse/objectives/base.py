"""The loss-term interface: a ``(B,)`` loss from a frozen backbone, from embeddings or from text."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from fuse.models.batching import encode_batch


class Objective(ABC):
    """A differentiable loss from one frozen backbone."""

    name = "objective"
    #: whether :meth:`score_ids` also reports a ``match`` (an exact goal such as a greedy continuation)
    has_goal = False

    def __init__(self, backbone):
        self.backbone = backbone

    @abstractmethod
    def loss(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor,
             state=None) -> torch.Tensor:
        """``(B,)`` loss from ``inputs_embeds (B, L, d)``, ``ids (B, L)`` and ``attention_mask (B, L)``.

        ``state``: the run's :class:`~fuse.models.run_state.LMState` for this term's model (its caches), or ``None``;
        objectives whose backbone caches nothing ignore it."""

    def loss_texts(self, texts: list[str]) -> torch.Tensor:
        """Exact loss of texts as the backbone sees them in use (its own tokenization), ``(B,)``."""
        return self.score_texts(texts)[0]

    def score_texts(self, texts: list[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exact ``(loss (B,), match (B,) or None)`` of texts under the backbone's own tokenization."""
        ids, mask = encode_batch(self.backbone.tokenizer, texts, self.backbone.device)
        return self.score_ids(ids, mask, batch_size=batch_size)

    def score_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 64, state=None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exact ``(loss (B,), match)`` of token ids the backbone sees as they are (no gradient).

        ``match`` is ``None``, or ``(B,)`` booleans for objectives with an exact goal (a continuation the model
        produces greedily). Subclasses with a faster exact path than :meth:`loss` override this.
        """
        with torch.no_grad():
            out = [self.loss(self.backbone.embed(ids[i : i + batch_size]), ids[i : i + batch_size],
                             attention_mask[i : i + batch_size]) for i in range(0, ids.shape[0], batch_size)]
        return torch.cat(out), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backbone.name!r})"
