"""The prompt tokenizer of a text-conditioned CaLMFlow built from scratch: word-level, lower-cased.

Its vocabulary is every word of the training prompts plus the ``n_common`` most frequent English
words (``wordfreq``), so a held-out paraphrase made of ordinary words tokenizes; a word outside
the vocabulary is reported (``ValueError``) instead of silently becoming ``[UNK]``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK = "[PAD]", "[UNK]"


def build_prompt_tokenizer(prompts: list[str], *, n_common: int = 2000) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over the words of ``prompts`` plus common English words."""
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    words: list[str] = []
    seen = set()

    def add(w):
        if w not in seen:
            seen.add(w)
            words.append(w)

    for p in prompts:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(p)):
            add(w)
    if n_common:
        try:
            from wordfreq import top_n_list

            for w in top_n_list("en", n_common):
                for piece, _ in pre.pre_tokenize_str(norm.normalize_str(w)):
                    add(piece)
        except ImportError:  # pragma: no cover - wordfreq is a core dependency
            pass
    vocab = {PAD: 0, UNK: 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK)


def check_known(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt``; raises ``ValueError`` naming the words the tokenizer does not know."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids:
        bad = [prompt[a:b] for i, (a, b) in zip(ids, enc["offset_mapping"]) if i == unk]
        raise ValueError(
            f"prompt {prompt!r} has words the flow model's tokenizer does not know: {bad}; "
            "rephrase with known words or pass allow_unknown=True to embed them as the unknown token"
        )
    return ids
