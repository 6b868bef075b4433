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

import contextlib
import copy
import inspect
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone

logger = logging.getLogger(__name__)

#: token positions one extra forward is worth when cutting a batch into prefix-sharing chunks (small matrix
#: products run below peak, and each forward launches its kernels): measured on 2 CPU cores; a guess for CUDA
CHUNK_OVERHEAD = {"cpu": 32, "cuda": 512}
#: rows of logits turned into float32 log-probabilities at once (bounds the ``rows × V`` float32 temporary)
CE_CHUNK_ROWS = 4096


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 → float32 for the loss; float32/float64 kept."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def softcap_derivative(z: torch.Tensor, cap: float | None) -> torch.Tensor | float:
    """``d/dz [cap · tanh(z / cap)]`` at the soft-capped logit ``z``: ``1 − (z / cap)²`` (1 without a cap).

    The target path (module docstring) scales a token's target-logit gradient by it where the model soft-caps its
    logits (Gemma): the value the backward pass takes at the token's own logit."""
    return 1 - (z / cap) ** 2 if cap else 1.0


def _returned_cache(out):
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


def chunked_token_scores(logits: torch.Tensor, target: torch.Tensor, chunk_rows: int = CE_CHUNK_ROWS):
    """``(nll, logit, argmax)`` of ``target (N,)`` under ``logits (N, V)``, upcasting ``chunk_rows`` rows at a time."""
    nll, logit, top = [], [], []
    for i in range(0, logits.shape[0], chunk_rows):
        z = _upcast(logits[i : i + chunk_rows])
        t = target[i : i + chunk_rows].unsqueeze(-1)
        zt = z.gather(-1, t).squeeze(-1)
        nll.append(torch.logsumexp(z, -1) - zt)
        logit.append(zt)
        top.append(zt >= z.max(-1).values)
    cat = (lambda xs: torch.cat(xs)) if nll else (lambda xs: logits.new_zeros(0))
    return cat(nll), cat(logit), (torch.cat(top) if top else torch.zeros(0, dtype=torch.bool, device=logits.device))


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


def _detach_cache(cache) -> bool:
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


class _PrefixCache:
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
            self.cache = _returned_cache(out)
            for i, j in enumerate(ask.tolist()):
                self.logits[j + keep] = out.logits[:, i]
        self.seq = list(prefix)
        logits = torch.stack([self.logits[j] for j in want], 1) if want else None
        return copy.deepcopy(self.cache), logits


