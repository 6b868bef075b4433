"""The backbone: a frozen model, its tokenizer and the embedding matrix that ``inputs_embeds`` expects."""

from __future__ import annotations

import logging
from functools import cached_property

import torch

from fuse.core.vocab import vocab_hash

logger = logging.getLogger(__name__)


class Backbone:
    """A frozen ``transformers`` model seen through its input embeddings.

    Attributes:
        name: the id it was loaded by (``bundled:smollm2-135m``, a hub id or a folder).
        tokenizer: a fast tokenizer (character offsets are required to group tokens into words).
        model: the wrapped model. Models that fuse loads itself are frozen with
            ``requires_grad_(False)``; a model passed in by the user is left as it is and fuse
            only ever asks autograd for gradients with respect to inputs.
    """

    kind = "model"

    def __init__(self, model, tokenizer, name: str | None = None, *, validate: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        if validate:
            validate_pair(self)

    # -- embeddings -----------------------------------------------------------------------
    @property
    def embedding_module(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    @property
    def embed_scale(self) -> float:
        """Factor the embedding layer multiplies by (Gemma: √d); ``inputs_embeds`` must include it."""
        scale = getattr(self.embedding_module, "embed_scale", None)
        if scale is None:
            return 1.0
        return float(scale.item() if torch.is_tensor(scale) else scale)

    @property
    def embedding_weight(self) -> torch.Tensor:
        """The raw embedding table ``(V, d)`` (without :attr:`embed_scale`), in the model's dtype and device."""
        return self.embedding_module.weight

    @property
    def embeddings(self) -> torch.Tensor:
        """The input-embedding matrix ``(V, d)`` exactly as ``inputs_embeds`` expects it (scale included).

        Where the model scales its embeddings (Gemma: √d) this builds a new ``V × d`` tensor on every access:
        hot loops use :meth:`embed` (a lookup) and :meth:`token_scores` instead.
        """
        weight = self.embedding_module.weight
        scale = self.embed_scale
        return weight * scale if scale != 1.0 else weight

    @property
    def vocab_size(self) -> int:
        """Number of real tokens (``len(tokenizer)``); embedding rows past it are padding."""
        return len(self.tokenizer)

    @property
    def dim(self) -> int:
        return self.embedding_module.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.embedding_module.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_module.weight.dtype

    @cached_property
    def vocab_hash(self) -> str:
        return vocab_hash(self.tokenizer)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of token ids, ``(..., d)``, as ``inputs_embeds`` expects them (a lookup, then the scale)."""
        ids = torch.as_tensor(ids, device=self.device)
        x = torch.nn.functional.embedding(ids, self.embedding_weight)
        scale = self.embed_scale
        return x * scale if scale != 1.0 else x

    def token_scores(self, grad: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """First-order loss change of moving each position to each token: ``grad @ E[tokens]ᵀ``.

        ``grad (..., d)`` is the loss gradient with respect to ``inputs_embeds`` rows; the result
        ``(..., n_tokens)`` (all ``V`` tokens when ``tokens`` is None) equals the gradient with respect to the
        one-hot token rows (GCG's swap scores), computed without a ``V × d`` temporary. Float32.
        """
        W = self.embedding_weight
        g = grad.to(device=W.device, dtype=W.dtype) * self.embed_scale
        scores = g @ W.T
        if tokens is not None:
            scores = scores.index_select(-1, torch.as_tensor(tokens, device=scores.device))
        return scores.float()

    def encode(self, text: str | list[str], **kwargs):
        """Tokenize like the model does in use (special tokens added)."""
        return self.tokenizer(text, return_tensors="pt", **kwargs).to(self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab={self.vocab_size}, dim={self.dim})"


def validate_pair(backbone: "Backbone") -> None:
    """Fail fast on tokenizer↔model mismatches that would otherwise embed silently wrong rows."""
    tokenizer, name = backbone.tokenizer, backbone.name
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{name}: fuse needs a fast tokenizer (character offsets group tokens into words); got "
            f"{type(tokenizer).__name__}. Load it with AutoTokenizer.from_pretrained(..., use_fast=True) "
            "or convert it with `tokenizers`."
        )
    try:
        emb = backbone.embedding_module
    except NotImplementedError:
        emb = None
    if emb is None or not hasattr(emb, "weight"):
        raise ValueError(f"{name}: the model has no input-embedding matrix (get_input_embeddings() is empty)")
    rows = emb.weight.shape[0]
    n = len(tokenizer)
    if n > rows:
        raise ValueError(
            f"{name}: the tokenizer has {n} tokens but the embedding matrix only {rows} rows, so ids "
            f">= {rows} would index past it. This tokenizer does not belong to this model; load the "
            "matching tokenizer, or call model.resize_token_embeddings(len(tokenizer)) if you added tokens."
        )
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id"):
        tid = getattr(tokenizer, attr, None)
        if tid is not None and not (0 <= tid < rows):
            raise ValueError(f"{name}: tokenizer.{attr}={tid} lies outside the embedding matrix (0..{rows - 1})")
    if rows > n:
        logger.debug("%s: %d embedding rows past len(tokenizer)=%d are padding and never used", name, rows - n, n)
