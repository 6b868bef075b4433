"""Model-parallel terms of a chain on the ranks of a torchrun job: each rank computes only its own models' losses.

:class:`~fuse.parallel.chain.DataParallelChain` gives every rank the whole objective and splits the candidates;
:class:`TermParallelChain` splits the objective instead: the chain's terms are dealt to ranks (``by="model"``: all
terms of one model to one rank, so a rank runs one model's forwards and backwards and its device holds what that
model needs; ``by="term"``: term ``i`` to rank ``i mod N``, e.g. a universal span's prompts). Every rank scores every
candidate on its terms (:meth:`BaseChain.subset <fuse.optim.chain_base.BaseChain.subset>`), and the ranks' rows are
gathered and summed in rank order, so every rank holds the same total, parts and gradient and takes the same step.

The sums equal one process's up to the order of float additions (exact where every rank holds one term); exact
scores are assembled column by column, so they equal one process's bit for bit where the scorer is batch-invariant.
A candidate one rank refuses (a :class:`~fuse.optim.prompt_chain.PromptChain` span whose edges merge with that model's
fixed text) is refused for every term, as in one process.

Example (``torchrun --nproc_per_node 2 script.py``: rank 0 runs SmolLM2's terms, rank 1 Gemma's)::

    init_from_env()
    chain = TermParallelChain(PromptChain([smol, gemma], prompts, chat_templates=...))
    result = fuse.optimize(chain, GCGConfig(n_tokens=12, budget=512, seed=0))        # the same on every rank
"""

from __future__ import annotations

from typing import Sequence

import torch

from fuse.models.run_state import RunState
from fuse.optim.chain_base import BaseChain, Evaluation, Known
from fuse.parallel.collectives import all_gather_rows, check_all
from fuse.parallel.wrapped import RankedChain

__all__ = ["TermParallelChain", "BY"]

#: how terms are dealt to ranks
BY = ("model", "term")


def owners(chain: BaseChain, n: int, by: str) -> list[int]:
    """The rank of each term: by the index of its model (in order of first appearance), or by its own index."""
    if by == "term":
        return [i % n for i in range(len(chain.terms))]
    models: list[int] = []
    out = []
    for t in chain.terms:
        key = id(t.objective.backbone)
        if key not in models:
            models.append(key)
        out.append(models.index(key) % n)
    return out


