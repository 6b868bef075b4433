"""Causal language models (any ``AutoModelForCausalLM``) as differentiable scorers.

**Target path.** The NLL of a text depends on each token twice: as *input* (through
``inputs_embeds``, the context of later tokens) and as *target* (the logit it is scored by,
``h_{t-1} · W_out[x_t]``). Differentiating through ``inputs_embeds`` alone sees only the first, so
a token's gradient ignores how likely the token itself is, and first-order swap scores (GCG, the
gradient bridge) are blind to the larger half of the change. With ``target_gradient=True`` (the
default) the target logit is also made a function of the token's input embedding: the output row is
``e_t @ A`` with ``A`` exact for tied embeddings (``I / embed_scale``) and a least-squares fit over the
vocabulary otherwise. The loss *value* is unchanged; only its gradient gains the term
``A h_{t-1}`` at position ``t`` (times the soft-cap derivative where logits are soft-capped).
"""

from __future__ import annotations

import copy
import inspect
import logging

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone
from fuse.models.backbones.exact_scoring import CHUNK_OVERHEAD, TokenScores, detach_cache, plan_chunks, returned_cache
from fuse.models.backbones.exact_scoring import score_tokens as _score_tokens
from fuse.models.backbones.output_head import CE_CHUNK_ELEMENTS, PlainHead, chunked_token_scores, find_plain_head, upcast
from fuse.models.run_state import LMState

__all__ = ["CausalLMBackbone", "TokenScores", "plan_chunks", "chunked_token_scores", "softcap_derivative",
           "CHUNK_OVERHEAD", "CE_CHUNK_ELEMENTS"]

logger = logging.getLogger(__name__)
def softcap_derivative(z: torch.Tensor, cap: float | None) -> torch.Tensor | float:
    """``d/dz [cap · tanh(z / cap)]`` at the soft-capped logit ``z``: ``1 − (z / cap)²`` (1 without a cap).

    The target path (module docstring) scales a token's target-logit gradient by it where the model soft-caps its
    logits (Gemma): the value the backward pass takes at the token's own logit."""
    return 1 - (z / cap) ** 2 if cap else 1.0

