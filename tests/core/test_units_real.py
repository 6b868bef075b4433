"""On the bundled models: English plans are today's; real Japanese/Chinese sentences pair the same characters."""

import math

import pytest
import torch

from fuse.core.bridge import make_plan
from fuse.core.units import covered_chars
from fuse.core.words import align, group_ids

pytestmark = pytest.mark.slow

ENGLISH = ["The quick brown fox jumps over the lazy dog near the riverbank.",
           "Gradients flow from one frozen model into another model's prompt, word by word.",
           "An image of a small boat on a calm blue lake at sunset, 1998 (restored).",
           "Numbers like 3.14159 and 42 appear in text, as do names: Alice, Bob, O'Neil."]


def legacy_plan(source, target, k):
    """make_plan as it was before units existed (rows of position chunks), for comparison."""
    rows_s, rows_t, words = [], [], []
    for w, (ps, pt) in enumerate(zip(source.positions(), target.positions())):
        if not ps or not pt:
            continue
        m = max(math.ceil(len(ps) / k), math.ceil(len(pt) / k))
        bs = [round(i * len(ps) / m) for i in range(m + 1)]
        bt = [round(i * len(pt) / m) for i in range(m + 1)]
        for i in range(m):
            cs, ct = ps[bs[i] : bs[i + 1]], pt[bt[i] : bt[i + 1]]
            if cs and ct:
                rows_s.append(cs), rows_t.append(ct), words.append(w)
    src = torch.full((len(rows_s), k), -1, dtype=torch.long)
    tgt = torch.full((len(rows_s), k), -1, dtype=torch.long)
    for r, (cs, ct) in enumerate(zip(rows_s, rows_t)):
        src[r, : len(cs)], tgt[r, : len(ct)] = torch.tensor(cs), torch.tensor(ct)
    return src, tgt, torch.tensor(words, dtype=torch.long)


@pytest.fixture(scope="module")
def models():
    import fuse

    return fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m"), fuse.load("bundled:minilm-l6")


def _plan(src, tgt, text, k, unit):
    a, b = align(group_ids(src.tokenizer, src.tokenizer(text)["input_ids"]), tgt.tokenizer)
    return make_plan(a, b, k, unit)


def test_english_bridge_plans_equal_todays(models):
    for src in models:
        for tgt in models:
            if src is tgt:
                continue
            for text in ENGLISH:
                a, b = align(group_ids(src.tokenizer, src.tokenizer(text)["input_ids"]), tgt.tokenizer)
                old = legacy_plan(a, b, 8)
                for unit in ("boundary", "segmenter", "word"):
                    if unit == "segmenter":
                        pytest.importorskip("fugashi")
                    new = make_plan(a, b, 8, unit)
                    assert torch.equal(new.src_idx, old[0]) and torch.equal(new.tgt_idx, old[1])
                    assert torch.equal(new.word, old[2])


def test_real_cjk_sentences_pair_the_same_bytes(models):
    from benchmarks.cjk_text import available, sentences

    smol, gemma, _ = models
    for lang in ("ja", "zh"):
        if not available(lang):
            pytest.skip(f"manpages-{lang} is not installed (apt-get install manpages-ja manpages-zh)")
        texts = sentences(lang, 500)
        for s, t in ((smol, gemma), (gemma, smol)):
            rows = same = 0
            for text in texts:
                p = _plan(s, t, text, 12, "boundary")
                for r in range(p.src_idx.shape[0]):
                    ps = [i for i in p.src_idx[r].tolist() if i >= 0]
                    pt = [i for i in p.tgt_idx[r].tolist() if i >= 0]
                    rows += 1
                    same += covered_chars(text, p.source.offsets, ps) == covered_chars(text, p.target.offsets, pt)
            assert same / rows >= 0.99, (lang, s.name, same / rows)
            assert rows / len(texts) >= 3


def test_mixed_prompt_through_the_bridge(models, caplog):
    """English, Japanese and digits in one prompt: every row pairs the same characters."""
    smol, gemma, _ = models
    text = "Tokyo Tower 東京タワーの高さは333メートルです。 It opened in 1958."
    for s, t in ((smol, gemma), (gemma, smol)):
        p = _plan(s, t, text, 12, "boundary")
        assert bool(p.exact.all()) and p.src_idx.shape[0] >= 8
        spans = [text[a:b] for a, b in p.spans]
        assert "Tokyo" in spans and "1958." in spans
