"""PromptChain: one optimized span inside several prompts, scored by several models with different tokenizers
(DESIGN §5, "Layout of a prompt, and several models at once").

Every model renders every prompt its own way (:func:`fuse.models.templates.render`: its chat template, one BOS);
only the span is shared. The objective is the mean, over (prompt, model) pairs, of each model's loss on the prompt's
target after its own rendering: ``before_m + span_m + after_m`` then ``target_m``, where the fixed parts are the
model's own token ids and ``span_m`` is its tokenization of the span's text (the primary's: the span's ids). In the
gradient pass the span's embeddings reach the other models through the gradient bridge (``Bridge(primary, m,
adapter, add_special_tokens=False)``), the fixed parts being the model's own embeddings; exact scores come from
:meth:`CausalLMBackbone.score_tokens <fuse.models.backbones.causal_lm.CausalLMBackbone.score_tokens>` at the target's
positions (shared-prefix KV caching: every candidate of a prompt shares its ``before``).

The optimizer's sequences are the span alone (:meth:`PromptChain.layout`). A candidate whose edge tokens merge with
a model's fixed text (``Hello{optim_str}world`` with the span ``" there"`` makes ``"Hello there"`` + ``"world"``,
not the concatenation of the three tokenizations) is refused: its loss is ``inf``, the optimizer's evaluator counts it
as dropped, and :attr:`PromptChain.edge_drops` counts it per term.

Example:
    >>> chain = PromptChain([smol, gemma], [([{"role": "user", "content": "Tell me a joke{optim_str}"}], "Sure")],
    ...                     chat_templates={gemma.name: GEMMA_CHAT_TEMPLATE})              # doctest: +SKIP
    >>> res = fuse.optimize(chain, GCGConfig(n_tokens=10, budget=256))                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import torch

from fuse.core.bridge import Bridge
from fuse.models.adapter_cache import cached_adapter
from fuse.models.batching import pad_ids
from fuse.models.run_state import RunState
from fuse.models.templates import Rendered, render
from fuse.objectives.language import Continuation
from fuse.optim.chain_base import BaseChain, Evaluation, Known, Layout, Term

__all__ = ["PromptChain", "PromptTarget", "as_prompts", "check_bridge_weight"]


class PromptTarget(Continuation):
    """A :class:`~fuse.objectives.Continuation` of one prompt's target after one model's rendering of it.

    Its ``loss`` and ``score_ids`` take that model's whole prompt ids (``before + span + after``) and append the
    target. Attributes: ``rendered`` (:class:`~fuse.models.templates.Rendered`), ``prompt`` (the prompt's index),
    ``model`` (the model's index in the chain).
    """

    def __init__(self, backbone, rendered: Rendered, prompt: int, model: int, *, loss: str = "ce",
                 mellowmax_alpha: float = 1.0):
        super().__init__(backbone, rendered.target_text, loss=loss, mellowmax_alpha=mellowmax_alpha)
        self.cont_ids = torch.tensor(rendered.target_ids, dtype=torch.long, device=backbone.device)
        self.rendered, self.prompt, self.model = rendered, int(prompt), int(model)
        self.name = f"prompt{prompt}" + ("" if loss == "ce" else f"_{loss}")

    def full_ids(self, span_ids: Sequence[int]) -> list[int]:
        """This model's prompt ids around ``span_ids`` (the target not included)."""
        return self.rendered.before_ids + list(span_ids) + self.rendered.after_ids


def check_bridge_weight(w, fix: str = "") -> None:
    """Refuse a :class:`PromptChain` ``bridge_weight`` that is not a finite number >= 0 (``fix``: how to mend it)."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
        raise ValueError(f"bridge_weight must be a finite number >= 0 (1: the objective's gradient, 0: the primary's "
                         f"own), got {w!r}{fix}")


def as_prompts(messages_or_prompts, target: str | None = None) -> list[tuple]:
    """``[(messages, target), ...]`` from one prompt and a target, or from a list of ``(messages, target)`` pairs."""
    if target is not None:
        return [(messages_or_prompts, target)]
    items = messages_or_prompts
    if (isinstance(items, (list, tuple)) and items and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                        and isinstance(p[1], str) for p in items)):
        return [(m, t) for m, t in items]
    raise ValueError("give a target with the messages, or a list of (messages, target) pairs")


class PromptChain(BaseChain):
    """The mean loss of several models on several (prompt, target) pairs, optimized in a span of the first model's
    tokens.

    Args:
        models: causal-LM backbones (:func:`fuse.load`); ``models[0]`` is the primary, whose tokens are optimized.
            Distinct names; they may sit on different devices and dtypes.
        prompts: ``[(messages, target), ...]``: messages with ``{optim_str}`` once, or a string with it
            (:func:`~fuse.models.templates.render`).
        adapters: ``{model name: TensorAdapter}`` from the primary to that model (default: built on first use and
            cached, :func:`~fuse.models.adapter_cache.cached_adapter` with ``adapter_options``).
        chat_templates: ``{model name: Jinja chat template}`` for models whose tokenizer has none (or to replace it).
        loss, mellowmax_alpha: the continuation loss (:class:`~fuse.objectives.Continuation`).
        adapter_config, adapter_options: how adapters built on first use are fitted, as for
            :class:`~fuse.optim.chain.Chain` (default :class:`~fuse.core.fit_config.AdapterFitConfig`).
        bridge_weight: how much the terms reached through the bridge (the models after the first) count in the
            gradient that proposes candidates, relative to their weight in the objective: 1 (default) the objective's
            own gradient; 0 the primary's own gradient only, every candidate still scored exactly on every model (the
            llm-attacks way for models of other vocabularies, with one vocabulary). Exact scores always use the
            objective's weights. Measured in ``benchmarks/bridge_weight.py`` (docs/prompts.md).

    Attributes:
        edge_drops: ``Counter`` of refused candidates by term label (a span whose edges merge with that model's fixed
            text), over this chain's life (and, under torchrun, this rank's share).
    """

    def __init__(self, models, prompts, *, adapters: dict | None = None, chat_templates: dict | None = None,
                 loss: str = "ce", mellowmax_alpha: float = 1.0, adapter_options: dict | None = None,
                 adapter_config=None, bridge_weight: float = 1.0):
        from fuse.optim.chain import adapter_fit

        check_bridge_weight(bridge_weight)

        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("a PromptChain needs at least one model")
        for m in models:
            if getattr(m, "kind", None) != "causal_lm":
                raise ValueError(f"every model of a PromptChain is a causal LM (fuse.load(...)), got "
                                 f"{getattr(m, 'name', type(m).__name__)!r}")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"the models need distinct names, got {names}")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("a PromptChain needs at least one (messages, target) pair")
        templates = dict(chat_templates or {})
        unknown = set(templates) - set(names)
        if unknown:
            raise ValueError(f"chat templates for unknown models {sorted(unknown)}; the models are {names}")
        primary = models[0]
        adapters = dict(adapters or {})
        fit, extra = adapter_fit(adapter_config, adapter_options)
        bridges = {}
        for m in models[1:]:
            if not getattr(m.tokenizer, "is_fast", False):
                raise ValueError(f"no adapter possible to {m.name!r}: it needs a fast tokenizer")
            ad = adapters.get(m.name)
            if ad is None:
                ad = adapters[m.name] = cached_adapter(primary, m, fit, **extra)
            if not ad.T.is_floating_point() or ad.T.dtype in (torch.float16, torch.bfloat16):
                ad.to(dtype=torch.float32)  # the adapter's math stays in float32 whatever the models' dtypes
            ad.to(device=primary.device)
            bridges[m.name] = Bridge(primary, m, ad, add_special_tokens=False)
        weight = 1.0 / (len(prompts) * len(models))
        terms = []
        for i, pair in enumerate(prompts):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"each prompt is a pair (messages, target), got {pair!r}")
            messages, target = pair
            for j, m in enumerate(models):
                r = render(m.tokenizer, messages, target, templates.get(m.name))
                obj = PromptTarget(m, r, i, j, loss=loss, mellowmax_alpha=mellowmax_alpha)
                terms.append(Term(obj, weight, None if j == 0 else bridges[m.name]))
        self._primary, self._terms, self.models, self.adapters = primary, terms, models, adapters
        self.bridge_weight = float(bridge_weight)
        self.edge_drops: Counter = Counter()

    @classmethod
    def _from_terms(cls, primary, models, terms: list[Term], adapters: dict, edge_drops: Counter,
                    bridge_weight: float = 1.0) -> "PromptChain":
        chain = cls.__new__(cls)
        chain._primary, chain.models, chain._terms, chain.adapters = primary, models, list(terms), adapters
        chain.edge_drops, chain.bridge_weight = edge_drops, bridge_weight
        return chain

    # -- the contract ---------------------------------------------------------------------
    @property
    def primary(self):
        return self._primary

    @property
    def terms(self) -> list[Term]:
        return self._terms

    def subset(self, indices: Sequence[int]) -> "PromptChain":
        """A chain over ``terms[i] for i in indices`` (same primary, bridges, renderings, bridge weight; the same drop
        counter)."""
        return PromptChain._from_terms(self.primary, self.models, [self.terms[i] for i in self._check_subset(indices)],
                                       self.adapters, self.edge_drops, self.bridge_weight)

    def layout(self) -> Layout:
        """The optimizer's sequences are the span alone; its text must round-trip on its own in the primary."""
        return Layout([], [], add_special_tokens=False)

    def __repr__(self) -> str:
        return f"PromptChain({[m.name for m in self.models]!r}, {len(self.terms)} terms)"

    @staticmethod
    def _slot(obj: PromptTarget):
        return ("prompt", obj.prompt, obj.model)

    # -- exact evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, texts: Sequence[str], batch_size: int = 64) -> Evaluation:
        """Exact objective of span texts (the primary scores its own tokenization of each)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("every text to evaluate must be non-empty")
        seqs = [list(s) for s in self.primary.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        return self.evaluate_ids(seqs, batch_size, texts=list(texts))

    def span_ids(self, texts: Sequence[str], seqs: Sequence[Sequence[int]]) -> dict[int, list[list[int]]]:
        """Each model's span ids of the candidates: the primary's own, the others' tokenization of the texts."""
        out = {0: [list(map(int, s)) for s in seqs]}
        for j, m in enumerate(self.models[1:], 1):
            if any(t.objective.model == j for t in self.terms):
                out[j] = [list(s) for s in m.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        return out

    def edges_hold(self, obj: PromptTarget, texts: Sequence[str], spans: Sequence[Sequence[int]]) -> list[bool]:
        """Whether the model tokenizes each whole prompt text to exactly ``before + span + after``."""
        whole = obj.backbone.tokenizer([obj.rendered.text(t) for t in texts], add_special_tokens=False)["input_ids"]
        return [list(w) == obj.full_ids(s) for w, s in zip(whole, spans)]

    @torch.no_grad()
    def evaluate_ids(self, seqs: Sequence[Sequence[int]], batch_size: int = 64, texts: Sequence[str] | None = None,
                     known: Known | None = None, state: RunState | None = None) -> Evaluation:
        """Exact objective of candidate spans (primary ids that round-trip alone).

        Every (prompt, model) term scores its model's whole prompt ids and the target through ``score_tokens`` (the
        run's state gives each its own slot, so the center KV cache of the gradient pass is cropped for its
        candidates). A candidate whose edges do not hold for some model is refused: every part and the total are
        ``inf``, ``match`` is False, and :attr:`edge_drops` counts it.
        """
        if not seqs:
            raise ValueError("no sequences to evaluate")
        if known:
            raise ValueError("every term of a PromptChain has an exact goal whose match must be checked: its values "
                             "cannot be given as known")
        texts = list(texts) if texts is not None else [self.decode(s) for s in seqs]
        n, T = len(seqs), len(self.terms)
        spans = self.span_ids(texts, seqs)
        ok = [True] * n
        for t in self.terms:
            held = self.edges_hold(t.objective, texts, spans[t.objective.model])
            for b, h in enumerate(held):
                if not h:
                    self.edge_drops[t.label] += 1
                    ok[b] = False
        keep = [b for b in range(n) if ok[b]]
        scored = []
        for t in self.terms:
            obj = t.objective
            bb = obj.backbone
            values = torch.full((n,), float("inf"), device=self.device)
            match = torch.zeros(n, dtype=torch.bool, device=self.device)
            if keep:
                pad = bb.tokenizer.pad_token_id
                ids, mask = pad_ids([obj.full_ids(spans[obj.model][b]) for b in keep], 0 if pad is None else pad,
                                    bb.device)
                v, m = obj.score_ids(ids, mask, batch_size, state=None if state is None else state.lm(self._slot(obj)))
                rows = torch.tensor(keep, device=self.device)
                values[rows] = v.to(device=self.device, dtype=torch.float32)
                match[rows] = m.to(self.device)
            scored.append((values, match))
        return self.combine(scored)

    # -- gradients ------------------------------------------------------------------------
    def embedding_gradients(self, seqs, positions=None, state: RunState | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses and the gradient with respect to the span's primary embeddings, for equal-length spans ``(B, n)``.

        The primary's terms see ``E[before] + x + E[after]``; every other model ``E_m[before_m] + bridge(span, x) +
        E_m[after_m]``. The fixed text before the span (and, for the primary, the span's positions before the first
        one asked for) is a constant whose KV cache is kept in the run's state. Edges are not checked here: a
        sequence whose edges merge gets the gradient of the concatenation (its exact score is ``inf``).
        """
        prim = self.primary
        ids = torch.as_tensor(seqs, device=prim.device)
        if ids.dim() != 2:
            raise ValueError(f"seqs must be (B, L) token ids of equal length, got shape {tuple(ids.shape)}")
        B = ids.shape[0]
        x = prim.embed(ids).detach().requires_grad_()
        first = int(torch.as_tensor(positions).min()) if positions is not None and len(positions) else 0
        state = RunState() if state is None else state
        with torch.enable_grad():
            bridged = {}  # model index -> [BridgeOutput per row], shared by that model's prompts
            parts = []
            for t in self.terms:
                obj = t.objective
                bb, r = obj.backbone, obj.rendered
                lm = state.lm(self._slot(obj))
                if t.bridge is None:
                    dev = bb.device
                    full = torch.cat([torch.tensor(r.before_ids, dtype=torch.long, device=dev).expand(B, -1), ids.to(dev),
                                      torch.tensor(r.after_ids, dtype=torch.long, device=dev).expand(B, -1)], 1)
                    nb = len(r.before_ids)
                    emb = torch.cat([bb.embed(full[:, :nb]).detach(), x.to(device=dev, dtype=bb.dtype),
                                     bb.embed(full[:, nb + ids.shape[1]:]).detach()], 1)
                    with lm.frozen_prefix(nb + first):
                        loss = obj.loss(emb, full, torch.ones_like(full), state=lm)
                else:
                    if obj.model not in bridged:
                        bridged[obj.model] = [t.bridge(ids[b], x[b]) for b in range(B)]
                    outs = bridged[obj.model]
                    rows = [obj.full_ids(o.ids.tolist()) for o in outs]
                    pad = bb.tokenizer.pad_token_id
                    full, mask = pad_ids(rows, 0 if pad is None else pad, bb.device)
                    fixed_b = bb.embed(torch.tensor(r.before_ids, dtype=torch.long, device=bb.device)).detach()
                    fixed_a = bb.embed(torch.tensor(r.after_ids, dtype=torch.long, device=bb.device)).detach()
                    L = full.shape[1]
                    emb = torch.stack([torch.nn.functional.pad(torch.cat([fixed_b, o.inputs_embeds, fixed_a]),
                                                               (0, 0, 0, L - len(row))) for o, row in zip(outs, rows)])
                    with lm.frozen_prefix(len(r.before_ids)):
                        loss = obj.loss(emb, full, mask, state=lm)
                parts.append(loss.to(device=self.device, dtype=torch.float32))
            P = torch.stack(parts, dim=1)
            w = self.weights.to(P)
            total = P @ w
            if self.bridge_weight != 1.0:  # the proposals' objective: the bridged terms scaled
                scale = torch.tensor([1.0 if t.bridge is None else self.bridge_weight for t in self.terms]).to(P)
                (g,) = torch.autograd.grad((P @ (w * scale)).sum(), x)
            else:
                (g,) = torch.autograd.grad(total.sum(), x)
        if positions is not None:
            g = g[:, torch.as_tensor(positions, device=g.device)]
        return total.detach(), P.detach(), g
