"""Resize, centre-crop and normalise RGB images into ``(3, H, W)`` float tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fuse.captioning.vision.images import load_image


@dataclass(frozen=True)
class Preprocess:
    """How a tower expects its pixels: ``x = (pixel/scale − mean) / std`` per channel.

    Attributes:
        resize: short side after resizing.
        crop: side of the centre crop.
        mean, std: per-channel normalisation applied to ``pixel / scale``.
        scale: 1 for EfficientNet-Lite (``(pixel − 127) / 128``), 255 for CLIP (mean/std in [0, 1]).
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    scale: float = 1.0
    resample: str = "bilinear"

    def __post_init__(self):
        if self.crop < 1 or self.resize < self.crop:
            raise ValueError(f"need 1 <= crop <= resize, got crop={self.crop}, resize={self.resize}")


EFFICIENTNET_LITE = Preprocess()
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(image_size: int = 224) -> Preprocess:
    """CLIP's preprocessing (bicubic resize to the short side, centre crop, CLIP mean/std)."""
    return Preprocess(resize=image_size, crop=image_size, mean=CLIP_MEAN, std=CLIP_STD, scale=255.0, resample="bicubic")


def preprocess(image, config: Preprocess = EFFICIENTNET_LITE) -> torch.Tensor:
    """One image (anything :func:`~fuse.captioning.vision.images.load_image` takes) → ``(3, crop, crop)`` float32."""
    im = load_image(image) if not (isinstance(image, Image.Image) and image.mode == "RGB") else image
    w, h = im.size
    s = config.resize / min(w, h)
    nw, nh = max(config.crop, round(w * s)), max(config.crop, round(h * s))
    resample = Image.Resampling.BICUBIC if config.resample == "bicubic" else Image.Resampling.BILINEAR
    im = im.resize((nw, nh), resample)
    left, top = (nw - config.crop) // 2, (nh - config.crop) // 2
    im = im.crop((left, top, left + config.crop, top + config.crop))
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1) / config.scale
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (x - mean) / std


def preprocess_batch(images, config: Preprocess = EFFICIENTNET_LITE) -> torch.Tensor:
    """``(B, 3, crop, crop)`` from a list of images."""
    if len(images) == 0:
        raise ValueError("no images to preprocess")
    return torch.stack([preprocess(im, config) for im in images])
