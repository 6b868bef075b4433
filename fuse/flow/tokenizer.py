"""Spatial tokenization: a state ``(D,)`` ↔ ``space_dim`` LM token embeddings, and the output heads."""

from __future__ import annotations

import math

import torch
from torch import nn


class SpatialEncoder(nn.Module):
    """Map states ``(..., D)`` to ``space_dim`` token embeddings ``(..., S, H)`` (linear or 2-layer MLP)."""

    def __init__(self, dim: int, space_dim: int, hidden: int, kind: str = "mlp"):
        super().__init__()
        self.dim, self.space_dim, self.hidden = dim, space_dim, hidden
        if kind == "linear":
            self.net = nn.Linear(dim, space_dim * hidden)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(dim, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, space_dim * hidden))
        else:
            raise ValueError(f"encoder kind must be 'linear' or 'mlp', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).unflatten(-1, (self.space_dim, self.hidden))


class VariationalHead(nn.Module):
    """The paper's VAE head: hidden ``(..., S·H)`` → μ, σ² of a latent z, and a decoder z → Δx ``(..., D)``.

    σ² = exp(f_σ(h)) + 1e-4. ``kl`` is KL(N(μ, σ²) ‖ N(0, I)) per latent coordinate.
    """

    def __init__(self, in_features: int, latent_dim: int, dim: int):
        super().__init__()
        self.mu = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.GELU(), nn.Linear(128, dim))

    def forward(self, h: torch.Tensor, eps: torch.Tensor, temperature: float = 1.0):
        """Returns ``(delta, mu, var)`` with ``delta = decoder(μ + τ·σ·ε)`` of shape ``(..., D)``."""
        mu = self.mu(h)
        var = self.log_var(h).clamp(max=20).exp() + 1e-4
        z = mu + temperature * var.sqrt() * eps
        return self.decoder(z), mu, var

    @staticmethod
    def kl(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.square() + var - var.log() - 1)


class GaussianHead(nn.Module):
    """Hidden ``(..., S·H)`` → mean Δμ and variance σ² of the next state's increment, ``(..., D)`` each."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, in_features), nn.GELU(), nn.Linear(in_features, 2 * dim))

    def forward(self, h: torch.Tensor, eps: torch.Tensor, temperature: float = 1.0):
        """Returns ``(delta, mu, var)`` with ``delta = μ + τ·σ·ε``."""
        mu, raw = self.net(h).chunk(2, dim=-1)
        var = raw.clamp(max=20).exp() + 1e-4
        return mu + temperature * var.sqrt() * eps, mu, var

    @staticmethod
    def nll(mu: torch.Tensor, var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Elementwise Gaussian negative log-likelihood (nats)."""
        return 0.5 * ((target - mu).square() / var + var.log() + math.log(2 * math.pi))
