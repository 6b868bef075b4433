"""Drawing samples from a trained CaLMFlow, and a scatter/density plot of 2D samples."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fuse.flow.data import Task
from fuse.flow.model import CaLMFlow

logger = logging.getLogger(__name__)


def draw(model: CaLMFlow, n: int, *, prompt: str | None = None, seed: int = 0, temperature: float | None = None,
         batch_size: int = 2048, progress: bool = False, allow_unknown: bool = False) -> torch.Tensor:
    """``n`` samples ``(n, D)``: x_0 from the model's training source, pushed through the flow.

    Args:
        model: a trained CaLMFlow (its config records the task).
        n: number of samples.
        prompt: text prompt for text-conditioned models.
        seed: seeds x_0 and the sampling noise.
        temperature: τ (default the model's).
        batch_size: trajectories per forward pass.
        progress: show a tqdm bar.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not model.config.task:
        raise ValueError("the model's config records no task, so x_0's distribution is unknown; call model.sample(x_0) instead")
    task = Task.from_dict(model.config.task)
    x_0 = task.sample_source(n, torch.Generator().manual_seed(int(seed)))
    return model.sample(x_0, prompt, seed=int(seed) + 1, temperature=temperature, batch_size=batch_size,
                        progress=progress, allow_unknown=allow_unknown)


def scatter_png(samples, path: str | Path, *, reference=None, title: str = "") -> Path:
    """Scatter plot (and 2D histogram) of 2D samples ``(n, 2)``, optionally beside reference samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = torch.as_tensor(samples).detach().cpu().numpy()
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"scatter_png plots 2D samples (n, 2), got {samples.shape}")
    panels = 3 if reference is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4))
    lim = [[samples[:, 0].min(), samples[:, 0].max()], [samples[:, 1].min(), samples[:, 1].max()]]
    axes[0].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    axes[0].set_title(title or "samples")
    axes[1].hist2d(samples[:, 0], samples[:, 1], bins=100, range=lim, cmap="viridis")
    axes[1].set_title("density")
    if reference is not None:
        ref = torch.as_tensor(reference).detach().cpu().numpy()
        axes[2].scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.4, color="C1")
        axes[2].set_title("target")
    for ax in axes:
        ax.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
