"""Shared checks of word grouping (property tests in tests/core and tests/models)."""

from hypothesis import strategies as st

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda t: t.strip() != "")


def check_groups(g):
    """Every non-special token in exactly one word; words cover the non-space characters in order."""
    n = g.n_words
    assert n >= 1
    spans = g.spans
    assert all(s < e for s, e in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(n - 1)), "words overlap or are out of order"
    covered = set()
    for s, e in spans:
        covered.update(range(s, e))
    non_space = {i for i, c in enumerate(g.text) if not c.isspace()}
    assert non_space <= covered, "a non-space character lies in no word"
    assert all(g.text[s].strip() and g.text[e - 1].strip() for s, e in spans), "a word starts or ends in whitespace"
    for (s, e), w in zip(g.offsets, g.word_of_token):
        assert -1 <= w < n
        if w >= 0 and e > s:
            ws, we = spans[w]
            inside = [i for i in range(s, e) if not g.text[i].isspace()]
            assert all(ws <= i < we for i in inside), "a token's characters fall outside its word"
    # word indices are non-decreasing along the token sequence (ignoring specials)
    seq = [w for w in g.word_of_token if w >= 0]
    assert seq == sorted(seq)
