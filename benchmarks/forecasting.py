"""Forecasting benchmark: 36 real series from yearly to hourly, rolling origin, utilsforecast metrics.

The series ship inside two PyPI packages (nothing is downloaded at run time): ``statsmodels``
(sunspots, Nile, world-bank fertility rates, US macro data, Danish money demand, Mauna Loa CO2,
El Niño, euro-area electrical equipment) and ``vega_datasets`` (US employment, stock prices,
Seattle weather, hourly Seattle and San Francisco temperatures). Every series carries its
timestamps: the frequency is inferred by :func:`fuse.forecast.timeindex.regular_index` and the
season length follows from it (:func:`fuse.forecast.seasonality.season_length_for_freq`), the
same path ``fuse forecast`` takes on a dated CSV. Histories are capped to the last
``--max-history`` values (1000) so that the benchmark runs on 2 cores in minutes; weekly data is
left out because AutoARIMA with a 52-week season took more than 9 minutes for one forecast.

Every model runs side by side on the same cut-offs; MASE and scaled CRPS come from
``utilsforecast.losses`` and are aggregated as the geometric mean, over (series, cut-off)
windows, of the ratio to SeasonalNaive, overall and per frequency. Median ensembles are the
quantile-wise median of their members' forecasts (:func:`fuse.forecast.ensemble.median_quantiles`,
exactly what ``MedianEnsemble`` computes), combined from the members' stored forecasts.

Run: ``python3 -m benchmarks.forecasting [--quick] [--lm-cutoffs N] [--no-lm]``;
``--optimize-descriptions`` runs only the cross-tokenizer description optimization on the eight
described series and merges it into the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402

from fuse.forecast import QUANTILES, get_forecaster  # noqa: E402
from fuse.forecast.ensemble import median_quantiles  # noqa: E402
from fuse.forecast.registry import AUTO_CANDIDATES, AUTO_SETTINGS, DEFAULT_MODEL  # noqa: E402
from fuse.forecast.select import SelectForecaster, cached_forecast  # noqa: E402
from fuse.forecast.seasonality import season_length_for_freq  # noqa: E402
from fuse.forecast.timeindex import regular_index  # noqa: E402

logger = logging.getLogger("benchmarks.forecasting")

#: Forecast horizon per frequency (as in M4 where it has one, halved for hourly to keep it cheap).
HORIZONS = {"yearly": 6, "quarterly": 8, "monthly": 12, "daily": 14, "hourly": 24}

DESCRIPTIONS = {
    "co2": "Monthly mean atmospheric CO2 concentration at Mauna Loa in ppm: a steady upward trend with a yearly cycle.",
    "sunspots": "Yearly mean sunspot number: non-negative, with a cycle of about 11 years.",
    "elnino": "Monthly sea surface temperature in the Nino 3.4 region in degrees Celsius, with a yearly cycle.",
    "realgdp": "Quarterly US real GDP in billions of chained dollars: a smooth upward trend.",
    "cpi": "Quarterly US consumer price index: a smooth upward trend.",
    "unemp": "Quarterly US unemployment rate in percent: slow business-cycle swings.",
    "nile": "Yearly flow volume of the river Nile at Aswan: noisy around a level.",
    "elec_equip": "Monthly index of electrical equipment manufactured in the euro area, with a yearly cycle.",
}

FERTILITY_COUNTRIES = ("United States", "India", "Brazil", "Japan", "Nigeria", "Germany")
MACRO = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "unemp", "tbilrate")
EMPLOYMENT = ("nonfarm", "construction", "leisure_and_hospitality", "retail_trade", "education_and_health_services")
STOCKS = ("AAPL", "MSFT", "IBM")
WEATHER = ("temp_max", "temp_min", "wind", "precipitation")


def _vega(name: str) -> pd.DataFrame:
    import importlib.resources

    return pd.read_csv(importlib.resources.files("vega_datasets") / "_data" / name)


def raw_series() -> dict[str, tuple[pd.DatetimeIndex, np.ndarray, str | None]]:
    """name -> (timestamps, values, frequency to impose or None to infer); all ship offline."""
    from statsmodels import datasets as D
    from statsmodels.datasets import elec_equip

    out = {}
    sun = D.sunspots.load_pandas().data
    out["sunspots"] = (pd.to_datetime(sun["YEAR"].astype(int).astype(str), format="%Y"), sun["SUNACTIVITY"], None)
    nile = D.nile.load_pandas().data
    out["nile"] = (pd.to_datetime(nile["year"].astype(int).astype(str), format="%Y"), nile["volume"], None)
    fert = D.fertility.load_pandas().data.set_index("Country Name")
    years = [c for c in fert.columns if c.isdigit()]
    for country in FERTILITY_COUNTRIES:
        v = fert.loc[country, years].astype(float)
        out[f"fertility_{country.lower().replace(' ', '_')}"] = (pd.to_datetime(years, format="%Y"), v.to_numpy(), None)
    macro = D.macrodata.load_pandas().data
    q = pd.PeriodIndex.from_fields(year=macro["year"].astype(int), quarter=macro["quarter"].astype(int), freq="Q").to_timestamp()
    for col in MACRO:
        out[col] = (q, macro[col], None)
    dan = D.danish_data.load_pandas().data
    for col in ("lrm", "lry"):
        out[f"danish_{col}"] = (pd.DatetimeIndex(dan.index), dan[col], None)
    co2 = D.co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    out["co2"] = (co2.index, co2, None)
    el = D.elnino.load_pandas().data
    el_v = el.drop(columns="YEAR").to_numpy().reshape(-1)
    el_d = pd.date_range(f"{int(el['YEAR'].iloc[0])}-01-01", periods=el_v.size, freq="MS")
    out["elnino"] = (el_d, el_v, None)
    ee = elec_equip.load().data.iloc[:, 0]
    out["elec_equip"] = (pd.DatetimeIndex(ee.index), ee, None)
    emp = _vega("us-employment.csv")
    for col in EMPLOYMENT:
        out[f"employment_{col}"] = (pd.to_datetime(emp["month"]), emp[col], None)
    st = _vega("stocks.csv")
    for sym in STOCKS:
        g = st[st.symbol == sym]
        out[f"stock_{sym.lower()}"] = (pd.to_datetime(g["date"], format="%b %d %Y"), g["price"], None)
    w = _vega("seattle-weather.csv")
    for col in WEATHER:
        out[f"seattle_{col}"] = (pd.to_datetime(w["date"]), w[col], None)
    for name, file in (("seattle_temp_hourly", "seattle-temps.csv"), ("sf_temp_hourly", "sf-temps.csv")):
        t = _vega(file)
        # the 2010 files miss an hour or so; placed on the hourly grid, gaps are interpolated
        out[name] = (pd.to_datetime(t["date"]), t["temp"], "h")
    return out


def _frequency_group(freq: str) -> str:
    m = season_length_for_freq(freq)
    return {1: "yearly", 4: "quarterly", 12: "monthly", 7: "daily", 24: "hourly"}[m]


def load_series(max_history: int = 1000) -> dict[str, dict]:
    """name -> {values, dates, freq, season, group, horizon}, through fuse's own time handling."""
    from fuse.forecast.series import as_series

    out = {}
    for name, (dates, values, freq) in raw_series().items():
        reg = regular_index(pd.DatetimeIndex(dates), np.asarray(values, dtype=np.float64), freq)
        group = _frequency_group(reg.freq)
        y = as_series(reg.values, name=name)
        out[name] = {"values": y[-(max_history + HORIZONS[group] * 3):], "freq": reg.freq,
                     "season": season_length_for_freq(reg.freq), "group": group, "horizon": HORIZONS[group]}
    return out