class CausalLMBackbone(Backbone):
    """A frozen causal LM. Losses take ``inputs_embeds`` so gradients reach the prompt.

    It keeps nothing between calls beyond what its constructor set: the caches of a run (a constant prefix's KV
    cache, an optimizer center's KV cache, recorded logits, the target path's output map) live in the
    :class:`~fuse.models.run_state.LMState` that callers pass as ``state`` (``None``: nothing is cached).
    """

    kind = "causal_lm"
    #: add the target path to NLL gradients (see the module docstring); values never change
    target_gradient: bool = True

    def __init__(self, model, tokenizer, name: str | None = None, *, validate: bool = True):
        super().__init__(model, tokenizer, name, validate=validate)
        self.forward_arguments = frozenset(inspect.signature(self.model.forward).parameters)
        #: the output head where the model's logits are exactly its product (checked here: two forwards of a few
        #: tokens), else None; exact scoring then applies it itself (:mod:`~fuse.models.backbones.output_head`)
        self.plain_head: PlainHead | None = find_plain_head(self.model)

    def accepts(self, argument: str) -> bool:
        """Whether the model's ``forward`` takes ``argument`` (e.g. ``"logits_to_keep"``)."""
        return argument in self.forward_arguments

    @property
    def cache_argument(self) -> str | None:
        """The name under which the model's ``forward`` takes a KV cache (``None``: it takes none)."""
        return "cache" if self.accepts("cache") else ("past_key_values" if self.accepts("past_key_values") else None)

    def logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
               state: LMState | None = None) -> torch.Tensor:
        """Next-token logits ``(B, L, V)`` for ``inputs_embeds (B, L, d)`` (recorded where ``state`` asks)."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
        if state is not None and state.record_at is not None:
            state.recorded = out[:, state.record_at].detach()
        return out

    def logits_at(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, positions: torch.Tensor,
                  state: LMState | None = None) -> torch.Tensor:
        """Next-token logits ``(B, len(positions), V)`` at the given positions only (differentiable).

        Where the model's ``forward`` takes ``logits_to_keep`` the output head runs at those positions alone. Inside
        ``state.frozen_prefix(n)`` the first ``n`` positions are constants (:meth:`LMState.frozen_prefix
        <fuse.models.run_state.LMState.frozen_prefix>`).
        """
        positions = torch.as_tensor(positions, device=inputs_embeds.device)
        if self.accepts("logits_to_keep") and positions.numel():
            mask = None if attention_mask is None or bool((attention_mask == 1).all()) else attention_mask
            n = state.frozen if state is not None else 0
            if n and mask is None and int(positions.min()) >= n and inputs_embeds.shape[1] > n:
                out = self._logits_after_frozen(inputs_embeds, positions, n, state)
                if out is not None:
                    return out
            out = self.model(inputs_embeds=inputs_embeds, attention_mask=mask, logits_to_keep=positions).logits
            return out[:, : positions.numel()]
        return self.logits(inputs_embeds, attention_mask, state)[:, positions]

    def _logits_after_frozen(self, inputs_embeds, positions, n: int, state: LMState):
        """:meth:`logits_at` over a constant prefix of ``n`` positions (``None``: not applicable, take the plain path)."""
        kw = self.cache_argument
        head = inputs_embeds[:, :n].detach()
        if kw is None or not bool((head == head[:1]).all()):
            return None
        memo = state.frozen_kv
        if (memo is None or memo[0].shape != head[0].shape or memo[0].device != head.device
                or memo[0].dtype != head.dtype or not torch.equal(memo[0], head[0])):
            with torch.no_grad():
                res = self.model(inputs_embeds=head[:1], use_cache=True, logits_to_keep=1)
            memo = (head[0].clone(), returned_cache(res))
            if memo[1] is None:
                return None
            state.frozen_kv = memo
        cache = copy.deepcopy(memo[1])
        cache.batch_repeat_interleave(inputs_embeds.shape[0])
        keep = positions - n
        res = self.model(inputs_embeds=inputs_embeds[:, n:], use_cache=True, logits_to_keep=keep, **{kw: cache})
        if inputs_embeds.shape[0] == 1:  # one sequence (an optimizer's center): its candidates' scoring reuses its cache
            full = returned_cache(res)
            full = cache if full is None else full
            if detach_cache(full):
                state.center_kv = (inputs_embeds[0].detach().clone(), full)
        return res.logits[:, : keep.numel()]

    def _logits_and_head_input(self, inputs_embeds, attention_mask, state: LMState | None = None):
        """Logits and the hidden states the output head multiplied (captured by a forward hook)."""
        head = self.model.get_output_embeddings()
        captured = []
        handle = head.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        try:
            logits = self.logits(inputs_embeds, attention_mask, state)
        finally:
            handle.remove()
        return logits, (captured[-1] if captured else None)

    def output_map(self, state: LMState | None = None) -> torch.Tensor:
        """``A (d, d)`` with ``embed(v) @ A ≈ W_out[v]``: exact when input and output embeddings are tied (kept in
        ``state`` for the rest of the run: a least-squares solve over the vocabulary otherwise)."""
        if state is not None and state.output_map is not None:
            return state.output_map
        w_in = self.embedding_module.weight
        w_out = self.model.get_output_embeddings().weight
        d = w_in.shape[1]
        if w_out.shape == w_in.shape and (w_out is w_in or torch.equal(w_out, w_in)):
            A = torch.eye(d, dtype=torch.float32, device=w_in.device) / self.embed_scale
        else:
            n = min(w_in.shape[0], w_out.shape[0])
            X = self.embeddings[:n].double()
            Y = w_out[:n].double()
            gram = X.T @ X
            gram.diagonal().add_(1e-6 * gram.diagonal().mean())
            A = torch.linalg.solve(gram, X.T @ Y).float()
            err = (torch.linalg.vector_norm(X @ A.double() - Y) / torch.linalg.vector_norm(Y)).item()
            logger.info("%s: untied output embeddings; target path through a least-squares map (rel. err %.3f)",
                        self.name, err)
        if state is not None:
            state.output_map = A
        return A

    @property
    def logit_softcap(self) -> float | None:
        """The model's final-logit soft cap (``None`` where logits are not soft-capped)."""
        return getattr(self.model.config, "final_logit_softcapping", None) or None

    def target_swap_scores(self, head_input: torch.Tensor, tokens: torch.Tensor, logit_in_place: torch.Tensor | None,
                           state: LMState | None = None) -> torch.Tensor:
        """The target path's one-hot gradient of ``log p(v | context)`` terms at a position: ``(A h) · E[v]``.

        Args:
            head_input: ``(B, d)`` the hidden state the output head read at the position before (``h``).
            tokens: ``(n,)`` the candidate tokens ``v``.
            logit_in_place: ``(B,)`` the logit of the token currently in place there (where logits are soft-capped,
                the backward pass scales by the soft-cap derivative at it), or ``None`` without a cap.
            state: the run's state (keeps the output map).

        Returns:
            ``(B, n)`` float32: ``∂ logit(v) / ∂ one-hot(v)`` along the target path; the NLL term's gradient is its
            negative, times the term's weight over its token count (what :meth:`token_nll`'s backward gives).
        """
        h = head_input.float()
        s = self.token_scores(h @ self.output_map(state).to(h).T, tokens).float()
        if self.logit_softcap and logit_in_place is not None:
            s = s * softcap_derivative(logit_in_place.float(), self.logit_softcap)[:, None]
        return s

    def next_token_state(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One no-grad forward of equal-length sequences ``ids (B, L)``: the logits after the last token ``(B, V)``
        (float32) and the hidden state the output head read there ``(B, d)``."""
        head = self.model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{self.name}: the model has no output embeddings to read the next-token state from")
        captured = []
        handle = head.register_forward_hook(lambda m, args, out: captured.append(args[0][:, -1]))
        try:
            with torch.no_grad():
                kw = {"logits_to_keep": 1} if self.accepts("logits_to_keep") else {}
                z = self.model(input_ids=torch.as_tensor(ids, device=self.device), **kw).logits[:, -1].float()
        finally:
            handle.remove()
        return z, captured[-1]

    def token_nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  state: LMState | None = None) -> torch.Tensor:
        """Per-position NLL ``(B, L-1)`` of ``ids[:, 1:]`` given the embeddings before them (0 where masked).

        When ``inputs_embeds`` requires grad and :attr:`target_gradient` is on, the gradient also
        carries the target path (module docstring); the values are the plain NLL either way.
        """
        target_path = (self.target_gradient and torch.is_grad_enabled() and inputs_embeds.requires_grad
                       and self.model.get_output_embeddings() is not None)
        if target_path:
            logits, head_in = self._logits_and_head_input(inputs_embeds, attention_mask, state)
            target_path = head_in is not None and head_in.shape[:2] == logits.shape[:2]
        else:
            logits = self.logits(inputs_embeds, attention_mask, state)
        logits = upcast(logits[:, :-1])
        target = ids[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        if target_path:
            e = upcast(inputs_embeds[:, 1:])
            out_row = e @ self.output_map(state).to(e)
            u = upcast(head_in[:, :-1].detach()).to(e.dtype)
            extra = ((out_row - out_row.detach()) * u).sum(-1)  # value 0, gradient A·h_{t-1} at e_t
            if self.logit_softcap:
                z = logits.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1)
                extra = extra * softcap_derivative(z, self.logit_softcap)
            nll = nll - extra
        if attention_mask is not None:
            nll = nll * attention_mask[:, 1:].to(nll.dtype)
        return nll

    def score_tokens(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     need: torch.Tensor | None = None, *, batch_size: int = 64, state: LMState | None = None
                     ) -> TokenScores:
        """Exact scores of ``ids[:, 1:]`` (:class:`~fuse.models.backbones.exact_scoring.TokenScores`) where ``need``
        is True, without gradients: :func:`fuse.models.backbones.exact_scoring.score_tokens` (shared-prefix KV
        caches, logits only where asked; the center KV cache of ``state`` is cropped where rows start with it)."""
        return _score_tokens(self, ids, attention_mask, need, batch_size=batch_size,
                             center_kv=None if state is None else state.center_kv)

    def nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
            state: LMState | None = None) -> torch.Tensor:
        """Mean NLL per sequence ``(B,)`` (nats per predicted token)."""
        tok = self.token_nll(inputs_embeds, ids, attention_mask, state)
        count = (attention_mask[:, 1:].sum(1) if attention_mask is not None else torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)).clamp_min(1)
        return tok.sum(1) / count.to(tok.dtype)

    def text_nll(self, texts: str | list[str]) -> torch.Tensor:
        """Mean NLL per text ``(B,)`` under the model's own tokenization (BOS added where the tokenizer does)."""
        batch = self.encode([texts] if isinstance(texts, str) else list(texts), padding=True)
        return self.nll(self.embed(batch["input_ids"]), batch["input_ids"], batch["attention_mask"])
