"""Real CLIP models as captioning scorers, unchanged: a ``transformers`` ``CLIPModel`` (or an
``open_clip`` model through :class:`~fuse.models.backbones.clip.OpenCLIPBackbone`) gains the
``encode_images`` / ``encode_texts`` the captioner calls; everything else is the backbone's own."""

from __future__ import annotations

import torch

from fuse.models.backbones.clip import CLIPBackbone, OpenCLIPBackbone
from fuse.models.batching import encode_batch
from fuse.captioning.vision.images import load_image
from fuse.captioning.vision.preprocess import clip_preprocess, preprocess


class CLIPScorer(CLIPBackbone):
    """A :class:`~fuse.models.backbones.clip.CLIPBackbone` that loads and preprocesses images itself.

    Args:
        backbone: a ``CLIPBackbone`` (its model and tokenizer are shared, never modified).
    """

    def __init__(self, backbone: CLIPBackbone):
        super().__init__(backbone.model, backbone.tokenizer, backbone.name, processor=backbone.processor, validate=False)
        size = getattr(getattr(self.model.config, "vision_config", None), "image_size", 224)
        self.preprocess_config = clip_preprocess(int(size))

    def encode_images(self, images, *, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
        """``(N, D)`` unit image features (CLIP preprocessing: bicubic, centre crop, CLIP mean/std)."""
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.stack([preprocess(load_image(im), self.preprocess_config) for im in images[i : i + batch_size]])
            with torch.no_grad():
                out.append(self.image_features(x).float().cpu())
        if not out:
            raise ValueError("no images to encode")
        return torch.cat(out)

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """``(N, D)`` unit text features, exactly as CLIP tokenizes the texts."""
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                ids, mask = encode_batch(self.tokenizer, texts[i : i + batch_size], self.device)
                out.append(self.text_features(self.embed(ids), ids, mask).float().cpu())
        if not out:
            raise ValueError("no texts to encode")
        return torch.cat(out)


class OpenCLIPScorer(OpenCLIPBackbone):
    """An :class:`~fuse.models.backbones.clip.OpenCLIPBackbone` with ``encode_images``/``encode_texts``
    (CLIP preprocessing at ``image_size``, default 224)."""

    def __init__(self, backbone: OpenCLIPBackbone, image_size: int = 224):
        super().__init__(backbone.model, backbone.tokenizer, backbone.name)
        self.preprocess_config = clip_preprocess(int(image_size))

    encode_images = CLIPScorer.encode_images
    encode_texts = CLIPScorer.encode_texts


def load_clip(name_or_path: str, *, device=None, local_files_only: bool | None = None) -> CLIPScorer:
    """A ``transformers`` CLIP model (hub id or folder) as a scorer. Never runs remote code."""
    from transformers import AutoTokenizer, CLIPModel

    from fuse.models.loading import offline_default, resolve_device

    if local_files_only is None:
        local_files_only = offline_default()
    try:
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=local_files_only, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load CLIP model {name_or_path!r}: {e}. Pass a local folder or a cached hub id; "
                         "no pretrained CLIP installs offline, use scorer='bundled' for the bundled one") from e
    model = model.to(resolve_device(device)).eval()
    model.requires_grad_(False)
    return CLIPScorer(CLIPBackbone(model, tok, str(name_or_path)))
