"""What every prompt optimizer shares: the prompt layout, the token round trip, exact batched scoring with a
cache, the budget, best-so-far and the stopping rules."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from fuse.optim.chain_base import BaseChain, Known
from fuse.optim.config import OptimizerConfig
from fuse.optim.evaluator import Evaluator, Layout
from fuse.optim.vocab_filter import allowed_tokens

logger = logging.getLogger(__name__)


@dataclass
class OptimResult:
    """Outcome of one optimization.

    Attributes:
        best_text: the best text found (prefix included), as every model saw it.
        best_ids: the primary's token ids of it, exactly as the primary tokenizes ``best_text``.
        best_loss: its exact weighted objective.
        losses: each term's exact (unweighted) value for it, by term label.
        evaluations: exact objective evaluations spent (the budget unit; cache hits are not counted).
        seconds: wall time.
        history: after every step ``{"step", "evaluations", "best_loss", "best_text"}``.
        stopped: ``"budget"``, ``"patience"``, ``"target"``, ``"match"``, ``"exhausted"`` (swap searches: several
            steps in a row found no candidate not already scored) or ``"done"``.
        best_free_ids: the optimized tokens alone (without prefix and special tokens).
        best_free_text: their text.
        matched: whether the best text makes the primary produce its continuation target(s) exactly (``None``
            when the chain has no such target).
        dropped: candidates dropped because their text does not re-tokenize to the same ids in the primary.
        cache_hits: candidates met again and answered from the evaluation cache.
        draft_evaluations: texts scored by a probe-sampling draft model.
        cascade_evaluations: candidates scored on the primary's own terms only, not among the best fraction that went
            on to the whole objective (GCG's ``cascade``); ``evaluations + cascade_evaluations`` candidates were scored.
        gradient_calls: gradient passes the run made (each over a batch of sequences).
        phase_seconds: wall seconds by phase: ``gradient``, ``evaluate`` (exact scoring), ``draft`` (probe sampling).
        probe_history: probe sampling's record of each step (``rho``, probed, filtered, candidates).
        config: the options the run used.
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
    best_free_ids: list[int] = field(default_factory=list)
    best_free_text: str = ""
    matched: bool | None = None
    dropped: int = 0
    cache_hits: int = 0
    draft_evaluations: int = 0
    cascade_evaluations: int = 0
    gradient_calls: int = 0
    phase_seconds: dict = field(default_factory=dict)
    probe_history: list = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def evaluations_per_second(self) -> float:
        return self.evaluations / self.seconds if self.seconds > 0 else float("inf")


class Optimizer:
    """Base class. Subclasses implement :meth:`_run` and name their config class.

    Construct with a config (``GCG(chain, GCGConfig(...))``) or with keyword arguments, which build the config
    (``GCG(chain, n_tokens=20, budget=640)``); both may be combined (keywords override the config's fields).
    """

    name = "optimizer"
    config_class = OptimizerConfig
    supports_beam = True

    @property
    def complete_only(self) -> bool:
        """The result must have exactly ``n_tokens`` free tokens (growth-based optimizers score shorter ones on the
        way)."""
        return bool(getattr(self.config, "complete_only", False))

    def __init__(self, chain, config: OptimizerConfig | None = None, **kwargs):
        if config is None:
            config = self.config_class(**kwargs)
        else:
            if not isinstance(config, self.config_class):
                raise ValueError(f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}")
            config = dataclasses.replace(config, **kwargs) if kwargs else config
        if config.search == "beam" and not self.supports_beam:
            raise ValueError(f"{self.name} optimizes one continuous prompt; use search='greedy'")
        if not isinstance(chain, BaseChain):
            raise ValueError(f"optimizers take a chain (a subclass of fuse.optim.chain_base.BaseChain: Chain, PromptChain, "
                             f"DataParallelChain), got {type(chain).__name__}")
        self.chain, self.config = chain, config
        self.pool_width = config.beam_width if config.search == "beam" else 1  # sequences a step keeps
        self.eval_batch_size = config.eval_batch_size or config.batch_size
        tok = chain.primary.tokenizer
        self.tokenizer = tok
        self.allowed_cpu = allowed_tokens(tok, config.ascii_only, config.vocabulary)
        self.allowed = self.allowed_cpu.to(chain.primary.device)
        fixed = chain.layout()
        if fixed is not None:  # the chain lays out its sequences itself (a PromptChain: the span alone)
            if config.prefix:
                raise ValueError(f"{type(chain).__name__} places the fixed text around the optimized tokens itself; "
                                 f"leave prefix empty (got {config.prefix!r})")
            self.lead_ids, self.tail_ids = [], list(fixed.tail_ids)
            self.prefix_ids, self.add_special_tokens = list(fixed.prefix_ids), fixed.add_special_tokens
        else:
            # the special tokens the tokenizer adds around a text (BOS before; EOS/SEP after), kept in place
            with_sp, plain = tok("x")["input_ids"], tok("x", add_special_tokens=False)["input_ids"]
            start = next((i for i in range(len(with_sp)) if with_sp[i : i + len(plain)] == plain), 0)
            self.lead_ids, self.tail_ids = list(with_sp[:start]), list(with_sp[start + len(plain) :])
            prefix = config.prefix
            self.prefix_ids = self.lead_ids + (list(tok(prefix, add_special_tokens=False)["input_ids"]) if prefix else [])
            self.add_special_tokens = True
        self._reset()

    # -- layout ---------------------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        return Layout(self.prefix_ids, self.tail_ids, self.add_special_tokens)

    def full_ids(self, free: list[int]) -> list[int]:
        return self.prefix_ids + list(free) + self.tail_ids

    def free_positions(self, n: int | None = None) -> list[int]:
        start = len(self.prefix_ids)
        return list(range(start, start + (self.config.n_tokens if n is None else n)))

    def text_of(self, free: list[int]) -> str:
        return self.chain.decode(self.full_ids(free))

    def round_trips(self, frees: list[list[int]]) -> list[bool]:
        """Whether each candidate's text re-tokenizes to exactly its ids in the primary (what the models will see)."""
        return self.evaluator.round_trips(frees)

    # -- initial tokens -------------------------------------------------------------------
    def random_free(self, n: int | None = None) -> list[int]:
        n = self.config.n_tokens if n is None else n
        for _ in range(100):
            idx = torch.randint(len(self.allowed_cpu), (n,), generator=self.gen)
            free = self.allowed_cpu[idx].tolist()
            if n == 0 or self.round_trips([free])[0]:
                return free
        raise ValueError("could not draw random tokens that survive decode → encode in the primary's tokenizer; "
                         "give init_text")

    def initial_free(self) -> list[int]:
        if not self.config.init_text:
            return self.random_free()
        text = self.config.init_text if self.config.init_text[:1].isspace() or not self.config.prefix else " " + self.config.init_text
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) < self.config.n_tokens:
            ids = ids + self.random_free(self.config.n_tokens - len(ids))
        ids = ids[: self.config.n_tokens]
        if not self.round_trips([ids])[0]:
            logger.warning("%s: init_text %r does not survive decode → encode after the prefix; starting from random "
                           "tokens instead", self.name, self.config.init_text)
            return self.random_free()
        return ids

    # -- what the run gathered (the evaluator's) ---------------------------------------------
    def score(self, frees: list[list[int]], known: Callable[[list[list[int]]], Known] | None = None) -> torch.Tensor:
        """Exact losses ``(n,)`` of candidates: :meth:`Evaluator.score <fuse.optim.evaluator.Evaluator.score>`."""
        return self.evaluator.score(frees, known)

    @property
    def state(self):
        """The run's caches (:class:`~fuse.models.run_state.RunState`)."""
        return self.evaluator.state

    @property
    def evaluations(self) -> int:
        return self.evaluator.evaluations

    @property
    def best_loss(self) -> float:
        return self.evaluator.best.loss

    @property
    def best_free(self) -> list[int] | None:
        return self.evaluator.best.free

    @property
    def probe_history(self) -> list[dict]:
        return self.evaluator.probe_history

    # -- bookkeeping ----------------------------------------------------------------------
    def _reset(self) -> None:
        self.gen = torch.Generator().manual_seed(self.config.seed)
        self.history, self.steps_since_best = [], 0
        self.bar = None
        self.evaluator = Evaluator(self.chain, self.layout, self.config.budget, batch_size=self.eval_batch_size,
                                   cache=self.config.cache, complete_length=self.config.n_tokens if self.complete_only else None,
                                   on_scored=self._progress)

    def _progress(self, n: int, best: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(best=f"{best:.4f}")

    def _stop(self) -> str | None:
        if self.config.early_stop and self.evaluator.any_match:
            return "match"
        if self.evaluations >= self.config.budget:
            return "budget"
        if self.config.target_loss is not None and self.best_loss <= self.config.target_loss:
            return "target"
        if self.config.patience is not None and self.steps_since_best >= self.config.patience:
            return "patience"
        return None

    def _record(self, step: int) -> None:
        if not self.history or self.best_loss < self.history[-1]["best_loss"] or self.best_free is None:
            self.steps_since_best = 0  # (no result yet, e.g. a growing prompt: nothing to be patient about)
        else:
            self.steps_since_best += 1
        best_text = self.text_of(self.best_free) if self.best_free is not None else None
        self.history.append({"step": step, "evaluations": self.evaluations, "best_loss": self.best_loss,
                             "best_text": best_text})

    def run(self) -> OptimResult:
        """Optimize. Every call starts afresh from the seed, so two calls give the same result."""
        self._reset()
        self.bar = tqdm(total=self.config.budget, desc=self.name, disable=not self.config.progress, leave=False)
        t0 = time.perf_counter()
        try:
            stopped = self._run() or "done"
        finally:
            self.bar.close()
            self.bar = None
        ev = self.evaluator
        if ev.best.free is None and ev.partial.free is not None:
            logger.warning("%s: the budget ran out before any prompt reached n_tokens=%d; returning the best %d-token "
                           "prompt (raise the budget or lower n_tokens)", self.name, self.config.n_tokens, len(ev.partial.free))
            ev.best = ev.partial
        best = ev.best
        if best.free is None:
            raise ValueError("no candidate was evaluated: raise the budget, or give an init_text / prefix whose tokens "
                             "survive decode → encode in the primary's tokenizer")
        ids = self.full_ids(best.free)
        return OptimResult(
            best_text=self.chain.decode(ids), best_ids=ids, best_loss=best.loss,
            losses={k: float(v) for k, v in zip(self.chain.labels, best.parts)},
            evaluations=ev.evaluations, seconds=time.perf_counter() - t0, history=self.history,
            stopped=stopped, optimizer=self.name, search=self.config.search, best_free_ids=list(best.free),
            best_free_text=self.tokenizer.decode(best.free, clean_up_tokenization_spaces=False),
            matched=best.match, dropped=ev.dropped, cache_hits=ev.cache_hits,
            draft_evaluations=ev.draft_evaluations, cascade_evaluations=ev.cascade_evaluations,
            gradient_calls=ev.gradient_calls,
            phase_seconds={k: round(v, 6) for k, v in ev.seconds.items()}, probe_history=list(ev.probe_history),
            config=self.config.to_dict(),
        )

    def _run(self) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError
