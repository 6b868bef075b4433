"""Captioning on tiny random models: clip-art metadata, retrieval recall, the label bridge, LiT heads,
the bundled-style scorer (gradcheck), CLIP through the same code, the captioner and its errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fuse.core.adapter import TensorAdapter
from fuse.models.backbones.classifier import SENTIMENT, ZeroShotClassifier
from fuse.captioning import Caption, CaptionConfig, Captioner, caption, steering_objective
from fuse.captioning.data.openclipart import ClipArt, parse_metadata, split
from fuse.objectives import ClassifierLabel, ImageText
from fuse.optim import AutoDANConfig
from fuse.captioning.scorers import as_scorer
from fuse.captioning.scorers.image_text import ImageTextScorer
from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
from fuse.captioning.scorers.lit import CONFIG_NAME, WEIGHTS_NAME, LiTConfig, LiTHeads, info_nce, train_lit_heads
from fuse.captioning.scorers.retrieval import recall_at_k
from fuse.captioning.vision.preprocess import Preprocess
from fuse.captioning.vision.tower import ImageTower
from tiny import WORDS, TinyNet, tiny_clip
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer

TOL = dict(rtol=1e-5, atol=1e-6)


pytestmark = pytest.mark.usefixtures("one_thread")
SVG = """<svg><metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
  <dc:title>Red &amp; <b>happy</b> apple</dc:title>
  <dc:description>A shiny
     apple</dc:description>
  <dc:subject><rdf:Bag><rdf:li>fruit</rdf:li><rdf:li>food_item</rdf:li><rdf:li></rdf:li></rdf:Bag></dc:subject>
  <dc:creator><cc:Agent><dc:title>Some Author</dc:title></cc:Agent></dc:creator>
