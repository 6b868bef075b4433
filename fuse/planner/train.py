"""Joint training of the planner and the action-conditioned LM, and validation perplexity.

The loss per step is ``NLL_LM / tokens + ce_weight · CE_planner``. The LM term reaches the planner
only in the soft, straight-through and Gumbel modes; in the hard mode the planner learns from the
cross-entropy alone. Batches are drawn from a permutation seeded by ``(seed, epoch)``.

Example:
    >>> # model = PlannerLM.build(lm, codebook, mode="soft")
    >>> # result = train(model, train_data, TrainConfig(steps=200, batch_size=8, seed=0), val_data=val_data)
    >>> # result.val.perplexity, result.val.action_accuracy
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fuse._version import __version__
from fuse.planner.data import PlannerData
from fuse.planner.model import PlannerLM
from fuse.planner.modes import MixSchedule, uses_planner

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        steps: optimizer steps.
        batch_size: windows per step.
        lr: AdamW learning rate (projections, LoRA and planner), constant after ``warmup``.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        ce_weight: weight of the planner's cross-entropy on the k-means labels.
        mix: oracle-share schedule (predicted modes only).
        grad_clip: gradient-norm clip.
        seed: seeds batches and Gumbel noise.
        eval_batch_size: windows per validation batch.
        checkpoint_every: save to ``checkpoint_dir`` every this many steps (0: only at the end).
        progress: show tqdm bars.
        restrict_vocab: train with the LM softmax restricted to the token ids that occur in the
            training windows (much cheaper for large vocabularies; validation always uses the
            full softmax).
    """

    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 10
    weight_decay: float = 0.0
    ce_weight: float = 1.0
    mix: MixSchedule = field(default_factory=MixSchedule)
    grad_clip: float = 1.0
    seed: int = 0
    eval_batch_size: int = 8
    checkpoint_every: int = 0
    progress: bool = False
    restrict_vocab: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.ce_weight < 0:
            raise ValueError(f"TrainConfig.ce_weight must be >= 0, got {self.ce_weight}")
        if isinstance(self.mix, dict):
            self.mix = MixSchedule(**self.mix)


@dataclass
class EvalResult:
    """Validation figures.

    Attributes:
        perplexity: ``exp(total NLL / tokens)``.
        nll: mean NLL per predicted token (nats).
        tokens: predicted tokens.
        action_accuracy: planner top-1 accuracy on the windows' sentences (NaN when unused).
        sentences: sentences scored.
    """

    perplexity: float
    nll: float
    tokens: int
    action_accuracy: float
    sentences: int


@dataclass
class TrainResult:
    """Outcome of :func:`train`: losses per step, wall time, and validation figures (if asked)."""

    mode: str
    steps: int
    seconds: float
    loss_history: list[float]
    nll_history: list[float]
    val: EvalResult | None = None
    val_before: EvalResult | None = None


def _make_batches(n: int, batch_size: int, steps: int, seed: int):
    epoch = 0
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        for i in range(0, n, batch_size):
            if done >= steps:
                return
            chunk = perm[i:i + batch_size]
            if len(chunk) < batch_size and n >= batch_size:
                break  # drop the ragged tail: every step sees the same number of windows
            yield chunk
            done += 1
        epoch += 1


def evaluate(model: PlannerLM, data: PlannerData, *, batch_size: int = 8, progress: bool = False) -> EvalResult:
    """Validation perplexity and planner accuracy (no Gumbel noise, no oracle mix)."""
    if len(data) == 0:
        raise ValueError("no validation windows: the validation corpus is empty")
    was = model.training
    model.eval()
    nll, tokens, correct, scored = 0.0, 0, 0, 0
    max_s = model.planner.config.max_sentences
    with torch.no_grad():
        for i in tqdm(range(0, len(data), batch_size), desc=f"eval {model.mode}", disable=not progress):
            batch = data.collate(list(range(i, min(i + batch_size, len(data)))), max_sentences=max_s)
            out = model.losses(batch)
            nll += float(out.nll)
            tokens += out.tokens
            correct += out.correct
            scored += out.scored
    model.train(was)
    acc = correct / scored if (scored and uses_planner(model.mode)) else float("nan")
    mean = nll / max(tokens, 1)
    return EvalResult(perplexity=math.exp(mean), nll=mean, tokens=tokens, action_accuracy=acc, sentences=scored)


def train(model: PlannerLM, data: PlannerData, config: TrainConfig, *, val_data: PlannerData | None = None,
          checkpoint_dir: str | Path | None = None, evaluate_before: bool = False) -> TrainResult:
    """Train the projections (and planner, LoRA) of ``model`` on ``data``.

    Args:
        model: the :class:`PlannerLM` (its mode decides what is trained and how actions flow).
        data: training windows (use :meth:`PlannerData.cache_hidden` to skip the frozen lower blocks).
        config: hyper-parameters.
        val_data: validation windows, evaluated at the end.
        checkpoint_dir: where to save the model and ``train_config.json``.
        evaluate_before: also evaluate before the first step.

    Returns:
        a :class:`TrainResult`.
    """
    if len(data) == 0:
        raise ValueError("no training windows: the training corpus is empty")
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup)))
    gen = torch.Generator().manual_seed(config.seed)
    before = evaluate(model, val_data, batch_size=config.eval_batch_size) if (evaluate_before and val_data) else None
    max_s = model.planner.config.max_sentences
    vocab = None
    if config.restrict_vocab:
        vocab = torch.unique(torch.cat([w.input_ids for w in data.windows])).to(model.centroids.device)
        logger.info("training softmax restricted to %d token ids seen in the training windows", len(vocab))
    losses, nlls = [], []
    model.train()
    # the frozen LM stays in eval mode (no dropout), only the planner trains stochastically
    model.conditioned.model.eval()
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, desc=f"train {model.mode}", disable=not config.progress)
    for step, idx in enumerate(_make_batches(len(data), config.batch_size, config.steps, config.seed)):
        batch = data.collate(idx, max_sentences=max_s)
        out = model.losses(batch, training=True, oracle_share=config.mix(step), generator=gen, vocab=vocab)
        nll = out.nll / max(out.tokens, 1)
        loss = nll + config.ce_weight * out.ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        nlls.append(float(nll.detach()))
        bar.update(1)
        bar.set_postfix(nll=f"{nlls[-1]:.3f}")
        if checkpoint_dir and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            _checkpoint(model, config, checkpoint_dir, step + 1)
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if checkpoint_dir:
        _checkpoint(model, config, checkpoint_dir, len(losses))
    val = evaluate(model, val_data, batch_size=config.eval_batch_size) if val_data is not None else None
    logger.info("mode %s: %d steps in %.1f s%s", model.mode, len(losses), seconds,
                f", val ppl {val.perplexity:.3f}" if val else "")
    return TrainResult(model.mode, len(losses), seconds, losses, nlls, val, before)


def _checkpoint(model: PlannerLM, config: TrainConfig, directory, step: int) -> None:
    directory = Path(directory)
    model.save(directory)
    cfg = asdict(config)
    cfg.update(step=step, fuse_version=__version__)
    (directory / "train_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
