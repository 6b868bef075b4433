"""The planner: a small causal transformer over sentence embeddings that scores the next action.

Given the embeddings ``e_0 … e_{S-1}`` of a document's sentences, the planner returns scores
``s_j ∈ R^K`` for every sentence ``j`` computed from ``e_0 … e_{j-1}`` only (a learned start
vector stands in front, so ``s_0`` is the prior over first sentences). It is trained with
cross-entropy on the k-means labels, and — in the soft, straight-through and Gumbel modes —
also by the language model's loss through ``softmax(s_j / τ) @ C``.

Example:
    >>> import torch
    >>> from fuse.planner.planner import Planner, PlannerConfig
    >>> p = Planner(PlannerConfig(embed_dim=8, n_actions=5, d_model=16, n_layers=1, n_heads=2))
    >>> p(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 5])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass
class PlannerConfig:
    """Planner shape.

    Attributes:
        embed_dim: sentence-embedding size ``D`` (384 for MiniLM).
        n_actions: number of actions ``K``.
        d_model: transformer width.
        n_layers: transformer layers.
        n_heads: attention heads (must divide ``d_model``).
        max_sentences: longest sentence context (learned positions).
        dropout: dropout inside the transformer.
    """

    embed_dim: int = 384
    n_actions: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_sentences: int = 64
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("embed_dim", "n_actions", "d_model", "n_layers", "n_heads", "max_sentences"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"PlannerConfig.{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"PlannerConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"PlannerConfig.dropout must lie in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class Planner(nn.Module):
    """Causal transformer: sentence embeddings ``(B, S, D)`` → next-action scores ``(B, S, K)``."""

    def __init__(self, config: PlannerConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.embed_dim, config.d_model)
        self.start = nn.Parameter(torch.zeros(config.d_model))
        self.pos = nn.Parameter(torch.randn(config.max_sentences, config.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, 4 * config.d_model, config.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_actions)

    def forward(self, sentence_embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores for each sentence from the sentences before it.

        Args:
            sentence_embeddings: ``(B, S, D)`` embeddings of consecutive sentences.
            mask: ``(B, S)`` bool, True for real sentences (right padding); ``None``: all real.

        Returns:
            ``(B, S, K)`` unnormalised scores; row ``j`` depends only on sentences ``< j``.
        """
        b, s, d = sentence_embeddings.shape
        if d != self.config.embed_dim:
            raise ValueError(f"sentence embeddings have dim {d}, the planner expects {self.config.embed_dim}")
        if s > self.config.max_sentences:
            raise ValueError(f"{s} sentences exceed the planner's max_sentences={self.config.max_sentences}; "
                             "pass fewer context sentences or build the planner with a larger max_sentences")
        x = self.inp(sentence_embeddings[:, :-1].to(self.inp.weight.dtype))
        x = torch.cat([self.start.expand(b, 1, -1), x], dim=1) + self.pos[:s]
        causal = torch.triu(torch.ones(s, s, dtype=torch.bool, device=x.device), diagonal=1)
        # Right padding with a causal mask: a real sentence never attends to a padded one, so the
        # padding needs no key mask (rows for padded sentences are computed and ignored).
        del mask
        h = self.encoder(x, mask=causal)
        return self.head(self.norm(h))
