"""Chain: a weighted objective over frozen models, optimized in one model's tokens (DESIGN §4–5).

``Chain(primary, [(term, weight), ...])``: the primary's tokens are what gets optimized. Each
term is an :class:`~fuse.objectives.Objective` (or a backbone, turned into its natural objective);
terms on other models are reached through adapters built on first use and cached
(:func:`fuse.models.adapter_cache.cached_adapter`). :meth:`Chain.evaluate` is exact (each model sees its
own tokenization of the text); :meth:`Chain.gradient` differentiates through the bridge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from fuse.models.adapter_cache import cached_adapter
from fuse.core.bridge import Bridge
from fuse.objectives import Objective, as_objective

logger = logging.getLogger(__name__)

DEFAULT_ADAPTER = dict(n_words=8000, k=8, lam=1e-3, scheme="padded", seed=0)


@dataclass
class Term:
    objective: Objective
    weight: float
    bridge: Bridge | None  # None when the term is on the primary itself

    @property
    def label(self) -> str:
        return f"{self.objective.backbone.name}:{self.objective.name}"


@dataclass
class Evaluation:
    """Exact objective values: ``total (B,)`` weighted sum, ``parts (B, T)`` every term unweighted."""

    total: torch.Tensor
    parts: torch.Tensor


class Chain:
    """A weighted sum of frozen models' losses, optimized in the primary model's tokens.

    Args:
        primary: the backbone whose tokens are optimized.
        terms: ``[(objective_or_backbone, weight), ...]``; weights must be > 0.
        adapters: optional ``{backbone_name: TensorAdapter}`` to use instead of building them.
        mode: bridge mode, ``"exact"`` (default) or ``"surrogate"``.
        adapter_options: fit options for adapters built on first use (defaults: 8,000 words, k=8).
        target_text, label: passed to :func:`~fuse.objectives.as_objective` for bare backbones.
    """

    def __init__(self, primary, terms, *, adapters: dict | None = None, mode: str = "exact",
                 adapter_options: dict | None = None, target_text: str | None = None, label: str | None = None,
                 routing: str = "word"):
        if not hasattr(primary, "tokenizer") or not hasattr(primary, "embeddings"):
            raise ValueError(f"the primary must be a fuse backbone (fuse.load(...)), got {type(primary).__name__}")
        if not terms:
            raise ValueError("a chain needs at least one (objective, weight) term")
        self.primary = primary
        self.terms: list[Term] = []
        opts = {**DEFAULT_ADAPTER, **(adapter_options or {})}
        adapters = dict(adapters or {})
        for item in terms:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"each term is a pair (objective or backbone, weight); got {item!r}")
            thing, weight = item
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise ValueError(f"weight must be a number, got {weight!r}") from None
            if not weight > 0:
                raise ValueError(f"weight must be > 0 (got {weight} for {getattr(thing, 'name', thing)!r}); drop the term instead")
            obj = as_objective(thing, target_text=target_text, label=label)
            bb = obj.backbone
            if bb is primary or getattr(bb, "model", None) is getattr(primary, "model", object()):
                self.terms.append(Term(obj, weight, None))
                continue
            if not getattr(getattr(bb, "tokenizer", None), "is_fast", False) or not hasattr(bb, "embeddings"):
                raise ValueError(f"no adapter possible to {getattr(bb, 'name', bb)!r}: it needs a fast tokenizer and an "
                                 "input-embedding matrix (load it with fuse.load)")
            adapter = adapters.get(bb.name)
            if adapter is None:
                adapter = cached_adapter(primary, bb, **opts)
                adapters[bb.name] = adapter
            self.terms.append(Term(obj, weight, Bridge(primary, bb, adapter, mode=mode, routing=routing)))
        self.adapters = adapters

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]

    @property
    def weights(self) -> torch.Tensor:
        return torch.tensor([t.weight for t in self.terms])

    # -- exact evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, texts: list[str], batch_size: int = 64) -> Evaluation:
        """Exact weighted objective of each text (one forward per term per batch)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts to evaluate")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("every text to evaluate must be non-empty")
        parts = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            parts.append(torch.stack([t.objective.loss_texts(chunk).float().cpu() for t in self.terms], dim=1))
        P = torch.cat(parts)
        return Evaluation(P @ self.weights, P)

    def decode(self, ids) -> str:
        return self.primary.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True, clean_up_tokenization_spaces=False)

    # -- gradients ------------------------------------------------------------------------
    def loss_from_embeds(self, ids: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted loss and per-term losses of one primary sequence ``ids (L,)`` with embeddings ``x (L, d)``."""
        parts = []
        for t in self.terms:
            if t.bridge is None:
                emb, tids = x[None], ids[None]
            else:
                out = t.bridge(ids, x)
                emb, tids = out.inputs_embeds[None], out.ids[None]
            mask = torch.ones_like(tids)
            parts.append(t.objective.loss(emb.to(t.objective.backbone.dtype), tids, mask)[0].float())
        P = torch.stack(parts)
        return (P * self.weights.to(P)).sum(), P.detach()

    def gradient(self, ids) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Loss and its gradient with respect to the one-hot token matrix of ``ids``.

        Returns:
            ``(loss, parts (T,), grad (L, V))``; ``grad[i, v]`` is the first-order change of the
            loss when position ``i`` moves towards token ``v`` (the GCG swap score).
        """
        ids = torch.as_tensor(ids, device=self.primary.device).reshape(-1)
        E = self.primary.embeddings.detach()
        one_hot = torch.nn.functional.one_hot(ids, E.shape[0]).to(E.dtype).requires_grad_()
        x = one_hot @ E
        loss, parts = self.loss_from_embeds(ids, x)
        (g,) = torch.autograd.grad(loss, one_hot)
        return float(loss.detach()), parts, g