def described_series() -> dict[str, tuple[np.ndarray, int, int]]:
    """The eight series with a hand-written description: name -> (values, season, horizon)."""
    s = load_series(max_history=10**6)
    return {k: (s[k]["values"], s[k]["season"], s[k]["horizon"]) for k in DESCRIPTIONS}


def qcol(model: str, q: float) -> str:
    return f"{model}-q{int(round(q * 100))}"


#: Median ensembles measured: name -> members.
ENSEMBLES = {
    "median(ets,theta,fracast)": ("auto_ets", "auto_theta", "fracast"),
    "median(ets,arima,fracast)": ("auto_ets", "auto_arima", "fracast"),
    "median(ets,arima,theta,fracast)": ("auto_ets", "auto_arima", "auto_theta", "fracast"),
    "median(ets,theta)": ("auto_ets", "auto_theta"),
    "median(ets,fracast)": ("auto_ets", "fracast"),
    "median(ets,arima)": ("auto_ets", "auto_arima"),
    "median(arima,fracast)": ("auto_arima", "fracast"),
    "median(arima,theta,fracast)": ("auto_arima", "auto_theta", "fracast"),
    "median(ets,arima,theta)": ("auto_ets", "auto_arima", "auto_theta"),
}
BASELINES = ["naive", "seasonal_naive", "auto_ets", "auto_arima", "auto_theta"]
#: Per-series selection by rolling-origin validation on the history (fuse.forecast.select), over
#: registry.AUTO_CANDIDATES: name -> SelectForecaster settings. Every variant is the real
#: SelectForecaster; member forecasts are shared through one cache, so a history already forecast
#: by a member (the window before's, or another variant's fold) is not fitted again.
SELECTORS = {f"select({'top' + str(top) if w == 'top' else 'invw'},f{folds})":
             {"folds": folds, "top": top, "weighting": w, "median": False}
             for folds in (1, 2, 3) for top, w in ((1, "top"), (2, "top"), (3, "top"), (1, "inverse_error"))}
#: ... and with the median of all candidates as one more candidate (``+med``).
SELECTORS.update({f"select(top1,f{folds},+med)": {"folds": folds, "top": 1, "weighting": "top", "median": True}
                  for folds in (2, 3)})
#: The CLI's default before seasons were inferred: AutoETS with season length 1 on every series.
OLD_DEFAULT = "auto_ets(season=1)"
#: The ensemble registered as ``ensemble`` in fuse.forecast.registry (ENSEMBLE_MEMBERS).
REGISTERED_ENSEMBLE = "median(ets,arima,fracast)"


