"""LLMTime with the bundled SmolLM2-135M (slow: loads the real model)."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def test_llmtime_smollm2_forecasts_a_sine():
    from fuse.forecast import get_forecaster

    try:
        f = get_forecaster("llmtime:smollm2-135m", max_history=48, batch_size=4)
    except ValueError as e:  # the bundled package is not installed here
        pytest.skip(str(e))
    y = 10 + 3 * np.sin(np.arange(60) / 12 * 2 * np.pi)
    fc = f.predict(y, 4, n_samples=4, seed=0)
    truth = 10 + 3 * np.sin(np.arange(60, 64) / 12 * 2 * np.pi)
    assert fc.quantiles.shape == (4, 9) and np.isfinite(fc.samples).all()
    assert np.abs(fc.median - truth).max() < 1.5  # a clean sine is easy even for a 135M LM
    ids = f.backbone.tokenizer("Monthly series:", return_tensors="pt")["input_ids"][0]
    prefix = f.backbone.embed(ids).detach().clone().requires_grad_(True)  # a soft prompt starts from real tokens
    loss = f.loss(y[:48], y[48:52], prefix_embeds=prefix)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(prefix.grad).all() and prefix.grad.abs().sum() > 0
