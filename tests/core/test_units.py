"""Aligned units: every token in one row, rows never overlap, both sides cover the same characters."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from fuse.core.bridge import make_plan
from fuse.core.fit_config import AdapterFitConfig
from fuse.core.units import covered_chars, word_rows
from fuse.core.words import align, group_ids
from tiny import bpe_tokenizer, unigram_tokenizer, wordpiece_tokenizer

K = 4
PAIRS = [(bpe_tokenizer, unigram_tokenizer), (unigram_tokenizer, bpe_tokenizer), (bpe_tokenizer, wordpiece_tokenizer)]


@pytest.fixture(scope="module")
def byte_fallback_tokenizer():
    """SentencePiece-style BPE with Gemma's ``<0x..>`` byte-fallback tokens for characters it lacks."""
    vocab = {"<unk>": 0, "<s>": 1, **{f"<0x{b:02X}>": 2 + b for b in range(256)}}
    for ch in "▁abcdefghijklmnopqrstuvwxyz0123456789東京の日本語。":
        vocab.setdefault(ch, len(vocab))
    for piece in ("東京", "▁the", "日本"):
        vocab[piece] = len(vocab)
    merges = [("東", "京"), ("▁", "t"), ("▁t", "h"), ("▁th", "e"), ("日", "本")]
    merges = [m for m in merges if "".join(m) in vocab]
    vocab.update({"▁t": len(vocab), "▁th": len(vocab) + 1})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


def _plan(tok_a, tok_b, text, unit="boundary", k=K):
    ga = group_ids(tok_a, tok_a(text)["input_ids"])
    a, b = align(ga, tok_b)
    return make_plan(a, b, k, unit)


def check_plan(plan, k=K, unit="boundary"):
    text = plan.source.text
    R = plan.src_idx.shape[0]
    assert (plan.counts_src >= 1).all() and (plan.counts_tgt >= 1).all()
    assert (plan.counts_src <= k).all() and (plan.counts_tgt <= k).all()
    for side, groups, idx in (("source", plan.source, plan.src_idx), ("target", plan.target, plan.tgt_idx)):
        used = [int(p) for p in idx[idx >= 0].tolist()]
        assert len(used) == len(set(used)), f"a {side} token is in two rows"
        inexact_words = set(plan.word[~plan.exact].tolist())
        same = [covered_chars(text, plan.source.offsets, ps) == covered_chars(text, plan.target.offsets, pt)
                for ps, pt in zip(plan.source.positions(), plan.target.positions())]
        in_words = {p for w, (ps, pt) in enumerate(zip(plan.source.positions(), plan.target.positions()))
                    if ps and pt and same[w] and w not in inexact_words for p in (ps if side == "source" else pt)}
        # a unit with no shared boundary and more than k tokens falls back to position chunks, which may leave
        # tokens of the longer side without a partner, and characters one tokenizer drops have no partner;
        # every other token of a word is in exactly one row
        assert in_words <= set(used), f"a {side} token of a word is in no row"
    if unit != "word":
        spans = sorted(set(plan.spans))  # the units; position chunks of one unit share its span
        for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"rows overlap: {text[s0:e0]!r} and {text[s1:e1]!r}"
        for r in range(R):
            s, e = plan.spans[r]
            ca = covered_chars(text, plan.source.offsets, [p for p in plan.src_idx[r].tolist() if p >= 0])
            cb = covered_chars(text, plan.target.offsets, [p for p in plan.tgt_idx[r].tolist() if p >= 0])
            assert all(s <= c < e for c in ca | cb), f"row {text[s:e]!r} holds tokens outside its span"
            assert not bool(plan.exact[r]) or ca == cb


UNICODE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
MIXED = st.lists(st.sampled_from(["東京", "タワー", "の", "高さ", "333", "メートル", "です", "。", " ", "the", "cat", "😀",
                                  "𠮷", "e\u0301", "１２３", "naïve", "中国", "abc", " ", "-", "\n"]),
                 min_size=1, max_size=12).map("".join)


@pytest.mark.parametrize("a,b", PAIRS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(UNICODE, MIXED))
def test_units_partition_tokens_on_arbitrary_unicode(a, b, text):
    if not text.strip():
        return
    tok_a, tok_b = a(), b()
    try:
        group_ids(tok_a, tok_a(text)["input_ids"])
    except ValueError:  # the source decodes to whitespace only (its tokens are all special/unknown)
        return
    for unit in ("boundary", "word"):
        check_plan(_plan(tok_a, tok_b, text, unit), unit=unit)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=MIXED)
