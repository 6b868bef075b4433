"""Image loading and preprocessing: every input kind, clear errors, and the tower wrapper."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tiny import TinyNet
from fuse.captioning.vision.images import ImageLoadError, load_image, load_images
from fuse.captioning.vision.preprocess import EFFICIENTNET_LITE, Preprocess, clip_preprocess, preprocess, preprocess_batch
from fuse.captioning.vision.tower import ImageTower

TOL = dict(rtol=1e-6, atol=1e-6)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_grayscale_becomes_three_equal_channels():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    im = load_image(a)
    assert im.mode == "RGB" and im.size == (4, 3)
    rgb = np.asarray(im)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], a)


def test_rgba_is_composited_on_white():
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (200, 10, 10, 255)  # opaque red
    a[1, 1] = (0, 0, 0, 0)  # fully transparent
    rgb = np.asarray(load_image(Image.fromarray(a, "RGBA")))
    np.testing.assert_array_equal(rgb[0, 0], (200, 10, 10))
    np.testing.assert_array_equal(rgb[1, 1], (255, 255, 255))


def test_palette_with_transparency_and_la(tmp_path):
    p = Image.new("P", (3, 3), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    p.info["transparency"] = 0
    path = tmp_path / "pal.png"
    p.save(path, transparency=0)
    rgb = np.asarray(load_image(path))
    np.testing.assert_array_equal(rgb[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(rgb[1, 1], (255, 0, 0))
    la = Image.fromarray(np.stack([np.full((2, 2), 50, np.uint8), np.full((2, 2), 255, np.uint8)], -1), "LA")
    np.testing.assert_array_equal(np.asarray(load_image(la))[0, 0], (50, 50, 50))


def test_sixteen_bit_png_is_rescaled(tmp_path):
    a = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_image(path))
    np.testing.assert_array_equal(rgb[..., 0], [[0, 255], [100, 200]])
    np.testing.assert_array_equal(np.asarray(load_image(a))[..., 1], [[0, 255], [100, 200]])


def test_float_and_channel_first_arrays():
    f = np.full((3, 5, 6), 0.5, dtype=np.float32)  # (C, H, W) in [0, 1]
    im = load_image(f)
    assert im.size == (6, 5)
    assert np.asarray(im)[0, 0, 0] == 128
    t = torch.ones(5, 6, 3)  # torch tensor, channel last
    assert np.asarray(load_image(t))[0, 0, 0] == 255


def test_huge_images_are_shrunk_and_absurd_ones_refused(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1200, 600), (10, 200, 30)).save(path)
    im = load_image(path, max_side=300)
    assert max(im.size) == 300 and im.size[0] == 2 * im.size[1]
    with pytest.raises(ImageLoadError, match="max_pixels"):
        load_image(path, max_pixels=1000)


def test_tiny_image_preprocesses_to_full_size():
    x = preprocess(np.full((1, 1, 3), 255, np.uint8))
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x, torch.full_like(x, (255 - 127) / 128), **TOL)


@pytest.mark.parametrize("content,match", [(b"not an image at all", "not an image format"),
                                           (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt|not an image")])
def test_corrupt_files_raise_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=match) as e:
        load_image(path)
    assert "bad.png" in str(e.value) and isinstance(e.value, ValueError)


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="corrupt|truncated"):
        load_image(path)


@pytest.mark.parametrize("bad,match", [(np.zeros((0, 4), np.uint8), "empty"), (np.zeros((5, 5, 2), np.uint8), "shape"),
                                       (np.array([[np.nan]]), "NaN"), (object(), "file path"),
                                       ("/nonexistent/x.png", "no such file")])
def test_bad_inputs(bad, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(bad)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def test_load_images_skips_and_reports(tmp_path):
    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    ims, errs = load_images([good, bad, good], on_error="skip")
    assert ims[1] is None and ims[0] is not None and ims[2] is not None
    assert errs[0] is None and "bad.png" in errs[1]
    with pytest.raises(ImageLoadError):
        load_images([good, bad])


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), c=st.sampled_from([1, 3]), seed=st.integers(0, 1000))
def test_rgb_round_trip_and_preprocess_shape(h, w, c, seed):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    rgb = np.asarray(load_image(a))
    np.testing.assert_array_equal(rgb, np.repeat(a, 3, -1) if c == 1 else a)
    assert preprocess(a, Preprocess(resize=20, crop=16)).shape == (3, 16, 16)


def test_preprocess_matches_a_manual_reference():
    a = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    cfg = Preprocess(resize=30, crop=20)
    im = Image.fromarray(a).resize((40, 30), Image.Resampling.BILINEAR).crop((10, 5, 30, 25))
    want = (torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1) - 127) / 128
    torch.testing.assert_close(preprocess(a, cfg), want, **TOL)
    c = clip_preprocess(32)
    x = preprocess(np.zeros((10, 10, 3), np.uint8), c)
    torch.testing.assert_close(x[0], torch.full((32, 32), -0.48145466 / 0.26862954), **TOL)
    with pytest.raises(ValueError, match="crop"):
        Preprocess(resize=10, crop=20)
    with pytest.raises(ValueError, match="no images"):
        preprocess_batch([])


def test_tower_wrapper_features_and_logits():
    tower = ImageTower(TinyNet(), Preprocess(resize=40, crop=32))
    ims = [np.full((10, 12, 3), v, np.uint8) for v in (0, 128, 255)]
    feats, logits = tower.encode(ims, batch_size=2)
    assert feats.shape == (3, 8) and logits.shape == (3, 5)
    x = preprocess_batch(ims, tower.config)
    torch.testing.assert_close(feats, tower.net.extract_features(x).mean((2, 3)), **TOL)
    torch.testing.assert_close(logits, tower.net._fc(feats), **TOL)
    with pytest.raises(ValueError, match="extract_features"):
        ImageTower(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tower.features(torch.zeros(3, 32, 32))
    assert EFFICIENTNET_LITE.crop == 224
