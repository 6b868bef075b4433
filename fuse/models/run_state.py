"""State that belongs to a run, not to a model (DESIGN §5, "The engine, at the scale users run it").

An optimizer creates one :class:`RunState` per run and hands it to the chain's gradient and scoring calls; the
chain gives each causal LM it calls its own :class:`LMState` from it. Backbones keep nothing between calls, so two
runs, two threads or two chains on one model never see each other's caches (nanoGCG keeps its prefix cache on the
per-run attack object in the same way).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Hashable

import torch


@dataclass
class LMState:
    """What one causal LM keeps during one run.

    Attributes:
        frozen: leading positions treated as constants by the current gradient call (their KV cache is run once
            without autograd); 0 outside such a call.
        frozen_kv: ``(prefix embeddings (n, d), KV cache)`` of the last constant prefix, reused while the prefix's
            embeddings stay the same.
        center_kv: ``(embeddings (L, d), KV cache)`` of the last single-sequence gradient pass (an optimizer's
            center): candidate scoring crops a copy of it instead of running their shared prefix.
        record_at: a logit position to keep from every forward (``None``: none); ``recorded`` holds it.
        output_map: the target path's ``A (d, d)`` (:meth:`CausalLMBackbone.output_map
            <fuse.models.backbones.causal_lm.CausalLMBackbone.output_map>`), computed once per run.
    """

    frozen: int = 0
    frozen_kv: tuple[torch.Tensor, Any] | None = None
    center_kv: tuple[torch.Tensor, Any] | None = None
    record_at: int | None = None
    recorded: torch.Tensor | None = None
    output_map: torch.Tensor | None = None

    @contextlib.contextmanager
    def frozen_prefix(self, n: int):
        """Within the block, the first ``n`` positions of the LM's gradient passes are constants: their KV cache is
        run once without autograd and reused while their embeddings stay the same; only later positions run with
        autograd (their gradient is then zero: for callers that want gradients at later positions only)."""
        before, self.frozen = self.frozen, max(0, int(n))
        try:
            yield self
        finally:
            self.frozen = before

    @contextlib.contextmanager
    def recording_logits(self, position: int):
        """Within the block, every forward of the LM keeps ``logits[:, position]`` (detached) in :attr:`recorded`
        (AutoDAN ranks the new token by the LM logits of the forward that gives its gradient)."""
        self.record_at, self.recorded = int(position), None
        try:
            yield self
        finally:
            self.record_at = None


@dataclass
class RunState:
    """The caches of one run: one :class:`LMState` per slot. A slot names a place in the run (the chain's primary,
    a term, a prompt), never a model object, so the same model in two runs has two states."""

    slots: dict[Hashable, LMState] = field(default_factory=dict)

    def lm(self, slot: Hashable = "primary") -> LMState:
        """The state of the LM at ``slot`` (created empty on first use)."""
        if slot not in self.slots:
            self.slots[slot] = LMState()
        return self.slots[slot]

    def clear(self) -> None:
        self.slots.clear()
