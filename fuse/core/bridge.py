"""The gradient bridge: a loss computed by a target model sends gradients to a source model's tokens (DESIGN §4).

Both models see the same text. The source's token ids are decoded, the text is cut into words,
and each word's source tokens and target tokens are paired (:func:`fuse.core.words.align`). Two modes:

* ``"exact"`` (the FUSE mode): the target receives exactly the embeddings of its own
  tokenization of the decoded text; the backward pass carries each word's gradient
  ``dL/dX_B(w)`` through the adapter's adjoint to ``dL/dX_A(w)`` — every word its own gradient.
  Formally the forward is ``E_B[ids_B] + Σ_w M_w(x_A(w) − E_A[ids_A](w))``: exact at the source
  tokens' own embeddings (the correction is then zero), and linear with the adapter's slope
  around them, so ``gradcheck`` holds.
* ``"surrogate"``: every target word's embeddings are the adapter's image of the source word's
  embeddings (fully differentiable; for continuous prompt optimization).

Words longer than ``k`` tokens (on either side), and text written without spaces, are cut by the
adapter's unit (:mod:`fuse.core.units`; default: where both tokenizations share a boundary, merged
up to ``k`` tokens), so every row pairs tokens that cover the same characters; a span with no shared
boundary falls back to near-equal chunks paired by position, with a logged warning. Tokens outside
any word (BOS/EOS/CLS/SEP) receive no gradient through the bridge.

Example:
    >>> bridge = Bridge(smol, minilm, adapter)                         # doctest: +SKIP
    >>> x_a = smol.embed(ids).requires_grad_()                         # doctest: +SKIP
    >>> out = bridge(ids, x_a)                                         # doctest: +SKIP
    >>> minilm.cosine_loss(out.inputs_embeds[None], target).backward()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from fuse.core.units import DEFAULT_UNIT, Row, word_rows
from fuse.core.words import WordGroups, align, group_ids

logger = logging.getLogger(__name__)

__all__ = ["Bridge", "BridgeOutput", "BridgePlan", "make_plan"]

MODES = ("exact", "surrogate")
ROUTINGS = ("word", "first_word")


@dataclass
class BridgePlan:
    """Which source and target tokens make up each (chunk of a) word.

    Attributes:
        source, target: the two word groupings of the shared text.
        src_idx: ``(R, k)`` source token positions of each row, ``-1`` past its count.
        tgt_idx: ``(R, k)`` target token positions, ``-1`` past its count.
        counts_src, counts_tgt: ``(R,)`` tokens per row on each side.
        word: ``(R,)`` the word each row belongs to.
        spans: ``(start, end)`` characters of the text each row stands for.
        exact: ``(R,)`` whether each row's source and target tokens cover the same characters.
        unit: the rule that cut the words into rows (:mod:`fuse.core.units`).
    """

    source: WordGroups
    target: WordGroups
    src_idx: torch.Tensor
    tgt_idx: torch.Tensor
    counts_src: torch.Tensor
    counts_tgt: torch.Tensor
    word: torch.Tensor
    spans: list[tuple[int, int]] | None = None
    exact: torch.Tensor | None = None
    unit: str = DEFAULT_UNIT


_WARNED: set[str] = set()  # spans already warned about (bounded): an optimization loop re-plans every step


def _warn_inexact(text: str, spans: list[tuple[int, int]]) -> None:
    for s, e in spans:
        piece = text[s:e]
        if piece in _WARNED:
            continue
        if len(_WARNED) < 1000:
            _WARNED.add(piece)
        logger.warning("bridge: %r has no boundary that both tokenizers share within k tokens; its gradient rows "
                       "pair tokens by position and may join tokens that cover different characters", piece)


def make_plan(source: WordGroups, target: WordGroups, k: int, unit: str = DEFAULT_UNIT) -> BridgePlan:
    """Pair every word's source and target tokens into rows of at most ``k`` tokens each side.

    ``unit`` chooses how a word longer than ``k`` tokens (or a CJK word, for ``"segmenter"``) is
    cut (:mod:`fuse.core.units`); words within ``k`` tokens are one row under every unit.
    """
    rows: list[Row] = []
    words = []
    text = source.text
    for w, (ps, pt) in enumerate(zip(source.positions(), target.positions())):
        for row in word_rows(text, source.spans[w], ps, pt, source.offsets, target.offsets, k, unit):
            rows.append(row)
            words.append(w)
    R = len(rows)
    src_idx = torch.full((R, k), -1, dtype=torch.long)
    tgt_idx = torch.full((R, k), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        src_idx[r, : len(row.src)] = torch.tensor(row.src)
        tgt_idx[r, : len(row.tgt)] = torch.tensor(row.tgt)
    exact = torch.tensor([row.exact for row in rows], dtype=torch.bool)
    spans = [row.span for row in rows]
    if unit != "word" and not bool(exact.all()):
        _warn_inexact(text, sorted({row.span for row in rows if not row.exact}))
    return BridgePlan(source, target, src_idx, tgt_idx, (src_idx >= 0).sum(1), (tgt_idx >= 0).sum(1),
                      torch.tensor(words, dtype=torch.long), spans, exact, unit)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x (L, d)`` → slices ``(R, d, k)``; slots with index −1 are zero."""
    valid = (idx >= 0).to(x.dtype).unsqueeze(-1)
    return (x[idx.clamp_min(0)] * valid).permute(0, 2, 1)


