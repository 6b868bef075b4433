"""The engine on the bundled real models in half precision: chains of bfloat16, float16 and mixed float32/bfloat16
models give finite gradients and exact evaluations within a few percent of float32, and a GCG run completes."""

from __future__ import annotations

import pytest
import torch

import fuse
from fuse.objectives import Fluency, Similarity
from fuse.optim import GCGConfig

pytestmark = pytest.mark.slow

REL = 0.05       # relative difference of losses allowed against float32
COS = 0.9        # cosine of the swap-score gradients against float32
PROMPT = "An image of a small boat on a calm lake"


@pytest.fixture(scope="module")
def reference():
    smol, mini = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:minilm-l6")
    return _measure(smol, mini)


def _measure(smol, mini, gcg: bool = False):
    chain = fuse.Chain(smol, [(Fluency(smol), 0.1), (Similarity(mini, "a sailing ship at sea"), 1.0)])
    seq = smol.tokenizer(PROMPT)["input_ids"]
    tokens = torch.arange(1000, 3000)
    loss, parts, g = chain.gradient(seq, positions=list(range(1, len(seq))), tokens=tokens)
    ev = chain.evaluate_ids([seq])
    out = {"loss": loss, "parts": parts, "grad": g, "exact": ev.total[0].item(), "exact_parts": ev.parts[0]}
    if gcg:
        out["gcg"] = fuse.optimize(chain, GCGConfig(n_tokens=4, prefix="An image of", budget=24, batch_size=12, seed=0))
    return out


@pytest.mark.parametrize("dtypes", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                                    (torch.float32, torch.bfloat16)], ids=["bf16", "fp16", "fp32+bf16"])
def test_half_precision_chain_of_bundled_models(reference, dtypes):
    smol = fuse.load("bundled:smollm2-135m", dtype=dtypes[0])
    mini = fuse.load("bundled:minilm-l6", dtype=dtypes[1])
    got = _measure(smol, mini, gcg=True)
    assert torch.isfinite(got["grad"]).all() and torch.isfinite(got["exact_parts"]).all()
    for key in ("loss", "exact"):
        assert abs(got[key] - reference[key]) <= REL * abs(reference[key]), (key, got[key], reference[key])
    assert torch.allclose(got["exact_parts"], reference["exact_parts"], rtol=REL, atol=1e-3)
    cos = torch.nn.functional.cosine_similarity(got["grad"].flatten().double(), reference["grad"].flatten().double(), dim=0)
    assert cos > COS, float(cos)
    res = got["gcg"]
    assert res.evaluations > 0 and res.best_loss < float("inf") and smol.tokenizer(res.best_text)["input_ids"] == res.best_ids
