"""Caption metrics, CLIP-S and the offline photo set."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.captioning.data.photos import PHOTOS, load_photo, photo_set
from fuse.captioning.evaluation import clip_score, coco_metrics, normalize_caption

pytestmark = pytest.mark.usefixtures("one_thread")


def test_normalize_strips_prefix_case_and_punctuation():
    assert normalize_caption("An image of a Red cat, sitting!", "An image of") == "a red cat sitting"
    assert normalize_caption("an IMAGE of", "An image of") == "empty"
    assert normalize_caption("  Two  dogs ") == "two dogs"


def test_coco_metrics_identity_and_order():
    pytest.importorskip("pycocoevalcap")
    refs = {"a": ["a cat sitting on a red mat", "a cat on a mat"], "b": ["a small boat on a calm lake", "a boat"]}
    exact = coco_metrics({"a": "An image of a cat sitting on a red mat", "b": "An image of a small boat on a calm lake"},
                         refs, prefix="An image of", metrics=("BLEU-4", "CIDEr", "ROUGE-L"))
    swapped = coco_metrics({"a": "a small boat on a calm lake", "b": "a cat sitting on a red mat"}, refs,
                           metrics=("BLEU-4", "CIDEr", "ROUGE-L"))
    assert exact["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and exact["ROUGE-L"] == pytest.approx(1.0)
    for m in ("BLEU-4", "CIDEr", "ROUGE-L"):
        assert exact[m] > swapped[m]


def test_coco_metrics_errors_and_missing_java(monkeypatch):
    pytest.importorskip("pycocoevalcap")
    with pytest.raises(ValueError, match="no references"):
        coco_metrics({"a": "x"}, {"b": ["x"]})
    with pytest.raises(ValueError, match="unknown metrics"):
        coco_metrics({"a": "x"}, {"a": ["x"]}, metrics=("BLEU-9",))
    with pytest.raises(ValueError, match="no captions"):
        coco_metrics({}, {})
    monkeypatch.setattr("fuse.captioning.evaluation.java_available", lambda: False)
    out = coco_metrics({"a": "a cat", "b": "a dog"}, {"a": ["a cat"], "b": ["a dog"]}, metrics=("CIDEr", "METEOR"))
    assert out["METEOR"] is None and out["CIDEr"] >= 0


class _Unit:
    """A scorer whose text features are fixed unit vectors by text (for an exact CLIP-S check)."""

    def __init__(self, table):
        self.table, self.seen = table, []

    def encode_texts(self, texts, batch_size=64):
        self.seen += texts
        return torch.stack([self.table[t] for t in texts])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100))
def test_clip_score_is_clipped_weighted_cosine(seed):
    g = torch.Generator().manual_seed(seed)
    caps = ["An image of a cat", "a dog"]
    t = torch.nn.functional.normalize(torch.randn(2, 5, generator=g), dim=-1)
    img = torch.nn.functional.normalize(torch.randn(2, 5, generator=g), dim=-1)
    sc = _Unit({"A photo depicts a cat": t[0], "A photo depicts a dog": t[1]})
    got = clip_score(sc, img, caps, prefix="An image of")
    want = torch.tensor([2.5 * max(float(t[i] @ img[i]), 0.0) for i in range(2)])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="one caption per image"):
        clip_score(sc, img, caps[:1])


def test_photo_set_loads_offline_and_names_objects():
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    assert len(PHOTOS) == 16 and len({p.name for p in PHOTOS}) == 16
    for p in PHOTOS:
        im = load_photo(p.name)
        assert im.mode == "RGB" and min(im.size) >= 128
        assert len(p.references) == 3 and all(p.names_object(r) for r in p.references[:1])
    cat = photo_set(["chelsea"])[0]
    assert cat.names_object("An image of a Cat.") and not cat.names_object("a concatenation")
    with pytest.raises(ValueError, match="unknown photo"):
        load_photo("eagle")
    with pytest.raises(ValueError, match="unknown photos"):
        photo_set(["chelsea", "nope"])


@pytest.mark.slow
def test_default_scorer_knows_photos_better_than_the_clip_art_heads():
    """On the 16 offline photos the default scorer (label bridge) ranks a photo's own captions first
    far above chance (1 of 16) and above the LiT heads fitted on clip art."""
    pytest.importorskip("skimage")
    from benchmarks.captioning_photos import photo_retrieval
    from fuse.captioning.scorers import load_scorer

    images = [load_photo(p.name) for p in PHOTOS]
    texts = [r for p in PHOTOS for r in p.references]
    owner = torch.arange(len(PHOTOS)).repeat_interleave(3)
    got = {}
    for name in ("bundled", "bundled:lit"):
        sc = load_scorer(name)
        got[name] = photo_retrieval(sc.encode_images(images) @ sc.encode_texts(texts).T, owner)["i2t_top1"]
    assert got["bundled"] >= 8 and got["bundled"] > got["bundled:lit"]
