"""A median ensemble: several forecasters, combined quantile by quantile.

Each member forecasts the same history; the ensemble's ``q``-quantile at each step is the
median over members of their ``q``-quantiles (the mean of the middle two for an even count).
Median combinations are robust to one member going astray, which is what makes them strong in
the M-competitions.
"""

from __future__ import annotations

import logging

import numpy as np

from fuse.forecast.base import QUANTILES, Forecast, Forecaster, samples_from_quantiles

logger = logging.getLogger(__name__)


def median_quantiles(quantiles: list[np.ndarray]) -> np.ndarray:
    """Element-wise median ``(H, Q)`` of members' quantiles ``[(H, Q), …]``."""
    if not quantiles:
        raise ValueError("median_quantiles needs at least one member forecast")
    shapes = {np.shape(q) for q in quantiles}
    if len(shapes) != 1:
        raise ValueError(f"member quantiles differ in shape: {sorted(shapes)}")
    return np.median(np.stack([np.asarray(q, dtype=np.float64) for q in quantiles]), axis=0)


class MedianEnsemble(Forecaster):
    """The quantile-wise median of several forecasters.

    Args:
        members: the forecasters (at least two).
        name: the ensemble's name.

    A history too short for some members is forecast by the others (logged); ``min_context``
    is the smallest member's.
    """

    def __init__(self, members: list[Forecaster], name: str = "ensemble"):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = list(members)
        self.name = name
        self.min_context = min(m.min_context for m in self.members)

    def _predict(self, y, horizon, *, n_samples, seed, description):
        usable = [m for m in self.members if y.size >= m.min_context]
        skipped = [m.name for m in self.members if m not in usable]
        if skipped:
            logger.info("%s: history of %d too short for %s; combining the others", self.name, y.size, skipped)
        qs = [m.predict(y, horizon, n_samples=n_samples, seed=seed, description=description).quantiles for m in usable]
        q = median_quantiles(qs)
        return Forecast(q, QUANTILES, samples_from_quantiles(q, QUANTILES, n_samples, seed))

    def __repr__(self) -> str:
        return f"MedianEnsemble(name={self.name!r}, members={[m.name for m in self.members]})"
