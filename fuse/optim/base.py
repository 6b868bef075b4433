"""What every prompt optimizer shares: the prompt, the budget, exact batched scoring, best-so-far."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from fuse.optim.vocab_filter import allowed_tokens

logger = logging.getLogger(__name__)
SEARCHES = ("greedy", "beam")


@dataclass
class OptimResult:
    """Outcome of one optimization.

    Attributes:
        best_text: the best text found (prefix included).
        best_ids: the primary's token ids of it.
        best_loss: its exact weighted objective.
        losses: each term's exact (unweighted) value for it, by term label.
        evaluations: exact objective evaluations spent (the budget unit).
        seconds: wall time.
        history: ``[{"evaluations": n, "best_loss": x, "step": s}, ...]`` after every step.
        stopped: ``"budget"``, ``"patience"``, ``"target"`` or ``"done"``.
    """

    best_text: str
    best_ids: list[int]
    best_loss: float
    losses: dict[str, float]
    evaluations: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    stopped: str = "done"
    optimizer: str = ""
    search: str = "greedy"


class Optimizer:
    """Base class. Subclasses implement :meth:`_run`.

    Args:
        chain: the :class:`~fuse.optim.chain.Chain` to minimize.
        n_tokens: free tokens to optimize (appended after ``prefix``).
        prefix: fixed text before the free tokens (e.g. ``"An image of"``).
        budget: maximum exact objective evaluations.
        batch_size: candidates evaluated per step (one forward per term per batch).
        search: ``"greedy"`` or ``"beam"``.
        beam_width: beams kept with ``search="beam"``.
        patience: stop after this many steps without improvement (``None``: never).
        target_loss: stop once the best loss is at or below this.
        seed: seeds every random choice.
        progress: show a tqdm bar.
        ascii_only: restrict candidate tokens to printable ASCII.
    """

    name = "optimizer"
    supports_beam = True
    #: only candidates of exactly ``n_tokens`` free tokens may become the result (growth-based
    #: optimizers evaluate shorter ones on the way; see :class:`~fuse.optim.autodan.AutoDAN`).
    complete_only = False

    def __init__(self, chain, *, n_tokens: int = 8, prefix: str = "", budget: int = 1000, batch_size: int = 64,
                 search: str = "greedy", beam_width: int = 4, patience: int | None = None,
                 target_loss: float | None = None, seed: int = 0, progress: bool = False, ascii_only: bool = True,
                 init_text: str | None = None):
        if int(budget) < 1:
            raise ValueError(f"budget must be at least 1 exact evaluation, got {budget}")
        if int(n_tokens) < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if search not in SEARCHES:
            raise ValueError(f"unknown search {search!r}; use one of {SEARCHES}")
        if search == "beam" and not self.supports_beam:
            raise ValueError(f"{self.name} optimizes one continuous prompt; use search='greedy'")
        if search == "beam" and beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        self.chain, self.n_tokens, self.prefix = chain, int(n_tokens), prefix
        self.budget, self.batch_size, self.search = int(budget), int(batch_size), search
        self.beam_width = beam_width if search == "beam" else 1
        self.patience, self.target_loss, self.seed = patience, target_loss, seed
        self.progress = progress
        tok = chain.primary.tokenizer
        self.allowed = allowed_tokens(tok, ascii_only).to(chain.primary.device)
        # the special tokens the tokenizer adds around a text (BOS before; EOS/SEP after), kept in place
        with_sp, plain = tok("x")["input_ids"], tok("x", add_special_tokens=False)["input_ids"]
        start = next((i for i in range(len(with_sp)) if with_sp[i : i + len(plain)] == plain), 0)
        self.lead_ids, self.tail_ids = list(with_sp[:start]), list(with_sp[start + len(plain) :])
        self.prefix_ids = self.lead_ids + (list(tok(prefix, add_special_tokens=False)["input_ids"]) if prefix else [])
        self.init_text = init_text
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)

    # -- shared machinery -----------------------------------------------------------------
    def full_ids(self, free: list[int]) -> list[int]:
        return self.prefix_ids + list(free) + self.tail_ids

    @property
    def free_slice(self) -> slice:
        return slice(len(self.prefix_ids), None if not self.tail_ids else -len(self.tail_ids))

    def text_of(self, free: list[int]) -> str:
        return self.chain.decode(self.full_ids(free))

    def random_free(self, n: int | None = None) -> list[int]:
        n = self.n_tokens if n is None else n
        idx = torch.randint(len(self.allowed), (n,), generator=self.gen)
        return self.allowed[idx].tolist()

    def initial_free(self) -> list[int]:
        if self.init_text:
            ids = self.chain.primary.tokenizer(" " + self.init_text, add_special_tokens=False)["input_ids"][: self.n_tokens]
            return ids + self.random_free(self.n_tokens - len(ids))
        return self.random_free()

    def score(self, frees: list[list[int]]) -> torch.Tensor:
        """Exact losses of candidates (budget permitting: extra candidates get +inf and are not counted)."""
        left = self.budget - self.evaluations
        out = torch.full((len(frees),), float("inf"))
        if left <= 0 or not frees:
            return out
        take = frees[:left]
        texts = [self.text_of(f) for f in take]
        ok = [i for i, t in enumerate(texts) if t.strip()]
        if ok:
            ev = self.chain.evaluate([texts[i] for i in ok], batch_size=self.batch_size)
            for j, i in enumerate(ok):
                out[i] = ev.total[j]
                if self.complete_only and len(take[i]) != self.n_tokens:  # a partial prompt: the fallback only
                    if ev.total[j] < self._partial[0]:
                        self._partial = (float(ev.total[j]), list(take[i]), ev.parts[j])
                elif ev.total[j] < self.best_loss:
                    self.best_loss, self.best_free, self.best_parts = float(ev.total[j]), list(take[i]), ev.parts[j]
        self.evaluations += len(take)
        if self.bar is not None:
            self.bar.update(len(take))
            self.bar.set_postfix(best=f"{self.best_loss:.4f}")
        return out

    def _stop(self) -> str | None:
        if self.evaluations >= self.budget:
            return "budget"
        if self.target_loss is not None and self.best_loss <= self.target_loss:
            return "target"
        if self.patience is not None and self.steps_since_best >= self.patience:
            return "patience"
        return None

    def _record(self, step: int) -> None:
        if not self.history or self.best_loss < self.history[-1]["best_loss"] or self.best_free is None:
            self.steps_since_best = 0  # (no result yet, e.g. a growing prompt: nothing to be patient about)
        else:
            self.steps_since_best += 1
        self.history.append({"step": step, "evaluations": self.evaluations, "best_loss": self.best_loss})

    def run(self) -> OptimResult:
        self.evaluations, self.best_loss, self.best_free, self.best_parts = 0, float("inf"), None, None
        self.history, self.steps_since_best = [], 0
        self._partial = (float("inf"), None, None)
        self.bar = tqdm(total=self.budget, desc=self.name, disable=not self.progress, leave=False)
        t0 = time.perf_counter()
        try:
            stopped = self._run() or "done"
        finally:
            self.bar.close()
            self.bar = None
        if self.best_free is None and self._partial[1] is not None:
            logger.warning("%s: the budget ran out before any prompt reached n_tokens=%d; returning the best %d-token "
                           "prompt (raise the budget or lower n_tokens)", self.name, self.n_tokens, len(self._partial[1]))
            self.best_loss, self.best_free, self.best_parts = self._partial
        if self.best_free is None:
            raise ValueError("no candidate was evaluated; raise the budget")
        ids = self.full_ids(self.best_free)
        return OptimResult(
            best_text=self.chain.decode(ids), best_ids=ids, best_loss=self.best_loss,
            losses={k: float(v) for k, v in zip(self.chain.labels, self.best_parts)},
            evaluations=self.evaluations, seconds=time.perf_counter() - t0, history=self.history,
            stopped=stopped, optimizer=self.name, search=self.search,
        )

    def _run(self) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError
