"""Exact scoring of token ids by a causal LM, without gradients: the fast path of every optimizer's candidates.

Rows of a batch mostly share long prefixes (a fixed prompt, a chat template, the tokens before a candidate's swap):
:func:`plan_chunks` cuts the batch into prefix-sharing chunks, :class:`PrefixCache` runs each chunk's shared prefix
once (extending or cropping the previous chunk's KV cache, or cropping a copy of a run's center KV cache), and the
output head runs only where a score is asked for (``logits_to_keep``), so no ``(B, L, V)`` tensor is built; where
the model's logits are exactly its head's product, fuse applies the head itself into one reused buffer
(:mod:`fuse.models.backbones.output_head`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from fuse.models.backbones.output_head import (PlainHead, Scratch, chunked_token_scores, deferred_head,
                                               head_token_scores)

logger = logging.getLogger(__name__)


#: token positions one extra forward is worth when cutting a batch into prefix-sharing chunks (small matrix
#: products run below peak, and each forward launches its kernels): measured on 2 CPU cores; a guess for CUDA
CHUNK_OVERHEAD = {"cpu": 32, "cuda": 512}


def returned_cache(out):
    """The KV cache a forward with ``use_cache=True`` returned (transformers 5 calls it ``cache``, 4.x ``past_key_values``)."""
    cache = out.get("cache", None)
    return cache if cache is not None else out.get("past_key_values", None)


@dataclass
class TokenScores:
    """Exact scores of the tokens ``ids[:, 1:]`` of a batch (``(B, L-1)`` each; zero where not asked for).

    Attributes:
        nll: ``−log p(ids[:, j+1] | ids[:, :j+1])`` in float32.
        logit: the raw logit of that token (what mellowmax-style losses use), float32.
        argmax: whether that token is the model's most likely next token (exact-match checks).
    """

    nll: torch.Tensor
    logit: torch.Tensor
    argmax: torch.Tensor


def _lcp(a: list[int], b: list[int], n: int) -> int:
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_chunks(rows: list[list[int]], lengths: list[int], max_rows: int, overhead: int | None = 16,
                base_lcp: list[int] | None = None):
    """Cut a batch into chunks that share long token prefixes: ``[(row indices, shared prefix length), ...]``.

    Rows are sorted so that rows sharing a prefix are adjacent; chunk boundaries are chosen by dynamic programming
    to minimize the token positions a forward must run — every row's remainder after its chunk's shared prefix, the
    part of that prefix not already cached by the previous chunk — plus ``overhead`` positions per forward (kernel
    launches: larger on a GPU). ``base_lcp[i]``: how many leading tokens row ``i`` shares with a sequence whose KV
    cache is already at hand (an optimizer's center, from its gradient pass); rows are then grouped by it, and a
    chunk whose shared prefix lies within that sequence costs no prefix forward. ``overhead=None``
    keeps the input order in chunks of ``max_rows`` with no prefix sharing.
    """
    B = len(rows)
    if overhead is None:
        return [(list(range(i, min(i + max_rows, B))), 0) for i in range(0, B, max_rows)]
    on = base_lcp if base_lcp is not None else [0] * B
    order = sorted(range(B), key=lambda i: (on[i], rows[i][: lengths[i]]))
    lcp = [_lcp(rows[order[i]], rows[order[i + 1]], min(lengths[order[i]], lengths[order[i + 1]]))
           for i in range(B - 1)]
    best = [0.0] + [float("inf")] * B
    cut = [0] * (B + 1)
    for j in range(1, B + 1):
        P, longest, on_base = None, 0, 0
        for i in range(j - 1, max(-1, j - 1 - max_rows), -1):  # chunk order[i:j]
            longest = max(longest, lengths[order[i]])
            P = lengths[order[i]] if P is None else min(P, lcp[i])
            P = min(P, lengths[order[i]])
            on_base = max(on_base, on[order[i]])
            if P <= on_base:
                ext = 0  # the shared prefix is a prefix of the base sequence: its KV cache is at hand
            else:
                ext = P - min(P, lcp[i - 1]) if i > 0 else P  # the prefix cache is extended from the previous chunk's
            cost = best[i] + ext + (j - i) * (longest - P) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks, j = [], B
    while j > 0:
        i = cut[j]
        members = order[i:j]
        P = min([lengths[m] for m in members] + lcp[i : j - 1])
        chunks.append((members, P))
        j = i
    return chunks[::-1]


def detach_cache(cache) -> bool:
    """Detach a KV cache's tensors in place (the forward that filled it ran with autograd); False if unknown layout."""
    layers = getattr(cache, "layers", None)
    if layers:
        if not all(isinstance(getattr(x, "keys", None), torch.Tensor) and isinstance(getattr(x, "values", None), torch.Tensor)
                   for x in layers):
            return False
        for layer in layers:
            layer.keys, layer.values = layer.keys.detach(), layer.values.detach()
        return True
    if hasattr(cache, "key_cache") and hasattr(cache, "value_cache"):  # transformers 4.x DynamicCache
        cache.key_cache = [k.detach() for k in cache.key_cache]
        cache.value_cache = [v.detach() for v in cache.value_cache]
        return bool(cache.key_cache)
    return False


class PrefixCache:
    """The KV cache of the last prefix run, extended or cut back for the next one (chunks come in sorted order,
    so consecutive prefixes share most of their tokens), with the logits of the positions asked for."""

    def __init__(self, backbone, kw: str, base: tuple[list[int], object] | None = None):
        self.backbone, self.kw, self.broken = backbone, kw, False
        self.seq: list[int] = []
        self.cache = None
        self.logits: dict[int, torch.Tensor] = {}
        self.base = base  # (token ids, KV cache of batch 1 covering at least those ids), never modified

    def get(self, prefix: list[int], want: list[int]):
        """A fresh copy of the KV cache of ``prefix`` (batch 1) and the logits ``(1, len(want), V)`` at ``want``."""
        if self.base is not None and not want and len(prefix) <= len(self.base[0]):
            seq, cache = self.base
            if _lcp(seq, prefix, len(prefix)) == len(prefix):  # within the base sequence: crop a copy, no forward
                out = copy.deepcopy(cache)
                extra = out.get_seq_length() - len(prefix)
                if extra:
                    out.crop(-extra)
                return out, None
        keep = _lcp(self.seq, prefix, min(len(self.seq), len(prefix))) if self.cache is not None else 0
        missing = [j for j in want if j < keep and j not in self.logits]
        if missing:
            keep = min(missing)  # recompute from the first position whose logits were not kept
        if keep == 0:
            self.cache, self.logits = None, {}
        else:
            if keep < len(self.seq):
                self.cache.crop(keep - len(self.seq))
            self.logits = {j: v for j, v in self.logits.items() if j < keep}
        if keep < len(prefix):
            wanted = set(want)
            ask = torch.tensor([j - keep for j in range(keep, len(prefix)) if j in wanted], dtype=torch.long,
                               device=self.backbone.device)
            model_kw = {self.kw: self.cache} if self.cache is not None else {}
            out = self.backbone.model(input_ids=torch.tensor([prefix[keep:]], device=self.backbone.device),
                                      use_cache=True, logits_to_keep=ask if ask.numel() else 1, **model_kw)
            self.cache = returned_cache(out)
            for i, j in enumerate(ask.tolist()):
                self.logits[j + keep] = out.logits[:, i]
        self.seq = list(prefix)
        logits = torch.stack([self.logits[j] for j in want], 1) if want else None
        return copy.deepcopy(self.cache), logits


@torch.no_grad()
def score_tokens(backbone, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 need: torch.Tensor | None = None, *, batch_size: int = 64, center_kv=None) -> TokenScores:
    """Exact scores of ``ids[:, 1:]`` (:class:`TokenScores`), computed only where ``need (B, L-1)`` is True.

    ``center_kv``: a run's center KV cache (``LMState.center_kv``), cropped instead of running prefixes within it.
    Equal to :meth:`CausalLMBackbone.token_nll <fuse.models.backbones.causal_lm.CausalLMBackbone.token_nll>` on the
    same ids (the model embeds them itself), but fast for the batches an
    optimizer scores, whose rows mostly share long prefixes (a fixed prompt prefix, a chat template, and the
    tokens before each candidate's swap): rows are sorted, cut into chunks of at most ``batch_size`` rows that
    minimize the positions to run (:func:`plan_chunks`), each chunk's shared prefix is run once and its KV cache
    reused by every row, and the output head is applied only at the positions in ``need``
    (``logits_to_keep``), so no ``(B, L, V)`` tensor is built. Models whose ``forward`` lacks a cache or
    ``logits_to_keep`` argument take a plain full forward.
    """
    ids = torch.as_tensor(ids, device=backbone.device)
    B, L = ids.shape
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(ids.device)
    need = (mask[:, 1:] == 1) if need is None else need.to(ids.device).bool() & (mask[:, 1:] == 1)
    dt = torch.promote_types(torch.float32, backbone.dtype)  # float32, or float64 for a float64 model
    out = TokenScores(*(torch.zeros(B, L - 1, dtype=dt, device=ids.device) for _ in range(2)),
                      torch.zeros(B, L - 1, dtype=torch.bool, device=ids.device))
    if L < 2 or not bool(need.any()):
        return out
    cache_kw = backbone.cache_argument
    cached = bool(cache_kw and backbone.accepts("logits_to_keep"))
    rows = (ids * mask).tolist()
    lengths = mask.sum(1).tolist()
    overhead = CHUNK_OVERHEAD.get(ids.device.type, CHUNK_OVERHEAD["cpu"])
    found = base_for(backbone, ids, lengths, center_kv) if cached and center_kv is not None else None
    base, base_lcp = found if found is not None else (None, None)
    prefixes = PrefixCache(backbone, cache_kw, base) if cached else None
    head = getattr(backbone, "plain_head", None) if backbone.accepts("logits_to_keep") else None
    scratch = Scratch()
    for chunk, P in plan_chunks(rows, lengths, max(1, int(batch_size)), overhead if cached else None, base_lcp):
        r = torch.tensor(chunk, device=ids.device)
        Lc = max(lengths[i] for i in chunk)
        _score_chunk(backbone, ids[r, :Lc], mask[r, :Lc], need[r, : Lc - 1], min(P, Lc - 1) if cached else 0,
                     prefixes, out, r, head, scratch)
    return out


def _score_chunk(backbone, ids, mask, need, P, prefixes: "PrefixCache | None", out: TokenScores, rows,
                 head: PlainHead | None, scratch: Scratch) -> None:
    """Score one chunk; with a ``head`` the model's forward returns hidden states and :func:`_fill` applies it."""
    b, L = ids.shape
    cols = need.any(0).nonzero().squeeze(-1)  # logit positions j (predicting token j+1) asked for by some row
    if not cols.numel():
        return
    if P >= 2 and prefixes is not None and not prefixes.broken:
        try:
            in_prefix = cols[cols < P]
            cache, pre_logits = prefixes.get(ids[0, :P].tolist(), in_prefix.tolist())
            cache.batch_repeat_interleave(b)
            keep = cols[cols >= P] - P  # suffix positions; position P-1 is the prefix's last: its logits come from the prefix
            full_mask = None  # no padding: the causal fast path (no 4-D mask is built)
            if not bool((mask[:, P:] == 1).all()):
                full_mask = torch.cat([torch.ones(b, P, dtype=mask.dtype, device=mask.device), mask[:, P:]], 1)
            with deferred_head(head):
                suf = backbone.model(input_ids=ids[:, P:], attention_mask=full_mask, use_cache=True,
                                     **{prefixes.kw: cache}, logits_to_keep=keep if keep.numel() else 1).logits
            pos = torch.cat([in_prefix, keep + P])
            suf = suf[:, : keep.numel()]
            if in_prefix.numel():  # the prefix's logits are the model's own: the suffix's are made alike
                _fill(torch.cat([pre_logits.expand(b, -1, -1), suf if head is None else head(suf)], 1), pos, ids,
                      need, out, rows)
            else:
                _fill(suf, pos, ids, need, out, rows, head, scratch)
            return
        except (AttributeError, TypeError, RuntimeError, ValueError) as e:  # a model/cache without these APIs
            prefixes.broken = True
            logger.debug("%s: shared-prefix scoring unavailable (%s); full forwards", backbone.name, e)
    kw = {"logits_to_keep": cols} if backbone.accepts("logits_to_keep") else {}
    with deferred_head(head):  # a head is only given where the model takes logits_to_keep (score_tokens)
        logits = backbone.model(input_ids=ids, attention_mask=None if bool((mask == 1).all()) else mask, **kw).logits
    if not kw:
        logits = logits[:, cols]
    _fill(logits, cols, ids, need, out, rows, head, scratch)


def _fill(values, pos, ids, need, out: TokenScores, rows: torch.Tensor, head: PlainHead | None = None,
          scratch: Scratch | None = None) -> None:
    """Write the scores at ``pos`` of a chunk's rows: ``values`` are logits ``(b, n, V)``, or with a ``head`` the
    hidden states ``(b, n, d)`` it multiplies into ``scratch``."""
    b, n = values.shape[:2]
    flat, target = values.reshape(b * n, -1), ids[:, pos + 1].reshape(-1)
    if head is not None and flat.shape[-1] != head.module.in_features:
        head = None  # the forward applied its head after all (e.g. a model compiled after the check): logits
    if head is None:
        nll, logit, top = chunked_token_scores(flat, target)
    else:
        nll, logit, top = head_token_scores(flat, target, head, scratch)
    keep = need[:, pos]
    r, c = rows[:, None], pos[None, :]
    for field, val in (("nll", nll), ("logit", logit), ("argmax", top)):
        dest = getattr(out, field)
        dest[r, c] = torch.where(keep, val.reshape(b, n).to(dest), torch.zeros((), dtype=dest.dtype,
                                                                                     device=dest.device))


def base_for(backbone, ids: torch.Tensor, lengths: list[int], center_kv) -> tuple[tuple[list[int], object], list[int]] | None:
    """A run's center KV cache (:attr:`LMState.center_kv <fuse.models.run_state.LMState.center_kv>`), if rows of
    ``ids`` start with its tokens: ``((base ids, cache), per-row count of leading tokens shared with it)``.

    The pass ran on embeddings; a row shares a position with it when its token there is the batch's most common
    one and that token's embedding is the pass's (which is all the KV cache depends on), so the memo stays valid
    whatever produced it, and checking costs one embedding lookup per position, not per row.
    """
    base, cache = center_kv
    n = min(ids.shape[1], base.shape[0])
    if n < 2 or base.device != ids.device:
        return None
    cols = ids[:, :n]
    try:
        mode = cols.mode(0).values                                                        # (n,) the batch's token
    except (RuntimeError, NotImplementedError):  # a backend without torch.mode: plain prefix caching
        return None
    same = (cols == mode) & (backbone.embed(mode).to(base.dtype) == base[:n]).all(-1)     # (B, n)
    shared = same.int().cumprod(1).sum(1)
    shared = torch.minimum(shared, torch.as_tensor(lengths, device=shared.device)).tolist()
    top = max(range(len(shared)), key=shared.__getitem__)
    if shared[top] < 2:
        return None
    return (ids[top, : shared[top]].tolist(), cache), shared



def cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """A KV cache's ``(keys, values)`` per layer (to send it to other processes), or ``None`` for another layout."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(isinstance(getattr(x, "keys", None), torch.Tensor) for x in layers):
        return None
    if type(cache).__name__ != "DynamicCache" or any(type(x).__name__ != "DynamicLayer" for x in layers):
        return None  # sliding-window or quantized layers: not rebuilt from tensors alone
    return [(x.keys, x.values) for x in layers]


def cache_from_tensors(layers: list[tuple[torch.Tensor, torch.Tensor]]):
    """The :class:`transformers.DynamicCache` that :func:`cache_tensors` took apart."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)
