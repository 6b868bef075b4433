"""Retrieval recall: how often the paired item is among the top k by similarity."""

from __future__ import annotations

import torch


def recall_at_k(similarity: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Image→text and text→image recall from a square similarity matrix ``(N images, N texts)``.

    Item ``i`` of each side is the pair of item ``i`` of the other. Ties count against the pair
    (its rank is the number of items scoring at least as high, minus one).

    Returns:
        ``{"i2t_R@1": ..., "i2t_R@5": ..., "t2i_R@1": ..., "t2i_R@5": ...}`` as fractions.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square (N images, N texts), got {tuple(similarity.shape)}")
    S = similarity.float()
    diag = S.diagonal()
    rank_i2t = (S >= diag[:, None]).sum(1) - 1  # texts scoring at least as high as the pair, per image
    rank_t2i = (S >= diag[None, :]).sum(0) - 1
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((rank_i2t < k).float().mean())
        out[f"t2i_R@{k}"] = float((rank_t2i < k).float().mean())
    return out
