"""Probe sampling (Zhao et al., 2024) across tokenizers: a cheap draft chain pre-screens each step's candidates.

nanoGCG's probe sampling needs a draft model with the target's tokenizer, because it scores token ids. fuse's
draft scores the candidates' *texts* with its own tokenization (as every secondary model of a chain does), so the
draft can be any model: a 135M LM for a 7B target of another vendor.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger(__name__)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (ties broken by position); 0 for fewer than 2 values."""
    if a.numel() < 2:
        return 0.0
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 0.0


def probe_score(opt, cands: list[list[int]]) -> torch.Tensor:
    """Exact losses of the candidates the probe rule selects (``inf`` for the others), in candidate order."""
    cfg = opt.probe
    out = torch.full((len(cands),), float("inf"))
    ok = [i for i, good in enumerate(opt.round_trips(cands)) if good]
    opt.dropped += len(cands) - len(ok)
    if not ok:
        return out
    texts = [opt.text_of(cands[i]) for i in ok]
    draft = cfg.draft.evaluate(texts, batch_size=opt.eval_batch_size).total.float().cpu()
    opt.draft_evaluations += len(texts)
    B = len(ok)
    n_probe = max(1, math.ceil(B / cfg.sampling_factor))
    probe = torch.randperm(B, generator=opt.gen)[:n_probe]
    probe_loss = opt.score([cands[ok[i]] for i in probe.tolist()])
    out[[ok[i] for i in probe.tolist()]] = probe_loss
    finite = torch.isfinite(probe_loss)
    rho = spearman(draft[probe][finite], probe_loss[finite])
    alpha = (1 + rho) / 2
    n_more = max(1, int((1 - alpha) * B / cfg.r))
    taken = set(probe.tolist())
    best = [i for i in draft.argsort().tolist() if i not in taken][:n_more]
    if best:
        out[[ok[i] for i in best]] = opt.score([cands[ok[i]] for i in best])
    opt.probe_history.append({"rho": rho, "probe": int(finite.sum()), "filtered": len(best), "candidates": B})
    logger.debug("probe sampling: rho=%.3f, %d probed + %d of the draft's best scored exactly", rho, n_probe, len(best))
    return out
