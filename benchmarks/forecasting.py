"""Forecasting benchmark: real statsmodels series, rolling origin, utilsforecast metrics.

Every registered forecaster is run side by side on the same cut-offs; MASE and scaled CRPS
come from ``utilsforecast.losses`` and are aggregated as the geometric mean, over
(series, cut-off) windows, of the ratio to SeasonalNaive. The LM forecasters (LLMTime with
SmolLM2-135M, with and without a text description of the series) are slow on 2 CPU cores and
can be limited to the last cut-offs (``--lm-cutoffs``); a second table then compares all models on that subset.

Run: ``python3 benchmarks/forecasting.py [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402

from fuse.forecast import QUANTILES, get_forecaster  # noqa: E402

logger = logging.getLogger("benchmarks.forecasting")

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


def load_series() -> dict[str, tuple[np.ndarray, int, int]]:
    """name -> (values, season length, horizon); all ship offline inside statsmodels."""
    from statsmodels import datasets as D
    from statsmodels.datasets import elec_equip

    co2 = D.co2.load_pandas().data["co2"].resample("MS").mean().interpolate().to_numpy()
    sun = D.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    el = D.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().reshape(-1)
    macro = D.macrodata.load_pandas().data
    nile = D.nile.load_pandas().data["volume"].to_numpy()
    ee = elec_equip.load().data.iloc[:, 0].to_numpy()
    return {
        "co2": (co2, 12, 12), "sunspots": (sun, 11, 11), "elnino": (el, 12, 12),
        "realgdp": (macro["realgdp"].to_numpy(), 4, 8), "cpi": (macro["cpi"].to_numpy(), 4, 8),
        "unemp": (macro["unemp"].to_numpy(), 4, 8), "nile": (nile, 1, 10), "elec_equip": (ee, 12, 12),
    }


def qcol(model: str, q: float) -> str:
    return f"{model}-q{int(round(q * 100))}"


def evaluate(rows: list[dict], train: list[dict], models: list[str]) -> pd.DataFrame:
    """Per-window MASE and scaled CRPS via utilsforecast."""
    from utilsforecast.losses import mase, scaled_crps

    df = pd.DataFrame(rows)
    train_df = pd.DataFrame(train)
    out = []
    for uid, g in df.groupby("unique_id"):
        m = int(g["season"].iloc[0])
        tr = train_df[train_df.unique_id == uid]
        present = [mod for mod in models if g[mod].notna().all()]
        if not present:
            continue
        a = mase(g[["unique_id", "ds", "y", *present]], present, seasonality=m, train_df=tr)
        c = scaled_crps(g[["unique_id", "ds", "y", *[qcol(mod, q) for mod in present for q in QUANTILES]]],
                        {mod: [qcol(mod, q) for q in QUANTILES] for mod in present}, np.array(QUANTILES))
        for mod in present:
            out.append({"unique_id": uid, "series": uid.split("|")[0], "model": mod,
                        "mase": float(a[mod].iloc[0]), "scrps": float(c[mod].iloc[0])})
    return pd.DataFrame(out)


def gmean_ratio(scores: pd.DataFrame, metric: str, baseline: str = "seasonal_naive") -> dict[str, float]:
    piv = scores.pivot(index="unique_id", columns="model", values=metric)
    res = {}
    for mod in piv.columns:
        r = (piv[mod] / piv[baseline]).replace([np.inf, -np.inf], np.nan).dropna()
        r = r[r > 0]
        res[mod] = float(np.exp(np.log(r).mean())) if len(r) else float("nan")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutoffs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--lm-samples", type=int, default=8)
    ap.add_argument("--lm-history", type=int, default=96)
    ap.add_argument("--lm-cutoffs", type=int, default=None, help="run the LM forecasters on the last N cut-offs (default: all)")
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 series, 1 cut-off (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids OpenMP spin-waiting when other jobs share the 2 cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    series = load_series()
    if args.quick:
        series = dict(list(series.items())[:2])
        args.cutoffs = 1
    lm_cutoffs = min(args.cutoffs, args.lm_cutoffs or args.cutoffs)
    fast = ["naive", "seasonal_naive", "auto_ets", "auto_arima", "fracast", "chronos-tiny"]
    lm_models = [] if args.no_lm else ["llmtime:smollm2-135m", "llmtime:smollm2-135m+text"]
    models = fast + lm_models
    built = {}
    t0 = time.perf_counter()
    for name in fast:
        built[name] = None if name in ("naive", "seasonal_naive", "auto_ets", "auto_arima") else get_forecaster(name)
    logger.info("models ready in %.1fs", time.perf_counter() - t0)
    lm = None
    if lm_models:
        from fuse.forecast.lm import LMForecaster

        lm = LMForecaster("bundled:smollm2-135m", max_history=args.lm_history, batch_size=args.lm_samples)
    rows, train, runtime = [], [], {m: [] for m in models}
    for sname, (y, season, h) in series.items():
        y = np.asarray(y, dtype=np.float64)
        for k in range(args.cutoffs, 0, -1):
            cut = len(y) - k * h
            hist, fut = y[:cut], y[cut:cut + h]
            uid = f"{sname}|{args.cutoffs - k}"
            win = {"unique_id": [uid] * h, "ds": np.arange(cut, cut + h), "y": fut, "season": [season] * h}
            train += [{"unique_id": uid, "ds": i, "y": v} for i, v in enumerate(hist)]
            for mod in models:
                if mod in lm_models and k > lm_cutoffs:
                    win[mod] = [np.nan] * h
                    for q in QUANTILES:
                        win[qcol(mod, q)] = [np.nan] * h
                    continue
                f = built.get(mod) if mod in built else lm
                if f is None and mod in fast:
                    f = get_forecaster(mod, season_length=season)
                desc = DESCRIPTIONS[sname] if mod.endswith("+text") else None
                t = time.perf_counter()
                n = args.lm_samples if mod in lm_models else args.samples
                fc = f.predict(hist, h, n_samples=n, seed=args.seed, description=desc)
                runtime[mod].append(time.perf_counter() - t)
                win[mod] = fc.median
                for j, q in enumerate(QUANTILES):
                    win[qcol(mod, q)] = fc.quantiles[:, j]
                logger.info("%s %s: %.2fs", uid, mod, runtime[mod][-1])
            rows += pd.DataFrame(win).to_dict("records")
    scores = evaluate(rows, train, models)
    rel_mase, rel_crps = gmean_ratio(scores, "mase"), gmean_ratio(scores, "scrps")
    everywhere = fast + (lm_models if lm_cutoffs == args.cutoffs else [])
    full = scores[scores.model.isin(everywhere)]
    fr_mase, fr_crps = gmean_ratio(full, "mase"), gmean_ratio(full, "scrps")
    lm_windows = {f"{s}|{args.cutoffs - k}" for s in series for k in range(1, lm_cutoffs + 1)}
    last = scores[scores.unique_id.isin(lm_windows)]
    lr_mase, lr_crps = gmean_ratio(last, "mase"), gmean_ratio(last, "scrps")
    per_series = scores.groupby(["series", "model"])[["mase", "scrps"]].mean().reset_index()
    figures = {
        "all_windows": {m: {"rel_mase_gmean": fr_mase[m], "rel_crps_gmean": fr_crps[m],
                            "mase_mean": float(full[full.model == m].mase.mean()),
                            "scrps_mean": float(full[full.model == m].scrps.mean()),
                            "seconds_per_forecast": float(np.mean(runtime[m]))} for m in everywhere},
        "last_cutoff": {m: {"rel_mase_gmean": lr_mase[m], "rel_crps_gmean": lr_crps[m],
                            "mase_mean": float(last[last.model == m].mase.mean()),
                            "scrps_mean": float(last[last.model == m].scrps.mean()),
                            "seconds_per_forecast": float(np.mean(runtime[m]))} for m in models if m in lr_mase},
        "per_series": per_series.to_dict("records"),
        "windows": int(scores.unique_id.nunique()),
    }
    del rel_mase, rel_crps
    fuse_models = ["fracast", "chronos-tiny", *lm_models]
    baselines = ["naive", "seasonal_naive", "auto_ets", "auto_arima"]
    best_fuse = min((m for m in fuse_models if m in fr_mase), key=lambda m: fr_crps[m])
    best_base = min(baselines, key=lambda m: fr_crps[m])
    figures["lm_windows"] = len(lm_windows)
    figures["best_fuse_model"] = {"name": best_fuse, "rel_mase": fr_mase[best_fuse], "rel_crps": fr_crps[best_fuse]}
    figures["best_baseline"] = {"name": best_base, "rel_mase": fr_mase[best_base], "rel_crps": fr_crps[best_base]}
    if lm_models:
        a, b = lm_models
        figures["text_description_effect"] = {"rel_mase_ratio": lr_mase[b] / lr_mase[a], "rel_crps_ratio": lr_crps[b] / lr_crps[a]}

    header = ["model", "family", "rel. MASE (gmean)", "rel. sCRPS (gmean)", "mean MASE", "mean sCRPS", "s / forecast"]
    fam = {m: ("baseline (statsforecast)" if m in baselines else "fuse") for m in models}
    t1 = [[m, fam[m], *[figures["all_windows"][m][k] for k in ("rel_mase_gmean", "rel_crps_gmean", "mase_mean", "scrps_mean", "seconds_per_forecast")]] for m in everywhere]
    t2 = [[m, fam[m], *[figures["last_cutoff"][m][k] for k in ("rel_mase_gmean", "rel_crps_gmean", "mase_mean", "scrps_mean", "seconds_per_forecast")]] for m in models if m in figures["last_cutoff"]]
    ps_rows = []
    for s in series:
        r = [s]
        for m in everywhere:
            v = per_series[(per_series.series == s) & (per_series.model == m)]
            r.append(float(v.mase.iloc[0]) if len(v) else float("nan"))
        ps_rows.append(r)
    md = (f"{len(series)} series, {args.cutoffs} rolling cut-offs each ({figures['windows']} windows), horizons "
          f"{ {s: v[2] for s, v in series.items()} }. Ratios are to SeasonalNaive (lower is better); metrics from "
          "utilsforecast (`mase`, `scaled_crps` over the 9 quantiles 0.1…0.9).\n\n"
          "## All windows\n\n" + markdown_table(header, t1) +
          f"\n\nBest fuse model: **{best_fuse}** (rel. MASE {fr_mase[best_fuse]:.3f}, rel. sCRPS {fr_crps[best_fuse]:.3f}); "
          f"best baseline: **{best_base}** (rel. MASE {fr_mase[best_base]:.3f}, rel. sCRPS {fr_crps[best_base]:.3f}).\n\n"
          f"LM forecasters: {args.lm_samples} samples per forecast, last {args.lm_history} values in the prompt, "
          f"run on the last {lm_cutoffs} cut-off(s) of each series ({len(lm_windows)} windows).\n\n"
          + (f"## The {len(lm_windows)} windows the LM forecasters ran on\n\n" + markdown_table(header, t2) + "\n\n"
             if lm_cutoffs < args.cutoffs else "")
          + "## Mean MASE per series (all windows)\n\n" + markdown_table(["series", *everywhere], ps_rows))
    if lm_models:
        e = figures["text_description_effect"]
        md += (f"\n\nText description (prompt-as-prefix) for LLMTime/SmolLM2: rel. MASE ×{e['rel_mase_ratio']:.3f}, "
               f"rel. sCRPS ×{e['rel_crps_ratio']:.3f} relative to no description (< 1 means it helped).\n")
    config = {"series": {s: {"length": int(len(v[0])), "season": v[1], "horizon": v[2]} for s, v in series.items()},
              "cutoffs": args.cutoffs, "samples": args.samples, "lm_samples": args.lm_samples,
              "lm_history": args.lm_history, "lm_cutoffs": lm_cutoffs, "quick": args.quick, "models": models,
              "metrics": "utilsforecast.losses.mase / scaled_crps; gmean of ratio to seasonal_naive per window",
              "torch_threads": torch.get_num_threads()}
    name = "forecasting_quick" if args.quick else "forecasting"
    write_results(name, config=config, seed=args.seed, figures=figures, markdown=md,
                  extra_packages=["statsforecast", "utilsforecast", "statsmodels", "fracast", "pandas"])
    plot(figures, models, everywhere, RESULTS / f"{name}.png")
    print(md)
    return 0


def plot(figures, models, fast, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("all_windows", "all windows", fast)]
    if figures.get("lm_windows", 0) < figures["windows"]:
        panels.append(("last_cutoff", "windows with LM runs", models))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1, 3.8), squeeze=False)
    for ax, (key, title, ms) in zip(axes[0], panels):
        ms = [m for m in ms if m in figures[key]]
        x = np.arange(len(ms))
        ax.bar(x - 0.2, [figures[key][m]["rel_mase_gmean"] for m in ms], 0.4, label="rel. MASE")
        ax.bar(x + 0.2, [figures[key][m]["rel_crps_gmean"] for m in ms], 0.4, label="rel. sCRPS")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(x, ms, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"geometric mean ratio to SeasonalNaive ({title})", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
