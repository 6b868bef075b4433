"""Tokenizer identity: a hash of the vocabulary, recorded in every adapter."""

from __future__ import annotations

import hashlib
import json


def vocab_hash(tokenizer) -> str:
    """sha256 of the tokenizer's ``token → id`` table (added and special tokens included).

    Two tokenizers with the same hash map every token string to the same id, which is what an
    adapter's slices depend on.
    """
    vocab = tokenizer.get_vocab()
    if not vocab:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has an empty vocabulary")
    payload = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()
