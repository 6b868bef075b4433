"""LiT-style heads: two linear projections on top of frozen towers, trained contrastively.

``image = normalize(W_i (f − μ_f))`` from the image tower's features ``f (1280,)`` and
``text = normalize(W_t s)`` from the text encoder's sentence embedding ``s (384,)``; trained with
the symmetric InfoNCE loss on cached embeddings of image–text pairs (Zhai et al., 2022, with both
towers locked). Saved as ``lit_config.json`` (sorted, with the library version) and
``lit_heads.safetensors``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fuse._version import __version__

logger = logging.getLogger(__name__)
CONFIG_NAME, WEIGHTS_NAME = "lit_config.json", "lit_heads.safetensors"


@dataclass
class LiTConfig:
    """Shapes and training options of the heads.

    Attributes:
        image_dim, text_dim: tower output sizes (EfficientNet-Lite0: 1280; MiniLM: 384).
        dim: the shared space.
        epochs, lr, weight_decay, batch_size: AdamW training on cached embeddings.
        temperature: initial InfoNCE temperature (learned, clamped to ≥ 0.01).
        seed: seeds the initialisation and the batch order.
        image_tower, text_encoder, data: provenance, recorded in the config file.
    """

    image_dim: int = 1280
    text_dim: int = 384
    dim: int = 256
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.1
    batch_size: int = 256
    temperature: float = 0.07
    seed: int = 0
    image_tower: str = "efficientnet-lite0"
    text_encoder: str = "bundled:minilm-l6"
    data: str = ""

    def __post_init__(self):
        for k in ("image_dim", "text_dim", "dim", "epochs", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"LiTConfig.{k} must be >= 1, got {getattr(self, k)}")
        if not self.lr > 0 or not self.temperature > 0 or self.weight_decay < 0:
            raise ValueError("LiTConfig needs lr > 0, temperature > 0 and weight_decay >= 0")


class LiTHeads(torch.nn.Module):
    """The two projections. ``image(f (B, image_dim)) → (B, dim)``, ``text(s (B, text_dim)) → (B, dim)``, unit norm."""

    def __init__(self, config: LiTConfig):
        super().__init__()
        self.config = config
        g = torch.Generator().manual_seed(config.seed)
        self.register_buffer("image_mean", torch.zeros(config.image_dim))
        self.image_proj = torch.nn.Parameter(torch.randn(config.dim, config.image_dim, generator=g) / config.image_dim**0.5)
        self.text_proj = torch.nn.Parameter(torch.randn(config.dim, config.text_dim, generator=g) / config.text_dim**0.5)
        self.log_inv_temp = torch.nn.Parameter(torch.tensor(float(-torch.log(torch.tensor(config.temperature)))))

    def image(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize((features.to(self.image_proj) - self.image_mean) @ self.image_proj.T, dim=-1)

    def text(self, sentence: torch.Tensor) -> torch.Tensor:
        return F.normalize(sentence @ self.text_proj.T.to(sentence), dim=-1)

    @property
    def inv_temperature(self) -> torch.Tensor:
        return self.log_inv_temp.clamp(max=float(torch.log(torch.tensor(100.0)))).exp()

    # -- persistence ----------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, extra: dict | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        cfg = {**asdict(self.config), "fuse_version": __version__, **(extra or {})}
        (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "LiTHeads":
        folder = Path(folder)
        if not (folder / CONFIG_NAME).exists() or not (folder / WEIGHTS_NAME).exists():
            raise ValueError(f"{folder} holds no LiT heads ({CONFIG_NAME} and {WEIGHTS_NAME}); train them with fuse.captioning.scorers.lit.train_lit_heads")
        raw = json.loads((folder / CONFIG_NAME).read_text())
        fields = LiTConfig.__dataclass_fields__
        heads = cls(LiTConfig(**{k: v for k, v in raw.items() if k in fields}))
        heads.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        heads.requires_grad_(False)
        return heads.eval()


def info_nce(img: torch.Tensor, txt: torch.Tensor, inv_temp: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of matched unit vectors ``img (B, D)``, ``txt (B, D)``."""
    logits = inv_temp * img @ txt.T
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_lit_heads(image_features: torch.Tensor, text_embeddings: torch.Tensor, config: LiTConfig = LiTConfig(),
                    *, progress: bool = False) -> tuple[LiTHeads, list[float]]:
    """Train the heads on cached pairs.

    Args:
        image_features: ``(N, image_dim)`` image-tower features.
        text_embeddings: ``(N, text_dim)`` or ``(N, V, text_dim)`` sentence embeddings; with ``V``
            views (e.g. caption and keywords) one view per image is drawn each epoch.
        config: shapes and training options (seeded).

    Returns:
        ``(heads, epoch_losses)``; the heads are frozen.
    """
    if image_features.ndim != 2 or text_embeddings.ndim not in (2, 3) or image_features.shape[0] != text_embeddings.shape[0]:
        raise ValueError(f"need image_features (N, {config.image_dim}) and text_embeddings (N, [V,] {config.text_dim}) "
                         f"with the same N; got {tuple(image_features.shape)} and {tuple(text_embeddings.shape)}")
    if image_features.shape[1] != config.image_dim or text_embeddings.shape[-1] != config.text_dim:
        raise ValueError(f"feature sizes {image_features.shape[1]}/{text_embeddings.shape[-1]} do not match the config's "
                         f"image_dim={config.image_dim}/text_dim={config.text_dim}")
    if image_features.shape[0] < 2:
        raise ValueError("contrastive training needs at least 2 pairs")
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    heads = LiTHeads(config)
    X = image_features.float()
    T = text_embeddings.float() if text_embeddings.ndim == 3 else text_embeddings.float()[:, None]
    heads.image_mean.copy_(X.mean(0))
    opt = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    N, losses = X.shape[0], []
    for _epoch in tqdm(range(config.epochs), desc="LiT heads", disable=not progress, leave=False):
        order = torch.randperm(N, generator=g)
        view = torch.randint(T.shape[1], (N,), generator=g)
        total = 0.0
        for i in range(0, N, config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:
                continue
            loss = info_nce(heads.image(X[idx]), heads.text(T[idx, view[idx]]), heads.inv_temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / N)
    logger.info("LiT heads: InfoNCE %.3f → %.3f over %d epochs", losses[0], losses[-1], config.epochs)
    heads.requires_grad_(False)
    return heads.eval(), losses
