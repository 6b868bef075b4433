"""Sampling from a planner-conditioned LM, one sentence plan at a time.

The prompt is split into sentences and embedded; the planner picks the action weights for the
next sentence (``softmax(s/τ)`` in the soft/Gumbel modes, the argmax one-hot in the hard and
straight-through modes, the most frequent action in ``fixed``); tokens are sampled with that
action added; when a sentence ends (``.``, ``!`` or ``?``) the finished sentence is embedded and
the planner plans the next one. No KV cache: meant for short texts.

Example:
    >>> # text = generate(model, encoder, "Lists are mutable.", max_new_tokens=40, seed=0)
"""

from __future__ import annotations

import logging
import re

import torch

from fuse.planner.actions import embed_sentences
from fuse.planner.corpus import split_sentences
from fuse.planner.modes import action_weights, uses_planner

logger = logging.getLogger(__name__)

_END = re.compile(r"[.!?][\"')\]]?\s*$")


def _plan(model, sentence_embeddings: torch.Tensor) -> torch.Tensor:
    """Action vector ``(D,)`` for the sentence after ``sentence_embeddings (n, D)``."""
    k = model.codebook.k
    dev = model.centroids.device
    emb = torch.cat([sentence_embeddings.to(dev), torch.zeros(1, model.codebook.dim, device=dev)])[None]
    keep = model.planner.config.max_sentences
    emb = emb[:, -keep:]
    scores = model.planner(emb)[:, -1:] if uses_planner(model.mode) else None
    labels = torch.full((1, 1), model.fixed_action, dtype=torch.long, device=dev)
    w = action_weights(scores, labels, "fixed" if model.mode == "oracle" else model.mode, tau=model.tau,
                       fixed_action=model.fixed_action, n_actions=k)
    return (w @ model.centroids)[0, 0]


def generate(model, encoder, prompt: str, *, max_new_tokens: int = 60, temperature: float = 0.8, top_k: int = 50,
             seed: int = 0, progress: bool = False) -> str:
    """Continue ``prompt`` with the planner steering each new sentence.

    Args:
        model: a trained :class:`~fuse.planner.model.PlannerLM` (``oracle`` models fall back to the
            fixed action, since no true next sentence exists when generating).
        encoder: the sentence encoder the codebook was built with (``bundled:minilm-l6``).
        prompt: text to continue (must not be empty).
        max_new_tokens: tokens to sample.
        temperature: sampling temperature (0: greedy).
        top_k: sample among the ``top_k`` most likely tokens.
        seed: seeds the sampler.
        progress: show a tqdm bar.

    Returns:
        the continuation only (without the prompt).
    """
    from tqdm.auto import tqdm

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    lm = model.conditioned
    tok = lm.backbone.tokenizer
    dev = model.centroids.device
    gen = torch.Generator().manual_seed(seed)
    sentences = split_sentences(prompt, min_words=1) or [prompt.strip()]
    emb = embed_sentences(encoder, sentences)
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(dev)
    n_prompt = ids.shape[1]
    model.eval()
    with torch.no_grad():
        action = _plan(model, emb)
        sentence_start = n_prompt
        for _ in tqdm(range(max_new_tokens), desc="generate", disable=not progress):
            actions = action.expand(1, ids.shape[1], -1)
            logits = lm(ids, actions=actions)[0, -1].float()
            if temperature == 0:
                nxt = logits.argmax()
            else:
                logits = logits / temperature
                if top_k:
                    v, i = logits.topk(min(top_k, logits.numel()))
                    nxt = i[torch.multinomial(torch.softmax(v, -1).cpu(), 1, generator=gen)[0]]
                else:
                    nxt = torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=gen)[0]
            ids = torch.cat([ids, nxt.view(1, 1).to(dev)], dim=1)
            if tok.eos_token_id is not None and int(nxt) == tok.eos_token_id:
                break
            piece = tok.decode(ids[0, sentence_start:], skip_special_tokens=True)
            if _END.search(piece) and len(piece.split()) >= 3:
                emb = torch.cat([emb, embed_sentences(encoder, [piece.strip()])])
                action = _plan(model, emb)
                sentence_start = ids.shape[1]
                logger.debug("sentence done: %r", piece.strip())
    return tok.decode(ids[0, n_prompt:], skip_special_tokens=True)
