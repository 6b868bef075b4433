"""The chain contract: what every optimizer may ask of a chain, and nothing else (DESIGN §5).

A chain is a weighted sum of frozen models' losses over texts in one model's tokens (the *primary*).
:class:`~fuse.optim.chain.Chain` computes it in one process; :class:`~fuse.parallel.DataParallelChain`
shares the same computation among the ranks of a torchrun job. Both subclass :class:`BaseChain`, so an
optimizer written against it runs unchanged on either: it reads the terms, evaluates exactly, asks for
gradients, and takes a chain over a subset of the terms (:meth:`BaseChain.subset`) where it needs part of
the objective — it never copies or patches a chain.

Sequences are the primary's token ids of a whole prompt as the optimizer laid it out (fixed text before and
after the optimized span, special tokens); ``texts`` are what every other model re-tokenizes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch

from fuse.core.bridge import Bridge
from fuse.models.run_state import RunState
from fuse.objectives import Objective


@dataclass
class Term:
    """One weighted loss of a chain: ``objective`` on its own backbone, reached through ``bridge`` from the primary
    (``None`` when the objective is on the primary itself)."""

    objective: Objective
    weight: float
    bridge: Bridge | None

    @property
    def label(self) -> str:
        return f"{self.objective.backbone.name}:{self.objective.name}"

    @property
    def on_primary(self) -> bool:
        return self.bridge is None


@dataclass
class Evaluation:
    """Exact objective values, float32 on the primary's device.

    Attributes:
        total: ``(B,)`` the weighted sum.
        parts: ``(B, T)`` every term, unweighted.
        match: ``(B,)`` whether every term with an exact goal (a :class:`~fuse.objectives.Continuation`) met it,
            or ``None`` when no term has one.
    """

    total: torch.Tensor
    parts: torch.Tensor
    match: torch.Tensor | None = None


def cat_evaluations(evals: Sequence[Evaluation]) -> Evaluation:
    """Rows of several evaluations, in order."""
    match = None if evals[0].match is None else torch.cat([e.match for e in evals])
    return Evaluation(torch.cat([e.total for e in evals]), torch.cat([e.parts for e in evals]), match)


@dataclass
class Layout:
    """Where the optimized tokens sit in the primary's sequence: ``prefix_ids + free + tail_ids``.

    ``add_special_tokens``: the round-trip rule. A candidate is kept when the primary tokenizes the decoded text of
    ``full_ids(free)`` with this setting back to exactly those ids (``True``: as in use, special tokens added).
    """

    prefix_ids: list[int]
    tail_ids: list[int]
    add_special_tokens: bool = True

    def full_ids(self, free: Sequence[int]) -> list[int]:
        return self.prefix_ids + list(free) + self.tail_ids


#: exact values of some terms, already known for the sequences being evaluated: ``{term index: (B,) tensor}``
Known = dict[int, torch.Tensor]


class BaseChain(abc.ABC):
    """The interface optimizers use. Subclasses give :attr:`primary`, :attr:`terms`, the exact evaluations, the
    embedding gradients and :meth:`subset`; labels, weights, decoding, token-swap gradients and :meth:`combine`
    follow from those."""

    # -- what a chain is ------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def primary(self):
        """The backbone whose tokens are optimized."""

    @property
    @abc.abstractmethod
    def terms(self) -> list[Term]:
        """The weighted losses, in order (their index is the column of :attr:`Evaluation.parts`)."""

    @abc.abstractmethod
    def subset(self, indices: Sequence[int]) -> "BaseChain":
        """A chain of the same kind over ``terms[i] for i in indices`` (same primary, same bridges, same placement;
        a data-parallel chain stays data-parallel). Its evaluations and gradients are those of that part of the
        objective alone."""

    # -- exact evaluation -----------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, texts: Sequence[str], batch_size: int = 64) -> Evaluation:
        """Exact objective of each text: every model scores its own tokenization of it."""

    @abc.abstractmethod
    def evaluate_ids(self, seqs: Sequence[Sequence[int]], batch_size: int = 64, texts: Sequence[str] | None = None,
                     known: Known | None = None, state: RunState | None = None) -> Evaluation:
        """Exact objective of primary token sequences that round-trip (``encode(decode(ids)) == ids``).

        Args:
            seqs: the primary's token ids of each whole prompt.
            batch_size: sequences per forward.
            texts: their decoded texts (what the other models tokenize), if the caller has them already.
            known: exact values of some terms for these sequences (``{term index: (len(seqs),)}``), which are then
                not computed again (an optimizer that reads them off a forward it ran anyway).
            state: the run's caches (:class:`~fuse.models.run_state.RunState`): the primary's scoring crops the KV
                cache of the run's last single-sequence gradient pass where candidates start with it.
        """

    # -- gradients ------------------------------------------------------------------------
    @abc.abstractmethod
    def embedding_gradients(self, seqs, positions=None, state: RunState | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses and their gradient with respect to the primary's input embeddings, for equal-length sequences.

        Args:
            seqs: ``(B, L)`` token ids (a tensor or a list of equal-length lists).
            positions: the positions to return gradients for (default all ``L``). Positions before the first one
                asked for are treated as constants (their KV cache may be reused), so their gradient is not computed.
            state: the run's caches: the constant prefix's KV cache is kept there between calls, and a
                single-sequence pass leaves its KV cache there for the scoring of its candidates.

        Returns:
            ``(loss (B,), parts (B, T), grad (B, len(positions), d))``, float32 losses on the primary's device; the
            gradient in the primary's dtype.
        """

    # -- optional -------------------------------------------------------------------------
    def layout(self) -> Layout | None:
        """The layout of the sequences this chain takes, when the chain fixes it itself; ``None`` (the default): the
        optimizer lays them out (its ``config.prefix`` after the primary's special tokens, the round trip as in use).

        A chain that adds fixed text around the optimized span on its own
        (:class:`~fuse.optim.prompt_chain.PromptChain`) returns ``Layout([], [], add_special_tokens=False)``: its
        sequences are the span alone. Such a chain answers ``inf`` for a candidate it refuses (the optimizer's
        evaluator counts it as dropped)."""
        return None

    # -- derived --------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]

    @property
    def weights(self) -> torch.Tensor:
        return torch.tensor([t.weight for t in self.terms])

    @property
    def device(self) -> torch.device:
        """Where losses are reduced: the primary's device."""
        return self.primary.device

    def decode(self, ids) -> str:
        """The text of primary token ids, as every other model receives it."""
        return self.primary.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True,
                                             clean_up_tokenization_spaces=False)

    def combine(self, scored: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> Evaluation:
        """An :class:`Evaluation` from every term's ``(values (B,), match (B,) or None)``, in term order."""
        if len(scored) != len(self.terms):
            raise ValueError(f"combine needs one (values, match) pair per term ({len(self.terms)}), got {len(scored)}")
        P = torch.stack([loss.to(device=self.device, dtype=torch.float32) for loss, _ in scored], dim=1)
        matches = [m.to(self.device) for _, m in scored if m is not None]
        match = torch.stack(matches, 1).all(1) if matches else None
        return Evaluation(P @ self.weights.to(P), P, match)

    def gradients(self, seqs, positions=None, tokens=None, state: RunState | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses and one-hot gradients of several equal-length primary sequences in one batched pass.

        Returns:
            ``(loss (B,), parts (B, T), grad (B, len(positions), len(tokens)))``: ``grad[b, i, j]`` is the first-order
            change of sequence ``b``'s weighted loss when position ``positions[i]`` moves towards token
            ``tokens[j]`` (GCG's swap score), computed as ``∂L/∂x · E[tokens]ᵀ`` without a one-hot or ``V × d`` tensor.
        """
        total, parts, g = self.embedding_gradients(seqs, positions, state)
        return total, parts, self.primary.token_scores(g, tokens)

    def gradient(self, ids, positions=None, tokens=None) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Loss and its gradient with respect to the one-hot token matrix of one sequence ``ids``.

        Returns:
            ``(loss, parts (T,), grad)``; ``grad (L, V)`` (or ``(len(positions), len(tokens))``): ``grad[i, v]`` is the
            first-order change of the loss when position ``i`` moves towards token ``v`` (the GCG swap score).
        """
        ids = torch.as_tensor(ids, device=self.primary.device).reshape(1, -1)
        total, P, g = self.gradients(ids, positions, tokens)
        return float(total[0]), P[0], g[0]

    def _check_subset(self, indices: Sequence[int]) -> list[int]:
        idx = [int(i) for i in indices]
        n = len(self.terms)
        if not idx or any(i < 0 or i >= n for i in idx) or len(set(idx)) != len(idx):
            raise ValueError(f"subset takes distinct term indices in 0..{n - 1}, got {list(indices)!r}")
        return idx
