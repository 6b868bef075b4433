"""CaLMFlow: flow matching as a Volterra integral equation, solved autoregressively by a causal LM.

A path x_{t_0}, …, x_{t_{N−1}} (t_i = i/(N−1)) from x_0 ~ source to x_1 ~ target is written as
tokens: each state becomes ``space_dim`` embeddings (a linear/MLP spatial encoder plus learned
time and space-slot embeddings), ``n_traj`` trajectories are interleaved time-major in one
context, and an optional text prompt (embedded by the LM's own token embedding, left-padded to
``max_prompt_tokens`` with the pad embedding) is prepended. The LM runs on ``inputs_embeds``; the
hidden states of the S tokens of x_{t_i} feed a head that predicts x_{t_{i+1}}
(z(t_{i+1}) = z(t_i) + Δ, the discretised z(t) = z(0) + ∫₀ᵗ G(z(s), t, s) ds).

Example:
    >>> import torch
    >>> from fuse.flow import CaLMFlow, CaLMFlowConfig
    >>> model = CaLMFlow(CaLMFlowConfig(dim=2, hidden_size=32, n_layers=1, n_heads=2, n_times=4))
    >>> x = torch.randn(3, 4, 4, 2)            # (B, M, N, D) paths
    >>> model.loss(x, generator=torch.Generator().manual_seed(0)).loss.shape
    torch.Size([])
    >>> model.sample(torch.randn(8, 2), seed=0).shape
    torch.Size([8, 2])
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fuse.flow.config import CONFIG_NAME, CaLMFlowConfig
from fuse.flow.text import check_known
from fuse.flow.tokenizer import GaussianHead, SpatialEncoder, VariationalHead

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
LM_CONFIG_NAME = "lm_config.json"
TOKENIZER_NAME = "tokenizer.json"


@dataclass
class FlowLoss:
    """Training loss of one batch (scalars).

    Attributes:
        loss: total = ``recon + beta * kl`` (VAE head) or ``nll`` (Gaussian head).
        recon: MSE of the predicted next state, per coordinate.
        kl: KL(N(μ, σ²) ‖ N(0, I)) per latent coordinate (0 for the Gaussian head).
        nll: Gaussian NLL per coordinate (Gaussian head; MSE-based surrogate for the VAE head).
    """

    loss: torch.Tensor = field(metadata={"help": "scalar"})
    recon: torch.Tensor
    kl: torch.Tensor
    nll: torch.Tensor


def build_lm(config: CaLMFlowConfig):
    """A random-init causal LM from ``config`` (GPT-2 or Llama), or the pretrained ``config.backbone``."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    if config.backbone:
        return AutoModelForCausalLM.from_pretrained(config.backbone, dtype=torch.float32)
    n_pos = max(64, config.context_length)
    if config.arch == "gpt2":
        cfg = GPT2Config(vocab_size=config.vocab_size, n_positions=n_pos, n_embd=config.hidden_size,
                         n_layer=config.n_layers, n_head=config.n_heads, resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    else:
        cfg = LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                          intermediate_size=4 * config.hidden_size, num_hidden_layers=config.n_layers,
                          num_attention_heads=config.n_heads, num_key_value_heads=config.n_heads,
                          max_position_embeddings=n_pos, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return AutoModelForCausalLM.from_config(cfg)


def _lm_from_config_json(path: Path):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_dict(json.loads(path.read_text())) if hasattr(AutoConfig, "from_dict") else None
    if cfg is None:  # pragma: no cover
        raw = json.loads(path.read_text())
        cfg = AutoConfig.for_model(raw.pop("model_type"), **raw)
    return AutoModelForCausalLM.from_config(cfg)


class CaLMFlow(nn.Module):
    """A causal LM that generates flow-matching trajectories (optionally text-conditioned).

    Args:
        config: the hyper-parameters.
        tokenizer: a fast tokenizer for prompts (required when ``config.max_prompt_tokens > 0``).
        lm: a causal LM to use instead of building one from ``config`` (it is used as given).
    """

    def __init__(self, config: CaLMFlowConfig, tokenizer=None, lm=None):
        super().__init__()
        if config.conditional and tokenizer is None:
            raise ValueError("a text-conditioned CaLMFlow (max_prompt_tokens > 0) needs a tokenizer; "
                             "build one with fuse.flow.text.build_prompt_tokenizer(prompts)")
        self.config = config
        self.tokenizer = tokenizer
        self.lm = lm if lm is not None else build_lm(config)
        if tokenizer is not None and len(tokenizer) > self.lm.get_input_embeddings().weight.shape[0]:
            raise ValueError(f"the prompt tokenizer has {len(tokenizer)} tokens but the LM only "
                             f"{self.lm.get_input_embeddings().weight.shape[0]} embedding rows; set vocab_size=len(tokenizer)")
        H = self.lm.config.hidden_size
        S, D = config.space_dim, config.dim
        self.encoder = SpatialEncoder(D, S, H, config.encoder)
        self.time_emb = nn.Embedding(config.n_times, H)
        self.space_emb = nn.Embedding(S, H)
        nn.init.normal_(self.time_emb.weight, std=0.02)
        nn.init.normal_(self.space_emb.weight, std=0.02)
        if config.head == "vae":
            self.head = VariationalHead(S * H, config.latent_dim, D)
        else:
            self.head = GaussianHead(S * H, D)
        max_pos = getattr(self.lm.config, "n_positions", None) or getattr(self.lm.config, "max_position_embeddings", None)
        if max_pos is not None and config.context_length > max_pos:
            raise ValueError(f"context of {config.context_length} tokens exceeds the LM's {max_pos} positions; "
                             "lower n_traj, n_times, space_dim or max_prompt_tokens")

    # -- properties --------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.lm.config.hidden_size

    @property
    def noise_dim(self) -> int:
        return self.config.latent_dim if self.config.head == "vae" else self.config.dim

    def get_input_embeddings(self) -> nn.Module:
        """The LM's token embedding: prompts are embedded by it."""
        return self.lm.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.time_emb.weight.device

    # -- inputs --------------------------------------------------------------------------------
    def check_states(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate a float tensor whose last axis is the state dimension."""
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
        if x.ndim < 1 or x.shape[-1] != self.config.dim:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but this model's states are {self.config.dim}-dimensional "
                             f"(last axis must be {self.config.dim})")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf values; drop or impute them first")
        return x.to(self.device, torch.float32)

    def prompt_ids(self, prompts: list[str], *, allow_unknown: bool = False) -> torch.Tensor:
        """Left-padded prompt ids ``(B, P)`` with ``P = max_prompt_tokens``."""
        if not self.config.conditional:
            raise ValueError("this CaLMFlow is unconditional (max_prompt_tokens=0): call it without a prompt")
        P = self.config.max_prompt_tokens
        rows = []
        for p in prompts:
            ids = (self.tokenizer(p, add_special_tokens=False)["input_ids"] if allow_unknown else check_known(self.tokenizer, p))
            if not ids:
                raise ValueError(f"prompt {p!r} tokenizes to nothing")
            if len(ids) > P:
                raise ValueError(f"prompt {p!r} has {len(ids)} tokens, more than max_prompt_tokens={P}; shorten it")
            rows.append([self.tokenizer.pad_token_id] * (P - len(ids)) + list(ids))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def embed_prompts(self, prompts: list[str] | str, *, allow_unknown: bool = False) -> torch.Tensor:
        """Prompt embeddings ``(B, P, H)`` from the LM's own token embedding (left-padded)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        return self.get_input_embeddings()(self.prompt_ids(prompts, allow_unknown=allow_unknown))

    def pad_prompt_embeds(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Left-pad ``(B, L, H)`` prompt embeddings to ``(B, P, H)`` with the pad token's embedding."""
        P = self.config.max_prompt_tokens
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != self.hidden_size:
            raise ValueError(f"prompt embeddings must be (B, L, {self.hidden_size}), got {tuple(prompt_embeds.shape)}")
        L = prompt_embeds.shape[1]
        if L > P:
            raise ValueError(f"prompt of {L} tokens exceeds max_prompt_tokens={P}")
        if L == P:
            return prompt_embeds
        pad_id = self.tokenizer.pad_token_id if self.tokenizer is not None else 0
        pad = self.get_input_embeddings().weight[pad_id].to(prompt_embeds.dtype)
        return torch.cat([pad.expand(prompt_embeds.shape[0], P - L, -1), prompt_embeds], 1)

    def _prompt(self, batch: int, prompt_embeds: torch.Tensor | None) -> torch.Tensor | None:
        if not self.config.conditional:
            if prompt_embeds is not None:
                raise ValueError("this CaLMFlow is unconditional (max_prompt_tokens=0): it takes no prompt")
            return None
        if prompt_embeds is None:
            raise ValueError("this CaLMFlow is text-conditioned: pass a prompt (or prompt_embeds)")
        prompt_embeds = self.pad_prompt_embeds(prompt_embeds)
        if prompt_embeds.shape[0] == 1 and batch > 1:
            prompt_embeds = prompt_embeds.expand(batch, -1, -1)
        if prompt_embeds.shape[0] != batch:
            raise ValueError(f"{prompt_embeds.shape[0]} prompts for {batch} contexts; pass one prompt or one per context")
        return prompt_embeds

    # -- tokens ----------------------------------------------------------------------------------
    def embed_states(self, x: torch.Tensor, time_index: int | None = None) -> torch.Tensor:
        """Token embeddings of states.

        Args:
            x: ``(B, M, N, D)`` whole paths, or ``(B, M, D)`` the states at one time (``time_index``).

        Returns:
            ``(B, N·M·S, H)`` (time-major, then trajectory, then space slot) or ``(B, M·S, H)``.
        """
        e = self.encoder(x) + self.space_emb.weight  # (..., S, H)
        if time_index is None:
            e = e + self.time_emb.weight[: x.shape[2], None]
            B, M, N, S, H = e.shape
            return e.permute(0, 2, 1, 3, 4).reshape(B, N * M * S, H)
        e = e + self.time_emb.weight[time_index]
        B, M, S, H = e.shape
        return e.reshape(B, M * S, H)

    def hidden_states(self, embeds: torch.Tensor, past=None):
        """The LM's last hidden states over token embeddings, continuing a KV cache when one is given.

        Args:
            embeds: ``(B, L, H)`` token embeddings (prompt and/or :meth:`embed_states`).
            past: a ``transformers`` cache to continue (``DynamicCache()`` to start one), or ``None``.

        Returns:
            ``(h (B, L, H), cache)``: the last hidden states of the ``L`` new tokens and the updated cache
            (``None`` without ``past``). Differentiable in ``embeds`` and the parameters.
        """
        out = self.lm.base_model(inputs_embeds=embeds, past_key_values=past, use_cache=past is not None)
        return out.last_hidden_state, getattr(out, "past_key_values", None)

    # -- training ----------------------------------------------------------------------------------
    def loss(self, paths: torch.Tensor, prompt_embeds: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> FlowLoss:
        """Teacher-forced loss on paths ``(B, M, N, D)`` (M = ``n_traj``, N = ``n_times``).

        Args:
            paths: the states x_{t_i} of M trajectories per context.
            prompt_embeds: ``(B, L, H)`` or ``(1, L, H)`` prompt embeddings (conditional models).
            generator: seeds the reparameterisation noise ε.
        """
        paths = self.check_states(paths, "paths")
        c = self.config
        if paths.ndim != 4 or paths.shape[1] != c.n_traj or paths.shape[2] != c.n_times:
            raise ValueError(f"paths must be (B, n_traj={c.n_traj}, n_times={c.n_times}, dim={c.dim}), got {tuple(paths.shape)}")
        B, M, N, D = paths.shape
        prompt = self._prompt(B, prompt_embeds)
        tokens = self.embed_states(paths)
        P = 0
        if prompt is not None:
            P = prompt.shape[1]
            tokens = torch.cat([prompt.to(tokens.dtype), tokens], 1)
        h, _ = self.hidden_states(tokens)
        h = h[:, P:].reshape(B, N, M, c.space_dim * self.hidden_size).transpose(1, 2)[:, :, :-1]  # (B, M, N-1, S·H)
        eps = torch.randn((*h.shape[:-1], self.noise_dim), generator=generator).to(h)
        target = paths[:, :, 1:] - paths[:, :, :-1]
        delta, mu, var = self.head(h, eps)
        recon = (delta - target).square().mean()
        if c.head == "vae":
            kl = VariationalHead.kl(mu, var).mean()
            return FlowLoss(recon + c.beta * kl, recon, kl, recon)
        nll = GaussianHead.nll(mu, var, target).mean()
        return FlowLoss(nll, recon, torch.zeros_like(nll), nll)

    # -- sampling -------------------------------------------------------------------------------
    def generate(self, x_0: torch.Tensor, prompt_embeds: torch.Tensor | None = None, *,
                 temperature: float | None = None, generator: torch.Generator | None = None,
                 return_paths: bool = False) -> torch.Tensor:
        """Differentiable autoregressive generation for one batch of contexts (KV-cached).

        Args:
            x_0: ``(B, M, D)`` starting states, M = ``n_traj`` per context.
            prompt_embeds: ``(B|1, L, H)`` prompt embeddings for conditional models.
            temperature: τ in z = μ + τσε (default ``config.temperature``).
            generator: seeds ε.
            return_paths: return the whole ``(B, M, N, D)`` paths instead of x_1.

        Returns:
            ``(B, M, D)`` generated x_1 (or the paths). Gradients flow to ``prompt_embeds`` and
            the parameters unless the caller disables them.
        """
        c = self.config
        tau = c.temperature if temperature is None else float(temperature)
        if tau < 0:
            raise ValueError(f"temperature must be >= 0, got {tau}")
        x_0 = self.check_states(x_0, "x_0")
        if x_0.ndim != 3 or x_0.shape[1] != c.n_traj:
            raise ValueError(f"x_0 must be (B, n_traj={c.n_traj}, {c.dim}) contexts, got {tuple(x_0.shape)}; "
                             "use sample() for a flat (n, dim) batch")
        B, M, _ = x_0.shape
        prompt = self._prompt(B, prompt_embeds)
        from transformers import DynamicCache

        cache = DynamicCache()
        x = x_0
        states = [x]
        tokens = self.embed_states(x, 0)
        if prompt is not None:
            tokens = torch.cat([prompt.to(tokens.dtype), tokens], 1)
        for i in range(c.n_times - 1):
            h, cache = self.hidden_states(tokens, cache)
            h = h[:, -M * c.space_dim:].reshape(B, M, c.space_dim * self.hidden_size)
            eps = torch.randn((B, M, self.noise_dim), generator=generator).to(h)
            delta, _, _ = self.head(h, eps, tau)
            x = x + delta
            states.append(x)
            if i < c.n_times - 2:
                tokens = self.embed_states(x, i + 1)
        return torch.stack(states, 2) if return_paths else x

    def sample(self, x_0: torch.Tensor, prompt: str | None = None, *, prompt_embeds: torch.Tensor | None = None,
               temperature: float | None = None, seed: int = 0, batch_size: int = 2048,
               progress: bool = False, allow_unknown: bool = False) -> torch.Tensor:
        """Generate x_1 for each of ``n`` starting points, without gradients.

        Args:
            x_0: ``(n, D)`` starting states (any n; grouped into contexts of ``n_traj``, the last
                context padded by repeating points).
            prompt: the text prompt (conditional models).
            prompt_embeds: ``(1, L, H)`` prompt embeddings instead of ``prompt``.
            temperature: τ (default ``config.temperature``).
            seed: seeds every random draw; the same seed gives the same samples.
            batch_size: trajectories per forward pass.
            progress: show a tqdm bar.

        Returns:
            ``(n, D)`` float32 samples on the model's device.
        """
        x_0 = self.check_states(x_0, "x_0")
        if x_0.ndim != 2:
            raise ValueError(f"x_0 must be (n, {self.config.dim}), got {tuple(x_0.shape)}")
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("pass prompt or prompt_embeds, not both")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        from tqdm.auto import tqdm

        M = self.config.n_traj
        n = x_0.shape[0]
        n_ctx = math.ceil(n / M)
        pad = n_ctx * M - n
        x = torch.cat([x_0, x_0[:pad]], 0) if pad else x_0
        while x.shape[0] < n_ctx * M:  # n < pad: repeat until full
            x = torch.cat([x, x_0], 0)[: n_ctx * M]
        x = x.reshape(n_ctx, M, -1)
        gen = torch.Generator().manual_seed(int(seed))
        ctx_per_batch = max(1, batch_size // M)
        with torch.no_grad():
            if prompt is not None:
                prompt_embeds = self.embed_prompts([prompt], allow_unknown=allow_unknown)
            out = []
            for start in tqdm(range(0, n_ctx, ctx_per_batch), disable=not progress, desc="sampling", unit="batch"):
                out.append(self.generate(x[start:start + ctx_per_batch], prompt_embeds, temperature=temperature, generator=gen))
        return torch.cat(out, 0).reshape(-1, self.config.dim)[:n]

    # -- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``flow_config.json``, ``lm_config.json``, ``model.safetensors`` (and ``tokenizer.json``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        (folder / LM_CONFIG_NAME).write_text(json.dumps(self.lm.config.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_NAME))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device=None) -> "CaLMFlow":
        """Load a model written by :meth:`save_pretrained` (no network, no pickle)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder; pass the directory written by CaLMFlow.save_pretrained")
        config = CaLMFlowConfig.load(folder)
        for name in (LM_CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise ValueError(f"{folder}: missing {name}; the checkpoint is incomplete")
        tokenizer = None
        if (folder / TOKENIZER_NAME).is_file():
            from tokenizers import Tokenizer
            from transformers import PreTrainedTokenizerFast

            from fuse.flow.text import PAD, UNK

            tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(folder / TOKENIZER_NAME)), pad_token=PAD, unk_token=UNK)
        lm = _lm_from_config_json(folder / LM_CONFIG_NAME)
        model = cls(config, tokenizer, lm)
        state = load_file(str(folder / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{folder}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.eval()
        return model.to(device) if device is not None else model