def _scatter(Y: torch.Tensor, idx: torch.Tensor, L: int) -> torch.Tensor:
    """Slices ``(R, d, k)`` → ``(L, d)``, summing rows into the positions ``idx``; −1 slots dropped."""
    d = Y.shape[1]
    flat = Y.permute(0, 2, 1).reshape(-1, d)
    pos = idx.reshape(-1)
    keep = pos >= 0
    out = Y.new_zeros(L, d)
    return out.index_add(0, pos[keep], flat[keep])


class _ExactBridge(torch.autograd.Function):
    """Forward: exact target embeddings (+ the adapter's linear correction); backward: adapter adjoint."""

    @staticmethod
    def forward(ctx, x_a, ref_a, base_b, adapter, plan, routing):
        idx_s, idx_t = plan.src_idx.to(x_a.device), plan.tgt_idx.to(x_a.device)
        ctx.adapter, ctx.routing = adapter, routing
        ctx.save_for_backward(idx_s, idx_t, plan.counts_src.to(x_a.device), plan.counts_tgt.to(x_a.device))
        ctx.L_a = x_a.shape[0]
        delta = _gather(x_a - ref_a, idx_s)
        if idx_s.shape[0] == 0 or not bool(delta.any()):
            return base_b.clone()
        Y = adapter.map(delta, plan.counts_src, plan.counts_tgt)
        return base_b + _scatter(Y, idx_t, base_b.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        idx_s, idx_t, c_s, c_t = ctx.saved_tensors
        grad_a = None
        if ctx.needs_input_grad[0]:
            G = _gather(grad_out, idx_t)
            if ctx.routing == "first_word" and G.shape[0] > 0:
                # the published code's defect, reproduced for measurement: every word gets word 0's gradient
                G = G[:1].expand_as(G).clone()
                c_t = c_t[:1].expand_as(c_t)
            GA = ctx.adapter.adjoint(G, c_t)
            GA = GA * (torch.arange(GA.shape[-1], device=GA.device) < c_s.unsqueeze(-1)).to(GA.dtype).unsqueeze(1)
            grad_a = _scatter(GA, idx_s, ctx.L_a)
        grad_ref = -grad_a if (ctx.needs_input_grad[1] and grad_a is not None) else None
        grad_base = grad_out if ctx.needs_input_grad[2] else None
        return grad_a, grad_ref, grad_base, None, None, None


@dataclass
class BridgeOutput:
    """What the target model consumes.

    Attributes:
        ids: ``(L_B,)`` the target's token ids for the decoded text (special tokens included).
        inputs_embeds: ``(L_B, d_B)`` embeddings to feed as ``inputs_embeds``, on the target's device and in
            its dtype; differentiable in the source embeddings.
        plan: the word pairing used.
    """

    ids: torch.Tensor
    inputs_embeds: torch.Tensor
    plan: BridgePlan

    @property
    def text(self) -> str:
        return self.plan.source.text


class Bridge:
    """Carry gradients from ``target``'s losses to ``source``'s token embeddings through ``adapter``.

    Args:
        source, target: backbones.
        adapter: a :class:`~fuse.core.adapter.TensorAdapter` fitted from ``source`` to ``target``.
        mode: ``"exact"`` or ``"surrogate"`` (module docstring).
        add_special_tokens: let the target tokenizer add its BOS/CLS/SEP like it does in use.
    """

    def __init__(self, source, target, adapter, *, mode: str = "exact", add_special_tokens: bool = True,
                 routing: str = "word"):
        if mode not in MODES:
            raise ValueError(f"unknown bridge mode {mode!r}; use one of {MODES}")
        if routing not in ROUTINGS:
            raise ValueError(f"unknown routing {routing!r}; use one of {ROUTINGS}")
        cfg = adapter.config
        for role, bb, want in (("source", source, cfg.source_vocab_hash), ("target", target, cfg.target_vocab_hash)):
            if bb.vocab_hash != want:
                raise ValueError(f"the adapter's {role} tokenizer ({getattr(cfg, role)!r}) is not the {role} model's "
                                 f"({bb.name!r}); fit or load the adapter for this pair")
        if source.dim != cfg.source_dim or target.dim != cfg.target_dim:
            raise ValueError(f"adapter maps {cfg.source_dim}→{cfg.target_dim} dims, models have {source.dim}→{target.dim}")
        self.source, self.target, self.adapter = source, target, adapter
        self.mode, self.routing, self.add_special_tokens = mode, routing, add_special_tokens

    def plan(self, source_ids) -> BridgePlan:
        ids = [int(i) for i in torch.as_tensor(source_ids).reshape(-1).tolist()]
        g_src = group_ids(self.source.tokenizer, ids)
        a, b = align(g_src, self.target.tokenizer, add_special_tokens=self.add_special_tokens)
        return make_plan(a, b, self.adapter.k, getattr(self.adapter.config, "unit", DEFAULT_UNIT))

    def __call__(self, source_ids, source_embeds: torch.Tensor | None = None) -> BridgeOutput:
        """Bridge one sequence.

        Args:
            source_ids: ``(L_A,)`` source token ids.
            source_embeds: ``(L_A, d_A)`` embeddings to differentiate (e.g. ``one_hot @ E_A``);
                default the source's own embeddings of ``source_ids`` (then no gradient is asked for).

        Returns:
            :class:`BridgeOutput` for the target.
        """
        source_ids = torch.as_tensor(source_ids, device=self.source.device).reshape(-1)
        ref = self.source.embed(source_ids).detach()
        if source_embeds is None:
            source_embeds = ref
        if source_embeds.shape != ref.shape:
            raise ValueError(f"source_embeds has shape {tuple(source_embeds.shape)}, expected {tuple(ref.shape)} "
                             f"(one row per source token, d={self.source.dim})")
        # The adapter's math runs on its own device and dtype (float32 is cheap: d_A × d_B × k per word); the
        # casts are differentiable, so the source receives its gradient in its own dtype and on its own device.
        T = self.adapter.T
        x = source_embeds.to(device=T.device, dtype=T.dtype)
        plan = self.plan(source_ids)
        ids_b = torch.tensor(plan.target.ids, dtype=torch.long, device=self.target.device)
        base = self.target.embed(ids_b).detach().to(device=T.device, dtype=T.dtype)
        if self.mode == "exact":
            out = _ExactBridge.apply(x, ref.to(device=T.device, dtype=T.dtype), base, self.adapter, plan, self.routing)
        else:
            out = self._surrogate(x, base, plan)
        out = out.to(device=self.target.device, dtype=self.target.dtype)
        return BridgeOutput(ids_b, out, plan)

    def _surrogate(self, x_a, base_b, plan: BridgePlan) -> torch.Tensor:
        idx_s, idx_t = plan.src_idx.to(x_a.device), plan.tgt_idx.to(x_a.device)
        Y = self.adapter.map(_gather(x_a, idx_s), plan.counts_src, plan.counts_tgt)
        covered = torch.zeros(base_b.shape[0], 1, dtype=base_b.dtype, device=base_b.device)
        covered[idx_t[idx_t >= 0]] = 1.0
        return base_b * (1 - covered) + _scatter(Y, idx_t, base_b.shape[0])
