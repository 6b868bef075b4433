"""The CaLMFlow forecaster on a tiny config: shapes, quantile order, seeding, text, bad input, save/load."""

import numpy as np
import pytest
import torch

from fuse.forecast import get_forecaster
from fuse.forecast.calmflow import (VOCABULARY, CaLMFlowForecastConfig, CaLMFlowForecaster, describe_window,
                                    keywords)
from fuse.forecast.registry import REGISTRY

TINY = dict(context=8, chunk=4, hidden_size=16, n_layers=1, n_heads=2, train_series=16, train_length=24,
            steps=3, batch_size=4, max_prompt_tokens=6)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return CaLMFlowForecaster(CaLMFlowForecastConfig(**TINY)).fit(seed=0)


def _history(n=30):
    return 10 + np.sin(np.arange(n) / 3.0) + 0.05 * np.arange(n)


@pytest.mark.parametrize("horizon", [1, 4, 9])  # 9 > chunk: rolls forward
def test_shapes_and_monotone_quantiles(tiny, horizon):
    fc = tiny.predict(_history(), horizon, n_samples=12, seed=0)
    assert fc.quantiles.shape == (horizon, 9)
    assert fc.samples.shape == (12, horizon)
    assert np.all(np.diff(fc.quantiles, axis=1) >= 0)
    assert np.isfinite(fc.samples).all()
    assert fc.model == "calmflow"


def test_seeded_determinism(tiny):
    a = tiny.predict(_history(), 5, n_samples=8, seed=3)
    b = tiny.predict(_history(), 5, n_samples=8, seed=3)
    c = tiny.predict(_history(), 5, n_samples=8, seed=4)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    # training is seeded too
    cfg = CaLMFlowForecastConfig(**TINY)
    f1 = CaLMFlowForecaster(cfg).fit(seed=1)
    f2 = CaLMFlowForecaster(cfg).fit(seed=1)
    np.testing.assert_array_equal(f1.predict(_history(), 3, seed=0).samples, f2.predict(_history(), 3, seed=0).samples)


def test_description_conditions_and_is_reduced_to_vocabulary(tiny):
    assert keywords("Monthly CO2 in ppm: a steady upward trend with a yearly cycle.", 8) == "upward trend yearly cycle"
    assert keywords("nothing known here", 8) == "series"
    assert keywords("a noisy time series", 8) == "noisy"
    assert keywords(None, 8) == "series"
    with pytest.raises(ValueError, match="description"):
        keywords(3, 8)
    plain = tiny.predict(_history(), 4, n_samples=8, seed=0)
    text = tiny.predict(_history(), 4, n_samples=8, seed=0, description="a downward trend, noisy")
    assert not np.array_equal(plain.samples, text.samples)


def test_describe_window():
    t = np.arange(48.0)
    assert describe_window(t).startswith("upward trend")
    assert describe_window(-t).startswith("downward trend")
    words = describe_window(np.sin(2 * np.pi * t / 12)).split()
    assert words[0] == "level" and "cycle" in words and "12" in words and "smooth" in words
    assert set(describe_window(np.random.default_rng(0).normal(size=48)).split()) <= set(VOCABULARY)


def test_bad_input(tiny):
    with pytest.raises(ValueError, match="no finite values"):
        tiny.predict([np.nan] * 20, 3)
    with pytest.raises(ValueError, match="at least 8"):
        tiny.predict(np.arange(5.0), 3)
    with pytest.raises(ValueError, match="horizon"):
        tiny.predict(_history(), 0)
    with pytest.raises(ValueError, match="train_length"):
        CaLMFlowForecastConfig(context=32, chunk=16, train_length=40)
    with pytest.raises(ValueError, match="at least 12"):
        CaLMFlowForecaster(CaLMFlowForecastConfig(**TINY)).fit(np.arange(10.0))


def test_constant_series_gives_a_flat_forecast(tiny):
    fc = tiny.predict(np.full(20, 5.0), 3, n_samples=8, seed=0)
    assert np.allclose(fc.quantiles, 5.0, atol=0.05)


def test_fit_on_history_and_differentiable_loss(tiny):
    f = CaLMFlowForecaster(CaLMFlowForecastConfig(**TINY)).fit(_history(40), seed=0)
    loss = f.loss(_history(30), _history(34)[30:], description="upward trend")
    assert loss.ndim == 0 and torch.isfinite(loss)
    pe = f.model.embed_prompts(["upward trend"]).clone().requires_grad_(True)
    f.loss(_history(30), _history(34)[30:], prompt_embeds=pe).backward()
    assert pe.grad is not None and pe.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="future"):
        f.loss(_history(30), np.arange(10.0))


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    back = CaLMFlowForecaster.load(tmp_path / "m")
    assert back.cfg == tiny.cfg
    np.testing.assert_array_equal(back.predict(_history(), 3, seed=0).samples, tiny.predict(_history(), 3, seed=0).samples)
    with pytest.raises(ValueError, match="no CaLMFlow forecaster"):
        CaLMFlowForecaster.load(tmp_path)


def test_registered():
    assert "calmflow" in REGISTRY and REGISTRY["calmflow"].family == "trained"
    with pytest.raises(ValueError, match="unknown forecaster"):
        get_forecaster("calmflow-nope")


def test_season_length_becomes_the_cycle_keywords(tiny):
    from fuse.forecast.calmflow import season_keywords

    assert season_keywords(12) == "yearly cycle 12" and season_keywords(7) == "cycle 7"
    assert season_keywords(1) is None and season_keywords(65) is None
    seasonal = CaLMFlowForecaster(tiny.cfg, tiny.model, season_length=12)
    y = _history(40)
    a = seasonal.predict(y, 4, n_samples=8, seed=1)
    b = tiny.predict(y, 4, n_samples=8, seed=1, description="yearly cycle 12")
    c = tiny.predict(y, 4, n_samples=8, seed=1)  # season 1: the neutral prompt
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    with pytest.raises(ValueError, match="season_length"):
        CaLMFlowForecaster(tiny.cfg, tiny.model, season_length=0)
