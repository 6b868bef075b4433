"""How well an adapter carries held-out words: reconstruction error and retrieval."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fuse.core.slices import word_slices


@dataclass
class AlignmentScores:
    """Held-out quality of a map from source to target word slices.

    Attributes:
        rel_error: ``||Ŷ − Y|| / ||Y||`` over all held-out words (target slots only).
        top1, top10: fraction of words whose true target is the nearest (top-10) by cosine among
            all held-out targets (vectors centred by the held-out mean).
        n_words: number of held-out words scored.
    """

    rel_error: float
    top1: float
    top10: float
    n_words: int


def retrieval(pred: torch.Tensor, true: torch.Tensor, ks=(1, 10), batch_size: int = 1024) -> dict[int, float]:
    """Top-k retrieval of ``true[i]`` for ``pred[i]`` among all rows of ``true`` (centred cosine)."""
    pred, true = pred.reshape(pred.shape[0], -1).double(), true.reshape(true.shape[0], -1).double()
    mu = true.mean(0, keepdim=True)
    p = torch.nn.functional.normalize(pred - mu, dim=1)
    t = torch.nn.functional.normalize(true - mu, dim=1)
    hits = {k: 0 for k in ks}
    for i in range(0, p.shape[0], batch_size):
        sim = p[i : i + batch_size] @ t.T
        own = sim[torch.arange(sim.shape[0]), torch.arange(i, i + sim.shape[0])]
        rank = (sim > own.unsqueeze(1)).sum(1)
        for k in ks:
            hits[k] += int((rank < k).sum())
    return {k: hits[k] / p.shape[0] for k in ks}


def score_slices(pred: torch.Tensor, true: torch.Tensor) -> AlignmentScores:
    err = (torch.linalg.vector_norm((pred - true).double()) / torch.linalg.vector_norm(true.double())).item()
    r = retrieval(pred, true)
    return AlignmentScores(rel_error=err, top1=r[1], top10=r[10], n_words=pred.shape[0])


def evaluate_adapter(adapter, source, target, words: list[str]) -> AlignmentScores:
    """Score ``adapter`` on ``words`` (use held-out words: never the ones it was fitted on).

    Words that either model splits into more than ``adapter.k`` tokens are skipped.
    """
    k = adapter.k
    lead = getattr(adapter.config, "leading_space", True)
    XA, cA = word_slices(source, words, k, leading_space=lead)
    XB, cB = word_slices(target, words, k, leading_space=lead)
    keep = (cA <= k) & (cB <= k) & (cA > 0) & (cB > 0)
    XA, XB, cA, cB = XA[keep].to(adapter.T), XB[keep].to(adapter.T), cA[keep], cB[keep]
    with torch.no_grad():
        pred = adapter.map(XA, cA, cB)
    return score_slices(pred, XB)
