"""Dated CSV input: date columns, frequencies, season lengths, dated output rows and their errors."""


import numpy as np
import pandas as pd
import pytest

from fuse.forecast import QUANTILES, get_forecaster
from fuse.forecast.ensemble import MedianEnsemble, median_quantiles
from fuse.forecast.pipeline import ForecastConfig, forecast_csv, resolve_season_length
from fuse.forecast.registry import DEFAULT_MODEL, ENSEMBLE_MEMBERS
from fuse.forecast.series import read_csv_timeseries
from fuse.forecast.timeindex import find_date_column, format_dates, future_dates, regular_index
from forecast_cli import run_cli


def _seasonal(n, p, seed=0):
    t = np.arange(n)
    return 100 + 0.3 * t + 10 * np.sin(2 * np.pi * t / p) + np.random.default_rng(seed).normal(0, 1, n)


def _write(tmp_path, name, **cols):
    p = tmp_path / name
    pd.DataFrame(cols).to_csv(p, index=False)
    return p


# -- reading dates -------------------------------------------------------------------------------
@pytest.mark.parametrize("freq,alias,m", [("MS", "MS", 12), ("ME", "ME", 12), ("QS", "QS-OCT", 4), ("QE", "QE-DEC", 4),
                                          ("D", "D", 7), ("h", "h", 24), ("YS", "YS-JAN", 1), ("W-SUN", "W-SUN", 52)])
def test_frequency_inferred_and_season_follows(tmp_path, freq, alias, m):
    dates = pd.date_range("2001-01-01", periods=60, freq=freq)
    p = _write(tmp_path, "a.csv", date=dates.astype(str), value=_seasonal(60, 4))
    s = read_csv_timeseries(p)
    assert s.date_column == "date" and s.column == "value"
    assert pd.tseries.frequencies.to_offset(s.freq) == pd.tseries.frequencies.to_offset(alias)
    assert (s.dates == dates).all()
    assert resolve_season_length(s.values, s.freq) == (m, f"frequency {s.freq}")


def test_date_column_found_by_content_and_rows_sorted(tmp_path):
    dates = pd.date_range("2020-01-01", periods=30, freq="D")
    y = np.arange(30.0)
    order = np.random.default_rng(0).permutation(30)
    p = _write(tmp_path, "a.csv", when=dates[order].strftime("%d %b %Y"), sales=y[order], note=["x"] * 30)
    s = read_csv_timeseries(p)
    assert s.date_column == "when" and s.column == "sales" and s.freq == "D"
    np.testing.assert_array_equal(s.values, y)  # sorted back into time order


def test_year_column_of_integers_is_a_date_not_the_value(tmp_path):
    p = _write(tmp_path, "a.csv", sales=np.arange(20.0), year=np.arange(1990, 2010))
    s = read_csv_timeseries(p)
    assert s.date_column == "year" and s.column == "sales"
    assert s.dates[0] == pd.Timestamp("1990-01-01") and resolve_season_length(s.values, s.freq)[0] == 1


def test_numbers_are_not_dates():
    df = pd.DataFrame({"t": np.arange(10), "v": np.arange(10.0), "s": [str(i) for i in range(10)]})
    assert find_date_column(df) is None


def test_undated_series_gets_season_from_the_data(tmp_path):
    p = _write(tmp_path, "a.csv", value=_seasonal(96, 12))
    s = read_csv_timeseries(p)
    assert s.dates is None and s.freq is None
    assert resolve_season_length(s.values, None) == (12, "autocorrelation")
    assert resolve_season_length(s.values, None, 5) == (5, "given")
    assert resolve_season_length(s.values, "MS", 5) == (5, "given")


def test_freq_override_fills_gaps(tmp_path):
    dates = pd.date_range("2001-01-01", periods=24, freq="MS")
    keep = np.r_[0:10, 12:24]
    y = np.arange(24.0)
    p = _write(tmp_path, "a.csv", date=dates[keep].astype(str), value=y[keep])
    s = read_csv_timeseries(p, freq="MS")
    assert s.values.shape == (24,) and np.isnan(s.values[10:12]).all()
    res = forecast_csv(p, ForecastConfig(model="naive", horizon=2, freq="MS"))
    assert res.history.shape == (24,)
    np.testing.assert_allclose(res.history, y)  # the gap is interpolated linearly


# -- errors ----------------------------------------------------------------------------------------
def test_duplicated_timestamps_error(tmp_path):
    d = pd.date_range("2001-01-01", periods=12, freq="MS").astype(str).tolist()
    d[5] = d[4]
    p = _write(tmp_path, "a.csv", date=d, value=np.arange(12.0))
    with pytest.raises(ValueError, match="duplicated timestamps, e.g. 2001-05-01"):
        read_csv_timeseries(p)


