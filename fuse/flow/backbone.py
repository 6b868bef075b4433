"""A frozen text-conditioned CaLMFlow as a backbone of the chain.

It exposes what every fuse backbone does (``.tokenizer``, ``.embeddings`` (V×H, what
``inputs_embeds`` expects), ``.embed``, ``.name``, ``.dim``) and two differentiable losses from
prompt embeddings: the MMD² of the model's samples to a target sample set (reparameterised
sampling keeps it differentiable) and the training loss of target trajectories (the negative
log-likelihood for the Gaussian head, MSE + β·KL for the paper's VAE head).

Example:
    >>> bb = FlowBackbone.from_pretrained("ckpt")                    # doctest: +SKIP
    >>> e = bb.embed(bb.encode("two moons")["input_ids"])            # doctest: +SKIP
    >>> bb.mmd_loss(e, target, n=256, seed=0).backward()             # doctest: +SKIP
"""

from __future__ import annotations

import torch

from fuse.models.backbones.base import Backbone
from fuse.objectives import Objective
from fuse.flow.metrics import GAMMAS, mmd2
from fuse.flow.model import CaLMFlow
from fuse.flow.paths import straight_paths


class FlowBackbone(Backbone):
    """A frozen text-conditioned :class:`CaLMFlow` seen through its prompt embeddings.

    Args:
        model: the CaLMFlow. A model that fuse loads itself is frozen with ``requires_grad_(False)``;
            a model passed in is left as it is.
        name: a display name.
    """

    kind = "flow"

    def __init__(self, model: CaLMFlow, name: str | None = None):
        if not model.config.conditional or model.tokenizer is None:
            raise ValueError("FlowBackbone needs a text-conditioned CaLMFlow (max_prompt_tokens > 0, with a tokenizer)")
        super().__init__(model, model.tokenizer, name or "calmflow")

    @classmethod
    def from_pretrained(cls, folder, *, device=None) -> "FlowBackbone":
        model = CaLMFlow.from_pretrained(folder, device=device).eval()
        model.requires_grad_(False)
        return cls(model, name=str(folder))

    def encode(self, text, **kwargs):
        """Tokenize prompts (no special tokens: the flow model was trained without them)."""
        kwargs.setdefault("add_special_tokens", False)
        return super().encode(text, **kwargs)

    def source(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, D)`` draws of the model's x_0 distribution."""
        from fuse.flow.data import Task

        return Task.from_dict(self.model.config.task).sample_source(n, torch.Generator().manual_seed(seed)).to(self.device)

    def samples(self, inputs_embeds: torch.Tensor, *, n: int = 256, seed: int = 0, temperature: float | None = None,
                x_0: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable samples ``(n, D)`` for one prompt ``inputs_embeds (1, L, H)`` (left-padded to P)."""
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[0] != 1:
            raise ValueError(f"inputs_embeds must be one prompt (1, L, {self.dim}), got {tuple(inputs_embeds.shape)}")
        M = self.model.config.n_traj
        if n % M:
            raise ValueError(f"n={n} must be a multiple of n_traj={M}")
        x_0 = self.source(n, seed) if x_0 is None else self.model.check_states(x_0, "x_0")
        g = torch.Generator().manual_seed(seed + 1)
        out = self.model.generate(x_0.reshape(n // M, M, -1), inputs_embeds, temperature=temperature, generator=g)
        return out.reshape(n, -1)

    def mmd_loss(self, inputs_embeds: torch.Tensor, target: torch.Tensor, *, n: int = 256, seed: int = 0,
                 gammas=GAMMAS, temperature: float | None = None) -> torch.Tensor:
        """Mean over γ of MMD²(samples(prompt), target): a scalar, differentiable in ``inputs_embeds``."""
        target = self.model.check_states(target, "target")
        return mmd2(self.samples(inputs_embeds, n=n, seed=seed, temperature=temperature), target, gammas).mean()

    def path_loss(self, inputs_embeds: torch.Tensor, target: torch.Tensor, *, n: int = 256, seed: int = 0) -> torch.Tensor:
        """Training loss of straight paths from x_0 draws to ``target`` points (NLL for the Gaussian head)."""
        c = self.model.config
        target = self.model.check_states(target, "target")
        M = c.n_traj
        n = (min(n, target.shape[0]) // M) * M
        if n == 0:
            raise ValueError(f"need at least n_traj={M} target points")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(target.shape[0], generator=g)[:n]
        x_1 = target[idx].reshape(n // M, M, -1)
        x_0 = self.source(n, seed).reshape(n // M, M, -1)
        paths = straight_paths(x_0, x_1, c.n_times, noise=c.path_noise, generator=g)
        return self.model.loss(paths, inputs_embeds, generator=g).loss

    def loss(self, inputs_embeds: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """The default chain loss: :meth:`mmd_loss`."""
        return self.mmd_loss(inputs_embeds, target, **kwargs)


class FlowMMD(Objective):
    """A chain objective: MMD² of a frozen flow model's
    samples, prompted by ``inputs_embeds``, to a fixed target sample set. Lower is better.

    Every candidate is scored with the same x_0 draws and noise (``seed``): common random numbers
    make candidates comparable with few samples.

    Args:
        backbone: a :class:`FlowBackbone`.
        target: ``(m, D)`` target samples.
        n: samples drawn per prompt (a multiple of ``n_traj``).
        seed: seeds x_0 and the sampling noise.
    """

    name = "flow_mmd"

    def __init__(self, backbone: FlowBackbone, target: torch.Tensor, *, n: int = 256, seed: int = 0,
                 temperature: float | None = None):
        self.backbone = backbone
        self.target = backbone.model.check_states(target, "target")
        self.n, self.seed, self.temperature = n, seed, temperature

    def loss(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             state=None) -> torch.Tensor:
        """``(B,)`` MMD² for prompt embeddings ``(B, L, H)`` (masked positions dropped, longest tail kept)."""
        P = self.backbone.model.config.max_prompt_tokens
        out = []
        for b in range(inputs_embeds.shape[0]):
            e = inputs_embeds[b]
            if attention_mask is not None:
                e = e[attention_mask[b].bool()]
            if e.shape[0] == 0:
                raise ValueError("an empty prompt cannot condition the flow model")
            e = e[-P:]  # a prompt longer than the model's prompt window keeps its last P tokens
            out.append(self.backbone.mmd_loss(e[None], self.target, n=self.n, seed=self.seed, temperature=self.temperature))
        return torch.stack(out)

    def loss_texts(self, texts: list[str]) -> torch.Tensor:
        """Exact ``(B,)`` loss of texts under the flow model's own tokenization (unknown words → ``[UNK]``)."""
        losses = []
        for t in texts:
            ids = self.backbone.encode(t)["input_ids"]
            losses.append(self.loss(self.backbone.embed(ids), ids)[0])
        return torch.stack(losses)

    def __repr__(self) -> str:
        return f"FlowMMD({self.backbone.name!r}, n={self.n})"
