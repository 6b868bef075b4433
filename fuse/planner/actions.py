"""Writing actions: sentence embeddings clustered by seeded k-means into a codebook of centroids.

Every sentence of a corpus is embedded (by default with the bundled MiniLM, 384-dim, L2
normalised); k-means (scikit-learn, seeded) groups them into ``K`` abstract actions. The codebook
``C`` (K, D) holds the centroids; a sentence's action is its nearest centroid.

Example:
    >>> import torch
    >>> from fuse.planner.actions import ActionCodebook
    >>> emb = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    >>> book = ActionCodebook.fit(emb, k=4, seed=0)
    >>> book.centroids.shape, book.assign(emb).shape
    (torch.Size([4, 8]), torch.Size([40]))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fuse._version import __version__

logger = logging.getLogger(__name__)

CODEBOOK_JSON = "codebook_config.json"
CODEBOOK_TENSORS = "codebook.safetensors"


def embed_sentences(encoder, sentences: list[str], *, batch_size: int = 64, max_length: int = 128,
                    progress: bool = False) -> torch.Tensor:
    """Sentence embeddings ``(N, D)`` (float32, CPU) from an encoder backbone, in batches.

    Args:
        encoder: an :class:`~fuse.models.backbones.EncoderBackbone` (e.g. ``fuse.load("bundled:minilm-l6")``).
        sentences: the texts.
        batch_size: sentences per forward pass (bounds memory).
        max_length: tokens kept per sentence.
        progress: show a tqdm bar.

    Returns:
        the L2-normalised mean-pooled embeddings, shape ``(N, D)``. Computed without autograd
        (this is data preparation; call ``encoder.embed_text`` yourself for gradients).
    """
    if not hasattr(encoder, "sentence_embedding"):
        raise ValueError(f"encoder must be an EncoderBackbone (fuse.load('bundled:minilm-l6')), got {type(encoder).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(sentences), batch_size), desc="embed sentences", disable=not progress):
            batch = encoder.tokenizer(list(sentences[i:i + batch_size]), return_tensors="pt", padding=True,
                                      truncation=True, max_length=max_length).to(encoder.device)
            emb = encoder.sentence_embedding(encoder.embed(batch["input_ids"]), batch["attention_mask"])
            out.append(emb.float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


@dataclass
class ActionCodebook:
    """K writing actions as centroids in sentence-embedding space.

    Attributes:
        centroids: ``(K, D)`` float32 k-means centroids.
        seed: the k-means seed.
        encoder: name of the sentence encoder the centroids live in.
        inertia: k-means objective on the fitting sentences (sum of squared distances).
        n_sentences: how many sentences it was fitted on.
    """

    centroids: torch.Tensor
    seed: int = 0
    encoder: str = "bundled:minilm-l6"
    inertia: float = float("nan")
    n_sentences: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not torch.is_tensor(self.centroids) or self.centroids.ndim != 2 or self.centroids.shape[0] < 1:
            raise ValueError(f"centroids must be a (K, D) tensor with K >= 1, got {getattr(self.centroids, 'shape', self.centroids)}")
        self.centroids = self.centroids.float().contiguous()

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @classmethod
    def fit(cls, embeddings: torch.Tensor, k: int, *, seed: int = 0, n_init: int = 3, max_iter: int = 100,
            encoder: str = "bundled:minilm-l6") -> "ActionCodebook":
        """Seeded k-means on sentence embeddings.

        Args:
            embeddings: ``(N, D)`` sentence embeddings.
            k: number of actions ``K`` (must not exceed the number of distinct sentences).
            seed: k-means initialisation seed.
            n_init: k-means restarts (best inertia kept).
            max_iter: Lloyd iterations per restart.
            encoder: recorded name of the encoder.

        Raises:
            ValueError: no sentences, ``k < 1``, or ``k`` larger than the number of sentences.
        """
        from sklearn.cluster import KMeans

        if not torch.is_tensor(embeddings) or embeddings.ndim != 2:
            raise ValueError(f"embeddings must be a (N, D) tensor, got {getattr(embeddings, 'shape', type(embeddings))}")
        n = embeddings.shape[0]
        if n == 0:
            raise ValueError("no sentences to cluster: the corpus is empty (check the corpus path and that it holds full sentences)")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (the number of actions) must be a positive int, got {k!r}")
        if k > n:
            raise ValueError(f"k={k} actions but only {n} sentences: k-means needs at least one sentence per action. "
                             f"Use k <= {n} or a larger corpus.")
        x = embeddings.detach().double().cpu().numpy()
        km = KMeans(n_clusters=k, random_state=seed, n_init=n_init, max_iter=max_iter).fit(x)
        logger.info("k-means: %d sentences -> %d actions, inertia %.4g", n, k, km.inertia_)
        return cls(torch.from_numpy(km.cluster_centers_).float(), seed=seed, encoder=encoder,
                   inertia=float(km.inertia_), n_sentences=n)

    def assign(self, embeddings: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
        """Nearest-centroid action ids ``(N,)`` (long) for embeddings ``(N, D)``."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be (N, {self.dim}) to match the codebook, got {tuple(embeddings.shape)}")
        c = self.centroids.to(embeddings.device)
        out = [torch.cdist(embeddings[i:i + batch_size].float(), c).argmin(1) for i in range(0, embeddings.shape[0], batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def config(self) -> dict:
        return {"encoder": self.encoder, "fuse_version": __version__, "inertia": self.inertia, "k": self.k,
                "dim": self.dim, "n_sentences": self.n_sentences, "seed": self.seed, "extra": self.extra}

    def save(self, directory: str | Path) -> Path:
        """Write ``codebook_config.json`` (sorted, with the library version) and ``codebook.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"centroids": self.centroids.contiguous()}, str(directory / CODEBOOK_TENSORS), metadata={"format": "pt"})
        (directory / CODEBOOK_JSON).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "ActionCodebook":
        directory = Path(directory)
        cfg_path, w_path = directory / CODEBOOK_JSON, directory / CODEBOOK_TENSORS
        if not cfg_path.is_file() or not w_path.is_file():
            raise ValueError(f"{directory} holds no action codebook: expected {CODEBOOK_JSON} and {CODEBOOK_TENSORS}")
        cfg = json.loads(cfg_path.read_text())
        centroids = load_file(str(w_path))["centroids"]
        if tuple(centroids.shape) != (cfg["k"], cfg["dim"]):
            raise ValueError(f"{w_path}: centroids {tuple(centroids.shape)} disagree with the config (k={cfg['k']}, dim={cfg['dim']})")
        return cls(centroids, seed=cfg["seed"], encoder=cfg["encoder"], inertia=cfg["inertia"],
                   n_sentences=cfg["n_sentences"], extra=cfg.get("extra", {}))
