"""A causal LM's output head and the token scores of its logits; the head applied by fuse, where that is exact.

Scoring candidates asks for logits at a few positions of many rows. Through the model, each forward writes a fresh
``(rows, V)`` tensor (on the CPU a new memory mapping of tens of MB whose first touch costs page faults), and the
token scores then read it again. Where the model's logits are exactly ``hidden @ W.T (+ b)`` (:func:`find_plain_head`:
checked once per model on a short input, so a soft cap, a logit scale or any other transform after the head is
caught and keeps the model's own path), :func:`deferred_head` makes the head hand back its input during a forward,
and :func:`head_token_scores` multiplies the hidden states into one buffer reused for the whole batch and scores
the tokens in place.

Measured on one CPU thread (SmolLM2-135M, 128 candidates a step): see ``docs/benchmarks.md`` (engine_peer_long).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: logits turned into float32 log-probabilities at once: one reused ``rows × V`` buffer of about this many elements
#: (85 rows of a 49k vocabulary). One CPU thread, 1,408 rows × 49,152 (a 128-candidate step's target positions):
#: 73 ms, against 270 ms for one ``logsumexp`` and one ``max`` over the whole block (a fresh 277 MB temporary
#: each) and 123 ms with a buffer four times larger; 1,408 × 151,936: 222 ms against 796 ms
CE_CHUNK_ELEMENTS = 1 << 22
#: output-head rows multiplied at once into the reused buffer (bounds it: 1,365 rows of a 49k vocabulary)
HEAD_BLOCK_ELEMENTS = 1 << 26


def upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 → float32 for the loss; float32/float64 kept."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def chunked_token_scores(logits: torch.Tensor, target: torch.Tensor, chunk_elements: int = CE_CHUNK_ELEMENTS,
                         overwrite: bool = False):
    """``(nll, logit, argmax)`` of ``target (N,)`` under ``logits (N, V)``, in float32 (float64 logits: float64).

    Rows go through one reused buffer of about ``chunk_elements`` elements: per chunk one max pass (shared by the
    log-sum-exp and the argmax check), ``exp(z - max)`` written into the buffer, one sum. Equal to
    ``logsumexp(z) - z[target]`` and ``z[target] >= max(z)`` (a row of ``-inf`` gives NaN, as there).
    ``overwrite``: the logits are scratch (float32 or float64 ones then serve as the buffer themselves).
    """
    N, V = logits.shape
    dt = upcast(logits[:0]).dtype
    nll = torch.empty(N, dtype=dt, device=logits.device)
    logit = torch.empty(N, dtype=dt, device=logits.device)
    top = torch.empty(N, dtype=torch.bool, device=logits.device)
    if N == 0:
        return nll, logit, top
    rows = max(1, min(N, int(chunk_elements) // max(1, V)))
    own = overwrite and logits.dtype == dt
    buf = None if own else torch.empty(rows, V, dtype=dt, device=logits.device)
    for i in range(0, N, rows):
        z = logits[i : i + rows]
        b = z if own else buf[: z.shape[0]]
        src = z if z.dtype == dt else b.copy_(z)
        m = src.amax(-1, keepdim=True)
        zt = src.gather(-1, target[i : i + rows].unsqueeze(-1))
        torch.sub(src, m, out=b).exp_()
        nll[i : i + rows] = (m + b.sum(-1, keepdim=True).log() - zt).squeeze(-1)
        logit[i : i + rows] = zt.squeeze(-1)
        top[i : i + rows] = (zt >= m).squeeze(-1)
    return nll, logit, top


@dataclass(frozen=True)
class PlainHead:
    """An output head whose logits the model returns unchanged: ``F.linear(hidden, weight, bias)``."""

    module: torch.nn.Linear

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.module.weight, self.module.bias)


def _identity(x, *args, **kwargs):
    return x


@contextlib.contextmanager
def deferred_head(head: PlainHead | None):
    """Within the block the model's output head returns its input: ``logits`` are the hidden states it was given
    (``head=None``: nothing changes)."""
    if head is None:
        yield
        return
    head.module.forward = _identity  # an instance attribute shadows nn.Linear.forward
    try:
        yield
    finally:
        del head.module.forward


@torch.no_grad()
def find_plain_head(model) -> PlainHead | None:
    """The model's output head if its logits are exactly the head's output (one short forward each way), else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Linear) or type(head).forward is not torch.nn.Linear.forward:
        return None
    if "forward" in vars(head) or getattr(head, "_forward_hooks", None) or getattr(head, "_forward_pre_hooks", None):
        return None  # wrapped (offloading, device hooks): the model's own call does more than the product
    candidate = PlainHead(head)
    device = head.weight.device
    ids = torch.arange(min(4, head.out_features), device=device).unsqueeze(0)
    try:
        ref = model(input_ids=ids).logits
        with deferred_head(candidate):
            hidden = model(input_ids=ids).logits
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return None
    if hidden.shape[-1] != head.in_features or hidden.shape[:-1] != ref.shape[:-1]:
        return None
    return candidate if torch.equal(candidate(hidden).to(ref.dtype), ref) else None


class Scratch:
    """One buffer that every chunk of a batch writes its logits into (grown when a chunk needs more)."""

    def __init__(self):
        self.buf: torch.Tensor | None = None

    def take(self, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        n = rows * cols
        if self.buf is None or self.buf.numel() < n or self.buf.dtype != dtype or self.buf.device != device:
            self.buf = torch.empty(n, dtype=dtype, device=device)
        return self.buf[:n].view(rows, cols)


def head_token_scores(hidden: torch.Tensor, target: torch.Tensor, head: PlainHead, scratch: Scratch):
    """``(nll, logit, argmax)`` of ``target (N,)`` under ``head(hidden (N, d))``, as :func:`chunked_token_scores`
    gives them from the logits: the logits are written, at most :data:`HEAD_BLOCK_ELEMENTS` at a time, into
    ``scratch``, which the scoring then overwrites."""
    w, b = head.module.weight, head.module.bias
    N, V = hidden.shape[0], w.shape[0]
    if N == 0:
        return chunked_token_scores(w.new_zeros(0, V), target[:0].to(w.device))
    rows = max(1, min(N, HEAD_BLOCK_ELEMENTS // max(1, V)))
    parts = []
    for i in range(0, N, rows):
        h = hidden[i : i + rows].to(device=w.device, dtype=w.dtype)
        z = scratch.take(h.shape[0], V, w.dtype, w.device)
        torch.matmul(h, w.t(), out=z)
        if b is not None:
            z.add_(b)
        parts.append(chunked_token_scores(z, target[i : i + rows].to(w.device), overwrite=True))
    return tuple(torch.cat(p) for p in zip(*parts)) if len(parts) > 1 else parts[0]