def test_units_with_byte_fallback_tokens(byte_fallback_tokenizer, text):
    if not text.strip():
        return
    for tok_a, tok_b in ((bpe_tokenizer(), byte_fallback_tokenizer), (byte_fallback_tokenizer, bpe_tokenizer())):
        try:
            plan = _plan(tok_a, tok_b, text)
        except ValueError:
            continue
        check_plan(plan)


@pytest.mark.parametrize("text", ["東京の日本語。東京の日本語。", "𠮷野家😀😀東京", "cafe\u0301e\u0301e\u0301", "１２３４５６７８９",
                                  "東京タワーの高さは333メートルです。"])
def test_known_cases_pair_the_same_characters(byte_fallback_tokenizer, text):
    """Byte tokens ending inside a character, ``<0x..>`` byte fallback, 4-byte characters, combining marks,
    full-width digits: every row of the boundary unit covers the same characters on both sides."""
    for tok_a, tok_b in ((bpe_tokenizer(), byte_fallback_tokenizer), (byte_fallback_tokenizer, bpe_tokenizer())):
        plan = _plan(tok_a, tok_b, text, k=6)  # 東京 is 6 byte tokens in one model and 1 token in the other
        check_plan(plan, k=6)
        assert bool(plan.exact.all()), [plan.source.text[s:e] for (s, e), x in zip(plan.spans, plan.exact) if not x]
        assert plan.src_idx.shape[0] >= 2  # the run without spaces is cut into several rows


def test_byte_level_tokens_inside_one_character_share_its_span():
    tok = bpe_tokenizer()
    g = group_ids(tok, tok("東")["input_ids"])
    spans = {g.offsets[p] for p in g.positions()[0]}
    assert len(g.positions()[0]) > 1 and spans == {(0, 1)}


def test_english_plans_equal_todays_rule():
    """Words within k tokens are one row under every unit: English plans are today's plans."""
    text = "the quick brown fox jumps over the lazy dog, as a picture of a cat on a mat"
    for a, b in PAIRS:
        new, old = _plan(a(), b(), text, "boundary", k=8), _plan(a(), b(), text, "word", k=8)
        assert torch.equal(new.src_idx, old.src_idx) and torch.equal(new.tgt_idx, old.tgt_idx)
        assert torch.equal(new.word, old.word)


def test_word_unit_is_the_position_rule():
    """``unit="word"`` reproduces the near-equal position chunks of a long word."""
    pa, pb = list(range(10)), list(range(3))
    off_a = [(i, i + 1) for i in range(10)]
    off_b = [(0, 4), (4, 7), (7, 10)]
    rows = word_rows("abcdefghij", (0, 10), pa, pb, off_a, off_b, 4, "word")
    m = max(math.ceil(10 / 4), math.ceil(3 / 4))
    assert [r.src for r in rows] == [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9)] and len(rows) == m
    rows = word_rows("abcdefghij", (0, 10), pa, pb, off_a, off_b, 4, "boundary")
    assert [r.src for r in rows] == [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)] and all(r.exact for r in rows)


def test_no_common_boundary_falls_back_and_warns(caplog):
    off_a = [(0, 2), (2, 4), (4, 6)]
    off_b = [(0, 1), (1, 3), (3, 5), (5, 6)]
    rows = word_rows("abcdef", (0, 6), [0, 1, 2], [0, 1, 2, 3], off_a, off_b, 2, "boundary")
    assert rows and not any(r.exact for r in rows)
    # through a plan: the unigram tokenizer has no CJK characters (one <unk> for the run), so nothing is shared
    with caplog.at_level("WARNING", logger="fuse.core.bridge"):
        plan = _plan(bpe_tokenizer(), unigram_tokenizer(), "東京の日本語。東京の日本語。x", k=6)
    assert not bool(plan.exact.all())
    assert "東京の日本語。東京の日本語。" in caplog.text


def test_segmenter_unit_cuts_dictionary_words(byte_fallback_tokenizer):
    pytest.importorskip("fugashi")
    pytest.importorskip("unidic_lite")
    pytest.importorskip("jieba")
    for text, words in (("東京の日本語。", ["東京", "の", "日本", "語", "。"]), ("日本语东京", None)):
        plan = _plan(bpe_tokenizer(), byte_fallback_tokenizer, text, "segmenter", k=8)
        check_plan(plan, k=8, unit="segmenter")
        assert bool(plan.exact.all())
        if words:
            assert [text[s:e] for s, e in plan.spans] == words


def test_fit_config_validation():
    with pytest.raises(ValueError, match="unit"):
        AdapterFitConfig(unit="char")
    with pytest.raises(ValueError, match="lam"):
        AdapterFitConfig(lam=-1)
    with pytest.raises(ValueError, match="not a file"):
        AdapterFitConfig(words_file="/nonexistent/words.txt")
    with pytest.raises(ValueError, match="n_words"):
        AdapterFitConfig(n_words=0)
    assert AdapterFitConfig(language="ja").leading_space_resolved is False
    assert AdapterFitConfig().leading_space_resolved is True


