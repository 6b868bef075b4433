"""Forecasting: serialization, the forecaster interface, baselines, fracast, LM and quantized models, CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.forecast import (QUANTILES, Forecast, Scaler, SerializerConfig, as_series, deserialize, get_forecaster,
                           pinball_loss, quantiles_from_samples, read_csv_series, samples_from_quantiles, serialize)
from forecast_cli import run_cli

TOL = 1e-9
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


# -- serialization -------------------------------------------------------------------------------
@given(st.lists(finite, min_size=1, max_size=30), st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_serialize_round_trip(values, precision):
    cfg = SerializerConfig(precision=precision, max_digits=12)
    back = deserialize(serialize(values, cfg), cfg)
    assert back.shape == (len(values),)
    step = 10.0 ** -precision
    v = np.asarray(values)
    assert np.all(np.abs(back - v) <= step / 2 + 1e-9 * (1 + np.abs(v)))
    # signs survive (a value that rounds to zero is written without sign)
    nz = np.abs(values) >= step
    assert np.all(np.sign(back[nz]) == np.sign(np.asarray(values)[nz]))


@given(st.lists(st.one_of(finite, st.just(float("nan"))), min_size=1, max_size=20))
@settings(max_examples=80, deadline=None)
def test_serialize_nan_positions_survive(values):
    cfg = SerializerConfig(precision=2, max_digits=12)
    back = deserialize(serialize(values, cfg), cfg)
    assert np.array_equal(np.isnan(back), np.isnan(values))


def test_serialize_format_and_errors():
    assert serialize([0.734, -1.2, 0.0, -0.0, 5], SerializerConfig(precision=2)) == "73,-120,0,0,500"
    with pytest.raises(ValueError, match="NaN"):
        serialize([1.0, float("nan")], SerializerConfig(nan=None))
    with pytest.raises(ValueError, match="infinite"):
        serialize([float("inf")])
    with pytest.raises(ValueError, match="max_digits"):
        serialize([1e9], SerializerConfig(precision=2, max_digits=6))
    with pytest.raises(ValueError, match="time_sep"):
        SerializerConfig(time_sep="1")


def test_deserialize_is_tolerant():
    np.testing.assert_array_equal(deserialize(" 12, -3 ,x,7,", SerializerConfig(precision=1)), [1.2, -0.3, np.nan, 0.7])
    assert deserialize("1,2,3,4", horizon=2).shape == (2,)


@given(st.lists(finite, min_size=2, max_size=50), st.booleans())
@settings(max_examples=80, deadline=None)
def test_scaler_round_trip(values, basic):
    s = Scaler(basic=basic).fit(values)
    np.testing.assert_allclose(s.inverse(s.transform(values)), values, atol=1e-9 * (1 + np.max(np.abs(values))), rtol=1e-9)
    if not basic:
        assert np.all(s.transform(values) >= -1e-12)


# -- interface pieces ------------------------------------------------------------------------------
def test_forecast_sorts_crossing_quantiles_and_checks_shapes():
    q = np.tile(np.linspace(1, 0, 9), (3, 1))  # fully crossed
    fc = Forecast(q)
    assert np.all(np.diff(fc.quantiles, axis=1) >= 0)
    assert fc.samples.shape == (0, 3) and fc.horizon == 3
    np.testing.assert_allclose(fc.median, 0.5)
    with pytest.raises(ValueError, match="shape"):
        Forecast(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        Forecast(np.full((2, 9), np.nan))
    with pytest.raises(ValueError, match="samples"):
        Forecast(np.zeros((3, 9)), samples=np.zeros((5, 2)))


def test_samples_from_quantiles_reproduces_quantiles():
    q = np.sort(np.random.default_rng(0).normal(size=(4, 9)), axis=1) * 3
    s = samples_from_quantiles(q, n=40000, seed=1)
    np.testing.assert_allclose(quantiles_from_samples(s), q, atol=0.08)
    assert np.array_equal(s, samples_from_quantiles(q, n=40000, seed=1))


def test_pinball_loss_against_reference():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, generator=g, dtype=torch.float64)
    ref = np.mean([max(t * (y[b, h] - pred[b, h, j]).item(), (t - 1) * (y[b, h] - pred[b, h, j]).item())
                   for b in range(2) for h in range(5) for j, t in enumerate(QUANTILES)])
    loss = pinball_loss(pred, y)
    assert abs(loss.item() - ref) < TOL
    loss.backward()
    assert pred.grad.abs().sum() > 0


def test_as_series_validation():
    np.testing.assert_allclose(as_series([np.nan, 1.0, np.nan, 3.0, np.nan]), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no finite values"):
        as_series([np.nan, np.nan])
    with pytest.raises(ValueError, match="at least 10"):
        as_series([1.0, 2.0, 3.0], min_length=10)
    with pytest.raises(ValueError, match="numeric"):
        as_series(["a", "b"])
    with pytest.raises(ValueError, match="1-D"):
        as_series(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="infinite"):
        as_series([1.0, np.inf])


def test_read_csv(tmp_path):
    p = tmp_path / "a.csv"
    pd.DataFrame({"value": [1.0, 2, 3], "other": [9.0, 9, 9]}).to_csv(p, index=False)
    v, col = read_csv_series(p)
    assert col == "value" and v.tolist() == [1, 2, 3]
    pd.DataFrame({"date": ["x", "y"], "a": [1.0, 2], "b": [3.0, 4], "name": ["u", "v"]}).to_csv(p, index=False)
    v, col = read_csv_series(p)
    assert col == "b" and v.tolist() == [3, 4]
    pd.DataFrame({"value": ["1", "oops"]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="not numeric"):
        read_csv_series(p)
    pd.DataFrame({"name": ["u", "v"]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="no numeric column"):
        read_csv_series(p)
    with pytest.raises(ValueError, match="does not exist"):
        read_csv_series(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="no column"):
        read_csv_series(p, column="zzz")


# -- baselines ----------------------------------------------------------------------------------
SEASONAL = 10 + 3 * np.sin(np.arange(48) / 12 * 2 * np.pi) + np.random.default_rng(0).normal(0, 0.3, 48)


@pytest.mark.parametrize("name", ["naive", "seasonal_naive", "auto_ets", "auto_arima"])
def test_baselines_shapes_and_monotone(name):
    fc = get_forecaster(name, season_length=12).predict(SEASONAL, 7, n_samples=11, seed=0)
    assert fc.quantiles.shape == (7, 9) and fc.samples.shape == (11, 7)
    assert np.all(np.diff(fc.quantiles, axis=1) >= 0)
    assert fc.model == name


def test_naive_definitions():
    fc = get_forecaster("naive").predict(SEASONAL, 5)
    np.testing.assert_allclose(fc.median, SEASONAL[-1])
    fc = get_forecaster("seasonal_naive", season_length=12).predict(SEASONAL, 12)
    np.testing.assert_allclose(fc.median, SEASONAL[-12:])


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown forecaster"):
        get_forecaster("prophet")
    f = get_forecaster("naive")
    with pytest.raises(ValueError, match="horizon"):
        f.predict(SEASONAL, 0)
    with pytest.raises(ValueError, match="no finite values"):
        f.predict([np.nan] * 5, 3)
    with pytest.raises(NotImplementedError):
        f.loss(SEASONAL[:40], SEASONAL[40:])


# -- fracast --------------------------------------------------------------------------------------
def test_fracast_differentiable_path_matches_package():
    f = get_forecaster("fracast")
    y = SEASONAL
    ref = f.model.forecast(y.astype(np.float32), horizon=48)  # the package's own inference path
    q = f.quantiles(torch.tensor(y, dtype=torch.float32)[None])[0]
    np.testing.assert_allclose(q.detach().numpy(), ref, rtol=1e-4, atol=1e-4)
    fc = f.predict(y, 6)
    assert fc.quantiles.shape == (6, 9) and np.all(np.diff(fc.quantiles, axis=1) >= 0)
    ctx = torch.tensor(y[:40], dtype=torch.float32, requires_grad=True)
    loss = f.loss(ctx, torch.tensor(y[40:]))
    loss.backward()
    assert torch.isfinite(loss) and ctx.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 8"):
        f.predict([1.0, 2.0, 3.0], 2)


# -- LM forecaster on a tiny in-process model ---------------------------------------------------------
def _tiny_lm():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from fuse.models.backbones import CausalLMBackbone

    chars = ["<unk>", "<pad>"] + list("0123456789,-\n abcdefghijklmnopqrstuvwxyz.")
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(chars), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return CausalLMBackbone(model, fast, "tiny-llama")


@pytest.fixture(scope="module")
def tiny_lm_forecaster():
    from fuse.forecast.lm import LMForecaster

    return LMForecaster(_tiny_lm(), max_history=40, batch_size=4)


def test_lm_forecaster_samples_parse(tiny_lm_forecaster):
    f = tiny_lm_forecaster
    fc = f.predict(SEASONAL, 5, n_samples=6, seed=3)
    assert fc.quantiles.shape == (5, 9) and fc.samples.shape == (6, 5)
    assert np.isfinite(fc.samples).all() and np.all(np.diff(fc.quantiles, axis=1) >= 0)
    again = f.predict(SEASONAL, 5, n_samples=6, seed=3)
    np.testing.assert_array_equal(fc.samples, again.samples)
    # the samples are on the data's scale (the scaler put the history around [0.2, 1])
    assert np.all(np.abs(fc.samples) < 1e4)
    with pytest.raises(ValueError, match="at least 3"):
        f.predict([1.0, 2.0], 2)


def test_lm_prompt_has_description(tiny_lm_forecaster):
    text, scaler = tiny_lm_forecaster.prompt(np.array([1.0, 2.0, 3.0]), "a rising line")
    assert text.startswith("a rising line\n") and text.endswith(",")
    np.testing.assert_allclose(scaler.inverse(deserialize(text.split("\n")[1])), [1, 2, 3], atol=0.05)


def test_lm_prompt_holds_whole_seasons():
    from fuse.forecast.lm import LMForecaster

    backbone = _tiny_lm()
    y = np.arange(100.0)
    for m, n in [(1, 40), (12, 36), (7, 35), (40, 40), (41, 40)]:
        text, _ = LMForecaster(backbone, max_history=40, season_length=m).prompt(y)
        assert len(text.rstrip(",").split(",")) == n
    with pytest.raises(ValueError, match="season_length"):
        LMForecaster(backbone, season_length=0)


def test_lm_loss_trains_a_soft_prefix(tiny_lm_forecaster):
    f = tiny_lm_forecaster
    prefix = torch.zeros(3, f.backbone.dim, requires_grad=True)
    opt = torch.optim.Adam([prefix], lr=0.1)
    losses = []
    for _ in range(15):
        loss = f.loss(SEASONAL[:36], SEASONAL[36:42], prefix_embeds=prefix)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert prefix.grad.abs().sum() > 0
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="finite"):
        f.loss(SEASONAL[:36], [np.nan])


# -- Chronos-style quantized forecaster ------------------------------------------------------------------
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30))
@settings(max_examples=60, deadline=None)
def test_mean_scale_tokenizer_round_trip(values):
    from fuse.forecast.quantized import MeanScaleTokenizer

    tok = MeanScaleTokenizer(101, -5.0, 5.0)
    x = torch.tensor(values, dtype=torch.float64)[None]
    scale = tok.scale(x)
    back = tok.decode(tok.encode(x, scale), scale)[0]
    z = x[0] / scale
    inside = z.abs() <= 5
    half = 0.05 * scale.item() + 1e-9
    assert torch.all((back - x[0])[inside].abs() <= half)
    assert torch.all(back.abs() <= 5 * scale + 1e-9)  # clipped outside the range


def test_quantized_forecaster_trains_saves_predicts(tmp_path):
    from fuse.forecast.quantized import QuantizedConfig, QuantizedForecaster

    cfg = QuantizedConfig(n_bins=64, context=16, d_model=16, n_layers=1, n_heads=2, train_series=50,
                          train_length=32, steps=40, batch_size=16)
    torch.manual_seed(0)
    f = QuantizedForecaster.train(cfg)
    f.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    g = QuantizedForecaster.load(tmp_path / "m")
    for (k, a), (_, b) in zip(f.model.state_dict().items(), g.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    fc = g.predict(SEASONAL, 4, n_samples=8, seed=0)
    assert fc.quantiles.shape == (4, 9) and fc.samples.shape == (8, 4)
    np.testing.assert_array_equal(fc.samples, g.predict(SEASONAL, 4, n_samples=8, seed=0).samples)
    prefix = torch.zeros(2, 16, requires_grad=True)
    g.loss(SEASONAL[:20], SEASONAL[20:24], prefix_embeds=prefix).backward()
    assert prefix.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="holds no"):
        QuantizedForecaster.load(tmp_path)


def test_quantized_training_reduces_loss():
    from fuse.forecast.quantized import QuantizedConfig, QuantizedForecaster

    cfg = QuantizedConfig(n_bins=64, context=16, d_model=16, n_layers=1, n_heads=2, train_series=50,
                          train_length=32, steps=1, batch_size=16, lr=3e-3)
    before = QuantizedForecaster.train(cfg).loss(SEASONAL[:20], SEASONAL[20:28]).item()
    after = QuantizedForecaster.train(QuantizedConfig(**{**cfg.__dict__, "steps": 60})).loss(SEASONAL[:20], SEASONAL[20:28]).item()
    assert after < before - 0.3
    assert before < math.log(65) + 1.5  # near-uniform at init


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_writes_quantiles_and_plot(tmp_path, capsys):
    data = tmp_path / "d.csv"
    pd.DataFrame({"t": range(48), "value": SEASONAL}).to_csv(data, index=False)
    out, png = tmp_path / "f.csv", tmp_path / "f.png"
    assert run_cli([str(data), "--model", "seasonal_naive", "--season-length", "12", "--horizon", "4",
                 "--out", str(out), "--plot", str(png)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["step", "median"] + [f"q{q:g}" for q in QUANTILES]
    assert len(df) == 4
    np.testing.assert_allclose(df["median"], SEASONAL[-12:-8])
    assert np.all(np.diff(df[[f"q{q:g}" for q in QUANTILES]].to_numpy(), axis=1) >= 0)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert run_cli(["--list"]) == 0
    assert "fracast" in capsys.readouterr().out


def test_cli_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"value": ["a", "b", "c"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="not numeric"):
        run_cli([str(bad), "--horizon", "2"])
    nan = tmp_path / "nan.csv"
    pd.DataFrame({"value": [np.nan] * 5}).to_csv(nan, index=False)
    with pytest.raises(ValueError, match="no finite values"):
        run_cli([str(nan), "--horizon", "2"])
    short = tmp_path / "short.csv"
    pd.DataFrame({"value": [1.0, 2.0, 3.0]}).to_csv(short, index=False)
    with pytest.raises(ValueError, match="at least 8"):
        run_cli([str(short), "--model", "fracast", "--horizon", "2"])
    with pytest.raises(ValueError, match="horizon"):
        run_cli([str(short)])


def test_cli_through_main_reports_error(tmp_path, capsys):
    from fuse.cli import main

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"value": ["a", "b"]}).to_csv(bad, index=False)
    assert main(["forecast", str(bad), "--horizon", "2"]) == 2
    assert "not numeric" in capsys.readouterr().err
