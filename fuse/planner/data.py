"""Training examples: token windows of consecutive sentences, with their sentence embeddings and actions.

A window is a run of consecutive sentences of one document that fits in ``max_tokens`` tokens,
tokenized once (character offsets assign every token to its sentence). For each window the
planner sees up to ``context`` earlier sentences of the same document plus the window's own, and
every LM position ``t`` is tied to the sentence of token ``t + 1`` (the one being written).

Example:
    >>> # data = build_data(docs, lm.tokenizer, embeddings, codebook, max_tokens=128)
    >>> # batch = data.collate([0, 1, 2], max_sentences=64)
    >>> # batch.input_ids.shape, batch.sentence_embeddings.shape   # (3, L), (3, S, 384)
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from fuse.planner.actions import ActionCodebook, embed_sentences
from fuse.planner.corpus import Document, check_corpus

logger = logging.getLogger(__name__)


@dataclass
class Window:
    """One training window.

    Attributes:
        doc: document index.
        first: index of its first sentence in the document.
        last: one past its last (possibly truncated) sentence.
        input_ids: ``(L,)`` token ids.
        next_sentence: ``(L,)`` for position ``t`` the window-relative index of the sentence that
            token ``t + 1`` belongs to (the last position repeats its own).
    """

    doc: int
    first: int
    last: int
    input_ids: torch.Tensor
    next_sentence: torch.Tensor


@dataclass
class Batch:
    """A padded batch (shapes with B windows, L tokens, S planner sentences, D embedding dims).

    Attributes:
        input_ids: ``(B, L)`` long.
        attention_mask: ``(B, L)`` long, 1 for real tokens.
        sentence_embeddings: ``(B, S, D)`` context + window sentences.
        sentence_mask: ``(B, S)`` bool, True for real sentences.
        labels: ``(B, S)`` long k-means action of each sentence (-1 for padding).
        is_target: ``(B, S)`` bool, True for the window's own sentences (scored once each).
        token_sentence: ``(B, L)`` long index into S of the sentence each position is writing.
        hidden: ``(B, L, d)`` cached hidden states entering the first conditioned block, or None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sentence_embeddings: torch.Tensor
    sentence_mask: torch.Tensor
    labels: torch.Tensor
    is_target: torch.Tensor
    token_sentence: torch.Tensor
    hidden: torch.Tensor | None = None


@dataclass
class PlannerData:
    """Documents, their sentence embeddings and actions, and the token windows cut from them."""

    documents: list[Document]
    embeddings: list[torch.Tensor]
    labels: list[torch.Tensor]
    windows: list[Window]
    context: int = 16
    pad_id: int = 0
    hidden: list[torch.Tensor] | None = field(default=None, repr=False)
    hidden_layer: int | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def n_tokens(self) -> int:
        return int(sum(len(w.input_ids) - 1 for w in self.windows))

    def collate(self, indices: list[int], *, max_sentences: int = 64) -> Batch:
        """Pad the windows ``indices`` into a :class:`Batch` (at most ``max_sentences`` planner sentences)."""
        ws = [self.windows[i] for i in indices]
        if not ws:
            raise ValueError("collate needs at least one window index")
        spans = []
        for w in ws:
            if w.last - w.first > max_sentences:
                raise ValueError(f"a window holds {w.last - w.first} sentences, more than max_sentences={max_sentences}; "
                                 "use shorter windows (max_tokens) or a planner with larger max_sentences")
            lo = max(0, w.first - self.context, w.last - max_sentences)
            spans.append(lo)
        L = max(len(w.input_ids) for w in ws)
        S = max(w.last - lo for w, lo in zip(ws, spans))
        D = self.embeddings[0].shape[1]
        B = len(ws)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(B, L, dtype=torch.long)
        tok_sent = torch.zeros(B, L, dtype=torch.long)
        emb = torch.zeros(B, S, D)
        smask = torch.zeros(B, S, dtype=torch.bool)
        labels = torch.full((B, S), -1, dtype=torch.long)
        target = torch.zeros(B, S, dtype=torch.bool)
        hidden = None
        if self.hidden is not None:
            hidden = torch.zeros(B, L, self.hidden[0].shape[-1], dtype=self.hidden[0].dtype)
        for b, (i, w, lo) in enumerate(zip(indices, ws, spans)):
            n, s = len(w.input_ids), w.last - lo
            ids[b, :n] = w.input_ids
            mask[b, :n] = 1
            tok_sent[b, :n] = w.next_sentence + (w.first - lo)
            emb[b, :s] = self.embeddings[w.doc][lo:w.last]
            smask[b, :s] = True
            labels[b, :s] = self.labels[w.doc][lo:w.last]
            target[b, w.first - lo:s] = True
            if hidden is not None:
                hidden[b, :n] = self.hidden[i]
        return Batch(ids, mask, emb, smask, labels, target, tok_sent, hidden)

    def cache_hidden(self, conditioned_lm, *, batch_size: int = 8, progress: bool = False) -> None:
        """Compute once the hidden states entering the first conditioned block (frozen, action-free)."""
        layer = conditioned_lm.layer_ids[0]
        out: list[torch.Tensor] = []
        with torch.no_grad():
            for i in tqdm(range(0, len(self.windows), batch_size), desc="cache hidden states", disable=not progress):
                idx = list(range(i, min(i + batch_size, len(self.windows))))
                b = self.collate(idx, max_sentences=10**6)
                h = conditioned_lm.hidden_before(layer, b.input_ids.to(conditioned_lm.backbone.device),
                                                 b.attention_mask.to(conditioned_lm.backbone.device))
                out += [h[j, :len(self.windows[k].input_ids)].cpu() for j, k in enumerate(idx)]
        self.hidden, self.hidden_layer = out, layer


def embed_documents(encoder, documents: list[Document], *, batch_size: int = 64, progress: bool = False) -> list[torch.Tensor]:
    """Sentence embeddings per document: a list of ``(n_i, D)`` tensors."""
    check_corpus(documents)
    flat = [s for d in documents for s in d.sentences]
    emb = embed_sentences(encoder, flat, batch_size=batch_size, progress=progress)
    return list(torch.split(emb, [len(d.sentences) for d in documents]))


def _window_ids(tokenizer, sentences: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    text, starts, pos = "", [], 0
    for i, s in enumerate(sentences):
        if i:
            text += " "
        starts.append(len(text))
        text += s
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_tokens)
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    sent = []
    for a, _ in enc["offset_mapping"]:
        while pos + 1 < len(starts) and a >= starts[pos + 1]:
            pos += 1
        sent.append(pos)
    return ids, torch.tensor(sent, dtype=torch.long)


def build_windows(documents: list[Document], tokenizer, *, max_tokens: int = 128, max_windows: int | None = None,
                  seed: int = 0, progress: bool = False) -> list[Window]:
    """Pack each document's consecutive sentences greedily into windows of at most ``max_tokens`` tokens.

    Args:
        documents: the corpus.
        tokenizer: the LM's fast tokenizer.
        max_tokens: window length in tokens (specials included).
        max_windows: keep a seeded random subset of this many windows (``None``: all).
        seed: seeds the subset.
        progress: show a tqdm bar.
    """
    if max_tokens < 4:
        raise ValueError(f"max_tokens must be >= 4, got {max_tokens}")
    check_corpus(documents)
    windows: list[Window] = []
    for d, doc in enumerate(tqdm(documents, desc="windows", disable=not progress)):
        lengths = [len(tokenizer(" " + s, add_special_tokens=False)["input_ids"]) for s in doc.sentences]
        i = 0
        while i < len(doc.sentences):
            j, total = i, 0
            while j < len(doc.sentences) and (j == i or total + lengths[j] <= max_tokens - 2):
                total += lengths[j]
                j += 1
            ids, sent = _window_ids(tokenizer, doc.sentences[i:j], max_tokens)
            if len(ids) >= 2:
                nxt = torch.cat([sent[1:], sent[-1:]])
                windows.append(Window(d, i, i + int(sent.max()) + 1, ids, nxt))
            i = j
    if max_windows is not None and len(windows) > max_windows:
        keep = sorted(random.Random(seed).sample(range(len(windows)), max_windows))
        windows = [windows[k] for k in keep]
    return windows


def build_data(documents: list[Document], tokenizer, embeddings: list[torch.Tensor], codebook: ActionCodebook, *,
               max_tokens: int = 128, context: int = 16, max_windows: int | None = None, seed: int = 0,
               progress: bool = False) -> PlannerData:
    """Windows, embeddings and k-means actions for a list of documents.

    Args:
        documents: the corpus (train or validation part).
        tokenizer: the LM's tokenizer.
        embeddings: per-document sentence embeddings (from :func:`embed_documents`).
        codebook: the action codebook (labels are nearest centroids).
        max_tokens: window length.
        context: earlier sentences the planner sees before a window.
        max_windows: seeded subset size.
        seed: seeds the subset.
        progress: show tqdm bars.
    """
    check_corpus(documents)
    if len(embeddings) != len(documents) or any(len(e) != len(d.sentences) for e, d in zip(embeddings, documents)):
        raise ValueError("embeddings must hold one (n_sentences, D) tensor per document, in the documents' order")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    labels = [codebook.assign(e) for e in embeddings]
    windows = build_windows(documents, tokenizer, max_tokens=max_tokens, max_windows=max_windows, seed=seed, progress=progress)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return PlannerData(documents, embeddings, labels, windows, context=context, pad_id=pad)
