"""The planner-conditioned LM: codebook + planner + action-conditioned causal LM, saved as one folder.

Example:
    >>> # lm = fuse.load("bundled:smollm2-135m")
    >>> # model = PlannerLM.build(lm, codebook, mode="soft", n_layers=4)
    >>> # nll, ce, scores = model.losses(batch)
    >>> # model.save("run/"); PlannerLM.load("run/", lm)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from fuse._version import __version__
from fuse.planner.actions import ActionCodebook
from fuse.planner.conditioning import ActionConditionedLM
from fuse.planner.data import Batch
from fuse.planner.modes import action_weights, check_mode, uses_planner
from fuse.planner.planner import Planner, PlannerConfig

logger = logging.getLogger(__name__)

MODEL_JSON = "planner_lm_config.json"
MODEL_TENSORS = "planner_lm.safetensors"


@dataclass
class Losses:
    """Per-batch losses.

    Attributes:
        nll: LM negative log-likelihood summed over predicted tokens (scalar).
        tokens: number of predicted tokens.
        ce: planner cross-entropy averaged over sentences (scalar; 0 when the planner is unused).
        sentences: sentences it was averaged over.
        correct: planner argmax hits on the window's own sentences.
        scored: the window's own sentences.
    """

    nll: torch.Tensor
    tokens: int
    ce: torch.Tensor
    sentences: int
    correct: int
    scored: int


class PlannerLM(nn.Module):
    """Codebook ``C (K, D)``, planner, and a causal LM conditioned on ``w @ C``.

    Args:
        conditioned: the :class:`ActionConditionedLM` (holds the frozen backbone).
        planner: the :class:`Planner`.
        codebook: the :class:`ActionCodebook`.
        mode: conditioning mode (see :mod:`fuse.planner.modes`).
        tau: softmax temperature.
        fixed_action: action id for the ``fixed`` mode.
    """

    def __init__(self, conditioned: ActionConditionedLM, planner: Planner, codebook: ActionCodebook, *,
                 mode: str = "soft", tau: float = 1.0, fixed_action: int = 0):
        super().__init__()
        check_mode(mode)
        if planner.config.n_actions != codebook.k or planner.config.embed_dim != codebook.dim:
            raise ValueError(f"planner (K={planner.config.n_actions}, D={planner.config.embed_dim}) does not match the "
                             f"codebook (K={codebook.k}, D={codebook.dim})")
        if conditioned.action_dim != codebook.dim:
            raise ValueError(f"conditioned LM takes {conditioned.action_dim}-dim actions, the codebook has {codebook.dim}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.conditioned = conditioned
        self.planner = planner
        self.codebook = codebook
        self.register_buffer("centroids", codebook.centroids.clone(), persistent=False)
        self.mode, self.tau, self.fixed_action = mode, float(tau), int(fixed_action)

    @classmethod
    def build(cls, backbone, codebook: ActionCodebook, *, mode: str = "soft", tau: float = 1.0, fixed_action: int = 0,
              n_layers: int = 4, planner_config: PlannerConfig | None = None, lora_rank: int = 0, seed: int = 0) -> "PlannerLM":
        """A fresh model (projections and planner initialised from ``seed``)."""
        torch.manual_seed(seed)
        pc = planner_config or PlannerConfig(embed_dim=codebook.dim, n_actions=codebook.k)
        planner = Planner(pc).to(backbone.device)
        cond = ActionConditionedLM(backbone, codebook.dim, n_layers=n_layers, lora_rank=lora_rank, seed=seed)
        return cls(cond, planner, codebook, mode=mode, tau=tau, fixed_action=fixed_action)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Projections (+ LoRA), and the planner when the mode uses it."""
        params = list(self.conditioned.proj.parameters()) + list(self.conditioned.lora_parameters().values())
        if uses_planner(self.mode):
            params += list(self.planner.parameters())
        return params

    def action_vectors(self, batch: Batch, *, training: bool = False, oracle_share: float = 0.0,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token action vectors ``(B, L, D)`` and the planner scores ``(B, S, K)`` (or None)."""
        dev = self.centroids.device
        labels = batch.labels.to(dev)
        scores = None
        if uses_planner(self.mode):
            scores = self.planner(batch.sentence_embeddings.to(dev), batch.sentence_mask.to(dev))
        w = action_weights(scores, labels, self.mode, tau=self.tau, training=training, oracle_share=oracle_share,
                           fixed_action=self.fixed_action, n_actions=self.codebook.k, generator=generator)
        sent_actions = w @ self.centroids.to(w.dtype)                          # (B, S, D)
        idx = batch.token_sentence.to(dev).unsqueeze(-1).expand(-1, -1, sent_actions.shape[-1])
        return sent_actions.gather(1, idx), scores                              # (B, L, D)

    def losses(self, batch: Batch, *, training: bool = False, oracle_share: float = 0.0,
               generator: torch.Generator | None = None, vocab: torch.Tensor | None = None) -> Losses:
        """LM NLL (summed), planner CE (mean) and planner accuracy counts for one batch.

        ``vocab`` restricts the LM softmax to those token ids (a training surrogate, see
        :meth:`ActionConditionedLM.token_nll`)."""
        dev = self.centroids.device
        actions, scores = self.action_vectors(batch, training=training, oracle_share=oracle_share, generator=generator)
        ids, mask = batch.input_ids.to(dev), batch.attention_mask.to(dev)
        if batch.hidden is not None:
            tok = self.conditioned.token_nll(ids, mask, actions, vocab=vocab, inputs_embeds=batch.hidden.to(dev),
                                             start_layer=self.conditioned.layer_ids[0])
        else:
            tok = self.conditioned.token_nll(ids, mask, actions, vocab=vocab)
        n_tok = int(mask[:, 1:].sum())
        valid = batch.sentence_mask.to(dev) & (batch.labels.to(dev) >= 0)
        if scores is None:
            zero = torch.zeros((), device=dev)
            return Losses(tok.sum(), n_tok, zero, 0, 0, 0)
        labels = batch.labels.to(dev)
        ce = F.cross_entropy(scores[valid].float(), labels[valid]) if valid.any() else scores.sum() * 0
        target = batch.is_target.to(dev) & valid
        correct = int((scores.argmax(-1) == labels)[target].sum())
        return Losses(tok.sum(), n_tok, ce, int(valid.sum()), correct, int(target.sum()))

    # -- persistence -------------------------------------------------------------------------------
    def config(self) -> dict:
        c = self.conditioned
        return {"fuse_version": __version__, "mode": self.mode, "tau": self.tau, "fixed_action": self.fixed_action,
                "planner": self.planner.config.to_dict(), "layers": c.layer_ids, "action_dim": c.action_dim,
                "lora_rank": c.lora_rank, "backbone": c.backbone.name, "backbone_vocab_hash": c.backbone.vocab_hash,
                "codebook": self.codebook.config()}

    def save(self, directory: str | Path) -> Path:
        """Write ``planner_lm_config.json`` (sorted) and ``planner_lm.safetensors`` (planner, projections,
        LoRA, centroids); the backbone's own weights are not saved."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"planner.{k}": v for k, v in self.planner.state_dict().items()}
        tensors.update({f"proj.{k}": v for k, v in self.conditioned.proj.state_dict().items()})
        tensors.update({f"lora.{k}": v for k, v in self.conditioned.lora_parameters().items()})
        tensors["codebook.centroids"] = self.codebook.centroids
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        save_file(tensors, str(directory / MODEL_TENSORS), metadata={"format": "pt"})
        (directory / MODEL_JSON).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, backbone) -> "PlannerLM":
        """Rebuild a saved model on ``backbone`` (which must have the tokenizer it was trained with)."""
        directory = Path(directory)
        cfg_path, w_path = directory / MODEL_JSON, directory / MODEL_TENSORS
        if not cfg_path.is_file() or not w_path.is_file():
            raise ValueError(f"{directory} holds no planner LM: expected {MODEL_JSON} and {MODEL_TENSORS}")
        cfg = json.loads(cfg_path.read_text())
        if cfg["backbone_vocab_hash"] != backbone.vocab_hash:
            raise ValueError(f"{directory} was trained on {cfg['backbone']!r} whose tokenizer differs from {backbone.name!r}'s; "
                             "load it with the same backbone")
        t = load_file(str(w_path))
        cb = cfg["codebook"]
        codebook = ActionCodebook(t["codebook.centroids"], seed=cb["seed"], encoder=cb["encoder"], inertia=cb["inertia"],
                                  n_sentences=cb["n_sentences"], extra=cb.get("extra", {}))
        planner = Planner(PlannerConfig(**cfg["planner"])).to(backbone.device)
        planner.load_state_dict({k[8:]: v for k, v in t.items() if k.startswith("planner.")})
        cond = ActionConditionedLM(backbone, cfg["action_dim"], layers=cfg["layers"], lora_rank=cfg["lora_rank"])
        cond.proj.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("proj.")})
        lora = {k[5:]: v for k, v in t.items() if k.startswith("lora.")}
        if lora:
            params = dict(cond.model.named_parameters())
            with torch.no_grad():
                for k, v in lora.items():
                    params[k].copy_(v)
        return cls(cond, planner, codebook, mode=cfg["mode"], tau=cfg["tau"], fixed_action=cfg["fixed_action"])