class CausalLMBackbone(Backbone):
    """A frozen causal LM. Losses take ``inputs_embeds`` so gradients reach the prompt."""

    kind = "causal_lm"
    #: add the target path to NLL gradients (see the module docstring); values never change
    target_gradient: bool = True

    def logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``(B, L, V)`` for ``inputs_embeds (B, L, d)``."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
        if getattr(self, "_record_at", None) is not None:
            self.recorded = out[:, self._record_at].detach()
        return out

    def logits_at(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, positions: torch.Tensor
                  ) -> torch.Tensor:
        """Next-token logits ``(B, len(positions), V)`` at the given positions only (differentiable).

        Where the model's ``forward`` takes ``logits_to_keep`` the output head runs at those positions alone.
        """
        positions = torch.as_tensor(positions, device=inputs_embeds.device)
        if "logits_to_keep" in self._forward_params and positions.numel():
            mask = None if attention_mask is None or bool((attention_mask == 1).all()) else attention_mask
            n = getattr(self, "_frozen", 0)
            if n and mask is None and int(positions.min()) >= n and inputs_embeds.shape[1] > n:
                out = self._logits_after_frozen(inputs_embeds, positions, n)
                if out is not None:
                    return out
            out = self.model(inputs_embeds=inputs_embeds, attention_mask=mask, logits_to_keep=positions).logits
            return out[:, : positions.numel()]
        return self.logits(inputs_embeds, attention_mask)[:, positions]

    @contextlib.contextmanager
    def frozen_prefix(self, n: int):
        """Within the block, :meth:`logits_at` treats the first ``n`` positions as constants: their KV cache is run
        once without autograd and reused while their embeddings stay the same, and only the later positions run with
        autograd. The gradient with respect to those ``n`` positions is then zero: for callers that want gradients
        at later positions only (GCG's free tokens after a fixed prompt)."""
        self._frozen = max(0, int(n))
        try:
            yield self
        finally:
            self._frozen = 0

    def _logits_after_frozen(self, inputs_embeds, positions, n: int):
        """:meth:`logits_at` over a constant prefix of ``n`` positions (``None``: not applicable, take the plain path)."""
        kw = self._cache_kw
        head = inputs_embeds[:, :n].detach()
        if kw is None or not bool((head == head[:1]).all()):
            return None
        memo = getattr(self, "_frozen_memo", None)
        if (memo is None or memo[0].shape != head[0].shape or memo[0].device != head.device
                or memo[0].dtype != head.dtype or not torch.equal(memo[0], head[0])):
            with torch.no_grad():
                res = self.model(inputs_embeds=head[:1], use_cache=True, logits_to_keep=1)
            memo = (head[0].clone(), _returned_cache(res))
            if memo[1] is None:
                return None
            self._frozen_memo = memo
        cache = copy.deepcopy(memo[1])
        cache.batch_repeat_interleave(inputs_embeds.shape[0])
        keep = positions - n
        res = self.model(inputs_embeds=inputs_embeds[:, n:], use_cache=True, logits_to_keep=keep, **{kw: cache})
        if inputs_embeds.shape[0] == 1:  # one sequence (an optimizer's center): its candidates' scoring reuses its cache
            full = _returned_cache(res)
            full = cache if full is None else full
            if _detach_cache(full):
                self._base_memo = (inputs_embeds[0].detach().clone(), full)
        return res.logits[:, : keep.numel()]

    def _base_for(self, ids: torch.Tensor, lengths: list[int]) -> tuple[tuple[list[int], object], list[int]] | None:
        """The KV cache of the last single-sequence gradient pass (:meth:`frozen_prefix`), if rows of ``ids`` start
        with its tokens: ``((base ids, cache), per-row count of leading tokens shared with it)``.

        The pass ran on embeddings; a row shares a position with it when its token there is the batch's most common
        one and that token's embedding is the pass's (which is all the KV cache depends on), so the memo stays valid
        whatever produced it, and checking costs one embedding lookup per position, not per row.
        """
        memo = getattr(self, "_base_memo", None)
        if memo is None:
            return None
        base, cache = memo
        n = min(ids.shape[1], base.shape[0])
        if n < 2 or base.device != ids.device:
            return None
        cols = ids[:, :n]
        try:
            mode = cols.mode(0).values                                                        # (n,) the batch's token
        except (RuntimeError, NotImplementedError):  # a backend without torch.mode: plain prefix caching
            return None
        same = (cols == mode) & (self.embed(mode).to(base.dtype) == base[:n]).all(-1)         # (B, n)
        shared = same.int().cumprod(1).sum(1)
        shared = torch.minimum(shared, torch.as_tensor(lengths, device=shared.device)).tolist()
        top = max(range(len(shared)), key=shared.__getitem__)
        if shared[top] < 2:
            return None
        return (ids[top, : shared[top]].tolist(), cache), shared

    @contextlib.contextmanager
    def recording_logits(self, position: int):
        """Within the block, every :meth:`logits` call keeps ``logits[:, position]`` (detached) in ``self.recorded``.

        Lets an optimizer reuse the next-token logits of a forward it runs anyway (AutoDAN ranks the new token by
        the LM logits of the same forward that gives the gradient) instead of running a second one.
        """
        self._record_at, self.recorded = int(position), None
        try:
            yield self
        finally:
            self._record_at = None

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

    @property
    def logit_softcap(self) -> float | None:
        """The model's final-logit soft cap (``None`` where logits are not soft-capped)."""
        return getattr(self.model.config, "final_logit_softcapping", None) or None

    def target_swap_scores(self, head_input: torch.Tensor, tokens: torch.Tensor, logit_in_place: torch.Tensor | None
                           ) -> torch.Tensor:
        """The target path's one-hot gradient of ``log p(v | context)`` terms at a position: ``(A h) · E[v]``.

        Args:
            head_input: ``(B, d)`` the hidden state the output head read at the position before (``h``).
            tokens: ``(n,)`` the candidate tokens ``v``.
            logit_in_place: ``(B,)`` the logit of the token currently in place there (where logits are soft-capped,
                the backward pass scales by the soft-cap derivative at it), or ``None`` without a cap.

        Returns:
            ``(B, n)`` float32: ``∂ logit(v) / ∂ one-hot(v)`` along the target path; the NLL term's gradient is its
            negative, times the term's weight over its token count (what :meth:`token_nll`'s backward gives).
        """
        h = head_input.float()
        s = self.token_scores(h @ self.output_map().to(h).T, tokens).float()
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
            if self.logit_softcap:
                z = logits.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1)
                extra = extra * softcap_derivative(z, self.logit_softcap)
            nll = nll - extra
        if attention_mask is not None:
            nll = nll * attention_mask[:, 1:].to(nll.dtype)
        return nll

    # -- exact scoring from token ids (no gradient): shared-prefix KV cache, logits only where asked -------------
    @property
    def _forward_params(self) -> set:
        if getattr(self, "_params", None) is None:
            self._params = set(inspect.signature(self.model.forward).parameters)
        return self._params

    def accepts(self, argument: str) -> bool:
        """Whether the model's ``forward`` takes ``argument`` (e.g. ``"logits_to_keep"``)."""
        return argument in self._forward_params

    @property
    def _cache_kw(self) -> str | None:
        """The name under which the model's ``forward`` takes a KV cache (``None``: it takes none)."""
        params = self._forward_params
        return "cache" if "cache" in params else ("past_key_values" if "past_key_values" in params else None)

    @torch.no_grad()
    def score_tokens(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     need: torch.Tensor | None = None, *, batch_size: int = 64) -> TokenScores:
        """Exact scores of ``ids[:, 1:]`` (:class:`TokenScores`), computed only where ``need (B, L-1)`` is True.

        Equal to :meth:`token_nll` on the same ids (the model embeds them itself), but fast for the batches an
        optimizer scores, whose rows mostly share long prefixes (a fixed prompt prefix, a chat template, and the
        tokens before each candidate's swap): rows are sorted, cut into chunks of at most ``batch_size`` rows that
        minimize the positions to run (:func:`plan_chunks`), each chunk's shared prefix is run once and its KV cache
        reused by every row, and the output head is applied only at the positions in ``need``
        (``logits_to_keep``), so no ``(B, L, V)`` tensor is built. Models whose ``forward`` lacks a cache or
        ``logits_to_keep`` argument take a plain full forward.
        """
        ids = torch.as_tensor(ids, device=self.device)
        B, L = ids.shape
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(ids.device)
        need = (mask[:, 1:] == 1) if need is None else need.to(ids.device).bool() & (mask[:, 1:] == 1)
        dt = torch.promote_types(torch.float32, self.dtype)  # float32, or float64 for a float64 model
        out = TokenScores(*(torch.zeros(B, L - 1, dtype=dt, device=ids.device) for _ in range(2)),
                          torch.zeros(B, L - 1, dtype=torch.bool, device=ids.device))
        if L < 2 or not bool(need.any()):
            return out
        cache_kw = self._cache_kw
        cached = bool(cache_kw and "logits_to_keep" in self._forward_params)
        rows = (ids * mask).tolist()
        lengths = mask.sum(1).tolist()
        overhead = CHUNK_OVERHEAD.get(ids.device.type, CHUNK_OVERHEAD["cpu"])
        found = self._base_for(ids, lengths) if cached else None
        base, base_lcp = found if found is not None else (None, None)
        prefixes = _PrefixCache(self, cache_kw, base) if cached else None
        for chunk, P in plan_chunks(rows, lengths, max(1, int(batch_size)), overhead if cached else None, base_lcp):
            r = torch.tensor(chunk, device=ids.device)
            Lc = max(lengths[i] for i in chunk)
            self._score_chunk(ids[r, :Lc], mask[r, :Lc], need[r, : Lc - 1], min(P, Lc - 1) if cached else 0,
                              prefixes, out, r)
        return out

    def _score_chunk(self, ids, mask, need, P, prefixes: "_PrefixCache | None", out: TokenScores, rows) -> None:
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
                suf = self.model(input_ids=ids[:, P:], attention_mask=full_mask, use_cache=True,
                                 **{prefixes.kw: cache}, logits_to_keep=keep if keep.numel() else 1).logits
                pos = torch.cat([in_prefix, keep + P])
                logits = suf[:, : keep.numel()]
                if in_prefix.numel():
                    logits = torch.cat([pre_logits.expand(b, -1, -1), logits], 1)
                self._fill(logits, pos, ids, need, out, rows)
                return
            except (AttributeError, TypeError, RuntimeError, ValueError) as e:  # a model/cache without these APIs
                prefixes.broken = True
                logger.debug("%s: shared-prefix scoring unavailable (%s); full forwards", self.name, e)
        kw = {"logits_to_keep": cols} if "logits_to_keep" in self._forward_params else {}
        logits = self.model(input_ids=ids, attention_mask=None if bool((mask == 1).all()) else mask, **kw).logits
        if not kw:
            logits = logits[:, cols]
        self._fill(logits, cols, ids, need, out, rows)

    @staticmethod
    def _fill(logits, pos, ids, need, out: TokenScores, rows: torch.Tensor) -> None:
        b, n, V = logits.shape
        target = ids[:, pos + 1]
        nll, logit, top = chunked_token_scores(logits.reshape(b * n, V), target.reshape(-1))
        keep = need[:, pos]
        r, c = rows[:, None], pos[None, :]
        for field, val in (("nll", nll), ("logit", logit), ("argmax", top)):
            dest = getattr(out, field)
            dest[r, c] = torch.where(keep, val.reshape(b, n).to(dest.dtype), torch.zeros((), dtype=dest.dtype,
                                                                                         device=dest.device))

    def nll(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per sequence ``(B,)`` (nats per predicted token)."""
        tok = self.token_nll(inputs_embeds, ids, attention_mask)
        count = (attention_mask[:, 1:].sum(1) if attention_mask is not None else torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)).clamp_min(1)
        return tok.sum(1) / count.to(tok.dtype)

    def text_nll(self, texts: str | list[str]) -> torch.Tensor:
        """Mean NLL per text ``(B,)`` under the model's own tokenization (BOS added where the tokenizer does)."""
        batch = self.encode([texts] if isinstance(texts, str) else list(texts), padding=True)
        return self.nll(self.embed(batch["input_ids"]), batch["input_ids"], batch["attention_mask"])
