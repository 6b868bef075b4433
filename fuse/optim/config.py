"""Validated options of every optimizer (peft / nanoGCG style): one dataclass per optimizer.

The CLI reads its defaults from these classes, so ``fuse optimize`` and ``fuse.optimize(chain, GCGConfig())`` agree.

Example:
    >>> from fuse.optim.config import GCGConfig
    >>> GCGConfig(n_tokens=20, budget=640, batch_size=64, n_replace=1).top_k
    256
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fuse.optim.vocab_filter import SCRIPTS, VOCABULARIES

SEARCHES = ("greedy", "beam")
ACCEPT = ("improve", "always")


def _positive(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass
class OptimizerConfig:
    """Options every optimizer shares.

    Attributes:
        n_tokens: free tokens to optimize (placed after ``prefix``).
        prefix: fixed text before the free tokens (e.g. ``"An image of"``, a chat template).
        budget: maximum exact objective evaluations (the budget unit; cached re-evaluations are free).
        batch_size: candidates proposed per step.
        eval_batch_size: sequences per forward pass when scoring (default ``batch_size``); lower it to save memory.
        search: ``"greedy"`` (one current sequence) or ``"beam"`` (``beam_width`` sequences, candidates around each).
        beam_width: sequences kept with ``search="beam"``.
        patience: stop after this many steps without improvement (``None``: never).
        target_loss: stop once the best loss is at or below this.
        early_stop: stop as soon as a scored candidate makes the primary produce every
            :class:`~fuse.objectives.Continuation` target exactly (greedy decoding).
        seed: seeds every random choice; ``run()`` reseeds, so running twice gives the same result.
        progress: show a tqdm bar.
        ascii_only: restrict candidate tokens to printable ASCII.
        vocabulary: the tokens candidates draw from: ``"readable"`` (default), tokens with a letter or digit;
            ``"printable"``, any printable token, punctuation included (nanoGCG's set; lower losses at long budgets,
            less fluent text: ``benchmarks/engine_peer_long.py``); ``"japanese"`` or ``"chinese"``, tokens in that
            language's scripts only (needs ``ascii_only=False``). :mod:`fuse.optim.vocab_filter`.
        init_text: initial free tokens as text (nanoGCG: ``"x x x ..."``); default random allowed tokens.
        cache: remember exact evaluations by token sequence, so a candidate met again costs nothing.
    """

    n_tokens: int = 8
    prefix: str = ""
    budget: int = 1000
    batch_size: int = 64
    eval_batch_size: int | None = None
    search: str = "greedy"
    beam_width: int = 4
    patience: int | None = None
    target_loss: float | None = None
    early_stop: bool = False
    seed: int = 0
    progress: bool = False
    ascii_only: bool = True
    vocabulary: str = "readable"
    init_text: str | None = None
    cache: bool = True

    def __post_init__(self):
        _positive("n_tokens", self.n_tokens)
        _positive("budget", self.budget)
        _positive("batch_size", self.batch_size)
        _positive("eval_batch_size", self.eval_batch_size, allow_none=True)
        _positive("beam_width", self.beam_width)
        _positive("patience", self.patience, allow_none=True)
        if self.search not in SEARCHES:
            raise ValueError(f"unknown search {self.search!r}; use one of {SEARCHES}")
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown vocabulary {self.vocabulary!r}; use one of {VOCABULARIES}")
        if self.vocabulary in SCRIPTS and self.ascii_only:
            raise ValueError(f"vocabulary {self.vocabulary!r} holds no ASCII tokens; set ascii_only=False")
        if not isinstance(self.prefix, str):
            raise ValueError(f"prefix must be text, got {type(self.prefix).__name__}")
        if self.init_text is not None and not str(self.init_text).strip():
            raise ValueError("init_text is empty; leave it None for random initial tokens")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        """JSON-ready options (objects such as a probe draft chain are named, not serialized)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = asdict(v) if hasattr(v, "__dataclass_fields__") else v
        return out


@dataclass
class ProbeConfig:
    """Probe sampling (Zhao et al., 2024) with a draft model of *any* tokenizer.

    Each step the draft chain scores every candidate's text (with its own tokenization, as every secondary model
    does), the real chain scores a random probe of ``batch_size / sampling_factor`` candidates, and the draft's and
    the real losses' rank agreement on the probe (Spearman ρ, α = (1 + ρ)/2) decides how many of the draft's best
    the real chain also scores: ``max(1, (1 − α) · batch_size / r)``.

    Attributes:
        draft: a :class:`~fuse.optim.chain.Chain` (or anything with ``evaluate(texts, batch_size)``) on a small model.
        r: the published reduction factor (8).
        sampling_factor: the probe is ``batch_size / sampling_factor`` candidates (16).
    """

    draft: object = None
    r: float = 8.0
    sampling_factor: int = 16

    def __post_init__(self):
        if self.draft is None or not hasattr(self.draft, "evaluate"):
            raise ValueError("ProbeConfig needs draft=a Chain (or an object with evaluate(texts, batch_size)) "
                             "on a small model; it may use any tokenizer")
        if not self.r > 0:
            raise ValueError(f"r must be > 0, got {self.r}")
        _positive("sampling_factor", self.sampling_factor)