def test_language_defaults_follow_a_language_given_later():
    """n_words and k left to their defaults follow the language, whichever entry point sets it."""
    from fuse.optim.chain import adapter_fit

    ja = AdapterFitConfig(language="ja")
    assert (ja.n_words, ja.k) == (32000, 12) and (AdapterFitConfig().n_words, AdapterFitConfig().k) == (8000, 8)
    for got in (AdapterFitConfig().override(language="ja"), adapter_fit(None, {"language": "ja"})[0],
                adapter_fit(AdapterFitConfig(), {"language": "ja"})[0]):
        assert got == ja
    assert AdapterFitConfig(language="ja").override(language="en") == AdapterFitConfig()
    explicit = AdapterFitConfig(k=8, n_words=500).override(language="ja")  # what the user set stays set
    assert (explicit.k, explicit.n_words, explicit.leading_space_resolved) == (8, 500, False)
    with pytest.raises(ValueError, match="unknown adapter option.*n_word"):
        AdapterFitConfig().override(n_word=5)


def test_cache_key_of_the_defaults_is_todays():
    """An English adapter cached before the new options existed is still found for the defaults."""
    from fuse.models.adapter_cache import adapter_key

    class BB:
        name, vocab_hash, dim = "m", "h", 4

    old = adapter_key(BB, BB, n_words=8000, k=8, lam=1e-3, scheme="padded", seed=0)  # chain.DEFAULT_ADAPTER
    assert adapter_key(BB, BB, **AdapterFitConfig().cache_options()) == old
    assert adapter_key(BB, BB, **AdapterFitConfig(language="ja").cache_options()) != old
    assert adapter_key(BB, BB, **AdapterFitConfig(unit="segmenter").cache_options()) != old


def test_fit_with_config_equals_keyword_fit(tmp_path):
    from fuse.core.adapter import TensorAdapter, ridge_fit
    from fuse.core.slices import word_slices
    from tiny import WORDS, tiny_causal_lm, tiny_encoder

    a = tiny_causal_lm(bpe_tokenizer(), d=8, name="tiny-bpe")
    b = tiny_encoder(wordpiece_tokenizer(), d=6, name="tiny-wp")
    old = TensorAdapter.fit(a, b, words=WORDS, k=4, lam=1e-2)
    new = TensorAdapter.fit(a, b, AdapterFitConfig(k=4, lam=1e-2), words=WORDS)
    assert torch.equal(old.T, new.T)
    XA, cA = word_slices(a, WORDS, 4)
    XB, cB = word_slices(b, WORDS, 4)
    keep = (cA <= 4) & (cB <= 4)
    assert torch.equal(old.T, ridge_fit(XA[keep].float(), XB[keep].float(), 1e-2))  # today's fit, step by step
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    ad = TensorAdapter.fit(a, b, AdapterFitConfig(k=4, words_file=str(words), n_holdout=5))
    assert ad.config.word_source.startswith("file:words.txt#") and ad.config.n_holdout == 5


def test_fit_records_tokens_per_character_and_warns_on_spelled_words(caplog):
    """A side that spells the words in characters or bytes is named in a warning; the rate is recorded."""
    import logging

    from fuse.core.adapter import SPELLING_TOKENS_PER_CHAR, TensorAdapter
    from fuse.core.slices import word_token_ids
    from tiny import WORDS, tiny_causal_lm, tiny_encoder

    a = tiny_causal_lm(bpe_tokenizer(), d=8, name="tiny-bpe")
    b = tiny_encoder(wordpiece_tokenizer(), d=6, name="tiny-wp")
    ja = ["東京", "天気", "今日", "日本語", "高さ", "メートル", "大阪", "京都", "明日", "雨"]
    for words, lead in ((ja, False), (WORDS, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fuse.core.adapter"):
            ad = TensorAdapter.fit(a, b, AdapterFitConfig(k=12, leading_space=lead), words=words)
        n_chars = sum(map(len, words))
        for side, model in (("source", a), ("target", b)):  # the rate against a count made here
            rate = sum(map(len, word_token_ids(model.tokenizer, words, leading_space=lead))) / n_chars
            assert ad.config.extra["tokens_per_char"][side] == pytest.approx(rate, abs=1e-3)
            warned = any(model.name in r.getMessage() and "tokens per character" in r.getMessage() for r in caplog.records)
            assert warned == (rate >= SPELLING_TOKENS_PER_CHAR), (side, rate)
    assert TensorAdapter.fit(a, b, AdapterFitConfig(k=12), words=ja).config.extra["tokens_per_char"]["source"] >= 2
