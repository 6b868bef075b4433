"""Word slices: a word as a (d × k) stack of its token embeddings (DESIGN §2)."""

from __future__ import annotations

import torch

__all__ = ["word_token_ids", "word_slices", "stack_slices"]


def word_token_ids(tokenizer, words: list[str], *, leading_space: bool = True) -> list[list[int]]:
    """Token ids of each word as it appears inside running text.

    A word in a sentence is usually preceded by a space, which byte-level BPE (``Ġ``) and
    SentencePiece (``▁``) fold into its first token; ``leading_space=True`` tokenizes ``" " + word``
    (no special tokens) so the slices match what a model sees mid-sentence.
    """
    if isinstance(words, str):
        raise ValueError("words must be a list of strings, not one string; use text.split() for a sentence")
    bad = [w for w in words if not isinstance(w, str) or not w or any(c.isspace() for c in w)]
    if bad:
        raise ValueError(f"words must be non-empty strings without whitespace; offending: {bad[:5]!r}")
    texts = [(" " + w) if leading_space else w for w in words]
    enc = tokenizer(texts, add_special_tokens=False)
    return [list(ids) for ids in enc["input_ids"]]


def stack_slices(embeddings: torch.Tensor, token_ids: list[list[int]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-word token embeddings into ``X (N, d, k)``, zero-padded; tokens past ``k`` are cut.

    Returns ``(X, counts)`` where ``counts (N,)`` holds every word's *full* token count (it may
    exceed ``k``; such words are truncated in ``X``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    N, d = len(token_ids), embeddings.shape[1]
    counts = torch.tensor([len(t) for t in token_ids], dtype=torch.long)
    idx = torch.zeros(N, k, dtype=torch.long)
    mask = torch.zeros(N, k, dtype=torch.bool)
    for n, ids in enumerate(token_ids):
        ids = ids[:k]
        if ids:
            idx[n, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[n, : len(ids)] = True
    idx, mask = idx.to(embeddings.device), mask.to(embeddings.device)
    X = embeddings[idx] * mask.unsqueeze(-1).to(embeddings.dtype)  # (N, k, d)
    return X.permute(0, 2, 1).contiguous(), counts


def word_slices(backbone, words: list[str], k: int, *, leading_space: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Word slices of ``backbone`` for a list of words.

    Args:
        backbone: a :class:`~fuse.models.backbones.Backbone` (or anything with ``.tokenizer`` and ``.embeddings``).
        words: N words (no whitespace inside).
        k: tube length; slice ``j`` holds token ``j``'s embedding for ``j < min(s, k)``, zeros after.

    Returns:
        ``(X, counts)``: ``X (N, d, k)`` on the backbone's device and dtype (detached), and
        ``counts (N,)`` the number of tokens of every word (possibly more than ``k``).
    """
    ids = word_token_ids(backbone.tokenizer, words, leading_space=leading_space)
    with torch.no_grad():
        return stack_slices(backbone.embeddings.detach(), ids, k)
