"""Forecaster names: one explicit registration per model, duplicates rejected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fuse.forecast.base import Forecaster


@dataclass(frozen=True)
class ForecasterSpec:
    name: str
    factory: Callable[..., Forecaster]
    description: str
    family: str  # "baseline" | "ensemble" | "pretrained" | "lm" | "trained"


REGISTRY: dict[str, ForecasterSpec] = {}

#: The default forecaster, chosen by measurement on the 36 real series (yearly to hourly, 108
#: windows) of ``benchmarks/forecasting.py`` (results/forecasting.md): AutoARIMA has the best
#: geometric-mean MASE relative to SeasonalNaive (0.438); no median or mean ensemble of AutoETS,
#: AutoARIMA, AutoTheta and fracast beat it on MASE, and the best of them on CRPS ("ensemble" below,
#: 0.4925) is within 1 % of it (0.497) while 3 % behind on MASE (0.451).
DEFAULT_MODEL = "auto_arima"
#: Members of the registered "ensemble" (the quantile-wise median of their forecasts).
ENSEMBLE_MEMBERS = ("auto_ets", "auto_arima", "fracast")
#: Why it is the default, as ``fuse forecast --list`` says it.
DEFAULT_REASON = ("best geometric-mean MASE relative to SeasonalNaive (0.438; CRPS 0.497) over the 36 real series, "
                  "yearly to hourly, of benchmarks/forecasting.py; the best ensemble, 'ensemble', has CRPS 0.493 but "
                  "MASE 0.451. Slow for long seasons: about 1 min per forecast at season 24 (hourly), over 9 min at 52 (weekly)")


def register(spec: ForecasterSpec) -> None:
    """Add a forecaster name; raises ``ValueError`` on a duplicate."""
    if spec.name in REGISTRY:
        raise ValueError(f"forecaster {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec


def available() -> list[ForecasterSpec]:
    """All registered forecasters, sorted by family then name."""
    return sorted(REGISTRY.values(), key=lambda s: (s.family, s.name))


def get_forecaster(name: str, **kwargs) -> Forecaster:
    """Build a forecaster by name (``fuse forecast --list`` shows them).

    ``kwargs`` go to the factory (e.g. ``season_length=12`` for the baselines, ``progress=True``).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown forecaster {name!r}; choose one of {sorted(REGISTRY)} (see `fuse forecast --list`)")
    return REGISTRY[name].factory(**kwargs)


def _baseline(kind):
    def make(season_length: int = 1, **_):
        from fuse.forecast.baselines import StatsForecastBaseline

        return StatsForecastBaseline(kind, season_length=season_length)

    return make


def _fracast(season_length: int = 1, **_):
    from fuse.forecast.fracast_model import FracastForecaster

    return FracastForecaster(season_length=season_length)


def _lm(model):
    def make(progress: bool = False, season_length: int = 1, **kw):
        from fuse.forecast.lm import LMForecaster

        opts = {k: kw[k] for k in ("max_history", "temperature", "batch_size") if k in kw}
        return LMForecaster(f"bundled:{model}", progress=progress, season_length=season_length, **opts)

    return make


def _quantized(progress: bool = False, **_):
    from fuse.forecast.quantized import QuantizedForecaster

    return QuantizedForecaster.pretrained(progress=progress)


def _calmflow(progress: bool = False, season_length: int = 1, **_):
    from fuse.forecast.calmflow import CaLMFlowForecaster

    return CaLMFlowForecaster.pretrained(progress=progress, season_length=season_length)


def _ensemble(progress: bool = False, season_length: int = 1, **kw):
    from fuse.forecast.ensemble import MedianEnsemble

    members = [get_forecaster(m, season_length=season_length, progress=progress, **kw) for m in ENSEMBLE_MEMBERS]
    return MedianEnsemble(members, name="ensemble")


def _register_defaults() -> None:
    for kind, text in [("naive", "last value (statsforecast Naive)"),
                       ("seasonal_naive", "value one season ago (statsforecast SeasonalNaive)"),
                       ("auto_ets", "exponential smoothing, auto-selected (statsforecast AutoETS)"),
                       ("auto_arima", "ARIMA, auto-selected (statsforecast AutoARIMA; slow for long seasons)"),
                       ("auto_theta", "Theta method, auto-selected (statsforecast AutoTheta)")]:
        register(ForecasterSpec(kind, _baseline(kind), text, "baseline"))
    register(ForecasterSpec("ensemble", _ensemble,
                            f"quantile-wise median of {', '.join(ENSEMBLE_MEMBERS)} (each given the season length)",
                            "ensemble"))
    register(ForecasterSpec("fracast", _fracast, "pretrained fracast-0 (85k params, bundled with the fracast package)", "pretrained"))
    register(ForecasterSpec("chronos-tiny", _quantized,
                            "Chronos-style mean-scaled quantized-token transformer trained on synthetic series "
                            "(trained once, ~5 min CPU, then cached)", "trained"))
    register(ForecasterSpec("calmflow", _calmflow,
                            "CaLMFlow: history as condition, future as the generated flow trajectory; small GPT-2 "
                            "trained on synthetic series (trained once, ~2 min on one CPU thread, then cached); accepts a description",
                            "trained"))
    for model in ("smollm2-135m", "gemma3-270m"):
        register(ForecasterSpec(f"llmtime:{model}", _lm(model),
                                f"LLMTime: numbers as text, continued by bundled:{model} (slow: seconds per forecast)", "lm"))


_register_defaults()