</cc:Work></rdf:RDF></metadata></svg>"""


# -- data -------------------------------------------------------------------------------------
def test_parse_metadata_takes_the_works_own_title():
    title, desc, kw = parse_metadata(SVG)
    assert title == "Red & happy apple"
    assert desc == "A shiny apple"
    assert kw == ("fruit", "food_item")
    assert parse_metadata("<svg/>") == ("", "", ())
    item = ClipArt(png=None, category="food", title=title, description=desc, keywords=kw)
    assert item.caption == "Red & happy apple. A shiny apple"
    assert item.training_text.endswith("fruit, food item")
    assert ClipArt(None, "x", "Cat", "cat").caption == "Cat"


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 200), seed=st.integers(0, 5))
def test_split_is_a_seeded_partition(n, seed):
    items = list(range(n))
    s = split(items, seed=seed)
    got = sorted(s["train"] + s["tune"] + s["test"])
    assert got == items
    assert not set(s["test"]) & set(s["train"]) and not set(s["tune"]) & set(s["train"])
    assert split(items, seed=seed) == s
    with pytest.raises(ValueError, match="fractions"):
        split(items, test=0.7, tune=0.5)


# -- retrieval ---------------------------------------------------------------------------------
def _slow_recall(S, k):
    n = S.shape[0]
    i2t = sum(sorted(range(n), key=lambda j: -S[i, j]).index(i) < k for i in range(n)) / n
    t2i = sum(sorted(range(n), key=lambda j: -S[j, i]).index(i) < k for i in range(n)) / n
    return i2t, t2i


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_recall_matches_a_slow_reference(n, seed):
    S = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    got = recall_at_k(S, ks=(1, 3))
    for k in (1, 3):
        i2t, t2i = _slow_recall(S, k)
        assert got[f"i2t_R@{k}"] == pytest.approx(i2t) and got[f"t2i_R@{k}"] == pytest.approx(t2i)
    assert recall_at_k(torch.eye(n))["i2t_R@1"] == 1.0
    with pytest.raises(ValueError, match="square"):
        recall_at_k(torch.zeros(2, 3))


# -- label bridge ------------------------------------------------------------------------------
def test_label_bridge_one_hot_is_the_class_text():
    C = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    b = LabelBridge(C, LabelBridgeConfig(top_k=1))
    logits = torch.full((2, 6), -5.0)
    logits[0, 2], logits[1, 4] = 5.0, 5.0
    e = b.image_embedding(logits)
    want = torch.nn.functional.normalize(C[[2, 4]] - C.mean(0), dim=-1)
    torch.testing.assert_close(e, want, **TOL)
    # text side of the class text itself scores cosine 1
    torch.testing.assert_close((b.text_embedding(C[[2, 4]]) * e).sum(-1), torch.ones(2), **TOL)
    with pytest.raises(ValueError, match="temperature"):
        LabelBridgeConfig(temperature=0)
    with pytest.raises(ValueError, match="logits"):
        b.image_embedding(torch.zeros(2, 5))


# -- LiT heads ---------------------------------------------------------------------------------
def _pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g)
    A, B = torch.randn(6, 20, generator=torch.Generator().manual_seed(99)), torch.randn(6, 10, generator=torch.Generator().manual_seed(98))
    return z @ A + 0.1 * torch.randn(n, 20, generator=g), z @ B + 0.1 * torch.randn(n, 10, generator=g)


def test_lit_training_learns_a_held_out_pairing_and_round_trips(tmp_path):
    cfg = LiTConfig(image_dim=20, text_dim=10, dim=8, epochs=40, batch_size=64, lr=1e-2, seed=3)
    X, T = _pairs(300, 0)
    heads, losses = train_lit_heads(X, T, cfg)
    assert losses[-1] < 0.5 * losses[0]
    Xt, Tt = _pairs(50, 1)
    r = recall_at_k(heads.image(Xt) @ heads.text(Tt).T)
    assert r["i2t_R@1"] > 0.5 and r["t2i_R@1"] > 0.5  # chance is 0.02
    heads2, losses2 = train_lit_heads(X, T, cfg)
    assert losses2 == losses  # seeded
    heads.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    cfg_json = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert "fuse_version" in cfg_json and list(cfg_json) == sorted(cfg_json)
    loaded = LiTHeads.from_pretrained(tmp_path)
    for k, v in heads.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(ValueError, match="holds no LiT heads"):
        LiTHeads.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="same N"):
        train_lit_heads(X, T[:5], cfg)
    with pytest.raises(ValueError, match="dim"):
        LiTConfig(dim=0)


def test_info_nce_matches_manual_cross_entropy():
    a = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    L = 10 * a @ b.T
    want = 0.5 * (-torch.log_softmax(L, 1).diagonal().mean() - torch.log_softmax(L, 0).diagonal().mean())
    torch.testing.assert_close(info_nce(a, b, torch.tensor(10.0)), want, **TOL)


# -- the scorer on tiny towers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def enc():
    return tiny_encoder(wordpiece_tokenizer(), d=12)


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(bpe_tokenizer(), d=16)


def _scorer(enc, mode, dtype=torch.float32):
    tower = ImageTower(TinyNet(n_classes=5), Preprocess(resize=40, crop=32), name="tiny-tower")
    with torch.no_grad():
        C = enc.embed_text([f"class {w}" for w in ("cat", "dog", "boat", "sun", "lake")]).to(dtype)
    bridge = LabelBridge(C, LabelBridgeConfig(top_k=3))
    heads = LiTHeads(LiTConfig(image_dim=8, text_dim=12, dim=6, seed=1)).to(dtype)
    return ImageTextScorer(enc, tower, mode=mode, bridge=bridge if mode != "lit" else None, heads=heads if mode != "label" else None)


IMAGES = [np.full((20, 30, 3), v, np.uint8) for v in (0, 90, 200)]


@pytest.mark.parametrize("mode", ["label", "lit", "sum"])
def test_scorer_loss_equals_one_minus_exact_cosine(enc, mode):
    sc = _scorer(enc, mode)
    img = sc.encode_images(IMAGES)
    txt = sc.encode_texts(["a cat on a mat", "a small boat"])
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3), **TOL)
    obj = ImageText(sc, img[1])
    torch.testing.assert_close(obj.loss_texts(["a cat on a mat", "a small boat"]), 1 - txt @ img[1], **TOL)


def test_sum_is_the_mean_of_the_two_cosines(enc):
    s, lab, lit = (_scorer(enc, m) for m in ("sum", "label", "lit"))
    texts = ["a cat on a mat", "the sun over a lake"]
    got = s.encode_texts(texts) @ s.encode_images(IMAGES).T
    want = 0.5 * (lab.encode_texts(texts) @ lab.encode_images(IMAGES).T + lit.encode_texts(texts) @ lit.encode_images(IMAGES).T)
    torch.testing.assert_close(got, want, **TOL)


def test_scorer_gradcheck_float64(enc):
    enc64 = tiny_encoder(wordpiece_tokenizer(), d=12, dtype=torch.float64)
    sc = _scorer(enc64, "sum", torch.float64)
    img = torch.nn.functional.normalize(torch.randn(18, dtype=torch.float64), dim=-1)  # 12 (label) + 6 (LiT)
    ids = torch.tensor([enc64.tokenizer("a cat")["input_ids"]])
    x = enc64.embed(ids).detach().clone().requires_grad_()
    mask = torch.ones_like(ids)
    assert torch.autograd.gradcheck(lambda e: sc.loss(e, ids, mask, img), (x,), eps=1e-6, atol=1e-5)


def test_scorer_mode_errors(enc):
    with pytest.raises(ValueError, match="unknown scorer mode"):
        ImageTextScorer(enc, None, mode="both")
    with pytest.raises(ValueError, match="label bridge"):
        ImageTextScorer(enc, None, mode="label")
    with pytest.raises(ValueError, match="cannot score images"):
        as_scorer(42)


# -- the captioner -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapters(lm, enc):
    return {enc.name: TensorAdapter.fit(lm, enc, words=WORDS, k=4)}


SMALL = CaptionConfig(optim=AutoDANConfig(prefix="An image of", n_tokens=3, batch_size=6, budget=18, search="beam",
                                         beam_width=2, lm_weight=0.25, seed=0), image_batch_size=2)


def test_caption_runs_within_budget_and_reports_bad_files(lm, enc, adapters, tmp_path):
    good = tmp_path / "ok.png"
    Image.fromarray(np.full((9, 9, 4), 120, np.uint8), "RGBA").save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    out = caption([good, bad, IMAGES[0]], lm=lm, scorer=_scorer(enc, "sum"), config=SMALL, adapters=adapters)
    assert [c.image for c in out] == [str(good), str(bad), "image[2]"]
    assert out[1].caption is None and "broken.jpg" in out[1].error
    for c in (out[0], out[2]):
        assert c.error is None and c.caption.startswith("An image of")
        assert 0 < c.evaluations <= SMALL.evaluations
        assert -1.0 <= c.image_score <= 1.0
    # the reported loss is the exact weighted objective of the caption
    cap = Captioner(lm, _scorer(enc, "sum"), SMALL, adapters=adapters)
    feats = cap.scorer.encode_images([IMAGES[0]])[0]
    ev = cap.chain(feats).evaluate([out[2].caption])
    assert float(ev.total[0]) == pytest.approx(out[2].loss, rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="broken.jpg"):
        caption([bad], lm=lm, scorer=_scorer(enc, "sum"), config=SMALL, adapters=adapters, on_error="raise")


def test_caption_is_seeded_and_the_controls_run(lm, enc, adapters):
    sc = _scorer(enc, "lit")
    a = caption(IMAGES[:1], lm=lm, scorer=sc, config=SMALL, adapters=adapters)[0]
    b = caption(IMAGES[:1], lm=lm, scorer=sc, config=SMALL, adapters=adapters)[0]
    assert a.caption == b.caption and a.loss == b.loss
    for opts in (dict(use_gradient=False), dict(optimizer="random", search="beam"), dict(optimizer="gcg")):
        c = caption(IMAGES[:1], lm=lm, scorer=sc, config=SMALL, adapters=adapters, **opts)[0]
        assert c.caption.startswith("An image of") and c.evaluations <= SMALL.evaluations
    cap = Captioner(lm, sc, SMALL, adapters=adapters)
    no_image = cap.caption_features(sc.encode_images(IMAGES[:1])[0], with_image=False)
    assert list(no_image.losses) == [f"{lm.name}:nll"] and no_image.image_score is not None


def test_steering_adds_a_classifier_term(lm, enc, adapters):
    sc = _scorer(enc, "sum")
    cap = Captioner(lm, sc, SMALL, steer="positive", adapters=adapters)
    assert isinstance(cap.steer, ClassifierLabel) and cap.steer.label == "positive"
    out = cap(IMAGES[:1])[0]
    assert len(out.losses) == 3 and any(k.endswith("label_nll") for k in out.losses)
    zs = ZeroShotClassifier(enc, SENTIMENT)
    assert steering_objective((zs, "negative")).label == "negative"
    with pytest.raises(ValueError, match="sentiment"):
        steering_objective("angry")
    with pytest.raises(ValueError, match="steer_weight"):
        Captioner(lm, sc, CaptionConfig(steer_weight=0), steer="positive", adapters=adapters)


def test_real_clip_code_path_with_a_tiny_clip(lm):
    """The same captioner runs unchanged with a transformers CLIPModel (tiny random config)."""
    tok = bpe_tokenizer()
    clip = tiny_clip(tok)
    sc = as_scorer(clip)
    feats = sc.encode_images(IMAGES[:2])
    assert feats.shape == (2, 8)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2), **TOL)
    t = sc.encode_texts(["a cat", "a boat on a lake"])
    torch.testing.assert_close(ImageText(sc, feats[0]).loss_texts(["a cat", "a boat on a lake"]), 1 - t @ feats[0], **TOL)
    ad = {clip.name: TensorAdapter.fit(lm, clip, words=WORDS, k=4)}
    out = caption(IMAGES[:1], lm=lm, scorer=clip, config=SMALL, adapters=ad)
    assert isinstance(out[0], Caption) and out[0].caption.startswith("An image of")


def test_caption_input_errors(lm, enc, adapters):
    with pytest.raises(ValueError, match="no images"):
        caption([], lm=lm, scorer=_scorer(enc, "lit"), adapters=adapters)
    with pytest.raises(ValueError, match="causal LM"):
        Captioner(enc, _scorer(enc, "lit"))


def test_cli_json_csv_and_exit_code(monkeypatch, tmp_path, capsys):
    import fuse.captioning as fc
    from fuse.cli import main

    seen = {"images": []}

    class FakeCaptioner:  # the CLI captions one image per call (a sharded, resumable job; docs/scale-out.md)
        def __init__(self, lm=None, scorer=None, config=None, *, steer=None, adapters=None):
            seen.update(lm=lm, scorer=scorer, steer=steer, config=config)

        def __call__(self, images, **kwargs):
            (im,) = images
            seen["images"].append(im)
            if im == "a.png":
                return [Caption(im, "An image of a cat", 0.3, 2.0, 1.0, {}, 10, 0.1)]
            return [Caption(im, None, error=f"image {im!r}: no such file; check the path")]

    monkeypatch.setattr(fc, "Captioner", FakeCaptioner)
    out_csv = tmp_path / "caps.csv"
    rc = main(["caption", "a.png", "missing.png", "--json", "--csv", str(out_csv), "--no-progress", "--n-tokens", "3",
               "--steer", "positive", "--no-gradient"])
    assert rc == 1  # one image failed, the other was captioned
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"] == "a.png" and rows[0]["caption"] == "An image of a cat"
    assert rows[1]["caption"] is None and "no such file" in rows[1]["error"]
    assert out_csv.read_text().splitlines()[0].startswith("image,caption")
    assert seen["config"].optim.n_tokens == 3 and seen["config"].optim.use_gradient is False and seen["steer"] == "positive"
    assert seen["config"].evaluations == 3 * 128  # --budget: n-tokens × batch-size
    assert seen["lm"] == "bundled:smollm2-135m" and seen["scorer"] == "bundled"
    assert seen["images"] == ["a.png", "missing.png"] and rows[0]["world_size"] == 1


@pytest.mark.slow
def test_bundled_scorers_on_a_real_photo():
    """EfficientNet-Lite0 + MiniLM: the cat photo scores higher with a cat caption under every mode."""
    skimage = pytest.importorskip("skimage.data")
    from fuse.captioning.scorers.bundled import load_bundled_scorer
    from fuse.captioning.vision.imagenet import imagenet_names

    sc = load_bundled_scorer("sum")
    feats, logits = sc.tower.encode([skimage.chelsea()])
    assert "cat" in " ".join(imagenet_names()[int(logits.argmax())])
    for mode in ("label", "lit", "sum"):
        s = load_bundled_scorer(mode)
        img = s.encode_images([skimage.chelsea()])
        t = s.encode_texts(["a photo of a cat", "a rocket launching into space"])
        assert float(t[0] @ img[0]) > float(t[1] @ img[0]), mode
    assert sc.heads.image_proj.shape == (256, 1280) and sc.heads.text_proj.shape == (256, 384)


def test_captions_do_not_depend_on_the_callers_thread_count(lm, enc, adapters):
    """The search runs with ``num_threads`` torch threads whatever the caller set, and restores it."""
    sc = _scorer(enc, "label")
    before = torch.get_num_threads()
    out = []
    try:
        for outer in (2, 1):
            torch.set_num_threads(outer)
            c = caption(IMAGES[1:2], lm=lm, scorer=sc, config=SMALL, adapters=adapters)[0]
            assert torch.get_num_threads() == outer
            out.append((c.caption, c.loss))
    finally:
        torch.set_num_threads(before)
    assert out[0] == out[1]
    seen = []
    cap = Captioner(lm, sc, replace(SMALL, num_threads=None), adapters=adapters)
    cap.optimizer = lambda chain, config=None: seen.append(torch.get_num_threads()) or Captioner.optimizer(cap, chain, config)
    cap.caption_features(sc.encode_images(IMAGES[:1])[0])
    assert seen == [torch.get_num_threads()]  # None: the caller's setting
    with pytest.raises(ValueError, match="num_threads"):
        CaptionConfig(num_threads=0)


def test_autodan_captions_have_exactly_n_tokens(lm, enc, adapters):
    sc = _scorer(enc, "label")
    cap = Captioner(lm, sc, SMALL, adapters=adapters)
    chain = cap.chain(sc.encode_images(IMAGES[:1])[0])
    opt = cap.optimizer(chain)
    res = opt.run()
    assert len(res.best_ids) == len(opt.prefix_ids) + SMALL.optim.n_tokens + len(opt.tail_ids)
    assert CaptionConfig().optim.complete_only and LabelBridgeConfig().temperature == 2.0


def test_default_search_is_the_measured_one_and_the_published_one_is_kept(lm, enc, adapters):
    """fuse caption's default: 8 tokens × 128 candidates, lm_weight 0.25 (docs/captioning.md); the published search
    (16 × 64, lm_weight 1) stays available for the COCO protocol. The captioner hands lm_weight to AutoDAN."""
    from fuse.captioning import DEFAULT_CONFIG, PUBLISHED_CONFIG

    d, pub = DEFAULT_CONFIG.optim, PUBLISHED_CONFIG.optim
    assert (d.n_tokens, d.batch_size, d.lm_weight, d.search, d.beam_width, d.seed) == (8, 128, 0.25, "beam", 4, 0)
    assert (d.prefix, DEFAULT_CONFIG.num_threads, DEFAULT_CONFIG.alpha, DEFAULT_CONFIG.optimizer) == ("An image of", 1, (1.0, 22.0), "autodan")
    assert DEFAULT_CONFIG.evaluations == 1024 == PUBLISHED_CONFIG.evaluations
    assert (pub.n_tokens, pub.batch_size, pub.lm_weight, pub.prefix, pub.search) == (16, 64, 1.0, "An image of", "beam")
    sc = _scorer(enc, "label")
    cap = Captioner(lm, sc, SMALL.override(lm_weight=0.25), adapters=adapters)
    opt = cap.optimizer(cap.chain(sc.encode_images(IMAGES[:1])[0]))
    assert opt.config.lm_weight == 0.25 and opt.config.use_gradient and opt.config.batch_size == SMALL.optim.batch_size