def evaluate(rows: list[dict], train: list[dict], models: list[str]) -> pd.DataFrame:
    """Per-window MASE and scaled CRPS via utilsforecast."""
    from utilsforecast.losses import mase, scaled_crps

    df = pd.DataFrame(rows)
    train_df = pd.DataFrame(train)
    out = []
    for uid, g in df.groupby("unique_id"):
        m = int(g["season"].iloc[0])
        tr = train_df[train_df.unique_id == uid]
        present = [mod for mod in models if mod in g and g[mod].notna().all()]
        if not present:
            continue
        a = mase(g[["unique_id", "ds", "y", *present]], present, seasonality=m, train_df=tr)
        c = scaled_crps(g[["unique_id", "ds", "y", *[qcol(mod, q) for mod in present for q in QUANTILES]]],
                        {mod: [qcol(mod, q) for q in QUANTILES] for mod in present}, np.array(QUANTILES))
        for mod in present:
            out.append({"unique_id": uid, "series": uid.split("|")[0], "group": g["group"].iloc[0], "model": mod,
                        "mase": float(a[mod].iloc[0]), "scrps": float(c[mod].iloc[0])})
    return pd.DataFrame(out)


def gmean_ratio(scores: pd.DataFrame, metric: str, baseline: str = "seasonal_naive") -> dict[str, float]:
    """Geometric mean over windows of ``metric(model) / metric(baseline)`` (windows with a zero dropped)."""
    piv = scores.pivot(index="unique_id", columns="model", values=metric)
    res = {}
    for mod in piv.columns:
        r = (piv[mod] / piv[baseline]).replace([np.inf, -np.inf], np.nan).dropna()
        r = r[r > 0]
        res[mod] = float(np.exp(np.log(r).mean())) if len(r) else float("nan")
    return res


