"""The zero-shot tensor adapter between two models' input-embedding spaces (DESIGN §3).

For a shared list of words with source slices ``X_A (N, d_A, k)`` and target slices
``X_B (N, d_B, k)`` the adapter solves, in closed form,

    T = argmin_T ||X_A * T − X_B||² + λ ||T||²,     T ∈ R^{d_A × d_B × k},

one ridge regression per frequency of the t-product (Cholesky, float64 by default).

Two schemes:

* ``"padded"`` (default): one map for every word; source and target slices zero-padded to
  ``k``. The t-product is a circular convolution along the token axis, so with
  ``k ≥ s_A + s_B − 1`` it is a linear one and nothing wraps around.
* ``"bucket"`` (the published scheme): one map per target token count ``c = 1..k``, each fitted
  on the words the target splits into exactly ``c`` tokens; mapping needs the target counts.

``lam`` is *relative*: each frequency's ridge weight is ``lam · tr(X̂ᴴX̂)/d_A``, so one value
works across models whose embeddings differ in scale (Gemma multiplies by √d).

Example:
    >>> import fuse                                                    # doctest: +SKIP
    >>> a, b = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:minilm-l6")   # doctest: +SKIP
    >>> adapter = fuse.TensorAdapter.fit(a, b, n_words=8000, k=8)      # doctest: +SKIP
    >>> adapter.save_pretrained("smollm2-to-minilm")                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fuse._version import __version__
from fuse.core.normal_equations import normal_equations
from fuse.core.slices import word_slices
from fuse.core.tproduct import from_fourier, t_product, t_transpose
from fuse.core.fit_config import SCHEMES, AdapterFitConfig
from fuse.core.units import DEFAULT_UNIT, UNITS
from fuse.core.wordlist import WORD_SOURCE, fit_split

logger = logging.getLogger(__name__)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"


@dataclass
class AdapterConfig:
    """Everything needed to rebuild or validate an adapter (saved as sorted JSON)."""

    source: str
    target: str
    source_vocab_hash: str
    target_vocab_hash: str
    source_dim: int
    target_dim: int
    k: int = 8
    lam: float = 1e-3
    scheme: str = "padded"
    n_words: int = 8000
    n_holdout: int = 2000
    n_fitted: int = 0
    word_source: str = WORD_SOURCE
    seed: int = 0
    compute_dtype: str = "float64"
    fit_seconds: float = 0.0
    version: str = __version__
    unit: str = DEFAULT_UNIT
    language: str = "en"
    leading_space: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; use one of {SCHEMES}")
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; use one of {UNITS}")
        if self.compute_dtype not in ("float32", "float64"):
            raise ValueError(f"compute_dtype must be 'float32' or 'float64', got {self.compute_dtype!r}")


def ridge_fit(X: torch.Tensor, Y: torch.Tensor, lam, compute_dtype: torch.dtype = torch.float64):
    """``argmin_T ||X * T − Y||² + λ_f ||T̂_f||²`` with λ_f relative to each frequency's Gram trace.

    Args:
        X: ``(N, d_A, k)``; Y: ``(N, d_B, k)``.
        lam: one λ, or a list of them (the Gram matrices are then formed once and reused).

    Returns:
        ``T (d_A, d_B, k)`` in ``X.dtype`` (a list of them for a list of λ).
    """
    k = X.shape[-1]
    gram, rhs = normal_equations(X, Y, compute_dtype)  # (F, dA, dA), (F, dA, dB); padding skipped
    dA = gram.shape[-1]
    scale = gram.diagonal(dim1=-2, dim2=-1).real.mean(-1).clamp_min(torch.finfo(compute_dtype).tiny)
    eye = torch.eye(dA, dtype=gram.dtype, device=gram.device)
    out = []
    for lam_i in (lam if isinstance(lam, (list, tuple)) else [lam]):
        G = gram + (float(lam_i) * scale).reshape(-1, 1, 1) * eye
        L, info = torch.linalg.cholesky_ex(G)
        if bool((info == 0).all()):
            T_hat = torch.cholesky_solve(rhs, L)
        else:  # singular (λ = 0 and fewer words than dimensions): least squares, minimum norm
            T_hat = torch.linalg.lstsq(G, rhs, driver="gelsd" if G.device.type == "cpu" else None).solution
        out.append(from_fourier(T_hat, k).to(X.dtype))
    return out if isinstance(lam, (list, tuple)) else out[0]


class TensorAdapter:
    """A t-product map from a source model's word slices to a target model's.

    Attributes:
        config: the :class:`AdapterConfig`.
        T: ``(d_A, d_B, k)`` for the padded scheme, ``(k, d_A, d_B, k)`` for the bucket scheme
            (``T[c - 1]`` maps words the target splits into ``c`` tokens).
    """

    def __init__(self, config: AdapterConfig, T: torch.Tensor):
        self.config = config
        expect = (config.source_dim, config.target_dim, config.k)
        if config.scheme == "bucket":
            expect = (config.k, *expect)
        if tuple(T.shape) != expect:
            raise ValueError(f"adapter tensor has shape {tuple(T.shape)}, expected {expect} for scheme {config.scheme!r}")
        self.T = T
        self._Tt = None

    # -- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, source, target, config: AdapterFitConfig | None = None, *, words: list[str] | None = None,
            progress: bool = False, **options) -> "TensorAdapter":
        """Fit an adapter from ``source`` to ``target`` (two backbones).

        Args:
            source, target: backbones (``fuse.load(...)``) with ``.tokenizer`` and ``.embeddings``.
            config: an :class:`~fuse.core.fit_config.AdapterFitConfig`; keyword ``options``
                (``n_words=``, ``k=``, ``lam=``, ``scheme=``, ``seed=``, ``language=``, ``unit=``,
                ``words_file=``, ``corpus=``, …) set or override its fields.
            words: the shared words to fit on (all fitted, none held out); default the seeded split of
                the config's word source (``n_words`` fitted, ``n_holdout`` held out for
                :meth:`evaluate`, never fitted).
            progress: show a tqdm bar over the fitting stages.

        Words that either model splits into more than ``k`` tokens are left out of the fit.
        """
        if config is None:
            config = AdapterFitConfig(**options)
        elif options:
            config = config.override(**options)
        k, lam, scheme, compute_dtype = config.k, config.lam, config.scheme, config.compute_dtype
        if words is None:
            split = fit_split(config)
            words, word_source, n_holdout = split.fit, split.source, len(split.holdout)
        else:
            word_source, n_holdout = "user", 0
        cfg = AdapterConfig(
            source=source.name, target=target.name, source_vocab_hash=source.vocab_hash,
            target_vocab_hash=target.vocab_hash, source_dim=source.dim, target_dim=target.dim, k=k, lam=lam,
            scheme=scheme, n_words=config.n_words if word_source != "user" else len(words), n_holdout=n_holdout,
            word_source=word_source, seed=config.seed, compute_dtype=compute_dtype, unit=config.unit,
            language=config.language, leading_space=config.leading_space_resolved,
        )
        if config.words_file is not None or config.corpus is not None:  # so `fuse adapter eval` finds the held-out words
            cfg.extra["words_path"] = str(Path(config.words_file or config.corpus).resolve())
        if len(words) == 0:
            raise ValueError("no words to fit on; pass words=[...] or n_words > 0")
        from tqdm.auto import tqdm

        bar = tqdm(total=3, desc=f"adapter {source.name} → {target.name}", disable=not progress)
        t0 = time.perf_counter()
        XA, cA = word_slices(source, words, k, leading_space=cfg.leading_space)
        bar.update()
        XB, cB = word_slices(target, words, k, leading_space=cfg.leading_space)
        bar.update()
        XA, XB = XA.float(), XB.float().to(XA.device)
        _check_spelling(cfg, words, cA, cB)
        keep = (cA <= k) & (cB <= k) & (cA > 0) & (cB > 0)
        XA, XB, cB = XA[keep.to(XA.device)], XB[keep.to(XB.device)], cB[keep]
        cfg.n_fitted = int(keep.sum())
        if cfg.n_fitted == 0:
            raise ValueError(f"none of the {len(words)} words fits in k={k} tokens for both models; raise k")
        dt = getattr(torch, compute_dtype)
        if scheme == "padded":
            T = ridge_fit(XA, XB, lam, dt)
        else:
            T = torch.zeros(k, XA.shape[1], XB.shape[1], k, dtype=XA.dtype, device=XA.device)
            for c in range(1, k + 1):
                sel = (cB == c).to(XA.device)
                if int(sel.sum()) > 0:
                    T[c - 1] = ridge_fit(XA[sel], XB[sel], lam, dt)
        bar.update()
        bar.close()
        cfg.fit_seconds = round(time.perf_counter() - t0, 3)
        logger.info("fitted %s adapter %s → %s on %d words (k=%d, λ=%g) in %.1fs", scheme, source.name,
                    target.name, cfg.n_fitted, k, lam, cfg.fit_seconds)
        return cls(cfg, T.contiguous())

    # -- mapping --------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return self.config.k

    def _apply(self, X: torch.Tensor, counts_target, transpose: bool) -> torch.Tensor:
        """``X * T`` (or ``X * Tᵀ``), one kernel per target-count bucket for the bucket scheme."""
        op = t_transpose if transpose else (lambda t: t)
        if self.config.scheme == "padded":
            return t_product(X, op(self.T))
        if counts_target is None:
            raise ValueError("the bucket scheme maps by target token count: pass counts_target")
        c = torch.as_tensor(counts_target, device=X.device).clamp(1, self.k)
        if c.numel() != X.shape[0]:
            raise ValueError(f"counts_target has {c.numel()} entries for {X.shape[0]} words")
        out = X.new_zeros(X.shape[0], self.T.shape[1 if transpose else 2], self.k)
        for b in torch.unique(c).tolist():
            sel = c == b
            out[sel] = t_product(X[sel], op(self.T[b - 1]))
        return out

    def _check_input(self, X: torch.Tensor, dim: int, which: str) -> None:
        if not torch.is_tensor(X) or X.dim() != 3:
            raise ValueError(f"{which} slices must be a tensor (N, d, k); got {getattr(X, 'shape', type(X))}")
        if X.shape[1] != dim or X.shape[2] != self.k:
            raise ValueError(f"{which} slices have shape {tuple(X.shape)}, the adapter expects (N, {dim}, {self.k}); "
                             "build them with fuse.word_slices(backbone, words, k=adapter.k) from the right model")
        if X.device != self.T.device:
            raise ValueError(f"{which} slices are on {X.device} but the adapter is on {self.T.device}; call adapter.to(device)")
        if X.dtype != self.T.dtype:
            raise ValueError(f"{which} slices are {X.dtype} but the adapter is {self.T.dtype}; call adapter.to(dtype=...)")

    def map(self, X_source: torch.Tensor, counts_source: torch.Tensor | None = None,
            counts_target: torch.Tensor | None = None) -> torch.Tensor:
        """Map source word slices ``(N, d_A, k)`` to target word slices ``(N, d_B, k)``.

        Slots at or past ``counts_source`` are zeroed in the input; if ``counts_target`` is given,
        slots at or past it are zeroed in the output. Differentiable in ``X_source``.
        """
        self._check_input(X_source, self.config.source_dim, "source")
        if counts_source is not None:
            X_source = X_source * _slot_mask(counts_source, self.k, X_source)
        Y = self._apply(X_source, counts_target, transpose=False)
        if counts_target is not None:
            Y = Y * _slot_mask(counts_target, self.k, Y)
        return Y

    def adjoint(self, G_target: torch.Tensor, counts_target: torch.Tensor | None = None) -> torch.Tensor:
        """The adjoint of :meth:`map`: carries target-slice gradients ``(N, d_B, k)`` to the source."""
        self._check_input(G_target, self.config.target_dim, "target")
        return self._apply(G_target, counts_target, transpose=True)

    def to(self, device=None, dtype=None) -> "TensorAdapter":
        """Move/cast the adapter in place (and drop cached derived tensors); returns ``self``."""
        T = self.T.to(device=device, dtype=dtype)
        if T is not self.T:
            self.T, self._Tt = T, None
        return self

    # -- persistence ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``adapter_config.json`` (sorted) and ``adapter.safetensors`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({"T": self.T.detach().cpu().contiguous()}, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
        (d / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2, sort_keys=True) + "\n")
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, source=None, target=None, *, device=None) -> "TensorAdapter":
        """Load an adapter; with ``source``/``target`` backbones, refuse a tokenizer mismatch."""
        d = Path(directory)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise ValueError(f"{d} is not an adapter folder: it needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                             "(build one with `fuse adapter build SRC TGT --out DIR`)")
        raw = json.loads((d / CONFIG_NAME).read_text())
        known = set(AdapterConfig.__dataclass_fields__)
        cfg = AdapterConfig(**{key: v for key, v in raw.items() if key in known})
        for role, bb, want in (("source", source, cfg.source_vocab_hash), ("target", target, cfg.target_vocab_hash)):
            if bb is not None and bb.vocab_hash != want:
                raise ValueError(
                    f"adapter {d} was built for {role} tokenizer {getattr(cfg, role)!r} ({want[:19]}…), but the "
                    f"{role} given ({bb.name!r}) has vocabulary hash {bb.vocab_hash[:19]}…; load the matching "
                    f"model or rebuild the adapter with `fuse adapter build`"
                )
        T = load_file(str(d / WEIGHTS_NAME), device=str(device) if device else "cpu")["T"]
        return cls(cfg, T)

    def __repr__(self) -> str:
        c = self.config
        return (f"TensorAdapter({c.source!r} → {c.target!r}, scheme={c.scheme}, k={c.k}, λ={c.lam:g}, words={c.n_fitted}, "
                f"unit={c.unit}, language={c.language})")


# At this many tokens per character a vocabulary has no word tokens for the list's language: it spells words in
# characters or bytes (SmolLM2 spends 1.9 on Japanese words, MiniLM 0.95, Gemma-3 0.63, Qwen2.5 0.79; English ~0.17).
SPELLING_TOKENS_PER_CHAR = 0.9


def _check_spelling(cfg: AdapterConfig, words: list[str], counts_source, counts_target) -> None:
    """Record each side's tokens per character in ``cfg.extra``; warn where a side spells the words in pieces."""
    n_chars = max(1, sum(len(w) for w in words))
    rates = {"source": int(counts_source.sum()) / n_chars, "target": int(counts_target.sum()) / n_chars}
    cfg.extra["tokens_per_char"] = {side: round(r, 3) for side, r in rates.items()}
    for side, rate in rates.items():
        if rate >= SPELLING_TOKENS_PER_CHAR:
            logger.warning(
                "%s spells these %s words in %.2f tokens per character (no word tokens: characters or bytes); "
                "a linear word map carries such words poorly (Japanese held-out top-1 0.24-0.58 on such pairs, "
                "0.79 where both vocabularies hold Japanese: docs/languages.md). Check it with `fuse adapter eval`; "
                "a model whose vocabulary holds this language's words maps better.",
                getattr(cfg, side), cfg.language, rate)


def _slot_mask(counts, k: int, like: torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(counts, device=like.device)
    return (torch.arange(k, device=like.device) < counts.unsqueeze(-1)).to(like.dtype).unsqueeze(1)
