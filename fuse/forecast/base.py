"""The forecaster interface: ``fit``, ``predict`` (quantiles and samples) and a differentiable ``loss``."""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from fuse.forecast.series import as_series

logger = logging.getLogger(__name__)

#: The quantile levels every forecaster reports (as Chronos, fracast and the CLI's ``q0.1 … q0.9``).
QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Forecast:
    """A probabilistic forecast of ``H`` future steps.

    Attributes:
        quantiles: array ``(H, Q)``, non-decreasing along ``Q`` (enforced on construction).
        levels: the quantile levels ``(Q,)`` in increasing order.
        samples: sample paths ``(S, H)``, or an empty ``(0, H)`` array when the model has none.
        model: name of the forecaster that made it.
    """

    quantiles: np.ndarray = field(metadata={"help": "quantiles, shape (H, Q)"})
    levels: tuple[float, ...] = QUANTILES
    samples: np.ndarray | None = field(default=None, metadata={"help": "sample paths, shape (S, H)"})
    model: str = ""

    def __post_init__(self):
        q = np.asarray(self.quantiles, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != len(self.levels):
            raise ValueError(f"quantiles must have shape (H, {len(self.levels)}), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError(f"{self.model or 'forecaster'} produced non-finite quantiles")
        # Quantile crossing is an artefact of independent heads / finite samples: sort it away.
        self.quantiles = np.sort(q, axis=1)
        if self.samples is None:
            self.samples = np.zeros((0, q.shape[0]))
        self.samples = np.asarray(self.samples, dtype=np.float64)
        if self.samples.ndim != 2 or self.samples.shape[1] != q.shape[0]:
            raise ValueError(f"samples must have shape (S, {q.shape[0]}), got {self.samples.shape}")

    @property
    def horizon(self) -> int:
        return self.quantiles.shape[0]

    @property
    def median(self) -> np.ndarray:
        """The 0.5 quantile ``(H,)`` (interpolated if 0.5 is not a level)."""
        return np.array([np.interp(0.5, self.levels, row) for row in self.quantiles])

    def quantile(self, level: float) -> np.ndarray:
        """One quantile ``(H,)``, linearly interpolated between levels."""
        return np.array([np.interp(level, self.levels, row) for row in self.quantiles])


def quantiles_from_samples(samples: np.ndarray, levels=QUANTILES) -> np.ndarray:
    """Empirical quantiles ``(H, Q)`` of sample paths ``(S, H)``."""
    return np.quantile(np.asarray(samples, dtype=np.float64), levels, axis=0).T


def samples_from_quantiles(quantiles: np.ndarray, levels=QUANTILES, n: int = 100, seed: int = 0) -> np.ndarray:
    """Draw ``(n, H)`` samples by inverse-CDF sampling of the piecewise-linear quantile function.

    Beyond the outer levels the quantile function is extrapolated linearly from the two
    outermost levels on each side. Each step is sampled independently (marginals only).
    """
    q = np.sort(np.asarray(quantiles, dtype=np.float64), axis=1)
    lv = np.asarray(levels, dtype=np.float64)
    u = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, q.shape[0]))
    out = np.empty_like(u)
    lo_slope = (q[:, 1] - q[:, 0]) / (lv[1] - lv[0])
    hi_slope = (q[:, -1] - q[:, -2]) / (lv[-1] - lv[-2])
    for h in range(q.shape[0]):
        col = np.interp(u[:, h], lv, q[h])
        col = np.where(u[:, h] < lv[0], q[h, 0] - lo_slope[h] * (lv[0] - u[:, h]), col)
        col = np.where(u[:, h] > lv[-1], q[h, -1] + hi_slope[h] * (u[:, h] - lv[-1]), col)
        out[:, h] = col
    return out


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, levels=QUANTILES) -> torch.Tensor:
    """Mean quantile (pinball) loss.

    Args:
        pred: ``(..., H, Q)`` predicted quantiles.
        target: ``(..., H)`` observed values.
        levels: the ``Q`` quantile levels.

    Returns:
        a scalar tensor, differentiable in ``pred``.
    """
    tau = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device)
    diff = target.unsqueeze(-1) - pred
    return torch.maximum(tau * diff, (tau - 1) * diff).mean()


class Forecaster(abc.ABC):
    """A univariate forecaster.

    Subclasses implement :meth:`_predict`. ``fit`` trains where the model trains (the default
    does nothing: pretrained and local statistical models fit per call), and ``loss`` is a
    differentiable training/explanation loss where the model allows one.
    """

    name: str = "forecaster"
    #: shortest history ``predict`` accepts.
    min_context: int = 3

    def fit(self, y=None, *, seed: int = 0, progress: bool = False) -> "Forecaster":
        """Train the model (no-op for models without global training). Returns ``self``."""
        return self

    def predict(self, y, horizon: int, *, n_samples: int = 20, seed: int = 0, description: str | None = None) -> Forecast:
        """Forecast ``horizon`` steps after the history ``y``.

        Args:
            y: the history, a 1-D array-like of floats ``(T,)``; interior NaNs are interpolated.
            horizon: number of future steps ``H`` (≥ 1).
            n_samples: sample paths to draw where the model samples.
            seed: seeds every random choice.
            description: optional text describing the series (used by text-conditioned models).

        Returns:
            a :class:`Forecast` with quantiles ``(H, 9)`` and samples ``(S, H)``.
        """
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        series = as_series(y, min_length=self.min_context, name=self.name)
        fc = self._predict(series, int(horizon), n_samples=int(n_samples), seed=int(seed), description=description)
        fc.model = self.name
        return fc

    @abc.abstractmethod
    def _predict(self, y: np.ndarray, horizon: int, *, n_samples: int, seed: int, description: str | None) -> Forecast:
        """Forecast from a validated float64 history ``(T,)``."""

    def loss(self, context, future) -> torch.Tensor:
        """A differentiable loss of ``future`` given ``context`` (see subclasses)."""
        raise NotImplementedError(f"{self.name} has no differentiable loss (a statistical baseline)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
