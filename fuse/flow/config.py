"""The configuration of a :class:`~fuse.flow.model.CaLMFlow` model (a dataclass saved as sorted JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fuse._version import __version__

CONFIG_NAME = "flow_config.json"
ARCHS = ("gpt2", "llama")
ENCODERS = ("linear", "mlp")
HEADS = ("vae", "gaussian")


@dataclass
class CaLMFlowConfig:
    """Hyper-parameters of CaLMFlow.

    Attributes:
        dim: dimension D of a state x_t.
        space_dim: number of LM tokens each state is split into (spatial tokenization).
        n_times: number N of time points t_i = i/(N−1) on each path.
        n_traj: trajectories interleaved in one context (time-major: all trajectories at t_0,
            then all at t_1, ...).
        encoder: ``"linear"`` or ``"mlp"`` map from a state ``(D,)`` to ``space_dim`` token embeddings.
        head: ``"gaussian"`` (default) or ``"vae"`` (the paper's: z ~ N(μ, σ²), σ² = exp(f_σ(h)) + 1e-4, decoded to the next
            state; loss MSE + β·KL) or ``"gaussian"`` (μ, σ² of the next state itself; loss the
            Gaussian negative log-likelihood, which makes the model a likelihood model). The default
            Gaussian head with ``path_noise=1`` reached a 3× lower MMD than the VAE head with
            straight paths on 8 Gaussians → moons at the same budget (docs/flow.md).
        latent_dim: size of the variational latent z ~ N(μ, σ²) decoded to the next state.
        beta: weight of KL(N(μ, σ²) ‖ N(0, I)) in the loss.
        path_noise: σ_p of the optional Brownian-bridge noise on the paths (marginal std
            σ_p·sqrt(t(1−t)), zero at both ends), drawn sequentially so the path is Markov.
        temperature: default sampling temperature τ (z = μ + τσε).
        arch: random-init backbone family (``gpt2`` or ``llama``), ignored when ``backbone`` is set.
        hidden_size, n_layers, n_heads: size of the random-init backbone.
        backbone: a pretrained causal LM folder to start from instead of a random config.
        vocab_size: rows of the token embedding (set from the prompt tokenizer).
        max_prompt_tokens: prompts are left-padded (with the pad token's embedding) to this length;
            0 means the model is unconditional.
        task: the training task (``fuse.flow.data.Task.to_dict()``), so samplers know x_0's law.
        version: fuse version that wrote the config.
    """

    dim: int = 2
    space_dim: int = 2
    n_times: int = 16
    n_traj: int = 4
    encoder: str = "mlp"
    head: str = "gaussian"
    latent_dim: int = 8
    beta: float = 0.01
    path_noise: float = 1.0
    temperature: float = 1.0
    arch: str = "gpt2"
    hidden_size: int = 96
    n_layers: int = 3
    n_heads: int = 4
    backbone: str | None = None
    vocab_size: int = 8
    max_prompt_tokens: int = 0
    task: dict = field(default_factory=dict)
    version: str = __version__

    def __post_init__(self):
        for name in ("dim", "space_dim", "n_traj", "latent_dim", "hidden_size", "n_layers", "n_heads", "vocab_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"CaLMFlowConfig.{name} must be a positive int, got {v!r}")
        if not isinstance(self.n_times, int) or self.n_times < 2:
            raise ValueError(f"CaLMFlowConfig.n_times must be an int >= 2 (a path needs a start and an end), got {self.n_times!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"CaLMFlowConfig.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.head not in HEADS:
            raise ValueError(f"CaLMFlowConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"CaLMFlowConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by n_heads={self.n_heads}")
        for name in ("beta", "path_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"CaLMFlowConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.temperature <= 0:
            raise ValueError(f"CaLMFlowConfig.temperature must be > 0, got {self.temperature!r}")
        if self.max_prompt_tokens < 0:
            raise ValueError(f"CaLMFlowConfig.max_prompt_tokens must be >= 0, got {self.max_prompt_tokens!r}")

    @property
    def conditional(self) -> bool:
        return self.max_prompt_tokens > 0

    @property
    def context_length(self) -> int:
        """Tokens in one training context: prompt + N·M·S."""
        return self.max_prompt_tokens + self.n_times * self.n_traj * self.space_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = __version__
        return d

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "CaLMFlowConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"{folder}: no {CONFIG_NAME}; is this a folder written by CaLMFlow.save_pretrained?")
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}; written by a newer fuse?")
        return cls(**raw)
