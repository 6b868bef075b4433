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


@dataclass
class QualityReport:
    """A readable quality report of an adapter on a word list (use held-out words).

    Attributes:
        overall: :class:`AlignmentScores` over the scored words.
        buckets: per token-count bucket (the larger of the two models' counts):
            ``{"tokens": c, "n": n, "top1": …, "top10": …, "rel_error": …}``.
        worst: the worst-mapped words, ``{"word", "rel_error", "rank", "tokens_source", "tokens_target"}``.
        n_words: words given; n_over_k: of them, how many either model splits into more than ``k``
            tokens (not scored: the map covers ``k`` tokens).
    """

    overall: AlignmentScores
    buckets: list[dict]
    worst: list[dict]
    n_words: int
    n_over_k: int
    k: int


def ranks(pred: torch.Tensor, true: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Rank (0 = first) of ``true[i]`` among all rows of ``true`` for ``pred[i]`` (centred cosine)."""
    pred, true = pred.reshape(pred.shape[0], -1).double(), true.reshape(true.shape[0], -1).double()
    mu = true.mean(0, keepdim=True)
    p = torch.nn.functional.normalize(pred - mu, dim=1)
    t = torch.nn.functional.normalize(true - mu, dim=1)
    out = []
    for i in range(0, p.shape[0], batch_size):
        sim = p[i : i + batch_size] @ t.T
        own = sim[torch.arange(sim.shape[0]), torch.arange(i, i + sim.shape[0])]
        out.append((sim > own.unsqueeze(1)).sum(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def quality_report(adapter, source, target, words: list[str], n_worst: int = 15) -> QualityReport:
    """Held-out top-1/top-10 and relative error by token-count bucket, the worst-mapped words, words over k."""
    k = adapter.k
    lead = getattr(adapter.config, "leading_space", True)
    XA, cA = word_slices(source, words, k, leading_space=lead)
    XB, cB = word_slices(target, words, k, leading_space=lead)
    keep = (cA <= k) & (cB <= k) & (cA > 0) & (cB > 0)
    n_over = int(((cA > k) | (cB > k)).sum())
    kept = [w for w, m in zip(words, keep.tolist()) if m]
    XA, XB, cA, cB = XA[keep].to(adapter.T), XB[keep].to(adapter.T), cA[keep], cB[keep]
    if XA.shape[0] == 0:
        raise ValueError(f"none of the {len(words)} words fits in k={k} tokens for both models")
    with torch.no_grad():
        pred = adapter.map(XA, cA, cB)
    overall = score_slices(pred, XB)
    r = ranks(pred, XB)
    err_w = (torch.linalg.vector_norm((pred - XB).double().flatten(1), dim=1)
             / torch.linalg.vector_norm(XB.double().flatten(1), dim=1).clamp_min(1e-30))
    size = torch.maximum(cA, cB)
    buckets = []
    for c in sorted(set(size.tolist())):
        sel = size == c
        num = torch.linalg.vector_norm((pred[sel] - XB[sel]).double())
        buckets.append({"tokens": int(c), "n": int(sel.sum()), "top1": float((r[sel] < 1).double().mean()),
                        "top10": float((r[sel] < 10).double().mean()),
                        "rel_error": float(num / torch.linalg.vector_norm(XB[sel].double()))})
    order = torch.argsort(err_w, descending=True)[:n_worst].tolist()
    worst = [{"word": kept[i], "rel_error": float(err_w[i]), "rank": int(r[i]), "tokens_source": int(cA[i]),
              "tokens_target": int(cB[i])} for i in order]
    return QualityReport(overall, buckets, worst, len(words), n_over, k)


def format_report(rep: QualityReport) -> str:
    """The report as text a person reads."""
    o = rep.overall
    lines = [f"scored {o.n_words} of {rep.n_words} words ({rep.n_over_k} split into more than k={rep.k} tokens by a "
             f"model: not scored)",
             f"overall: top-1 {o.top1:.1%}, top-10 {o.top10:.1%}, relative error {o.rel_error:.3f}",
             "", "tokens (max of both)   words   top-1   top-10   rel. error"]
    for b in rep.buckets:
        lines.append(f"{b['tokens']:>20}   {b['n']:>5}   {b['top1']:>5.1%}   {b['top10']:>6.1%}   {b['rel_error']:.3f}")
    lines += ["", "worst-mapped words (relative error, retrieval rank, tokens source/target):"]
    lines += [f"  {w['word']}\t{w['rel_error']:.3f}\trank {w['rank']}\t{w['tokens_source']}/{w['tokens_target']}"
              for w in rep.worst]
    return "\n".join(lines)


def plot_report(rep: QualityReport, path, title: str = "") -> None:
    """A PNG: top-1/top-10 and relative error by token-count bucket (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [b["tokens"] for b in rep.buckets]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(c, [b["top1"] for b in rep.buckets], "o-", label="top-1")
    ax[0].plot(c, [b["top10"] for b in rep.buckets], "s--", label="top-10")
    ax[0].set(xlabel="tokens per word (max of both models)", ylabel="held-out retrieval", ylim=(0, 1.02))
    ax[0].legend()
    for x, b in zip(c, rep.buckets):
        ax[0].annotate(str(b["n"]), (x, b["top1"]), textcoords="offset points", xytext=(0, -12), fontsize=7, ha="center")
    ax[1].bar(c, [b["rel_error"] for b in rep.buckets], color="tab:gray")
    ax[1].set(xlabel="tokens per word (max of both models)", ylabel="relative error")
    fig.suptitle(title or f"adapter quality on {rep.overall.n_words} words (k={rep.k}, {rep.n_over_k} over k)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
