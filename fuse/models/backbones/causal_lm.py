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

import logging

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone

logger = logging.getLogger(__name__)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 → float32 for the loss; float32/float64 kept."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class CausalLMBackbone(Backbone):
    """A frozen causal LM. Losses take ``inputs_embeds`` so gradients reach the prompt."""

    kind = "causal_lm"
    #: add the target path to NLL gradients (see the module docstring); values never change
    target_gradient: bool = True

    def logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``(B, L, V)`` for ``inputs_embeds (B, L, d)``."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits

    def _logits_and_head_input(self, inputs_embeds, attention_mask):
        """Logits and the hidden states the output head multiplied (captured by a forward hook)."""
        head = self.model.get_output_embeddings()
        captured = []
        handle = head.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        try:
            logits = self.logits(inputs_embeds, attention_mask)
        finally:
            handle.remove()
        return logits, (captured[-1] if captured else None)

    def output_map(self) -> torch.Tensor:
        """``A (d, d)`` with ``embed(v) @ A ≈ W_out[v]``: exact when input and output embeddings are tied."""
        if getattr(self, "_output_map", None) is not None:
            return self._output_map
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
        self._output_map = A
        return A

    def token_nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position NLL ``(B, L-1)`` of ``ids[:, 1:]`` given the embeddings before them (0 where masked).

        When ``inputs_embeds`` requires grad and :attr:`target_gradient` is on, the gradient also
        carries the target path (module docstring); the values are the plain NLL either way.
        """
        target_path = (self.target_gradient and torch.is_grad_enabled() and inputs_embeds.requires_grad
                       and self.model.get_output_embeddings() is not None)
        if target_path:
            logits, head_in = self._logits_and_head_input(inputs_embeds, attention_mask)
            target_path = head_in is not None and head_in.shape[:2] == logits.shape[:2]
        else:
            logits = self.logits(inputs_embeds, attention_mask)
        logits = _upcast(logits[:, :-1])
        target = ids[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        if target_path:
            e = _upcast(inputs_embeds[:, 1:])
            out_row = e @ self.output_map().to(e)
            u = _upcast(head_in[:, :-1].detach()).to(e.dtype)
            extra = ((out_row - out_row.detach()) * u).sum(-1)  # value 0, gradient A·h_{t-1} at e_t
            cap = getattr(self.model.config, "final_logit_softcapping", None)
            if cap:
                z = logits.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1)
                extra = extra * (1 - (z / cap) ** 2)
            nll = nll - extra
        if attention_mask is not None:
            nll = nll * attention_mask[:, 1:].to(nll.dtype)
        return nll

    def nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per sequence ``(B,)`` (nats per predicted token)."""
        tok = self.token_nll(inputs_embeds, ids, attention_mask)
        count = (attention_mask[:, 1:].sum(1) if attention_mask is not None else torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)).clamp_min(1)
        return tok.sum(1) / count.to(tok.dtype)

    def text_nll(self, texts: str | list[str]) -> torch.Tensor:
        """Mean NLL per text ``(B,)`` under the model's own tokenization (BOS added where the tokenizer does)."""
        batch = self.encode([texts] if isinstance(texts, str) else list(texts), padding=True)
        return self.nll(self.embed(batch["input_ids"]), batch["input_ids"], batch["attention_mask"])
