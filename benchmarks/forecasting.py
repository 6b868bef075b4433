"""Forecasting benchmark: real statsmodels series, rolling origin, utilsforecast metrics.

Every registered forecaster is run side by side on the same cut-offs; MASE and scaled CRPS
come from ``utilsforecast.losses`` and are aggregated as the geometric mean, over
(series, cut-off) windows, of the ratio to SeasonalNaive. The LM forecasters (LLMTime with
SmolLM2-135M, with and without a text description of the series) are slow on 2 CPU cores and
can be limited to the last cut-offs (``--lm-cutoffs``); a second table then compares all models on that subset.

The CaLMFlow forecaster (``calmflow``, trained here on synthetic series, about a minute) runs
with and without the description (``calmflow+text``).

Run: ``python3 benchmarks/forecasting.py [--quick]``. ``--models calmflow,calmflow+text`` runs
only those models (plus SeasonalNaive, the ratio's denominator, recomputed but not rewritten)
and merges their rows into the committed ``results/forecasting.{json,md,png}``, leaving every
other model's figures as they were.
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
    ap.add_argument("--models", default=None,
                    help="comma-separated models to run and merge into the existing results (e.g. calmflow,calmflow+text)")
    ap.add_argument("--optimize-descriptions", action="store_true",
                    help="only run the cross-tokenizer description optimization and merge it into the results")
    ap.add_argument("--desc-primary", default="bundled:minilm-l6", help="whose tokens the description is written in")
    ap.add_argument("--desc-budget", type=int, default=64, help="exact evaluations per optimization")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.optimize_descriptions:
        return optimize_descriptions(args)
    series = load_series()
    if args.quick:
        series = dict(list(series.items())[:2])
        args.cutoffs = 1
    lm_cutoffs = min(args.cutoffs, args.lm_cutoffs or args.cutoffs)
    fast = ["naive", "seasonal_naive", "auto_ets", "auto_arima", "fracast", "chronos-tiny", "calmflow", "calmflow+text"]
    lm_models = [] if args.no_lm else ["llmtime:smollm2-135m", "llmtime:smollm2-135m+text"]
    if args.models:
        chosen = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in fast + ["llmtime:smollm2-135m", "llmtime:smollm2-135m+text"]]
        if unknown:
            ap.error(f"unknown benchmark models {unknown}")
        lm_models = [m for m in chosen if m.startswith("llmtime")]
        fast = ["seasonal_naive", *[m for m in chosen if m in fast and m != "seasonal_naive"]]
    models = fast + lm_models
    built, fit_seconds = {}, {}
    for name in fast:
        base = name.removesuffix("+text")
        if base in built or base in ("naive", "seasonal_naive", "auto_ets", "auto_arima"):
            continue
        t0 = time.perf_counter()
        if base == "calmflow":  # trained here (seeded, ~1 min on one thread) so its cost is measured
            from fuse.forecast.calmflow import CaLMFlowForecaster

            built[base] = CaLMFlowForecaster().fit(seed=args.seed)
        else:
            built[base] = get_forecaster(base)
        fit_seconds[base] = time.perf_counter() - t0
        logger.info("%s ready in %.1fs", base, fit_seconds[base])
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
                base = mod.removesuffix("+text")
                f = built.get(base) if base in built else lm
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
    figures["lm_windows"] = len(lm_windows)
    if fit_seconds:
        figures["fit_seconds"] = fit_seconds
    for key, (a, b) in {"text_description_effect": ("llmtime:smollm2-135m", "llmtime:smollm2-135m+text"),
                        "calmflow_text_effect": ("calmflow", "calmflow+text")}.items():
        if a in lr_mase and b in lr_mase:
            figures[key] = {"rel_mase_ratio": lr_mase[b] / lr_mase[a], "rel_crps_ratio": lr_crps[b] / lr_crps[a]}
    config = {"series": {s: {"length": int(len(v[0])), "season": v[1], "horizon": v[2]} for s, v in series.items()},
              "cutoffs": args.cutoffs, "samples": args.samples, "lm_samples": args.lm_samples,
              "lm_history": args.lm_history, "lm_cutoffs": lm_cutoffs, "quick": args.quick, "models": models,
              "metrics": "utilsforecast.losses.mase / scaled_crps; gmean of ratio to seasonal_naive per window",
              "torch_threads": torch.get_num_threads()}
    name = "forecasting_quick" if args.quick else "forecasting"
    if args.models:
        figures, config = merge(RESULTS / f"{name}.json", figures, config, [m for m in models if m != "seasonal_naive"])
    md = render_markdown(figures, config)
    write_results(name, config=config, seed=args.seed, figures=figures, markdown=md,
                  extra_packages=["statsforecast", "utilsforecast", "statsmodels", "fracast", "pandas"])
    plot(figures, config["models"], [m for m in config["models"] if m in figures["all_windows"]], RESULTS / f"{name}.png")
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
    for sname, (y, season, h) in load_series().items():
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


BASELINES = ["naive", "seasonal_naive", "auto_ets", "auto_arima"]
_KEYS = ("rel_mase_gmean", "rel_crps_gmean", "mase_mean", "scrps_mean", "seconds_per_forecast")


def merge(path: Path, new: dict, new_config: dict, added: list[str]) -> tuple[dict, dict]:
    """Put the figures of ``added`` models from this run into the results at ``path``; the rest stay as they are."""
    if not path.is_file():
        raise SystemExit(f"--models merges into {path}, which does not exist; run the full benchmark first")
    old = json.loads(path.read_text())
    fig, cfg = old["figures"], old["config"]
    for k in ("series", "cutoffs", "samples", "lm_cutoffs"):
        if cfg.get(k) != new_config[k]:
            raise SystemExit(f"cannot merge: {k} differs from the committed run ({cfg.get(k)!r} vs {new_config[k]!r})")
    check = new["all_windows"]["seasonal_naive"]
    for k in ("mase_mean", "scrps_mean"):  # the shared denominator must be reproduced exactly
        if not np.isclose(check[k], fig["all_windows"]["seasonal_naive"][k], rtol=1e-9):
            raise SystemExit(f"cannot merge: seasonal_naive {k} {check[k]} differs from the committed run")
    for table in ("all_windows", "last_cutoff"):
        for m in added:
            if m in new[table]:
                fig[table][m] = new[table][m]
    fig["per_series"] = [r for r in fig["per_series"] if r["model"] not in added] + \
        [r for r in new["per_series"] if r["model"] in added]
    if "fit_seconds" in new:
        fig.setdefault("fit_seconds", {}).update(new["fit_seconds"])
    for key in ("calmflow_text_effect", "text_description_effect"):
        if key in new and all(m in added for m in (["calmflow"] if key.startswith("calmflow") else ["llmtime:smollm2-135m"])):
            fig[key] = new[key]
    cfg["models"] = cfg["models"] + [m for m in added if m not in cfg["models"]]
    cfg.setdefault("base_run_date", old["date"])
    runs = [r for r in cfg.get("merged_runs", []) if set(r["models"]) - set(added)]
    cfg["merged_runs"] = runs + [{"models": added, "torch_threads": new_config["torch_threads"]}]
    return fig, cfg


def render_markdown(figures: dict, config: dict) -> str:
    """The results page, from the figures alone (so a merged run renders like a full one)."""
    models = config["models"]
    everywhere = [m for m in models if m in figures["all_windows"]]
    order = list(DESCRIPTIONS)  # load_series() order (the JSON config is key-sorted)
    series = {s: config["series"][s] for s in sorted(config["series"], key=lambda s: (order.index(s) if s in order else len(order), s))}
    aw = figures["all_windows"]
    fuse_models = [m for m in everywhere if m not in BASELINES]
    best_fuse = min(fuse_models, key=lambda m: aw[m]["rel_crps_gmean"])
    best_base = min((m for m in BASELINES if m in aw), key=lambda m: aw[m]["rel_crps_gmean"])
    figures["best_fuse_model"] = {"name": best_fuse, "rel_mase": aw[best_fuse]["rel_mase_gmean"], "rel_crps": aw[best_fuse]["rel_crps_gmean"]}
    figures["best_baseline"] = {"name": best_base, "rel_mase": aw[best_base]["rel_mase_gmean"], "rel_crps": aw[best_base]["rel_crps_gmean"]}
    header = ["model", "family", "rel. MASE (gmean)", "rel. sCRPS (gmean)", "mean MASE", "mean sCRPS", "s / forecast"]
    fam = {m: ("baseline (statsforecast)" if m in BASELINES else "fuse") for m in models}
    t1 = [[m, fam[m], *[aw[m][k] for k in _KEYS]] for m in everywhere]
    t2 = [[m, fam[m], *[figures["last_cutoff"][m][k] for k in _KEYS]] for m in models if m in figures["last_cutoff"]]
    ps = {(r["series"], r["model"]): r["mase"] for r in figures["per_series"]}
    ps_rows = [[s, *[float(ps.get((s, m), float("nan"))) for m in everywhere]] for s in series]
    n_lm, lm_cutoffs = figures["lm_windows"], config["lm_cutoffs"]
    fb, bb = figures["best_fuse_model"], figures["best_baseline"]
    md = (f"{len(series)} series, {config['cutoffs']} rolling cut-offs each ({figures['windows']} windows), horizons "
          f"{ {s: v['horizon'] for s, v in series.items()} }. Ratios are to SeasonalNaive (lower is better); metrics from "
          "utilsforecast (`mase`, `scaled_crps` over the 9 quantiles 0.1…0.9).\n\n"
          "## All windows\n\n" + markdown_table(header, t1) +
          f"\n\nBest fuse model: **{best_fuse}** (rel. MASE {fb['rel_mase']:.3f}, rel. sCRPS {fb['rel_crps']:.3f}); "
          f"best baseline: **{best_base}** (rel. MASE {bb['rel_mase']:.3f}, rel. sCRPS {bb['rel_crps']:.3f}).\n\n"
          f"LM forecasters: {config['lm_samples']} samples per forecast, last {config['lm_history']} values in the prompt, "
          f"run on the last {lm_cutoffs} cut-off(s) of each series ({n_lm} windows).\n\n"
          + (f"## The {n_lm} windows the LM forecasters ran on\n\n" + markdown_table(header, t2) + "\n\n"
             if lm_cutoffs < config["cutoffs"] else "")
          + "## Mean MASE per series (all windows)\n\n" + markdown_table(["series", *everywhere], ps_rows))
    if "text_description_effect" in figures:
        e = figures["text_description_effect"]
        md += (f"\n\nText description (prompt-as-prefix) for LLMTime/SmolLM2: rel. MASE ×{e['rel_mase_ratio']:.3f}, "
               f"rel. sCRPS ×{e['rel_crps_ratio']:.3f} relative to no description (< 1 means it helped).\n")
    if "calmflow_text_effect" in figures:
        e = figures["calmflow_text_effect"]
        md += (f"\nText description for CaLMFlow (reduced to its keyword vocabulary): rel. MASE ×{e['rel_mase_ratio']:.3f}, "
               f"rel. sCRPS ×{e['rel_crps_ratio']:.3f} relative to no description (< 1 means it helped).\n")
    if figures.get("fit_seconds"):
        md += ("\nTraining time (seconds, excluded from s / forecast): "
               + ", ".join(f"{m} {v:.0f}" for m, v in sorted(figures["fit_seconds"].items())) + ".\n")
    if "description_optimization" in figures:
        md += _description_markdown(figures["description_optimization"], config.get("description_optimization", {}))
    merged = config.get("merged_runs")
    if merged:
        md += "".join(f"\nRows for {', '.join(r['models'])} were added by a later `--models` run "
                      f"({r['torch_threads']} torch thread(s)); the other rows are from the run of {config['base_run_date']}.\n"
                      for r in merged)
    return md


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
