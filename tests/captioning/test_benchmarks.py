"""The captioning benchmarks' own logic on tiny models: the COCO protocol end to end on a tiny random
CLIP and a three-image annotation file (resume, shards, metrics), and photo retrieval against a slow
reference."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks import captioning_coco as coco
from benchmarks.captioning_photos import photo_retrieval
from fuse.captioning import PUBLISHED_CONFIG
from fuse.captioning.scorers import as_scorer
from fuse.core.adapter import TensorAdapter
from tiny import WORDS, bpe_tokenizer, tiny_causal_lm, tiny_clip

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("pycocoevalcap")


def _slow_retrieval(S, owner):
    n = S.shape[0]
    top1 = mrr = 0
    for i in range(n):
        order = sorted(range(S.shape[1]), key=lambda t: (-float(S[i, t]), owner[t] != i))  # ties favour the pair
        first = next(r for r, t in enumerate(order) if owner[t] == i)
        # ties count against the pair: rank = texts of other images scoring at least as high
        best = max(float(S[i, t]) for t in range(S.shape[1]) if owner[t] == i)
        rank = sum(1 for t in range(S.shape[1]) if owner[t] != i and float(S[i, t]) >= best)
        assert first <= rank
        top1 += rank == 0
        mrr += 1.0 / (1 + rank)
    t2i = sum(int(int(S[:, t].argmax()) == owner[t]) for t in range(S.shape[1]))
    return top1, t2i, mrr / n


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), per=st.integers(1, 3), seed=st.integers(0, 50), ties=st.booleans())
def test_photo_retrieval_matches_a_slow_reference(n, per, seed, ties):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, n * per, generator=g)
    if ties:
        S = S.round()  # many exact ties: they must count against the pair
    owner = torch.arange(n).repeat_interleave(per)
    got = photo_retrieval(S, owner)
    top1, t2i, mrr = _slow_retrieval(S, owner.tolist())
    assert got["i2t_top1"] == top1 and got["i2t_mrr"] == pytest.approx(mrr)
    if not ties:
        assert got["t2i_top1"] == t2i


# -- the COCO protocol ------------------------------------------------------------------------
def _coco(tmp_path, n=3):
    folder = tmp_path / "val"
    folder.mkdir()
    images, anns = [], []
    for i in range(n):
        Image.fromarray(np.full((40, 48, 3), 60 * i + 20, np.uint8)).save(folder / f"{i:012d}.jpg")
        images.append({"id": 100 + i, "file_name": f"{i:012d}.jpg"})
        anns += [{"image_id": 100 + i, "caption": f"A picture of a red cat number {i}."},
                 {"image_id": 100 + i, "caption": "a small boat on a calm lake"}]
    images.append({"id": 999, "file_name": "missing.jpg"})  # listed but not in the folder: left out
    ann = tmp_path / "captions.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns}))
    return folder, ann


def test_load_coco_reads_sorts_samples_and_refuses_bad_input(tmp_path):
    folder, ann = _coco(tmp_path)
    items = coco.load_coco(ann, folder)
    assert [i.image_id for i in items] == [100, 101, 102]
    assert items[0].references == ("A picture of a red cat number 0.", "a small boat on a calm lake")
    a, b = (coco.load_coco(ann, folder, n_images=2, seed=s) for s in (3, 3))
    assert a == b and len(a) == 2
    assert sorted(i.image_id for s in range(3) for i in coco.shard(items, s, 3)) == [100, 101, 102]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO captions file"):
        coco.load_coco(bad, folder)
    with pytest.raises(ValueError, match="not found"):
        coco.load_coco(tmp_path / "nope.json", folder)
    with pytest.raises(ValueError, match="rank"):
        coco.shard(items, 3, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="none of the"):
        coco.load_coco(ann, tmp_path / "empty")


@pytest.fixture(scope="module")
def models():
    tok = bpe_tokenizer()
    lm = tiny_causal_lm(tok, d=16)
    clip = tiny_clip(tok)
    return lm, as_scorer(clip), {clip.name: TensorAdapter.fit(lm, clip, words=WORDS, k=4)}


def test_coco_protocol_on_a_tiny_clip_resumes_and_scores(tmp_path, models, monkeypatch):
    lm, clip, adapters = models
    folder, ann = _coco(tmp_path)
    out = tmp_path / "caps.jsonl"
    argv = ["--images", str(folder), "--annotations", str(ann), "--n-tokens", "2", "--batch-size", "4",
            "--beam-width", "2", "--output", str(out), "--clip", "tiny-clip", "--lm", "tiny-lm"]
    monkeypatch.setattr("fuse.captioning.evaluation.java_available", lambda: False)  # METEOR/SPICE: n/a here
    figs = coco.main(argv, lm=lm, scorer=clip, adapters=adapters, results_dir=tmp_path)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["key"] for r in recs) == sorted(f"{m}|{i}" for m in ("fuse", "magic") for i in (100, 101, 102))
    assert all(r["caption"].startswith("An image of") and 0 < r["evaluations"] <= 8 for r in recs)
    for m in ("fuse", "magic"):
        f = figs[m]
        assert f["n_images"] == 3 and f["METEOR"] is None and f["SPICE"] is None
        assert 0 <= f["BLEU-4"] <= 1 and f["CIDEr"] >= 0 and 0 <= f["CLIP-S"] <= 2.5
        # CLIP-S is 2.5 · max(cos, 0) of the written captions under the same CLIP
        caps = [r["caption"] for r in recs if r["method"] == m]
        feats = clip.encode_images(sorted(folder.glob("*.jpg")))
        t = clip.encode_texts(["A photo depicts " + c[len("An image of"):].strip() for c in caps])
        assert f["CLIP-S"] == pytest.approx(float((2.5 * (t * feats).sum(-1).clamp_min(0)).mean()), abs=1e-5)
    saved = json.loads((tmp_path / "captioning_coco.json").read_text())
    assert saved["figures"]["fuse"]["CIDEr"] == pytest.approx(figs["fuse"]["CIDEr"])
    # the COCO protocol keeps the published search's LM weight, whatever fuse caption's default is
    assert saved["config"]["caption"]["optim"]["lm_weight"] == PUBLISHED_CONFIG.optim.lm_weight == 1.0
    assert "| FUSE: AutoDAN" in (tmp_path / "captioning_coco.md").read_text()
    # a rerun resumes: nothing is captioned again, the same figures come back
    before = out.read_text()
    again = coco.main(argv, lm=lm, scorer=clip, adapters=adapters, results_dir=tmp_path)
    assert out.read_text() == before and again["fuse"]["CIDEr"] == pytest.approx(figs["fuse"]["CIDEr"])


def test_coco_shards_write_one_file_that_metrics_only_scores(tmp_path, models, monkeypatch):
    lm, clip, adapters = models
    folder, ann = _coco(tmp_path)
    out = tmp_path / "caps.jsonl"
    base = ["--images", str(folder), "--annotations", str(ann), "--n-tokens", "2", "--batch-size", "4",
            "--beam-width", "2", "--methods", "fuse"]
    common = base + ["--output", str(out)]
    monkeypatch.setattr("fuse.captioning.evaluation.java_available", lambda: False)
    for r in (0, 1):
        assert coco.main(common + ["--rank", str(r), "--world-size", "2"], lm=lm, scorer=clip, adapters=adapters,
                         results_dir=tmp_path) == {}
    figs = coco.main(common + ["--metrics-only"], scorer=clip, results_dir=tmp_path)
    single = tmp_path / "single.jsonl"
    ref = coco.main(base + ["--output", str(single)], lm=lm, scorer=clip, adapters=adapters, results_dir=tmp_path)
    assert figs["fuse"]["CIDEr"] == pytest.approx(ref["fuse"]["CIDEr"])  # two shards = one process, same seed
    with pytest.raises(ValueError, match="no caption yet"):
        coco.score(coco.load_coco(ann, folder), {}, clip, methods=("fuse",))
