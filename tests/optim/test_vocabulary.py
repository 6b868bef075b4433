"""The candidate vocabulary (``OptimizerConfig.vocabulary``) and GCG's budget-independent trajectory."""

from __future__ import annotations

import copy

import pytest

from fuse.optim import GCG, GCGConfig
from fuse.optim.vocab_filter import allowed_tokens
from tiny import bpe_tokenizer, tiny_chain, wordpiece_tokenizer


def _slow(tok, vocabulary: str, ascii_only: bool = True) -> set[int]:
    """The rule written out token by token: the reference the memoized filter must equal."""
    out = set()
    for i in range(len(tok)):
        s = tok.decode([i], clean_up_tokenization_spaces=False)
        if i in set(tok.all_special_ids) or "\ufffd" in s or s.strip().startswith(("[unused", "<unused", "<file")):
            continue
        if ascii_only and not (s.isascii() and s.isprintable()):
            continue
        if vocabulary == "readable" and s.strip() and any(c.isalnum() for c in s):
            out.add(i)
        elif vocabulary == "printable" and s and s.isprintable():
            out.add(i)
    return out


@pytest.mark.parametrize("make", [wordpiece_tokenizer, bpe_tokenizer])
def test_printable_adds_punctuation_to_readable_and_nothing_special(make):
    tok = copy.deepcopy(make())
    tok.add_tokens(["[unused0]", "<unused7>", "<file_sep>", "):", ".*"])
    readable = set(allowed_tokens(tok).tolist())
    printable = set(allowed_tokens(tok, vocabulary="printable").tolist())
    assert readable == _slow(tok, "readable") and printable == _slow(tok, "printable")
    assert readable < printable
    extra = [tok.decode([i]) for i in printable - readable]
    assert extra and all(not any(c.isalnum() for c in s) for s in extra)
    for t in ("):", ".*"):
        assert tok.convert_tokens_to_ids(t) in printable and tok.convert_tokens_to_ids(t) not in readable
    for t in ("[unused0]", "<unused7>", "<file_sep>"):
        assert tok.convert_tokens_to_ids(t) not in printable
    assert not printable & set(tok.all_special_ids)


def test_unknown_vocabulary_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="unknown vocabulary 'ascii'.*readable.*printable"):
        GCGConfig(vocabulary="ascii")
    with pytest.raises(ValueError, match="unknown vocabulary"):
        allowed_tokens(wordpiece_tokenizer(), vocabulary="all")


def test_gcg_draws_candidates_from_the_chosen_vocabulary():
    chain = tiny_chain()
    tok = chain.primary.tokenizer
    for vocabulary in ("readable", "printable"):
        opt = GCG(chain, GCGConfig(n_tokens=4, budget=32, batch_size=16, seed=0, vocabulary=vocabulary))
        assert set(opt.allowed_cpu.tolist()) == set(allowed_tokens(tok, vocabulary=vocabulary).tolist())
        res = opt.run()
        assert set(res.best_free_ids) <= set(opt.allowed_cpu.tolist()) | set(opt.initial_free())


def test_a_longer_budget_runs_the_same_first_steps():
    """No GCG option depends on the budget: a run of budget 2B is the run of budget B, then more steps (what
    benchmarks/engine_peer_long.py relies on when it reads a 30x128 result off a 60x128 run)."""
    chain = tiny_chain()
    config = GCGConfig(n_tokens=5, budget=96, batch_size=16, seed=3, vocabulary="printable")
    short = GCG(chain, config).run()
    long = GCG(chain, GCGConfig(**{**config.to_dict(), "budget": 192})).run()
    full = [h for h in short.history if h["evaluations"] < 96]  # (the last step may be cut short by the budget)
    assert len(full) >= 3 and long.history[: len(full)] == full
    assert long.evaluations > short.evaluations and long.best_loss <= short.best_loss


def _cjk_tokenizer():
    """Byte-level BPE trained here on Japanese, Chinese, Korean and English, so each script has whole tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["東京タワーの高さは333メートルです。", "今日は良い天気ですね、明日は雨が降るでしょう。",
              "プログラムのバージョンを表示します。", "我们可以使用这个程序，返回数据。", "오늘은 날씨가 좋네요",
              "the tower is tall", "ｶﾀｶﾅ and 「引用」"] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>"], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")


def _script_slow(tok, allowed_chars) -> set[int]:
    out = set()
    for i in range(len(tok)):
        s = tok.decode([i], clean_up_tokenization_spaces=False)
        body = s.strip()
        if i in set(tok.all_special_ids) or "\ufffd" in s or not body:
            continue
        if any(c.isalpha() for c in body) and all(c.isspace() or allowed_chars(c) for c in body):
            out.add(i)
    return out


def test_script_vocabularies_keep_one_language_only():
    import unicodedata

    tok = _cjk_tokenizer()

    def japanese(c):  # by Unicode name, independently of the filter's code-point ranges
        n = unicodedata.name(c, "")
        return n.startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA",
                             "IDEOGRAPHIC", "LEFT CORNER", "RIGHT CORNER", "FULLWIDTH COMMA")) or c in "、。・ー々〆「」"

    def chinese(c):
        n = unicodedata.name(c, "")
        return n.startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "IDEOGRAPHIC", "FULLWIDTH COMMA",
                             "LEFT CORNER", "RIGHT CORNER")) or c in "、。々〆「」・"

    ja = set(allowed_tokens(tok, ascii_only=False, vocabulary="japanese").tolist())
    zh = set(allowed_tokens(tok, ascii_only=False, vocabulary="chinese").tolist())
    assert ja == _script_slow(tok, japanese) and zh == _script_slow(tok, chinese)
    texts = {tok.decode([i]) for i in ja}
    assert any(set(t) & set("ですのは") for t in texts) and any(set(t) & set("ｶﾀ") for t in texts)
    assert not any(any("\uac00" <= c <= "\ud7a3" or c.isascii() and c.isalpha() for c in t) for t in texts)  # no Hangul/Latin
    assert zh < ja and not any(set(t) & set("ですのはタワー") for t in (tok.decode([i]) for i in zh))
    assert zh <= set(allowed_tokens(tok, ascii_only=False).tolist())  # narrower than readable
    with pytest.raises(ValueError, match="ascii_only=False"):
        GCGConfig(vocabulary="japanese")
    with pytest.raises(ValueError, match="ascii_only=False"):
        allowed_tokens(tok, vocabulary="chinese")
