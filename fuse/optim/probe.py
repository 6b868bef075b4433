"""Probe sampling (Zhao et al., 2024) across tokenizers: a cheap draft chain pre-screens each step's candidates.

nanoGCG's probe sampling needs a draft model with the target's tokenizer, because it scores token ids. fuse's
draft scores the candidates' *texts* with its own tokenization (as every secondary model of a chain does), so the
draft can be any model: a 135M LM for a 7B target of another vendor.
"""

from __future__ import annotations

import logging
import math
import time

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


class ProbeSampling:
    """A scoring strategy over a run's :class:`~fuse.optim.evaluator.Evaluator`: the draft chain scores every
    candidate's text, the evaluator a random probe of ``B / sampling_factor`` of them exactly; their rank agreement
    ``rho`` decides how many of the draft's best the evaluator also scores (``(1 − (1 + rho) / 2) · B / r``).
    Each step is recorded in the evaluator's ``probe_history``."""

    def __init__(self, config):
        self.config = config

    def score(self, evaluator, cands: list[list[int]], gen: torch.Generator) -> torch.Tensor:
        """Exact losses of the candidates the probe rule selects (``inf`` for the others), in candidate order."""
        cfg = self.config
        out = torch.full((len(cands),), float("inf"))
        ok, texts = evaluator.screen(cands)
        if not ok:
            return out
        t0 = time.perf_counter()
        draft = cfg.draft.evaluate([texts[i] for i in ok], batch_size=evaluator.batch_size).total.float().cpu()
        evaluator.draft_scored(len(ok), time.perf_counter() - t0)
        B = len(ok)
        n_probe = max(1, math.ceil(B / cfg.sampling_factor))
        probe = torch.randperm(B, generator=gen)[:n_probe]
        probe_loss = evaluator.score([cands[ok[i]] for i in probe.tolist()])
        out[[ok[i] for i in probe.tolist()]] = probe_loss
        finite = torch.isfinite(probe_loss)
        rho = spearman(draft[probe][finite], probe_loss[finite])
        alpha = (1 + rho) / 2
        n_more = max(1, int((1 - alpha) * B / cfg.r))
        taken = set(probe.tolist())
        best = [i for i in draft.argsort().tolist() if i not in taken][:n_more]
        if best:
            out[[ok[i] for i in best]] = evaluator.score([cands[ok[i]] for i in best])
        evaluator.probe_history.append({"rho": rho, "probe": int(finite.sum()), "filtered": len(best), "candidates": B})
        logger.debug("probe sampling: rho=%.3f, %d probed + %d of the draft's best scored exactly", rho, n_probe,
                     len(best))
        return out