def _forecasters(names: list[str], seed: int) -> tuple[dict, dict]:
    """Builders ``season -> Forecaster`` per model, and the seconds spent training/loading each."""
    built, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        if name in BASELINES:
            built[name] = lambda m, name=name: get_forecaster(name, season_length=m)
        elif name == OLD_DEFAULT:  # what `fuse forecast` did before: AutoETS without a season
            built[name] = lambda m: get_forecaster("auto_ets", season_length=1)
        elif name == "fracast-full":  # the whole history, not cut to whole seasons
            f = get_forecaster("fracast", season_length=1)
            built[name] = lambda m, f=f: f
        elif name == "fracast":
            f = get_forecaster("fracast")
            built[name] = lambda m, f=f: (setattr(f, "season_length", m), f)[1]
        elif name == "calmflow":
            from fuse.forecast.calmflow import CaLMFlowForecaster

            f = CaLMFlowForecaster.pretrained()  # trained once with the config's seed, then cached
            built[name] = lambda m, f=f: (setattr(f, "season_length", m), f)[1]
        elif name.startswith("llmtime"):
            f = get_forecaster(name, max_history=96, batch_size=8)
            built[name] = lambda m, f=f: (setattr(f, "season_length", m), f)[1]
        else:
            raise ValueError(f"unknown benchmark model {name!r}")
        seconds[name] = time.perf_counter() - t0
    return built, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutoffs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--lm-samples", type=int, default=8)
    ap.add_argument("--lm-cutoffs", type=int, default=1, help="run the LM forecaster on the last N cut-offs")
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--no-calmflow", action="store_true")
    ap.add_argument("--max-history", type=int, default=1000, help="values of history each forecaster gets")
    ap.add_argument("--quick", action="store_true", help="one series per frequency, 1 cut-off (smoke test)")
    ap.add_argument("--only", default=None, help="comma-separated series names (smoke tests; results go to forecasting_quick)")
    ap.add_argument("--no-select", action="store_true", help="leave out the selection variants (SELECTORS)")
    ap.add_argument("--render", action="store_true", help="only re-render results/forecasting.{md,png} from its JSON")
    ap.add_argument("--dump", default=None, help="also write every window's forecasts to this CSV (for analysis)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids OpenMP spin-waiting when other jobs share the 2 cores)")
    ap.add_argument("--optimize-descriptions", action="store_true",
                    help="only run the cross-tokenizer description optimization and merge it into the results")
    ap.add_argument("--desc-primary", default="bundled:minilm-l6", help="whose tokens the description is written in")
    ap.add_argument("--desc-budget", type=int, default=64, help="exact evaluations per optimization")
    ap.add_argument("--lm-history", type=int, default=96, help="values in the LM prompt (description optimization)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("fuse").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.optimize_descriptions:
        return optimize_descriptions(args)
    if args.render:
        return render_saved()
    series = load_series(args.max_history)
    if args.only:
        series = {k: series[k] for k in args.only.split(",")}
        args.quick = True
    elif args.quick:
        first = {}
        for k, v in series.items():
            first.setdefault(v["group"], k)
        series = {k: series[k] for k in first.values()}
        args.cutoffs = 1
    lm_cutoffs = min(args.cutoffs, args.lm_cutoffs)
    fast = [*BASELINES, OLD_DEFAULT, "fracast", "fracast-full"] + ([] if args.no_calmflow else ["calmflow"])
    lm_models = [] if args.no_lm else ["llmtime:smollm2-135m"]
    built, fit_seconds = _forecasters(fast + lm_models, args.seed)
    models = fast + lm_models
    selectors = {} if args.no_select else SELECTORS
    rows, train, runtime = [], [], {m: [] for m in models + list(ENSEMBLES) + list(selectors)}
    group_runtime = {}
    for sname, s in series.items():
        y, season, h = s["values"], s["season"], s["horizon"]
        cache = {}  # member forecasts by history, shared by the baselines and every selection variant
        for k in range(args.cutoffs, 0, -1):
            cut = len(y) - k * h
            hist, fut = y[:cut][-args.max_history:], y[cut:cut + h]
            uid = f"{sname}|{args.cutoffs - k}"
            win = {"unique_id": [uid] * h, "ds": np.arange(cut, cut + h), "y": fut, "season": [season] * h,
                   "group": [s["group"]] * h}
            train += [{"unique_id": uid, "ds": cut - len(hist) + i, "y": v} for i, v in enumerate(hist)]
            qs = {}
            for mod in models:
                if mod in lm_models and k > lm_cutoffs:
                    continue
                f = built[mod](season)
                if len(hist) < f.min_context:  # e.g. calmflow needs 48 values; scored on the windows it ran on
                    logger.info("%s %s: history %d < %d, skipped", uid, mod, len(hist), f.min_context)
                    continue
                t = time.perf_counter()
                n = args.lm_samples if mod in lm_models else args.samples
                if mod in AUTO_CANDIDATES:  # exactly the forecast a selector's final refit uses
                    fc, sec = cached_forecast(f, hist, h, n_samples=n, seed=args.seed, cache=cache)
                    runtime[mod].append(sec)
                else:
                    fc = f.predict(hist, h, n_samples=n, seed=args.seed)
                    runtime[mod].append(time.perf_counter() - t)
                qs[mod] = fc.quantiles
                logger.info("%s %s: %.2fs", uid, mod, runtime[mod][-1])
            for ens, members in ENSEMBLES.items():
                qs[ens] = median_quantiles([qs[m] for m in members])
                runtime[ens].append(sum(runtime[m][-1] for m in members))
            for sel, settings in selectors.items():
                f = SelectForecaster([built[c](season) for c in AUTO_CANDIDATES], season, name=sel, cache=cache, **settings)
                qs[sel] = f.predict(hist, h, n_samples=args.samples, seed=args.seed).quantiles
                runtime[sel].append(f.last_seconds)  # every member forecast it used, at its cost when made
                logger.info("%s %s: weights %s (validation MASE %s)", uid, sel, np.round(f.last_weights, 2),
                            np.round(f.last_errors, 3))
            for mod in qs:
                group_runtime.setdefault(s["group"], {}).setdefault(mod, []).append(runtime[mod][-1])
            for mod, q in qs.items():
                win[mod] = q[:, QUANTILES.index(0.5)]
                for j, lv in enumerate(QUANTILES):
                    win[qcol(mod, lv)] = q[:, j]
            rows += pd.DataFrame(win).to_dict("records")
    everywhere = fast + list(ENSEMBLES) + list(selectors)
    all_models = everywhere + lm_models
    if args.dump:
        pd.DataFrame(rows).to_csv(args.dump, index=False)
    scores = evaluate(rows, train, all_models)
    figures = summarize(scores, everywhere, lm_models, runtime, series, args.cutoffs, lm_cutoffs)
    n_windows = scores.unique_id.nunique()
    figures["skipped"] = {m: int(n_windows - scores[scores.model == m].unique_id.nunique()) for m in everywhere
                          if scores[scores.model == m].unique_id.nunique() < n_windows}
    figures["seconds_per_forecast_per_frequency"] = {g: {m: float(np.mean(v)) for m, v in d.items()}
                                                     for g, d in group_runtime.items()}
    figures["fit_seconds"] = fit_seconds
    config = {"series": {k: {"length": int(len(v["values"])), "freq": v["freq"], "season": v["season"],
                             "group": v["group"], "horizon": v["horizon"]} for k, v in series.items()},
              "cutoffs": args.cutoffs, "samples": args.samples, "lm_samples": args.lm_samples,
              "lm_cutoffs": lm_cutoffs, "max_history": args.max_history, "quick": args.quick,
              "models": everywhere, "lm_models": lm_models, "ensembles": {k: list(v) for k, v in ENSEMBLES.items()},
              "selectors": selectors, "selection_candidates": list(AUTO_CANDIDATES),
              "metrics": "utilsforecast.losses.mase / scaled_crps; gmean of ratio to seasonal_naive per window",
              "torch_threads": torch.get_num_threads()}
    name = "forecasting_quick" if args.quick else "forecasting"
    old = RESULTS / f"{name}.json"
    if old.is_file():  # keep the description optimization, which --optimize-descriptions adds
        prev = json.loads(old.read_text())
        if "description_optimization" in prev["figures"]:
            figures["description_optimization"] = prev["figures"]["description_optimization"]
            config["description_optimization"] = prev["config"].get("description_optimization", {})
    md = render_markdown(figures, config)
    write_results(name, config=config, seed=args.seed, figures=figures, markdown=md,
                  extra_packages=["statsforecast", "utilsforecast", "statsmodels", "vega_datasets", "fracast", "pandas"])
    plot(figures, RESULTS / f"{name}.png")
    print(md)
    return 0


def summarize(scores, everywhere, lm_models, runtime, series, cutoffs, lm_cutoffs) -> dict:
    """Overall, per-frequency and LM-subset tables of the scores."""
    def table(sub, models):
        rm, rc = gmean_ratio(sub, "mase"), gmean_ratio(sub, "scrps")
        return {m: {"rel_mase_gmean": rm[m], "rel_crps_gmean": rc[m], "mase_mean": float(sub[sub.model == m].mase.mean()),
                    "scrps_mean": float(sub[sub.model == m].scrps.mean()),
                    "seconds_per_forecast": float(np.mean(runtime[m])) if runtime[m] else float("nan")}
                for m in models if m in rm}

    full = scores[scores.model.isin(everywhere)]
    groups = [g for g in HORIZONS if g in set(full.group)]
    figures = {
        "all_windows": table(full, everywhere),
        "per_frequency": {g: table(full[full.group == g], everywhere) for g in groups},
        "windows_per_frequency": {g: int(full[full.group == g].unique_id.nunique()) for g in groups},
        "series_per_frequency": {g: sum(1 for s in series.values() if s["group"] == g) for g in groups},
        "windows": int(full.unique_id.nunique()),
        "per_series": full.groupby(["series", "model"])[["mase", "scrps"]].mean().reset_index().to_dict("records"),
    }
    # Held-out view: the earlier cut-offs' windows end before the last cut-off, so a choice made on
    # them (e.g. of the selection variant) uses nothing that the last cut-off's windows score.
    cut = full.unique_id.str.split("|").str[1].astype(int)
    if cut.nunique() > 1:
        figures["earlier_cutoffs"] = table(full[cut < cut.max()], everywhere)
        figures["last_cutoff"] = table(full[cut == cut.max()], everywhere)
        sels = [m for m in SELECTORS if m in figures["earlier_cutoffs"]]
        if sels:
            ea = figures["earlier_cutoffs"]
            figures["chosen_on_earlier_cutoffs"] = min(sels, key=lambda m: (ea[m]["rel_mase_gmean"], ea[m]["rel_crps_gmean"]))
    if lm_models:
        lm_windows = set(scores[scores.model.isin(lm_models)].unique_id)
        last = scores[scores.unique_id.isin(lm_windows)]
        figures["lm_subset"] = table(last, everywhere + lm_models)
        figures["lm_windows"] = len(lm_windows)
    stats = [m for m in BASELINES if m in figures["all_windows"]]
    aw = figures["all_windows"]
    figures["best_baseline"] = min(stats, key=lambda m: aw[m]["rel_mase_gmean"])
    figures["best_model"] = min(aw, key=lambda m: (aw[m]["rel_mase_gmean"], aw[m]["rel_crps_gmean"]))
    return figures


def default_selector() -> str | None:
    """The SELECTORS variant that the registered default is (None when the default is no selector)."""
    if DEFAULT_MODEL != "auto":
        return None
    return next((k for k, v in SELECTORS.items() if v == AUTO_SETTINGS), None)


_KEYS = ("rel_mase_gmean", "rel_crps_gmean", "mase_mean", "scrps_mean", "seconds_per_forecast")


def _family(m: str) -> str:
    if m == OLD_DEFAULT:
        return "statistical (the CLI's old default)"
    if m in BASELINES:
        return "statistical (statsforecast)"
    if m.startswith("median("):
        return "median ensemble"
    if m in SELECTORS:
        return "selection (fuse, the default `auto`)" if m == default_selector() else "selection (fuse)"
    return "fuse"


def render_markdown(figures: dict, config: dict) -> str:
    """The results page, from the figures alone."""
    aw = figures["all_windows"]
    models = [m for m in config["models"] if m in aw]
    header = ["model", "family", "rel. MASE (gmean)", "rel. sCRPS (gmean)", "mean MASE", "mean sCRPS", "s / forecast"]
    t1 = [[m, _family(m), *[aw[m][k] for k in _KEYS]] for m in models]
    groups = [g for g in HORIZONS if g in figures["per_frequency"]]
    per_freq_head = ["model", *[f"{g} ({figures['series_per_frequency'][g]} series) MASE" for g in groups],
                     *[f"{g} sCRPS" for g in groups]]
    pf = figures["per_frequency"]
    t2 = [[m, *[pf[g][m]["rel_mase_gmean"] for g in groups], *[pf[g][m]["rel_crps_gmean"] for g in groups]] for m in models]
    ps = {(r["series"], r["model"]): r["mase"] for r in figures["per_series"]}
    series = config["series"]
    order = sorted(series, key=lambda s: (list(HORIZONS).index(series[s]["group"]), s))
    t3 = [[s, series[s]["group"], series[s]["season"], *[float(ps.get((s, m), float("nan"))) for m in models]] for s in order]
    best, bb = figures["best_model"], figures["best_baseline"]
    n_series = len(series)
    counts = ", ".join(f"{figures['series_per_frequency'][g]} {g}" for g in groups)
    md = (f"{n_series} real series ({counts}), "
          f"{config['cutoffs']} rolling cut-offs each ({figures['windows']} windows); horizons "
          f"{ {g: HORIZONS[g] for g in groups} }; season length from the inferred frequency "
          f"(yearly 1, quarterly 4, monthly 12, daily 7, hourly 24); at most {config['max_history']} values of history. "
          "Ratios are to SeasonalNaive per window, geometric mean over windows (lower is better); metrics from "
          "utilsforecast (`mase`, `scaled_crps` over the 9 quantiles 0.1…0.9). `fracast` gets its context cut to whole "
          "seasons, `fracast-full` the whole history. Ensembles: quantile-wise median of the members' forecasts. "
          "A model that needs a longer history than a window has (calmflow: 48 values) is scored on the windows it ran "
          f"on ({figures.get('skipped', {})} windows skipped).\n\n"
          "## All windows\n\n" + markdown_table(header, t1) +
          f"\n\nBest: **{best}** (rel. MASE {aw[best]['rel_mase_gmean']:.3f}, rel. sCRPS {aw[best]['rel_crps_gmean']:.3f}); "
          f"best single statistical baseline: **{bb}** (rel. MASE {aw[bb]['rel_mase_gmean']:.3f}, "
          f"rel. sCRPS {aw[bb]['rel_crps_gmean']:.3f}).\n\n"
          + _default_markdown(figures, models) +
          "## Per frequency (geometric-mean ratio to SeasonalNaive)\n\n" + markdown_table(per_freq_head, t2))
    if "earlier_cutoffs" in figures:
        md += _held_out_markdown(figures, models, config)
    if "lm_subset" in figures:
        ls = figures["lm_subset"]
        lm_rows = [[m, _family(m), *[ls[m][k] for k in _KEYS]] for m in [*models, *config.get("lm_models", [])] if m in ls]
        md += (f"\n\n## The {figures['lm_windows']} windows the LM forecaster ran on (last {config['lm_cutoffs']} cut-off(s), "
               f"{config['lm_samples']} samples, last 96 values in the prompt)\n\n" + markdown_table(header, lm_rows))
    md += "\n\n## Mean MASE per series\n\n" + markdown_table(["series", "frequency", "season", *models], t3)
    if figures.get("fit_seconds"):
        md += ("\n\nLoading / training time (seconds, excluded from s / forecast): "
               + ", ".join(f"{m} {v:.1f}" for m, v in sorted(figures["fit_seconds"].items())) + ".\n")
    if "description_optimization" in figures:
        md += _description_markdown(figures["description_optimization"], config.get("description_optimization", {}))
    return md


def _default_markdown(figures: dict, models: list[str]) -> str:
    """The registered default against every single statistical baseline, all windows and per frequency."""
    d = default_selector() or DEFAULT_MODEL
    aw, pf = figures["all_windows"], figures["per_frequency"]
    if d not in aw:
        return ""
    stats = [m for m in BASELINES if m in aw]
    groups = [g for g in HORIZONS if g in pf]
    ahead = {m: aw[d]["rel_mase_gmean"] < aw[m]["rel_mase_gmean"] for m in stats if m != d}
    ahead_c = {m: aw[d]["rel_crps_gmean"] < aw[m]["rel_crps_gmean"] for m in stats if m != d}
    lost = {g: [m for m in stats if m != d and pf[g][m]["rel_mase_gmean"] < pf[g][d]["rel_mase_gmean"]] for g in groups}
    tied = {g: [m for m in stats if m != d and pf[g][m]["rel_mase_gmean"] == pf[g][d]["rel_mase_gmean"]] for g in groups}
    alias = f"`{DEFAULT_MODEL}` = {d}" if d != DEFAULT_MODEL else f"`{d}`"
    others = ", ".join(f"{m} {aw[m]['rel_mase_gmean']:.4f}" for m in ahead)
    per_group = "; ".join(f"{g}: {', '.join(lost[g]) or 'none'}" + (f" (tied: {', '.join(tied[g])})" if tied[g] else "")
                          for g in groups)
    return (f"The default, {alias}: rel. MASE {aw[d]['rel_mase_gmean']:.4f}, rel. sCRPS {aw[d]['rel_crps_gmean']:.4f}; "
            f"ahead of every single statistical baseline on all windows in MASE: **{'yes' if all(ahead.values()) else 'no'}**"
            f" ({others}), in sCRPS: "
            f"**{'yes' if all(ahead_c.values()) else 'no'}**. Per frequency, baselines ahead of it in MASE: "
            + per_group + ".\n\n")


def _held_out_markdown(figures: dict, models: list[str], config: dict) -> str:
    """Earlier cut-offs vs the last one: the selection variant chosen on the former, scored on the latter."""
    ea, la, aw = figures["earlier_cutoffs"], figures["last_cutoff"], figures["all_windows"]
    shown = [m for m in models if m in BASELINES or m in SELECTORS or m == REGISTERED_ENSEMBLE]
    head = ["model", "earlier cut-offs MASE", "earlier sCRPS", "last cut-off MASE", "last sCRPS", "all MASE", "all sCRPS"]
    rows = [[m, ea[m]["rel_mase_gmean"], ea[m]["rel_crps_gmean"], la[m]["rel_mase_gmean"], la[m]["rel_crps_gmean"],
             aw[m]["rel_mase_gmean"], aw[m]["rel_crps_gmean"]] for m in shown if m in ea and m in la]
    chosen = figures.get("chosen_on_earlier_cutoffs")
    text = ("\n\n## Held out: chosen on the earlier cut-offs, scored on the last\n\n"
            f"Selection variants (`SelectForecaster` over {', '.join(config.get('selection_candidates', AUTO_CANDIDATES))}: "
            "`topK` = mean of the K best by validation MASE, `invw` = all weighted by 1/validation MASE, `fN` = N folds "
            "of one horizon at the end of each window's own history, `+med` = the median of all candidates is one more "
            "candidate). The windows of the earlier cut-offs end before the "
            "last cut-off, so the variant with the best earlier-cut-off MASE is chosen without seeing any value the "
            "last cut-off's windows are scored on.\n\n" + markdown_table(head, rows))
    if chosen:
        text += (f"\n\nChosen on the earlier cut-offs: **{chosen}**; on the held-out last cut-off it has rel. MASE "
                 f"{la[chosen]['rel_mase_gmean']:.3f} / sCRPS {la[chosen]['rel_crps_gmean']:.3f}, against "
                 + ", ".join(f"{m} {la[m]['rel_mase_gmean']:.3f} / {la[m]['rel_crps_gmean']:.3f}" for m in BASELINES if m in la)
                 + f". The registered default `{DEFAULT_MODEL}` is {default_selector() or DEFAULT_MODEL}.")
    return text


def render_saved() -> int:
    """Re-render results/forecasting.{md,png} from results/forecasting.json (after the default changed)."""
    path = RESULTS / "forecasting.json"
    payload = json.loads(path.read_text())
    figures, config = payload["figures"], payload["config"]
    md = render_markdown(figures, config)
    header = (f"# forecasting\n\nGenerated by `benchmarks/forecasting.py` on {payload['date']} "
              f"({payload['machine']['platform']}, {payload['machine']['cpu_count']} CPUs, torch {payload['versions']['torch']}). "
              f"Seed {payload['seed']}.\n\n")
    (RESULTS / "forecasting.md").write_text(header + md.rstrip() + "\n")
    plot(figures, RESULTS / "forecasting.png")
    print(md)
    return 0


def optimize_descriptions(args) -> int:
    """Cross-tokenizer description optimization against the frozen LLMTime/SmolLM2 forecaster.

    For the last cut-off of each series: a description written in the primary's tokens
    (MiniLM by default) is optimized with GCG through the core adapters (``fuse.Chain``,
    ``fuse.optim``) to minimize SmolLM2's NLL of the serialized *history* after it (explaining the
    observed history; the future is never seen), starting from the hand-written description.
    Random search with the same budget and start is the control. Each description is then scored
    by the forecast loss, SmolLM2's NLL of the serialized *future* (``LMForecaster.loss``).
    """
    import torch

    import fuse
    from fuse.optim.chain import Chain
    from fuse.forecast.lm import LMForecaster
    from fuse.objectives import Continuation
    from fuse.optim import GCG, RandomSearch

    lm_bb = fuse.load("bundled:smollm2-135m")
    primary = fuse.load(args.desc_primary)
    f = LMForecaster(lm_bb, max_history=args.lm_history)
    rows = []
    for sname, (y, season, h) in described_series().items():
        y = np.asarray(y, dtype=np.float64)
        hist, fut = y[:-h], y[-h:]
        body, _ = f.prompt(hist)
        chain = Chain(primary, [(Continuation(lm_bb, "\n" + body), 1.0)])
        row = {"series": sname}
        texts = {"none": None, "fixed": DESCRIPTIONS[sname]}
        for label, cls, kw in [("gcg", GCG, {"top_k": 64}), ("random", RandomSearch, {})]:
            t = time.perf_counter()
            res = cls(chain, n_tokens=12, budget=args.desc_budget, batch_size=16, seed=args.seed,
                      init_text=DESCRIPTIONS[sname], **kw).run()
            texts[label] = res.best_text
            row[f"{label}_seconds"] = time.perf_counter() - t
        with torch.no_grad():
            for label, d in texts.items():
                row[f"{label}_text"] = d
                row[f"{label}_history_nll"] = _history_nll(f, hist, d)
                row[f"{label}_future_nll"] = float(f.loss(hist, fut, description=d))
        logger.info("%s: %s", sname, {k: v for k, v in row.items() if k.endswith("nll")})
        rows.append(row)
    labels = ["none", "fixed", "gcg", "random"]
    summary = {lab: {"history_nll_mean": float(np.mean([r[f"{lab}_history_nll"] for r in rows])),
                     "future_nll_mean": float(np.mean([r[f"{lab}_future_nll"] for r in rows]))} for lab in labels}
    summary["gcg_beats_none"] = int(sum(r["gcg_future_nll"] < r["none_future_nll"] for r in rows))
    summary["gcg_beats_fixed"] = int(sum(r["gcg_future_nll"] < r["fixed_future_nll"] for r in rows))
    summary["gcg_beats_random"] = int(sum(r["gcg_future_nll"] < r["random_future_nll"] for r in rows))
    path = RESULTS / "forecasting.json"
    old = json.loads(path.read_text())
    old["figures"]["description_optimization"] = {"rows": rows, "summary": summary}
    old["config"]["description_optimization"] = {
        "primary": args.desc_primary, "forecaster": "llmtime:smollm2-135m", "history": args.lm_history,
        "n_tokens": 12, "budget": args.desc_budget, "batch_size": 16, "gcg_top_k": 64, "seed": args.seed,
        "init": "hand-written description", "windows": "last cut-off of each series",
        "torch_threads": torch.get_num_threads()}
    md = render_markdown(old["figures"], old["config"])
    write_results("forecasting", config=old["config"], seed=old["seed"], figures=old["figures"], markdown=md,
                  extra_packages=["statsforecast", "utilsforecast", "statsmodels", "fracast", "pandas"])
    print(md)
    return 0


def _history_nll(f, hist: np.ndarray, description: str | None) -> float:
    """SmolLM2's NLL (nats per token) of the serialized history after the description, as the forecaster prompts it."""
    import torch

    text, _ = f.prompt(hist, description)
    ids = f._ids(text)
    n_pre = max(1, f._ids((description.strip() + "\n") if description else "").shape[1])
    with torch.no_grad():
        logits = f.backbone.logits(f.backbone.embed(ids))[0, n_pre - 1:-1].float()
    return float(torch.nn.functional.cross_entropy(logits, ids[0, n_pre:]))


def _description_markdown(d: dict, cfg: dict) -> str:
    rows, s = d["rows"], d["summary"]
    labels = [("none", "no description"), ("fixed", "hand-written"), ("random", "random search"), ("gcg", "GCG via adapter")]
    tab = [[r["series"], *[r[f"{k}_future_nll"] for k, _ in labels], *[r[f"{k}_history_nll"] for k, _ in labels]] for r in rows]
    tab.append(["**mean**", *[s[k]["future_nll_mean"] for k, _ in labels], *[s[k]["history_nll_mean"] for k, _ in labels]])
    head = ["series", *[f"future NLL: {n}" for _, n in labels], *[f"history NLL: {n}" for _, n in labels]]
    texts = "\n".join(f"* {r['series']}: `{r['gcg_text']}`" for r in rows)
    return ("\n\n## Cross-tokenizer description optimization\n\n"
            f"A {cfg.get('n_tokens', 12)}-token description in {cfg.get('primary', '?')} tokens, optimized through the "
            f"core adapters against the frozen {cfg.get('forecaster', '?')} forecaster (objective: its NLL of the "
            f"serialized history after the description; budget {cfg.get('budget', '?')} exact evaluations, started "
            "from the hand-written description), then scored by the forecast loss (NLL, nats per token, of the "
            "serialized future). Last cut-off of each series.\n\n" + markdown_table(head, tab) +
            f"\n\nGCG's description has the lower future NLL on {s['gcg_beats_none']}/{len(rows)} windows vs no "
            f"description, {s['gcg_beats_fixed']}/{len(rows)} vs the hand-written one, {s['gcg_beats_random']}/{len(rows)} "
            "vs random search.\n\nOptimized descriptions:\n\n" + texts + "\n")


def plot(figures, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in HORIZONS if g in figures["per_frequency"]]
    aw = figures["all_windows"]
    models = sorted(aw, key=lambda m: aw[m]["rel_mase_gmean"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    x = np.arange(len(models))
    axes[0].bar(x - 0.2, [aw[m]["rel_mase_gmean"] for m in models], 0.4, label="rel. MASE")
    axes[0].bar(x + 0.2, [aw[m]["rel_crps_gmean"] for m in models], 0.4, label="rel. sCRPS")
    axes[0].set_xticks(x, models, rotation=40, ha="right", fontsize=7)
    axes[0].set_title(f"all {figures['windows']} windows: gmean ratio to SeasonalNaive", fontsize=9)
    axes[0].legend(fontsize=8)
    keep = (figures["best_model"], REGISTERED_ENSEMBLE, default_selector())
    shown = [m for m in models if not (m.startswith("median(") or m in SELECTORS) or m in keep][:9]
    w = 0.8 / len(shown)
    gx = np.arange(len(groups))
    for i, m in enumerate(shown):
        axes[1].bar(gx + (i - len(shown) / 2 + 0.5) * w, [figures["per_frequency"][g][m]["rel_mase_gmean"] for g in groups], w, label=m)
    axes[1].set_xticks(gx, groups, fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_title("rel. MASE per frequency (log scale)", fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
