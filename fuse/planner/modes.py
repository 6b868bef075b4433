"""How the language model receives actions: the conditioning modes and the oracle→predicted schedule.

Every mode turns planner scores ``s (B, S, K)`` and k-means labels ``y (B, S)`` into action weights
``w (B, S, K)``; the LM then receives ``w @ C`` (``C`` the codebook).

=================  ==================================  ===============================  ========================
mode               training forward                    evaluation forward               LM gradient reaches planner
=================  ==================================  ===============================  ========================
``none``           no action (zero vector)             same                             no (planner unused)
``fixed``          one-hot of a fixed action           same                             no (planner unused)
``oracle``         one-hot of the true label ``y``     same                             no (planner unused)
``hard``           one-hot of ``argmax s``             same                             no
``straight_through`` one-hot of ``argmax s``, backward  one-hot of ``argmax s``        yes (softmax gradient)
                   through ``softmax(s/τ)``
``gumbel``         ``softmax((s + g)/τ)``, g ~ Gumbel   ``softmax(s/τ)``                 yes
``soft``           ``softmax(s/τ)``                    ``softmax(s/τ)``                 yes
=================  ==================================  ===============================  ========================

During training the predicted weights can be mixed with the oracle's:
``w ← p·onehot(y) + (1 − p)·w`` with ``p`` from a :class:`MixSchedule` (teacher forcing that
fades out).

Example:
    >>> import torch
    >>> from fuse.planner.modes import action_weights
    >>> w = action_weights(torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), "soft")
    >>> w.shape, bool(torch.allclose(w.sum(-1), torch.ones(2, 3)))
    (torch.Size([2, 3, 4]), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("none", "fixed", "oracle", "hard", "straight_through", "gumbel", "soft")
PLANNER_MODES = ("hard", "straight_through", "gumbel", "soft")
#: modes in which the LM loss back-propagates into the planner
DIFFERENTIABLE_MODES = ("straight_through", "gumbel", "soft")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def uses_planner(mode: str) -> bool:
    """True when the LM receives the planner's prediction (so the planner is trained and scored)."""
    return check_mode(mode) in PLANNER_MODES


@dataclass
class MixSchedule:
    """Linear schedule of the oracle share ``p`` during training.

    ``p(step)`` goes linearly from ``start`` to ``end`` over the first ``steps`` steps, then stays
    at ``end``. The default (0, 0) never mixes.
    """

    start: float = 0.0
    end: float = 0.0
    steps: int = 0

    def __post_init__(self):
        for name in ("start", "end"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"MixSchedule.{name} must lie in [0, 1], got {v}")
        if self.steps < 0:
            raise ValueError(f"MixSchedule.steps must be >= 0, got {self.steps}")

    def __call__(self, step: int) -> float:
        if self.steps == 0 or step >= self.steps:
            return self.end
        return self.start + (self.end - self.start) * step / self.steps


def _one_hot(idx: torch.Tensor, k: int, dtype) -> torch.Tensor:
    return F.one_hot(idx.clamp_min(0), k).to(dtype)


def action_weights(scores: torch.Tensor | None, labels: torch.Tensor, mode: str, *, tau: float = 1.0,
                   training: bool = False, oracle_share: float = 0.0, fixed_action: int = 0,
                   n_actions: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Action weights ``(B, S, K)`` for one mode.

    Args:
        scores: planner scores ``(B, S, K)`` (may be ``None`` for ``none``/``fixed``/``oracle``).
        labels: k-means labels ``(B, S)`` (long; negative entries are padding).
        mode: one of :data:`MODES`.
        tau: softmax temperature ``τ > 0``.
        training: Gumbel noise and the oracle mix apply only while training.
        oracle_share: ``p`` of the oracle mix (training only; ignored by the non-planner modes).
        fixed_action: the action id used by ``fixed``.
        n_actions: ``K`` when ``scores`` is ``None``.
        generator: seeds the Gumbel noise.

    Returns:
        weights whose rows sum to 1 (all zeros for ``none``).
    """
    check_mode(mode)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    k = scores.shape[-1] if scores is not None else n_actions
    if k is None:
        raise ValueError("pass n_actions when scores is None")
    dtype = scores.dtype if scores is not None else torch.float32
    if mode == "none":
        return torch.zeros(*labels.shape, k, dtype=dtype, device=labels.device)
    if mode == "fixed":
        if not 0 <= fixed_action < k:
            raise ValueError(f"fixed_action={fixed_action} must lie in [0, {k})")
        return _one_hot(torch.full_like(labels, fixed_action), k, dtype)
    if mode == "oracle":
        return _one_hot(labels, k, dtype)
    if scores is None:
        raise ValueError(f"mode {mode!r} needs planner scores")
    if mode == "hard":
        w = _one_hot(scores.detach().argmax(-1), k, dtype)
    elif mode == "straight_through":
        soft = torch.softmax(scores / tau, dim=-1)
        hard = _one_hot(scores.argmax(-1), k, dtype)
        w = hard + (soft - soft.detach())  # exactly the one-hot forward: (s - s) is 0, hard + 0 is hard
    elif mode == "gumbel" and training:
        u = torch.rand(scores.shape, generator=generator, dtype=scores.dtype, device="cpu").to(scores.device)
        g = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        w = torch.softmax((scores + g) / tau, dim=-1)
    else:  # soft, and gumbel at evaluation
        w = torch.softmax(scores / tau, dim=-1)
    if training and oracle_share > 0.0:
        w = oracle_share * _one_hot(labels, k, dtype) + (1.0 - oracle_share) * w
    return w
