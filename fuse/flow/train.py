"""Training CaLMFlow: seeded batches, a tqdm bar, safetensors checkpoints, exact resume.

Every batch is drawn from a generator seeded by ``(seed, step)``, so a run resumed from a
checkpoint sees the same batches as an uninterrupted one; the optimizer state is saved as
safetensors tensors plus JSON (never pickle).

Example:
    >>> from fuse.flow import CaLMFlow, CaLMFlowConfig, Task
    >>> from fuse.flow.train import TrainConfig, train
    >>> model = CaLMFlow(CaLMFlowConfig(hidden_size=32, n_layers=1, n_heads=2, n_times=4))
    >>> result = train(model, Task.parse("8gaussians-moons"), TrainConfig(steps=2, batch_size=4))
    >>> result.steps
    2
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fuse._version import __version__
from fuse.flow.data import Task
from fuse.flow.model import CaLMFlow
from fuse.flow.paths import straight_paths

logger = logging.getLogger(__name__)

STATE_JSON = "trainer_state.json"
STATE_TENSORS = "optimizer.safetensors"


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        steps: optimizer steps in total (a resumed run continues up to this number).
        batch_size: contexts per step (each holds ``n_traj`` trajectories).
        lr: AdamW learning rate (linear warm-up over ``warmup`` steps, then cosine to 10%).
        weight_decay: AdamW weight decay.
        warmup: warm-up steps.
        grad_clip: gradient-norm clip.
        seed: seeds the batches and the reparameterisation noise.
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
        max_seconds: stop early after this much wall-clock training time (equal-budget runs).
        prompt_augment: probability of inserting a random vocabulary word into a training prompt
            (text-conditioned models learn to ignore filler words).
    """

    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0
    max_seconds: float | None = None
    prompt_augment: float = 0.3

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.prompt_augment <= 1:
            raise ValueError(f"TrainConfig.prompt_augment must be in [0, 1], got {self.prompt_augment}")
        if self.checkpoint_every < 0:
            raise ValueError(f"TrainConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        steps: steps completed in total (including steps before a resume).
        seconds: wall-clock training seconds in total.
        losses: loss per step.
    """

    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + step) % (2**63))


def make_batch(model: CaLMFlow, task: Task, batch_size: int, generator: torch.Generator, *, prompt_augment: float = 0.0):
    """One training batch: paths ``(B, M, N, D)`` and prompt embeddings ``(B, P, H)`` or ``None``."""
    c = model.config
    B, M = batch_size, c.n_traj
    x_0 = task.sample_source(B * M, generator).reshape(B, M, -1)
    prompts = None
    if task.labels:
        labels = sorted(task.labels)
        which = torch.randint(0, len(labels), (B,), generator=generator)
        x_1 = torch.empty_like(x_0)
        prompts = []
        vocab = len(model.tokenizer)
        for b in range(B):
            lab = labels[int(which[b])]
            x_1[b] = task.sample_target(M, generator, label=lab)
            options = task.labels[lab]
            ids = list(model.tokenizer(options[int(torch.randint(0, len(options), (1,), generator=generator))], add_special_tokens=False)["input_ids"])
            if prompt_augment and float(torch.rand(1, generator=generator)) < prompt_augment and len(ids) < c.max_prompt_tokens:
                pos = int(torch.randint(0, len(ids) + 1, (1,), generator=generator))
                ids.insert(pos, int(torch.randint(2, vocab, (1,), generator=generator)))
            prompts.append(ids)
        P = c.max_prompt_tokens
        pad = model.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (P - len(r)) + r for r in prompts], device=model.device)
        prompts = model.get_input_embeddings()(ids)
    else:
        x_1 = task.sample_target(B * M, generator).reshape(B, M, -1)
    paths = straight_paths(x_0, x_1, c.n_times, noise=c.path_noise, generator=generator)
    return paths.to(model.device), prompts


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    import math

    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def save_checkpoint(folder: str | Path, model: CaLMFlow, opt: torch.optim.Optimizer, task: Task, cfg: TrainConfig, result: TrainResult) -> Path:
    """Model (``save_pretrained``) plus optimizer tensors (safetensors) and trainer state (JSON)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"state.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous().clone()
    save_file(tensors, str(folder / STATE_TENSORS), metadata={"format": "pt"})
    state = {"version": __version__, "task": task.to_dict(), "train_config": asdict(cfg), "steps": result.steps,
             "seconds": result.seconds, "losses": result.losses, "param_groups": sd["param_groups"]}
    (folder / STATE_JSON).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    logger.info("checkpoint at step %d -> %s", result.steps, folder)
    return folder


def _load_optimizer(folder: Path, opt: torch.optim.Optimizer, param_groups) -> None:
    tensors = load_file(str(folder / STATE_TENSORS))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": param_groups})


def train(model: CaLMFlow, task: Task, cfg: TrainConfig, *, out: str | Path | None = None, resume: bool = False,
          progress: bool = False) -> TrainResult:
    """Train ``model`` on ``task``.

    Args:
        model: the CaLMFlow to train (in place).
        task: source/target distributions (and labelled prompts for text conditioning).
        cfg: the hyper-parameters.
        out: checkpoint folder (written every ``checkpoint_every`` steps and at the end).
        resume: continue from the checkpoint in ``out`` (its weights, optimizer, step and losses).
        progress: show a tqdm bar.

    Returns:
        a :class:`TrainResult`.
    """
    from tqdm.auto import tqdm

    if task.dim != model.config.dim:
        raise ValueError(f"task {task.name!r} has {task.dim}-dimensional states but the model expects dim={model.config.dim}")
    if bool(task.labels) != model.config.conditional:
        raise ValueError(f"task {task.name!r} {'has' if task.labels else 'has no'} text labels but the model is "
                         f"{'text-conditioned' if model.config.conditional else 'unconditional'}; "
                         "set max_prompt_tokens > 0 exactly for text tasks")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult(0, 0.0, [])
    if resume:
        if out is None or not (Path(out) / STATE_JSON).is_file():
            raise ValueError(f"resume=True but {out} holds no checkpoint ({STATE_JSON}); train without resume first")
        folder = Path(out)
        state = json.loads((folder / STATE_JSON).read_text())
        loaded = CaLMFlow.from_pretrained(folder)
        model.load_state_dict(loaded.state_dict())
        _load_optimizer(folder, opt, state["param_groups"])
        result = TrainResult(int(state["steps"]), float(state["seconds"]), list(state["losses"]))
        logger.info("resumed from %s at step %d", folder, result.steps)
    model.train()
    start_time = time.perf_counter() - result.seconds
    bar = tqdm(total=cfg.steps, initial=result.steps, disable=not progress, desc="train CaLMFlow", unit="step")
    for step in range(result.steps, cfg.steps):
        if cfg.max_seconds is not None and time.perf_counter() - start_time >= cfg.max_seconds:
            logger.info("wall-clock budget of %.0f s reached at step %d", cfg.max_seconds, step)
            break
        g = _step_generator(cfg.seed, step)
        paths, prompts = make_batch(model, task, cfg.batch_size, g, prompt_augment=cfg.prompt_augment)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        out_loss = model.loss(paths, prompts, generator=g)
        opt.zero_grad(set_to_none=True)
        out_loss.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        result.losses.append(float(out_loss.loss.detach()))
        result.steps = step + 1
        result.seconds = time.perf_counter() - start_time
        bar.update(1)
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
        if out is not None and cfg.checkpoint_every and result.steps % cfg.checkpoint_every == 0:
            save_checkpoint(out, model, opt, task, cfg, result)
    bar.close()
    result.seconds = time.perf_counter() - start_time
    model.eval()
    if out is not None:
        save_checkpoint(out, model, opt, task, cfg, result)
    return result


def model_for_task(task: Task, *, seed: int = 0, **overrides) -> CaLMFlow:
    """A fresh CaLMFlow sized for ``task`` (text tasks get a prompt tokenizer and ``max_prompt_tokens=8``).

    Args:
        task: the task to train on.
        seed: seeds the random initialisation.
        **overrides: any :class:`~fuse.flow.config.CaLMFlowConfig` field.
    """
    from fuse.flow.config import CaLMFlowConfig
    from fuse.flow.text import build_prompt_tokenizer

    tokenizer = None
    kw = {"dim": task.dim, "space_dim": min(task.dim, 2) if task.dim <= 2 else 4, "task": task.to_dict()}
    if task.labels:
        from fuse.flow.data import HELDOUT_PROMPTS

        prompts = [p for ps in task.labels.values() for p in ps] + [p for ps in HELDOUT_PROMPTS.values() for p in ps]
        tokenizer = build_prompt_tokenizer(prompts)
        kw.update(vocab_size=len(tokenizer), max_prompt_tokens=8)
    kw.update(overrides)
    torch.manual_seed(seed)
    return CaLMFlow(CaLMFlowConfig(**kw), tokenizer)