@dataclass
class GCGConfig(OptimizerConfig):
    """Greedy coordinate gradient (Zou et al., 2023) with nanoGCG's options.

    Attributes:
        top_k: candidate tokens per position, by the most negative one-hot gradient (256).
        n_replace: positions swapped in each candidate (1).
        buffer_size: nanoGCG's attack buffer: keep the ``buffer_size`` best sequences and propose candidates around
            the best of them. ``0``: no buffer, only the current sequence (see ``accept``).
        accept: ``"improve"`` (default): the current sequence changes only when a candidate beats it (monotone);
            ``"always"``: it becomes each step's best candidate even when that is worse (nanoGCG with
            ``buffer_size=0``). The result is always the best sequence ever scored.
        combine: evaluations of each step spent on combinations of the step's best improving swaps (I-GCG's
            multi-coordinate update; :mod:`fuse.optim.search`). ``None`` (default): ``batch_size // 8``, the setting
            measured against nanoGCG (``engine_peer``); ``0``: plain GCG.
        probe: a :class:`ProbeConfig` to pre-screen each step's candidates with a cheap draft model.
        cascade: ``None`` (default): every candidate is scored on every term. A fraction in (0, 1]: each step's
            candidates are scored first on the primary's own terms, and only that fraction of them (the best, at least
            one) also on the bridged terms; the step keeps the best by the whole objective. The result's
            ``evaluations`` count whole evaluations, ``cascade_evaluations`` the candidates scored on the primary
            alone. For a time budget with several models (``benchmarks/transfer_cascade.py``, docs/prompts.md): 0.25.
    """

    top_k: int = 256
    n_replace: int = 1
    buffer_size: int = 0
    accept: str = "improve"
    combine: int | None = None
    probe: ProbeConfig | None = None
    cascade: float | None = None

    def __post_init__(self):
        super().__post_init__()
        _positive("top_k", self.top_k)
        _positive("n_replace", self.n_replace)
        if self.n_replace > self.n_tokens:
            raise ValueError(f"n_replace={self.n_replace} exceeds n_tokens={self.n_tokens}")
        if isinstance(self.buffer_size, bool) or not isinstance(self.buffer_size, int) or self.buffer_size < 0:
            raise ValueError(f"buffer_size must be an integer >= 0, got {self.buffer_size!r}")
        if self.accept not in ACCEPT:
            raise ValueError(f"unknown accept rule {self.accept!r}; use one of {ACCEPT}")
        if self.combine is not None and (isinstance(self.combine, bool) or not isinstance(self.combine, int)
                                         or not 0 <= self.combine < self.batch_size):
            raise ValueError(f"combine must be None or an integer in [0, batch_size={self.batch_size}), "
                             f"got {self.combine!r}")
        if self.buffer_size and self.search == "beam":
            raise ValueError("buffer_size and search='beam' are two ways of keeping several sequences; pick one")
        if self.probe is not None and not isinstance(self.probe, ProbeConfig):
            raise ValueError("probe must be a fuse.optim.ProbeConfig")
        if self.cascade is not None:
            if isinstance(self.cascade, bool) or not isinstance(self.cascade, (int, float)) or not (
                    0 < self.cascade <= 1):
                raise ValueError(f"cascade must be None or a fraction in (0, 1] of each step's candidates scored on "
                                 f"the bridged terms, got {self.cascade!r}")
            if self.probe is not None:
                raise ValueError("probe and cascade are two ways of scoring fewer candidates exactly; pick one")

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.probe is not None:
            draft = self.probe.draft
            out["probe"] = {"draft": getattr(getattr(draft, "primary", draft), "name", type(draft).__name__),
                            "r": self.probe.r, "sampling_factor": self.probe.sampling_factor}
        return out


@dataclass
class RandomSearchConfig(OptimizerConfig):
    """Random search, the control: GCG's swaps and exact evaluation with uniformly drawn tokens.

    Attributes:
        n_replace: positions swapped in each candidate.
    """

    n_replace: int = 1

    def __post_init__(self):
        super().__post_init__()
        _positive("n_replace", self.n_replace)
        if self.n_replace > self.n_tokens:
            raise ValueError(f"n_replace={self.n_replace} exceeds n_tokens={self.n_tokens}")


@dataclass
class AutoDANConfig(OptimizerConfig):
    """AutoDAN-style left-to-right growth (Zhu et al., 2023).

    Attributes:
        lm_weight: weight of the primary LM's log-probability in the candidate ranking (0: gradient only).
        use_gradient: rank by the chain's gradient at all (``False``: LM logits only, the control).
        complete_only: the result has exactly ``n_tokens`` free tokens (default); ``False``: the best prompt of any
            length met while growing (AutoDAN's original rule; a fluency term then favours short prompts).
    """

    lm_weight: float = 1.0
    use_gradient: bool = True
    complete_only: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.lm_weight < 0:
            raise ValueError(f"lm_weight must be >= 0, got {self.lm_weight}")
        if not self.use_gradient and self.lm_weight == 0:
            raise ValueError("with use_gradient=False the LM logits are the only ranking: lm_weight must be > 0")


@dataclass
class PEZConfig(OptimizerConfig):
    """PEZ (Wen et al., 2023): continuous embeddings projected to their nearest tokens.

    Attributes:
        lr, weight_decay: AdamW's (published defaults 0.1, 0.1).
    """

    lr: float = 0.1
    weight_decay: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.search != "greedy":
            raise ValueError("PEZ optimizes one continuous prompt; use search='greedy'")


__all__ = ["OptimizerConfig", "GCGConfig", "RandomSearchConfig", "AutoDANConfig", "PEZConfig", "ProbeConfig",
           "SEARCHES", "ACCEPT"]
