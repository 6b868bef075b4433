"""Toy distributions for flow models: 2D shapes and d-dimensional Gaussians / mixtures.

Every sampler takes ``n`` and a ``torch.Generator`` (so every draw is seeded) and returns a float32
tensor ``(n, dim)``. A *task* pairs a source with a target: ``"8gaussians-moons"`` means
x_0 ~ 8 Gaussians, x_1 ~ two moons; ``"gaussians-16d"`` means x_0 ~ N(0, I_16), x_1 ~ an
8-component Gaussian mixture in 16 dimensions.

Example:
    >>> import torch
    >>> from fuse.flow.data import sample, Task
    >>> g = torch.Generator().manual_seed(0)
    >>> sample("moons", 5, generator=g).shape
    torch.Size([5, 2])
    >>> Task.parse("8gaussians-moons").target
    'moons'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

#: Fixed seed of the mixture means, so the target of ``gaussians-Nd`` is the same for every run seed.
MIXTURE_SEED = 1234


def _check_n(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (number of samples) must be a positive int, got {n!r}")
    return n


def eight_gaussians(n: int, *, generator: torch.Generator | None = None, scale: float = 5.0, var: float = 0.1) -> torch.Tensor:
    """8 Gaussians on a circle of radius ``scale``, each with variance ``var``; ``(n, 2)``."""
    _check_n(n)
    angles = torch.arange(8) * (2 * math.pi / 8)
    centers = scale * torch.stack([angles.cos(), angles.sin()], 1)
    idx = torch.randint(0, 8, (n,), generator=generator)
    return (centers[idx] + math.sqrt(var) * torch.randn(n, 2, generator=generator)).float()


def moons(n: int, *, generator: torch.Generator | None = None, noise: float = 0.2) -> torch.Tensor:
    """Two interleaved half circles (scikit-learn's ``make_moons`` layout), then ``×3 − 1``; ``(n, 2)``."""
    _check_n(n)
    upper = torch.rand(n, generator=generator) < 0.5
    theta = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, theta.cos(), 1 - theta.cos())
    y = torch.where(upper, theta.sin(), 0.5 - theta.sin())
    pts = torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=generator)
    return (pts * 3 - 1).float()


def circles(n: int, *, generator: torch.Generator | None = None, noise: float = 0.08, factor: float = 0.5, scale: float = 4.0) -> torch.Tensor:
    """Two concentric circles (radii ``scale`` and ``factor·scale``) with Gaussian noise; ``(n, 2)``."""
    _check_n(n)
    inner = torch.rand(n, generator=generator) < 0.5
    theta = 2 * math.pi * torch.rand(n, generator=generator)
    r = torch.where(inner, torch.full((n,), factor), torch.ones(n))
    pts = torch.stack([theta.cos(), theta.sin()], 1) * r[:, None] + noise * torch.randn(n, 2, generator=generator)
    return (pts * scale).float()


def checkerboard(n: int, *, generator: torch.Generator | None = None, scale: float = 1.5) -> torch.Tensor:
    """A 4×4 checkerboard on ``[-4, 4]²`` (every other square filled), scaled by ``scale/2``; ``(n, 2)``."""
    _check_n(n)
    x1 = torch.rand(n, generator=generator) * 4 - 2
    x2_ = torch.rand(n, generator=generator) - torch.randint(0, 2, (n,), generator=generator).float() * 2
    x2 = x2_ + (torch.floor(x1) % 2)
    return (torch.stack([x1, x2], 1) * scale).float()


def normal(n: int, *, generator: torch.Generator | None = None, dim: int = 2) -> torch.Tensor:
    """Standard normal ``(n, dim)``."""
    _check_n(n)
    return torch.randn(n, dim, generator=generator)


def mixture_means(dim: int, k: int = 8, *, radius: float = 4.0, seed: int = MIXTURE_SEED) -> torch.Tensor:
    """Means ``(k, dim)`` of the ``gaussians-Nd`` mixture: random directions at norm ``radius`` (fixed seed)."""
    g = torch.Generator().manual_seed(seed + dim)
    m = torch.randn(k, dim, generator=g)
    return radius * m / m.norm(dim=1, keepdim=True)


def gaussian_mixture(n: int, *, generator: torch.Generator | None = None, dim: int = 2, k: int = 8, std: float = 0.5) -> torch.Tensor:
    """Equal-weight mixture of ``k`` isotropic Gaussians (std ``std``) at :func:`mixture_means`; ``(n, dim)``."""
    _check_n(n)
    means = mixture_means(dim, k)
    idx = torch.randint(0, k, (n,), generator=generator)
    return means[idx] + std * torch.randn(n, dim, generator=generator)


SAMPLERS = {
    "8gaussians": eight_gaussians,
    "moons": moons,
    "circles": circles,
    "checkerboard": checkerboard,
    "normal": normal,
    "mixture": gaussian_mixture,
}
#: Distributions that only exist in 2D.
TWO_D = {"8gaussians", "moons", "circles", "checkerboard"}


def sample(name: str, n: int, *, generator: torch.Generator | None = None, dim: int = 2) -> torch.Tensor:
    """Draw ``n`` points ``(n, dim)`` from the distribution called ``name`` (see ``SAMPLERS``)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown distribution {name!r}; choose one of {sorted(SAMPLERS)}")
    if name in TWO_D:
        if dim != 2:
            raise ValueError(f"distribution {name!r} is 2-dimensional, but dim={dim} was asked for; use dim=2")
        return SAMPLERS[name](n, generator=generator)
    return SAMPLERS[name](n, generator=generator, dim=dim)


@dataclass(frozen=True)
class Task:
    """A source → target pair, optionally one of several labelled targets (text conditioning).

    Attributes:
        source: name of the x_0 distribution.
        target: name of the x_1 distribution (unconditional tasks).
        dim: state dimension.
        labels: for text-conditioned tasks, target name → training prompts (first one is canonical).
    """

    source: str
    target: str | None
    dim: int = 2
    labels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.labels:
            return "text-2d" if self.dim == 2 else f"text-{self.dim}d"
        if self.source == "normal" and self.target == "mixture":
            return f"gaussians-{self.dim}d"
        return f"{self.source}-{self.target}"

    @classmethod
    def parse(cls, spec: str) -> "Task":
        """Parse ``SRC-TGT`` (2D names), ``gaussians-<d>d`` or ``text-2d``."""
        if not isinstance(spec, str):
            raise ValueError(f"task must be a string like '8gaussians-moons', got {spec!r}")
        m = re.fullmatch(r"gaussians-(\d+)d", spec)
        if m:
            d = int(m.group(1))
            if d < 1:
                raise ValueError(f"task {spec!r}: the dimension must be >= 1")
            return cls("normal", "mixture", d)
        if spec == "text-2d":
            return cls("normal", None, 2, {k: list(v) for k, v in TEXT_PROMPTS.items()})
        parts = spec.split("-")
        if len(parts) == 2 and all(p in TWO_D or p == "normal" for p in parts):
            return cls(parts[0], parts[1], 2)
        raise ValueError(
            f"unknown task {spec!r}: use SRC-TGT with SRC, TGT in {sorted(TWO_D | {'normal'})} "
            "(e.g. '8gaussians-moons'), 'gaussians-<d>d' (e.g. 'gaussians-16d') or 'text-2d'"
        )

    def sample_source(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample(self.source, n, generator=generator, dim=self.dim)

    def sample_target(self, n: int, generator: torch.Generator | None = None, label: str | None = None) -> torch.Tensor:
        if self.labels:
            if label not in self.labels:
                raise ValueError(f"task {self.name!r} has labelled targets {sorted(self.labels)}; got label={label!r}")
            return sample(label, n, generator=generator, dim=self.dim)
        return sample(self.target, n, generator=generator, dim=self.dim)

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "dim": self.dim, "labels": self.labels}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(d["source"], d.get("target"), int(d["dim"]), {k: list(v) for k, v in (d.get("labels") or {}).items()})


#: Training prompts of the ``text-2d`` task (target name → prompts).
TEXT_PROMPTS = {
    "moons": ["moons", "two moons", "two half moons", "interleaved moons", "a pair of moons"],
    "circles": ["circles", "two circles", "concentric circles", "rings", "two rings"],
    "checkerboard": ["checkerboard", "a checkerboard", "checker board", "chess board", "squares in a grid"],
    "8gaussians": ["eight gaussians", "8 gaussians", "eight blobs", "gaussians on a ring", "eight clusters"],
}
#: Held-out paraphrases (never seen in training) for the confusion table.
HELDOUT_PROMPTS = {
    "moons": ["the moons", "moons please"],
    "circles": ["the rings", "circles please"],
    "checkerboard": ["the checkerboard", "a chess board grid"],
    "8gaussians": ["the eight gaussians", "eight small blobs"],
}
