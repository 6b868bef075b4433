"""CaptionConfig nests the optimizer's config; the old flat keywords still work, with a DeprecationWarning; the
``fuse caption`` flags are generated from both."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import replace

import pytest

from fuse.captioning import DEFAULT_CONFIG, PUBLISHED_CONFIG, CaptionConfig, caption
from fuse.cli import build_parser, main
from fuse.optim import AutoDANConfig, GCGConfig, PEZConfig, RandomSearchConfig

SMALL = CaptionConfig(optim=AutoDANConfig(prefix="An image of", n_tokens=3, batch_size=6, budget=18, search="beam",
                                          beam_width=2, lm_weight=0.25, seed=0), image_batch_size=2)


def test_the_default_and_published_searches():
    assert DEFAULT_CONFIG.optim == AutoDANConfig(prefix="An image of", n_tokens=8, batch_size=128, budget=1024,
                                                 search="beam", beam_width=4, lm_weight=0.25, seed=0)
    assert (DEFAULT_CONFIG.alpha, DEFAULT_CONFIG.num_threads, DEFAULT_CONFIG.optimizer) == ((1.0, 22.0), 1, "autodan")
    assert CaptionConfig() == DEFAULT_CONFIG and CaptionConfig().optim is not DEFAULT_CONFIG.optim  # not shared
    assert PUBLISHED_CONFIG.optim == replace(DEFAULT_CONFIG.optim, n_tokens=16, batch_size=64, lm_weight=1.0)


def test_old_keywords_map_into_the_nested_config_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"CaptionConfig\(optim=AutoDANConfig"):
        old = CaptionConfig(n_tokens=3, batch_size=6, beam_width=2, image_batch_size=2, seed=0)
    assert old == SMALL  # budget None meant n_tokens × batch_size, as before
    with pytest.warns(DeprecationWarning):
        assert CaptionConfig(n_tokens=16, batch_size=64, lm_weight=1.0) == PUBLISHED_CONFIG
    with pytest.warns(DeprecationWarning):
        rnd = replace(SMALL, optimizer="random", search="beam")
    assert rnd.optim == RandomSearchConfig(prefix="An image of", n_tokens=3, batch_size=6, budget=18, search="beam",
                                           beam_width=2, seed=0) and rnd.image_batch_size == 2
    with pytest.warns(DeprecationWarning):
        gcg = CaptionConfig(optimizer="gcg", top_k=7, budget=40)
    assert isinstance(gcg.optim, GCGConfig) and gcg.optim.top_k == 7 and gcg.evaluations == 40
    with pytest.warns(DeprecationWarning):
        pez = CaptionConfig(optimizer="pez")
    assert pez.optim.search == "greedy"  # PEZ searches greedily, as the old mapping did
    with pytest.warns(DeprecationWarning, match="config.optim.n_tokens"):
        assert SMALL.n_tokens == 3
    with pytest.raises(AttributeError, match="config.override"):
        SMALL.n_tokens = 4
    with pytest.raises(AttributeError):
        SMALL.no_such_thing


@pytest.mark.parametrize("bad,match", [(dict(optimizer="sgd"), "unknown optimizer"), (dict(n_tokens=0), "n_tokens"),
                                       (dict(budget=0), "budget"), (dict(top_k=3), "AutoDANConfig .* has no top_k")])
def test_old_keyword_errors(bad, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match=match):
            CaptionConfig(**bad)


@pytest.mark.parametrize("bad,match", [(dict(optim="gcg"), "optim must be the config of a fuse optimizer"),
                                       (dict(alpha=(1, 0)), "alpha"), (dict(image_batch_size=0), "image_batch_size"),
                                       (dict(steer_weight=-1), "steer_weight"), (dict(num_threads=0), "num_threads")])
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        CaptionConfig(**bad)


def test_override_reaches_both_levels_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        c = DEFAULT_CONFIG.override(n_tokens=4, alpha=(1, 10), patience=2)
        assert (c.optim.n_tokens, c.evaluations, c.alpha, c.optim.patience) == (4, 512, (1.0, 10.0), 2)
        assert DEFAULT_CONFIG.override(budget=100, n_tokens=4).evaluations == 100
        assert SMALL.override(budget=None, batch_size=4).evaluations == 12
        kept = CaptionConfig(optim=replace(DEFAULT_CONFIG.optim, budget=300)).override(n_tokens=2)
        assert kept.evaluations == 300  # a budget of its own is kept
        gcg = DEFAULT_CONFIG.override(optimizer="gcg", top_k=16)
        assert gcg.optimizer == "gcg" and gcg.optim.top_k == 16 and gcg.optim.prefix == "An image of"
        assert DEFAULT_CONFIG.override(optimizer="pez").optim.search == "greedy"
    with pytest.raises(ValueError, match="has no top_k"):
        DEFAULT_CONFIG.override(top_k=3)
    with pytest.raises(ValueError, match="use search='greedy'"):
        DEFAULT_CONFIG.override(optimizer="pez", search="beam")


def test_to_dict_is_json_ready():
    import json

    d = json.loads(json.dumps(DEFAULT_CONFIG.to_dict()))
    assert d["optimizer"] == "autodan" and d["optim"]["lm_weight"] == 0.25 and d["alpha"] == [1.0, 22.0]


def test_caption_options_go_through_override(monkeypatch):
    seen = {}

    class Fake:
        def __init__(self, lm, scorer, config, *, steer=None, adapters=None):
            seen["config"] = config

        def __call__(self, images, **kw):
            return []

    monkeypatch.setattr("fuse.captioning.pipeline.Captioner", Fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        caption(["x.png"], n_tokens=8, batch_size=16, use_gradient=False)
    assert seen["config"].optim == replace(DEFAULT_CONFIG.optim, batch_size=16, budget=128, use_gradient=False)


# -- fuse caption's generated flags ----------------------------------------------------------------
def _config(*argv):
    return build_parser().parse_args(["caption", "photo.jpg", *argv]).config


def test_caption_cli_defaults_are_the_default_config():
    assert _config() == DEFAULT_CONFIG


@pytest.mark.parametrize("argv,expect", [
    (["--n-tokens", "4", "--batch-size", "16"], dict(n_tokens=4, batch_size=16, budget=64)),
    (["--budget", "50"], dict(budget=50)),
    (["--no-gradient", "--lm-weight", "1", "--any-length"], dict(use_gradient=False, lm_weight=1.0, complete_only=False)),
    (["--prefix", "A photo of", "--seed", "3", "--beam-width", "2"], dict(prefix="A photo of", seed=3, beam_width=2)),
    (["--patience", "2", "--eval-batch-size", "32", "--no-cache"], dict(patience=2, eval_batch_size=32, cache=False)),
])
def test_caption_cli_search_flags(argv, expect):
    optim = _config(*argv).optim
    assert {k: getattr(optim, k) for k in expect} == expect


def test_caption_cli_reaches_gcg_top_k_and_switches_optimizers():
    gcg = _config("--optimizer", "gcg", "--top-k", "32", "--n-tokens", "4").optim
    assert gcg == GCGConfig(prefix="An image of", n_tokens=4, batch_size=128, budget=512, search="beam", beam_width=4,
                            seed=0, top_k=32)
    assert _config("--optimizer", "pez", "--lr", "0.5").optim == PEZConfig(
        prefix="An image of", n_tokens=8, batch_size=128, budget=1024, search="greedy", beam_width=4, seed=0, lr=0.5)
    assert isinstance(_config("--optimizer", "random").optim, RandomSearchConfig)


def test_caption_cli_captioning_flags():
    c = _config("--alpha", "1", "10", "--steer-weight", "2", "--image-batch-size", "4", "--num-threads", "0")
    assert (c.alpha, c.steer_weight, c.image_batch_size, c.num_threads) == ((1.0, 10.0), 2.0, 4, None)
    assert dataclasses.replace(c, alpha=(1.0, 22.0), steer_weight=5.0, image_batch_size=16, num_threads=1) == DEFAULT_CONFIG


def test_caption_cli_errors_name_the_flag(capsys):
    for argv, msg in ((["--top-k", "3"], "--top-k is an option of gcg, not of autodan"),
                      (["--n-tokens", "0"], "argument --n-tokens: n_tokens must be an integer >= 1"),
                      (["--optimizer", "pez", "--search", "beam"], "argument --search:"),
                      (["--alpha", "1", "0"], "argument --alpha: alpha is"),
                      (["--num-threads", "-1"], "argument --num-threads:")):
        assert main(["caption", "photo.jpg", *argv]) == 2, argv
        assert msg in capsys.readouterr().err, argv


def test_an_old_flat_config_maps_as_the_old_captioner_ran_it():
    """The flat config had AutoDAN's fields and a search for every optimizer; the old mapping ignored what the
    optimizer lacked. At their old defaults they are dropped; set to something else they are refused."""
    flat = dict(prefix="An image of", n_tokens=4, alpha=(1.0, 22.0), optimizer="gcg", use_gradient=True, lm_weight=0.25,
                complete_only=True, search="beam", beam_width=4, batch_size=16, budget=None, steer_weight=5.0,
                image_batch_size=16, seed=0, num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert CaptionConfig(**flat).optim == GCGConfig(prefix="An image of", n_tokens=4, batch_size=16, budget=64,
                                                        search="beam", beam_width=4, seed=0)
        assert CaptionConfig(**{**flat, "optimizer": "pez"}).optim.search == "greedy"
        with pytest.raises(ValueError, match="GCGConfig .* has no use_gradient"):
            CaptionConfig(**{**flat, "use_gradient": False})
