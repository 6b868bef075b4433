"""Chain: a weighted objective over frozen models, optimized in one model's tokens (DESIGN §4–5).

``Chain(primary, [(term, weight), ...])``: the primary's tokens are what gets optimized. Each
term is an :class:`~fuse.objectives.Objective` (or a backbone, turned into its natural objective);
terms on other models are reached through adapters built on first use and cached
(:func:`fuse.models.adapter_cache.cached_adapter`). :meth:`Chain.evaluate` is exact (each model sees its
own tokenization of the text); :meth:`Chain.gradient` differentiates through the bridge.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from fuse.core.bridge import Bridge
from fuse.core.fit_config import AdapterFitConfig
from fuse.models.adapter_cache import cached_adapter
from fuse.models.batching import pad_ids
from fuse.models.run_state import RunState
from fuse.objectives import as_objective
from fuse.optim.chain_base import BaseChain, Evaluation, Known, Term, cat_evaluations

__all__ = ["Chain", "Evaluation", "Term", "adapter_fit"]

logger = logging.getLogger(__name__)



def adapter_fit(config: AdapterFitConfig | None, options: dict | None) -> tuple[AdapterFitConfig, dict]:
    """The fit config of adapters a chain builds on first use, and the keywords ``cached_adapter`` takes besides it.

    ``options`` is the older dict form (``adapter_options={"n_words": 4000}``): its fields override ``config``'s
    (default :class:`~fuse.core.fit_config.AdapterFitConfig`: 8,000 wordfreq words, k = 8, λ = 1e-3, padded, seed 0;
    ``n_words`` and ``k`` left to their defaults follow a ``language`` option);
    ``words`` (an explicit word list) is passed through.
    """
    if config is not None and not isinstance(config, AdapterFitConfig):
        raise ValueError(f"adapter_config must be an AdapterFitConfig, got {type(config).__name__}")
    options = dict(options or {})
    extra = {"words": options.pop("words")} if "words" in options else {}
    config = config or AdapterFitConfig()
    return (config.override(**options) if options else config), extra


class Chain(BaseChain):
    """A weighted sum of frozen models' losses, optimized in the primary model's tokens.

    Args:
        primary: the backbone whose tokens are optimized.
        terms: ``[(objective_or_backbone, weight), ...]``; weights must be > 0.
        adapters: optional ``{backbone_name: TensorAdapter}`` to use instead of building them.
        mode: bridge mode, ``"exact"`` (default) or ``"surrogate"``.
        adapter_config: how adapters built on first use are fitted (:class:`~fuse.core.fit_config.AdapterFitConfig`;
            default 8,000 wordfreq words, k = 8).
        adapter_options: the older dict form of the same options (overrides ``adapter_config``'s fields).
        target_text, label: passed to :func:`~fuse.objectives.as_objective` for bare backbones.
    """

    def __init__(self, primary, terms, *, adapters: dict | None = None, mode: str = "exact",
                 adapter_options: dict | None = None, target_text: str | None = None, label: str | None = None,
                 routing: str = "word", adapter_config: AdapterFitConfig | None = None):
        if not hasattr(primary, "tokenizer") or not hasattr(primary, "embeddings"):
            raise ValueError(f"the primary must be a fuse backbone (fuse.load(...)), got {type(primary).__name__}")
        if not terms:
            raise ValueError("a chain needs at least one (objective, weight) term")
        terms_out: list[Term] = []
        fit, extra = adapter_fit(adapter_config, adapter_options)
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
                terms_out.append(Term(obj, weight, None))
                continue
            if not getattr(getattr(bb, "tokenizer", None), "is_fast", False) or not hasattr(bb, "embeddings"):
                raise ValueError(f"no adapter possible to {getattr(bb, 'name', bb)!r}: it needs a fast tokenizer and an "
                                 "input-embedding matrix (load it with fuse.load)")
            adapter = adapters.get(bb.name)
            if adapter is None:
                adapter = cached_adapter(primary, bb, fit, **extra)
                adapters[bb.name] = adapter
            if not adapter.T.is_floating_point() or adapter.T.dtype in (torch.float16, torch.bfloat16):
                adapter.to(dtype=torch.float32)  # the adapter's math stays in float32 whatever the models' dtypes
            adapter.to(device=primary.device)
            terms_out.append(Term(obj, weight, Bridge(primary, bb, adapter, mode=mode, routing=routing)))
        self._primary, self._terms = primary, terms_out
        self.adapters = adapters

    @classmethod
    def _from_terms(cls, primary, terms: list[Term], adapters: dict) -> "Chain":
        """A chain over already-built terms (no adapter is fitted or moved)."""
        chain = cls.__new__(cls)
        chain._primary, chain._terms, chain.adapters = primary, list(terms), adapters
        return chain

    # -- the contract ---------------------------------------------------------------------
    @property
    def primary(self):
        return self._primary

    @property
    def terms(self) -> list[Term]:
        return self._terms

    def subset(self, indices: Sequence[int]) -> "Chain":
        """A chain over ``terms[i] for i in indices``, sharing this chain's bridges and adapters."""
        return type(self)._from_terms(self.primary, [self.terms[i] for i in self._check_subset(indices)], self.adapters)

    def __repr__(self) -> str:
        return f"Chain({self.primary.name!r}, {[(t.label, t.weight) for t in self.terms]!r})"

    # -- exact evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, texts: list[str], batch_size: int = 64) -> Evaluation:
        """Exact weighted objective of each text: every model scores its own tokenization of it."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts to evaluate")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("every text to evaluate must be non-empty")
        out = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            out.append(self.combine([t.objective.score_texts(chunk, batch_size) for t in self.terms]))
        return cat_evaluations(out)

    @torch.no_grad()
    def evaluate_ids(self, seqs: list[list[int]], batch_size: int = 64, texts: list[str] | None = None,
                     known: Known | None = None, state: RunState | None = None) -> Evaluation:
        """Exact objective of primary token sequences that round-trip (``encode(decode(ids)) == ids``).

        The primary's own terms score the ids directly (no re-tokenization, shared-prefix KV cache); every other
        model scores its own tokenization of the decoded text, exactly as :meth:`evaluate` does; terms in ``known``
        are taken as given. Only valid for sequences the primary would produce itself from their text (optimizers
        check this before calling).
        """
        if not seqs:
            raise ValueError("no sequences to evaluate")
        known = self._check_known(known, len(seqs))
        texts = texts if texts is not None else [self.decode(s) for s in seqs]
        pad = self.primary.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        out = []
        for i in range(0, len(seqs), batch_size):
            ids, mask = pad_ids(seqs[i : i + batch_size], pad, self.primary.device)
            chunk = texts[i : i + batch_size]
            scored = []
            for j, t in enumerate(self.terms):
                if j in known:
                    scored.append((known[j][i : i + batch_size], None))
                elif t.bridge is None:
                    scored.append(t.objective.score_ids(ids, mask, batch_size, state=self._state(state, t)))
                else:
                    scored.append(t.objective.score_texts(chunk, batch_size))
            out.append(self.combine(scored))
        return cat_evaluations(out)

    def _check_known(self, known: Known | None, n: int) -> Known:
        known = dict(known or {})
        for j, v in known.items():
            if not 0 <= int(j) < len(self.terms):
                raise ValueError(f"known values for term {j}, but the chain has {len(self.terms)} terms")
            if tuple(v.shape) != (n,):
                raise ValueError(f"known values of term {j} must have shape ({n},), got {tuple(v.shape)}")
            if self.terms[j].objective.has_goal:
                raise ValueError(f"term {j} ({self.terms[j].label}) has an exact goal whose match must be checked: "
                                 "its values cannot be given as known")
        return known

    # -- gradients ------------------------------------------------------------------------
    @staticmethod
    def _state(state: RunState | None, term: Term):
        """The run state of a term's model: the primary's terms share the slot ``"primary"``; every other model has
        one of its own, named by the model (stable under :meth:`subset`, which renumbers the terms)."""
        if state is None:
            return None
        return state.lm("primary" if term.on_primary else ("model", term.objective.backbone.name))

    def losses_from_embeds(self, ids: torch.Tensor, x: torch.Tensor, state: RunState | None = None) -> torch.Tensor:
        """Per-term losses ``(B, T)`` (float32, primary's device) of primary sequences ``ids (B, L)`` embedded as
        ``x (B, L, d)``; differentiable in ``x``. Secondary models receive their bridged embeddings, padded to a
        batch on their own device and in their own dtype."""
        B, L = ids.shape
        ones = torch.ones_like(ids)
        parts = []
        for t in self.terms:
            bb = t.objective.backbone
            if t.bridge is None:
                loss = t.objective.loss(x.to(bb.dtype), ids, ones, state=self._state(state, t))
            else:
                outs = [t.bridge(ids[b], x[b]) for b in range(B)]
                Lb = max(o.ids.shape[0] for o in outs)
                pad = getattr(bb.tokenizer, "pad_token_id", None) or 0
                tids = torch.full((B, Lb), pad, dtype=torch.long, device=bb.device)
                mask = torch.zeros(B, Lb, dtype=torch.long, device=bb.device)
                rows = []
                for b, o in enumerate(outs):
                    n = o.ids.shape[0]
                    tids[b, :n], mask[b, :n] = o.ids, 1
                    rows.append(torch.nn.functional.pad(o.inputs_embeds, (0, 0, 0, Lb - n)))
                emb = torch.stack(rows)
                loss = t.objective.loss(emb, tids, mask, state=self._state(state, t))
            parts.append(loss.to(device=self.device, dtype=torch.float32))
        return torch.stack(parts, dim=1)

    def loss_from_embeds(self, ids: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted loss and per-term losses of one primary sequence ``ids (L,)`` with embeddings ``x (L, d)``."""
        P = self.losses_from_embeds(torch.as_tensor(ids, device=x.device)[None], x[None])[0]
        return (P * self.weights.to(P)).sum(), P.detach()

    def embedding_gradients(self, seqs, positions=None, state: RunState | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses and input-embedding gradients of equal-length primary sequences in one batched pass
        (:meth:`BaseChain.embedding_gradients`)."""
        ids = torch.as_tensor(seqs, device=self.primary.device)
        if ids.dim() != 2:
            raise ValueError(f"seqs must be (B, L) token ids of equal length, got shape {tuple(ids.shape)}")
        x = self.primary.embed(ids).detach().requires_grad_()
        first = int(torch.as_tensor(positions).min()) if positions is not None and len(positions) else 0
        state = RunState() if state is None else state  # a call without a run still runs a constant prefix once
        with torch.enable_grad(), state.lm("primary").frozen_prefix(first):
            P = self.losses_from_embeds(ids, x, state)
            total = P @ self.weights.to(P)
            (g,) = torch.autograd.grad(total.sum(), x)
        if positions is not None:
            g = g[:, torch.as_tensor(positions, device=g.device)]
        return total.detach(), P.detach(), g