def test_irregular_timestamps_error_names_the_gap(tmp_path):
    d = pd.date_range("2001-01-01", periods=12, freq="MS")
    p = _write(tmp_path, "a.csv", date=d.delete(6).astype(str), value=np.arange(11.0))
    with pytest.raises(ValueError, match=r"irregular: .*'MS'.*row 7 is 2001-08-01.*2001-07-01 was due.*--freq MS"):
        read_csv_timeseries(p)
    d = pd.DatetimeIndex(["2001-01-01", "2001-01-02", "2001-01-05", "2001-01-06", "2001-01-20"])
    with pytest.raises(ValueError, match="irregular"):
        regular_index(d, np.arange(5.0))


def test_off_grid_and_other_date_errors(tmp_path):
    d = pd.date_range("2001-01-01", periods=12, freq="MS").astype(str).tolist()
    d[3] = "2001-04-15"
    p = _write(tmp_path, "a.csv", date=d, value=np.arange(12.0))
    with pytest.raises(ValueError, match="2001-04-15 is not on the 'MS' grid"):
        read_csv_timeseries(p, freq="MS")
    with pytest.raises(ValueError, match="unknown frequency 'monthly'"):
        read_csv_timeseries(p, freq="monthly")
    with pytest.raises(ValueError, match="no date column 'when'"):
        read_csv_timeseries(p, date_column="when")
    with pytest.raises(ValueError, match="does not parse as dates"):
        read_csv_timeseries(p, date_column="value")
    q = _write(tmp_path, "b.csv", value=np.arange(12.0))
    with pytest.raises(ValueError, match="needs a date column"):
        read_csv_timeseries(q, freq="MS")
    with pytest.raises(ValueError, match="cannot infer a frequency from 2"):
        regular_index(pd.DatetimeIndex(["2001-01-01", "2001-02-01"]), [1.0, 2.0])


def test_future_dates_and_formatting():
    d = pd.date_range("2001-01-01", periods=5, freq="QS-OCT")
    f = future_dates(d, "QS-OCT", 3)
    assert list(f) == list(pd.DatetimeIndex(["2002-04-01", "2002-07-01", "2002-10-01"]))
    assert format_dates(f, "QS-OCT") == ["2002-04-01", "2002-07-01", "2002-10-01"]
    h = future_dates(pd.date_range("2001-01-01", periods=5, freq="h"), "h", 2)
    assert format_dates(h, "h") == ["2001-01-01 05:00:00", "2001-01-01 06:00:00"]
    with pytest.raises(ValueError, match="horizon"):
        future_dates(d, "QS", 0)


# -- the default, end to end -----------------------------------------------------------------------
def test_monthly_csv_default_model_season_12_and_dated_rows(tmp_path):
    dates = pd.date_range("2015-01-01", periods=96, freq="MS")
    y = _seasonal(96, 12)
    p = _write(tmp_path, "monthly.csv", date=dates.strftime("%Y-%m-%d"), sales=y)
    res = forecast_csv(p, ForecastConfig(horizon=12))
    assert res.model == DEFAULT_MODEL and res.season_length == 12 and res.season_source == "frequency MS"
    df = res.frame
    assert list(df.columns) == ["date", "step", "median"] + [f"q{q:g}" for q in QUANTILES]
    assert df["date"].tolist() == pd.date_range("2023-01-01", periods=12, freq="MS").strftime("%Y-%m-%d").tolist()
    # the default model, given season length 12 (identical to building it by hand)
    want = get_forecaster(DEFAULT_MODEL, season_length=12).predict(y, 12, seed=0).quantiles
    np.testing.assert_allclose(df[[f"q{q:g}" for q in QUANTILES]].to_numpy(), want, rtol=1e-7)  # CSV round trip
    assert not np.allclose(want, get_forecaster(DEFAULT_MODEL, season_length=1).predict(y, 12, seed=0).quantiles)


def test_ensemble_is_the_median_of_its_members_with_the_season(tmp_path):
    dates = pd.date_range("2010-01-01", periods=48, freq="QS")
    y = _seasonal(48, 4)
    p = _write(tmp_path, "q.csv", quarter=dates.astype(str), value=y)
    res = forecast_csv(p, ForecastConfig(model="ensemble", horizon=5))
    assert res.season_length == 4 and res.frame["quarter"].iloc[0] == "2022-01-01"
    members = [get_forecaster(m, season_length=4) for m in ENSEMBLE_MEMBERS]
    want = median_quantiles([m.predict(y, 5, seed=0).quantiles for m in members])
    np.testing.assert_allclose(res.forecast.quantiles, np.sort(want, axis=1), rtol=1e-7)


