"""``fuse forecast``: forecast a series from a CSV file with any registered model."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def register(sub) -> None:
    from fuse.cli.options import ConfigFlags, Flag, after_parse
    from fuse.forecast.pipeline import ForecastConfig
    from fuse.forecast.registry import DEFAULT_MODEL

    options = ConfigFlags([ForecastConfig], flags={
        "model": Flag(help=f"forecaster name (default {DEFAULT_MODEL}, the best measured; --list shows all)"),
        "horizon": Flag(help="number of future steps"),
        "freq": Flag(help="pandas frequency of the dates, e.g. MS, QS, D, h (default: inferred); missing steps are "
                          "interpolated"),
        "season_length": Flag(help="seasonal period (default: from the dates' frequency, else inferred from the data)"),
    })
    p = sub.add_parser("forecast", help="forecast a series read from a CSV file (quantiles to CSV, optional plot)",
                       description="Reads the 'value' column (else the last numeric column) of a CSV file and, when a "
                                   "column holds dates, their frequency; the season length follows from it (12 monthly, "
                                   "4 quarterly, 7 daily, 24 hourly, ...) or, without dates, from an autocorrelation test. "
                                   "Writes one row per future step: the date (when the input had dates), step, median, "
                                   "q0.1 ... q0.9.")
    p.add_argument("csv", nargs="?", help="input CSV file")
    options.add_to(p)  # ForecastConfig's fields: --model, --horizon, --season-length, --freq, --samples, --seed
    p.add_argument("--out", help="output CSV (default: print to stdout)")
    p.add_argument("--plot", help="write a PNG of history, median forecast and 10-90%% interval")
    p.add_argument("--column", help="column to read (default: 'value', else the last numeric column)")
    p.add_argument("--date-column", help="column of timestamps (default: the first column that parses as dates)")
    p.add_argument("--description", help="text describing the series (used by the LM and CaLMFlow forecasters)")
    p.add_argument("--list", action="store_true", help="list the forecaster names and exit")
    p.set_defaults(func=run)
    after_parse(p, lambda parser, args: setattr(args, "config", options.build(ForecastConfig, options.given(args), parser)))


def run(args) -> int:
    from fuse.forecast.pipeline import forecast_csv
    from fuse.forecast.registry import DEFAULT_MODEL, DEFAULT_REASON, available

    if args.list:
        for spec in available():
            mark = "  [default]" if spec.name == DEFAULT_MODEL else ""
            print(f"{spec.name:22} {spec.family:10} {spec.description}{mark}")
        print(f"\ndefault: {DEFAULT_MODEL} ({DEFAULT_REASON})")
        return 0
    if not args.csv:
        raise ValueError("give a CSV file (fuse forecast data.csv --horizon H), or --list")
    if args.horizon is None:
        raise ValueError("--horizon must be a positive integer (the number of future steps)")
    cfg = args.config  # built and validated from the flags while parsing
    res = forecast_csv(args.csv, cfg, column=args.column, date_column=args.date_column,
                       description=args.description, progress=True)
    s = res.series
    dated = f"dated by {s.date_column!r} at frequency {s.freq}" if s.dates is not None else "undated"
    note = f"{res.model} forecasts for column {s.column!r} ({dated}; season length {res.season_length} from {res.season_source})"
    if args.out:
        res.frame.to_csv(args.out, index=False)
        print(f"wrote {res.forecast.horizon} steps of {note} to {args.out}")
    else:
        print(res.frame.to_csv(index=False), end="")
    if args.plot:
        plot_forecast(res.history, res.forecast, args.plot, title=f"{args.csv} ({s.column}) — {res.model}")
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
