"""``fuse forecast``: forecast a series from a CSV file with any registered model."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("forecast", help="forecast a series read from a CSV file (quantiles to CSV, optional plot)",
                       description="Reads the 'value' column (else the last numeric column) of a CSV file and writes "
                                   "one row per future step: step, median, q0.1 ... q0.9.")
    p.add_argument("csv", nargs="?", help="input CSV file")
    p.add_argument("--model", default="auto_ets", help="forecaster name (default auto_ets; --list shows all)")
    p.add_argument("--horizon", type=int, help="number of future steps")
    p.add_argument("--out", help="output CSV (default: print to stdout)")
    p.add_argument("--plot", help="write a PNG of history, median forecast and 10-90%% interval")
    p.add_argument("--column", help="column to read (default: 'value', else the last numeric column)")
    p.add_argument("--season-length", type=int, default=1, help="seasonal period for the statistical baselines")
    p.add_argument("--samples", type=int, default=20, help="sample paths for sampling models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--description", help="text describing the series (used by the LM and CaLMFlow forecasters)")
    p.add_argument("--list", action="store_true", help="list the forecaster names and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from fuse.forecast import QUANTILES, available, get_forecaster, read_csv_series
    from fuse.forecast.series import as_series

    if args.list:
        for spec in available():
            print(f"{spec.name:22} {spec.family:10} {spec.description}")
        return 0
    if not args.csv:
        raise ValueError("give a CSV file (fuse forecast data.csv --horizon H), or --list")
    if args.horizon is None or args.horizon < 1:
        raise ValueError("--horizon must be a positive integer")
    values, column = read_csv_series(args.csv, args.column)
    model = get_forecaster(args.model, season_length=args.season_length, progress=True)
    y = as_series(values, min_length=model.min_context, name=f"{args.csv}:{column}")
    fc = model.predict(y, args.horizon, n_samples=args.samples, seed=args.seed, description=args.description)
    import pandas as pd

    df = pd.DataFrame({"step": range(1, fc.horizon + 1), "median": fc.median})
    for j, q in enumerate(QUANTILES):
        df[f"q{q:g}"] = fc.quantiles[:, j]
    if args.out:
        df.to_csv(args.out, index=False)
        print(f"wrote {fc.horizon} steps of {model.name} forecasts for column {column!r} to {args.out}")
    else:
        print(df.to_csv(index=False), end="")
    if args.plot:
        plot_forecast(y, fc, args.plot, title=f"{args.csv} ({column}) — {model.name}")
        print(f"wrote {args.plot}")
    return 0


def plot_forecast(y, fc, path, title: str = "") -> None:
    """PNG of the history, the median forecast and the 10–90 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    T = len(y)
    hist = np.arange(T)
    fut = np.arange(T, T + fc.horizon)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    shown = max(0, T - 5 * fc.horizon)
    ax.plot(hist[shown:], y[shown:], color="k", lw=1, label="history")
    ax.fill_between(fut, fc.quantile(0.1), fc.quantile(0.9), color="C0", alpha=0.25, label="10–90 %")
    ax.plot(fut, fc.median, color="C0", lw=1.5, label="median")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
