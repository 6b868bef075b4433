"""Integration on the bundled real models (slow: each first load dequantizes a GGUF, then caches it)."""

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import fuse
from fuse.core.adapter import TensorAdapter
from fuse.core.bridge import Bridge
from fuse.core.evaluation import evaluate_adapter
from fuse.core.wordlist import split_words
from word_checks import check_groups, texts

pytestmark = pytest.mark.slow
BUNDLED = ["bundled:smollm2-135m", "bundled:gemma3-270m", "bundled:minilm-l6"]


@functools.lru_cache(maxsize=None)
def model(name):
    return fuse.load(name)


@pytest.mark.parametrize("name", BUNDLED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_bundled_tokenizers_group_arbitrary_unicode(name, text):
    tok = model(name).tokenizer
    check_groups(fuse.group_text(tok, text))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_invariants(name):
    m = model(name)
    assert m.embeddings.shape[0] >= len(m.tokenizer)
    assert not any(p.requires_grad for p in m.model.parameters())
    assert m.vocab_hash.startswith("sha256:")


def test_real_adapter_and_bridge_smollm2_to_minilm():
    smol, minilm = model("bundled:smollm2-135m"), model("bundled:minilm-l6")
    split = split_words(3000, 500, seed=0)
    ad = TensorAdapter.fit(smol, minilm, words=split.fit, k=8, lam=1e-3)
    scores = evaluate_adapter(ad, smol, minilm, split.holdout)
    # far above chance (1/500) and far below the error of a map that predicts nothing (1.0)
    assert scores.top1 > 0.5 and scores.rel_error < 0.95
    text = "An image of a red boat on a calm lake"
    ids = torch.tensor(smol.tokenizer(text)["input_ids"])
    x = smol.embed(ids).detach().requires_grad_()
    out = Bridge(smol, minilm, ad)(ids, x)
    assert out.ids.tolist() == minilm.tokenizer(text)["input_ids"]
    target = minilm.embed_text("a sailing ship").detach()[0]
    minilm.cosine_loss(out.inputs_embeds[None], target).sum().backward()
    norms = [x.grad[p].norm().item() for p in out.plan.source.positions()]
    assert len(norms) == len(text.split()) and all(n > 0 for n in norms) and len(set(norms)) == len(norms)


def test_demo_main_job_runs(capsys):
    """The README's main command (`fuse demo`), smaller: adapters both ways, their quality, a bridged gradient, one
    span for both bundled LMs."""
    from fuse.cli import main

    assert main(["demo", "--words", "1500", "--no-captions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("rel. error" in x for x in lines) == 2
    at = lines.index("gradient norm reaching each SmolLM2 word:")
    norms = [float(line.split()[-1]) for line in lines[at + 1: at + 11]]
    assert all(n > 0 for n in norms)  # every word of the prompt receives its own gradient
    mean = {x.split(":")[0].strip(): float(x.split()[-1]) for x in lines if "mean target CE" in x}
    assert set(mean) == {"start", "found"} and mean["found"] < mean["start"]  # the span lowers both models' mean CE
    assert sum("greedy reply" in x for x in lines) == 4