class TermParallelChain(RankedChain):
    """A chain whose terms are dealt to the ranks of a process group (module docstring).

    Args:
        chain: the chain every rank holds (built the same way on each rank; a rank only runs its own terms' models).
        by: ``"model"`` (default) or ``"term"``.
        local: compute every term on this process (no exchange), e.g. a single-process reference run.
    """

    def __init__(self, chain, *, by: str = "model", local: bool = False):
        self.check_plain(chain, "TermParallelChain")
        if by not in BY:
            raise ValueError(f"unknown split by={by!r}; use one of {BY}")
        self.chain, self.by, self.local = chain, by, bool(local)
        self.owner = owners(chain, self.world_size, by)
        self.mine = [i for i, r in enumerate(self.owner) if r == self.rank]
        self.part = chain.subset(self.mine) if self.mine else None

    # -- the contract: what the chain is (primary, terms, adapters, layout: RankedChain's) --------
    def subset(self, indices: Sequence[int]) -> "TermParallelChain":
        """The wrapped chain's subset, its terms dealt to ranks the same way."""
        return TermParallelChain(self.chain.subset(self._check_subset(indices)), by=self.by, local=self.local)

    def __repr__(self) -> str:
        return f"TermParallelChain({self.chain!r}, by={self.by!r}, world_size={self.world_size}, mine={self.mine})"

    # -- the exchange -----------------------------------------------------------------------
    def _sum(self, compute) -> list[torch.Tensor]:
        """Every rank's ``compute()`` (a list of float32 tensors on the primary's device, of the same shapes on every
        rank; zeros where the rank has nothing), summed in rank order on every rank. An error on one rank is raised on every rank."""
        error, local = None, None
        try:
            local = compute()
        except Exception as e:
            if self.world_size == 1:
                raise
            error = e
        if self.world_size == 1:
            return local
        check_all(None if error is None else f"{type(error).__name__}: {error}")
        shapes = [t.shape for t in local]
        flat = torch.cat([t.reshape(-1) for t in local])[None]
        rows = all_gather_rows(flat)
        total = rows[0].clone()
        for r in rows[1:]:
            total += r
        out, at = [], 0
        for s in shapes:
            k = int(torch.Size(s).numel())
            out.append(total[at: at + k].reshape(s))
            at += k
        return out

    def _spread(self, ev: Evaluation | None, n: int) -> list[torch.Tensor]:
        """This rank's part of an evaluation as full-width rows: ``parts (n, T)`` (zeros outside its columns) and the
        count of its terms whose goal was met or not given (``(n,)``), the count of its terms with a goal, and
        whether it refused the row."""
        dev = self.device
        parts = torch.zeros(n, len(self.terms), device=dev)
        met, goals, refused = (torch.zeros(n, device=dev) for _ in range(3))
        if ev is not None:
            p = ev.parts.detach().to(device=dev, dtype=torch.float32)
            parts[:, self.mine] = p
            refused = (~torch.isfinite(p)).any(1).float()
            if ev.match is not None:
                goals += 1
                met = ev.match.to(dev).float()
        return [parts, met, goals, refused]

    def _assemble(self, rows: list[torch.Tensor]) -> Evaluation:
        parts, met, goals, refused = rows
        if hasattr(self.chain, "edge_drops"):  # a refused span is refused for every term, as in one process
            parts[refused > 0] = float("inf")
        match = None if not bool((goals > 0).any()) else (met >= goals) & (goals > 0)
        return Evaluation(parts @ self.weights.to(parts), parts, match)

    # -- exact evaluation ---------------------------------------------------------------------
    def evaluate(self, texts: Sequence[str], batch_size: int = 64) -> Evaluation:
        """Exact objective of each text: every rank scores all of them on its own terms."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to evaluate")
        return self._assemble(self._sum(lambda: self._spread(
            None if self.part is None else self.part.evaluate(texts, batch_size=batch_size), len(texts))))

    def evaluate_ids(self, seqs: Sequence[Sequence[int]], batch_size: int = 64, texts: Sequence[str] | None = None,
                     known: Known | None = None, state: RunState | None = None) -> Evaluation:
        """Exact objective of primary sequences: every rank scores all of them on its own terms."""
        seqs = [list(s) for s in seqs]
        if not seqs:
            raise ValueError("no sequences to evaluate")
        mine = {old: new for new, old in enumerate(self.mine)}
        known = {mine[j]: v for j, v in (known or {}).items() if j in mine}
        return self._assemble(self._sum(lambda: self._spread(
            None if self.part is None else self.part.evaluate_ids(seqs, batch_size=batch_size, texts=texts,
                                                                    known=known or None, state=state), len(seqs))))

    # -- gradients --------------------------------------------------------------------------
    def embedding_gradients(self, seqs, positions=None, state: RunState | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses and the gradient with respect to the primary's input embeddings, each rank's terms' summed."""
        prim = self.primary
        ids = torch.as_tensor(seqs)
        if ids.dim() != 2:
            raise ValueError(f"seqs must be (B, L) token ids of equal length, got shape {tuple(ids.shape)}")
        B, L = ids.shape
        n_pos = L if positions is None else len(positions)
        d = prim.dim

        def compute():
            parts = torch.zeros(B, len(self.terms), device=self.device)
            if self.part is None:
                return [parts, torch.zeros(B, n_pos, d, device=self.device)]
            _, p, g = self.part.embedding_gradients(seqs, positions, state)
            parts[:, self.mine] = p.detach().to(device=self.device, dtype=torch.float32)
            return [parts, g.detach().to(device=self.device, dtype=torch.float32)]

        parts, g = self._sum(compute)
        return parts @ self.weights.to(parts), parts, g.to(device=prim.device, dtype=prim.dtype)