def test_every_model_gets_the_season_length(tmp_path):
    dates = pd.date_range("2015-01-01", periods=48, freq="QS")
    y = _seasonal(48, 4)
    p = _write(tmp_path, "q.csv", date=dates.astype(str), value=y)
    res = forecast_csv(p, ForecastConfig(model="seasonal_naive", horizon=6))
    np.testing.assert_allclose(res.forecast.median, np.r_[y[-4:], y[-4:-2]])  # value one season (4) ago
    assert res.frame["date"].iloc[0] == "2027-01-01"
    f = get_forecaster("fracast", season_length=12)
    assert f.season_length == 12 and f.context(np.arange(100.0)).size == 96  # whole seasons of context
    assert get_forecaster("fracast").context(np.arange(100.0)).size == 100
    ens = get_forecaster("ensemble", season_length=7)
    assert isinstance(ens, MedianEnsemble) and all(m.season_length == 7 for m in ens.members)


def test_daily_csv_through_the_cli(tmp_path, capsys):
    dates = pd.date_range("2024-01-01", periods=70, freq="D")
    p = _write(tmp_path, "d.csv", day=dates.astype(str), visits=_seasonal(70, 7))
    out = tmp_path / "f.csv"
    assert run_cli([str(p), "--horizon", "3", "--model", "seasonal_naive", "--out", str(out)]) == 0
    assert "season length 7 from frequency D" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert df["day"].tolist() == ["2024-03-11", "2024-03-12", "2024-03-13"]
    np.testing.assert_allclose(df["median"], pd.read_csv(p)["visits"].to_numpy()[-7:-4])


def test_undated_csv_through_the_cli_infers_season(tmp_path, capsys):
    y = _seasonal(96, 12)
    p = _write(tmp_path, "u.csv", value=y)
    out = tmp_path / "f.csv"
    assert run_cli([str(p), "--horizon", "2", "--model", "seasonal_naive", "--out", str(out)]) == 0
    assert "undated; season length 12 from autocorrelation" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert list(df.columns)[:2] == ["step", "median"]
    np.testing.assert_allclose(df["median"], y[-12:-10])


def test_cli_errors_and_list(tmp_path, capsys):
    from fuse.cli import main

    d = pd.date_range("2001-01-01", periods=12, freq="MS").astype(str).tolist()
    d[5] = d[4]
    p = _write(tmp_path, "dup.csv", date=d, value=np.arange(12.0))
    assert main(["forecast", str(p), "--horizon", "2"]) == 2
    assert "duplicated timestamps" in capsys.readouterr().err
    assert main(["forecast", str(p), "--horizon", "2", "--season-length", "0"]) == 2
    assert "season_length must be a positive integer" in capsys.readouterr().err
    assert run_cli(["--list"]) == 0
    out = capsys.readouterr().out
    assert f"default: {DEFAULT_MODEL}" in out and "[default]" in out


def test_config_validation():
    assert ForecastConfig().model == DEFAULT_MODEL
    with pytest.raises(ValueError, match="unknown forecaster"):
        ForecastConfig(model="prophet")
    with pytest.raises(ValueError, match="horizon"):
        ForecastConfig(horizon=0)
    with pytest.raises(ValueError, match="samples"):
        ForecastConfig(samples=0)
    with pytest.raises(ValueError, match="give a horizon"):
        forecast_csv("x.csv", ForecastConfig())


def test_median_ensemble_definition_and_errors():
    a, b, c = (np.full((3, 9), v) for v in (1.0, 5.0, 2.0))
    np.testing.assert_array_equal(median_quantiles([a, b, c]), np.full((3, 9), 2.0))
    np.testing.assert_array_equal(median_quantiles([a, b]), np.full((3, 9), 3.0))
    with pytest.raises(ValueError, match="at least one"):
        median_quantiles([])
    with pytest.raises(ValueError, match="differ in shape"):
        median_quantiles([a, np.ones((2, 9))])
    with pytest.raises(ValueError, match="at least two"):
        MedianEnsemble([get_forecaster("naive")])
    short = np.arange(5.0)  # too short for fracast (8): the others forecast
    ens = MedianEnsemble([get_forecaster("naive"), get_forecaster("fracast")])
    assert ens.min_context == 2
    np.testing.assert_allclose(ens.predict(short, 2).median, [4.0, 4.0])
