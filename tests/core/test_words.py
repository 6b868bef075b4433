"""Token-to-word grouping by character offsets, for three tokenizer families trained in-process."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fuse.core.words import align, group_ids, group_text, word_spans
from tiny import TOKENIZERS
from word_checks import check_groups, texts

wordy = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8),
    min_size=1, max_size=8,
).map(" ".join).filter(lambda t: t.strip() != "")


@pytest.mark.parametrize("family", sorted(TOKENIZERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_group_text_properties(family, text):
    check_groups(group_text(TOKENIZERS[family](), text))


@pytest.mark.parametrize("family", sorted(TOKENIZERS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=wordy)
def test_group_ids_round_trip_properties(family, text):
    tok = TOKENIZERS[family]()
    g = group_text(tok, text)
    decoded = tok.decode(g.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assume(decoded.strip())
    h = group_ids(tok, g.ids)
    check_groups(h)
    # special tokens are exactly the tokenizer's special ids (UNK counts as text)
    specials = set(tok.all_special_ids) - {tok.unk_token_id}
    assert [w < 0 for w in h.word_of_token] == [i in specials for i in h.ids]


@pytest.mark.parametrize("a,b", [("bpe", "wordpiece"), ("wordpiece", "unigram"), ("unigram", "bpe")])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=wordy)
def test_align_gives_both_sides_the_same_words(a, b, text):
    ga = group_text(TOKENIZERS[a](), text)
    x, y = align(ga, TOKENIZERS[b]())
    assert x.spans == y.spans
    check_groups(x)
    check_groups(y)


def test_known_grouping_bpe_marks_and_specials():
    tok = TOKENIZERS["wordpiece"]()
    g = group_text(tok, "the naïve cat")
    assert g.words == ["the", "naïve", "cat"]
    assert g.word_of_token[0] == -1 and g.word_of_token[-1] == -1  # [CLS] ... [SEP]
    assert g.counts() == [len(p) for p in g.positions()] and sum(g.counts()) == len(g.ids) - 2


def test_text_without_whitespace_falls_back_to_pretokens():
    tok = TOKENIZERS["wordpiece"]()  # BertPreTokenizer splits punctuation
    assert word_spans("hello,world", tok) == [(0, 5), (5, 6), (6, 11)]
    assert word_spans("hello,world") == [(0, 11)]  # no tokenizer: one word


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="empty or only whitespace"):
        group_text(TOKENIZERS["bpe"](), bad)


def test_non_string_text_is_a_clear_error():
    with pytest.raises(ValueError, match="must be a str"):
        group_text(TOKENIZERS["bpe"](), 42)
