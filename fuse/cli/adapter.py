"""``fuse adapter build|eval``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(sub) -> None:
    from fuse.core.units import DEFAULT_UNIT, UNITS

    p = sub.add_parser("adapter", help="build and evaluate t-product adapters between two models")
    asub = p.add_subparsers(dest="adapter_command", required=True)
    b = asub.add_parser("build", help="fit an adapter SRC → TGT and save it")
    b.add_argument("source", help="source model (bundled:NAME, a folder or a hub id)")
    b.add_argument("target", help="target model")
    b.add_argument("--words", type=int, default=None,
                   help="number of shared words to fit on (default 8000; 32000 for ja/zh)")
    b.add_argument("--holdout", type=int, default=2000, help="held-out words for the quality report (default 2000)")
    b.add_argument("--language", default="en",
                   help="wordfreq language of the word list: en (default), ja, zh, ko, de, … (offline)")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--words-file", metavar="FILE", help="fit on your own words: a UTF-8 file, one word per line")
    src.add_argument("--corpus", metavar="FILE",
                     help="fit on the most frequent words of your own documents (a UTF-8 text file)")
    b.add_argument("--unit", choices=list(UNITS), default=DEFAULT_UNIT,
                   help=f"how the bridge cuts text into gradient rows (default {DEFAULT_UNIT}; see docs/languages.md)")
    b.add_argument("--k", type=int, default=None,
                   help="tube length: tokens per unit the map covers (default 8; 12 for ja/zh)")
    b.add_argument("--lam", type=float, default=1e-3, help="relative ridge weight (default 1e-3)")
    b.add_argument("--scheme", choices=["padded", "bucket"], default="padded")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--json", action="store_true", help="print the quality as JSON")
    b.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="also write the quality plot (default OUT/quality.png)")
    b.set_defaults(func=build)
    e = asub.add_parser("eval", help="quality of a saved adapter on its held-out words or on a word list")
    e.add_argument("dir", help="adapter folder")
    e.add_argument("--words-file", metavar="FILE",
                   help="score on these words (one per line; use words the adapter was not fitted on)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="write a PNG of the report (default DIR/quality.png)")
    e.set_defaults(func=evaluate)


def _eval_words(adapter, words_file: str | None, fit_config=None) -> tuple[list[str], str]:
    """The words to score: a given file, else the held-out split the adapter's config names."""
    from fuse.core.wordlist import read_words, split_words

    cfg = adapter.config
    if words_file is not None:
        return read_words(words_file), f"words of {words_file}"
    path = cfg.extra.get("words_path")
    if fit_config is None and path and Path(path).is_file():  # the user's list or corpus, if it is still there
        from fuse.core.fit_config import AdapterFitConfig

        kind = "words_file" if cfg.word_source.startswith("file:") else "corpus"
        fit_config = AdapterFitConfig(n_words=cfg.n_words, n_holdout=cfg.n_holdout, k=cfg.k, seed=cfg.seed,
                                      language=cfg.language, **{kind: path})
        if fit_config.word_source != cfg.word_source:
            logger.warning("%s changed since the adapter was fitted; its held-out words are unknown", path)
            fit_config = None
    if fit_config is not None:
        from fuse.core.wordlist import fit_split

        split = fit_split(fit_config)
        if split.holdout:
            return split.holdout, f"{len(split.holdout)} held-out words of {split.source} (never fitted)"
    if cfg.word_source.startswith("wordfreq:") and cfg.n_holdout > 0:
        lang = cfg.word_source.split(":")[1]
        held = split_words(cfg.n_words, cfg.n_holdout, cfg.seed, lang).holdout
        return held, f"{len(held)} held-out words of {cfg.word_source} (never fitted)"
    raise ValueError(f"this adapter was fitted on {cfg.word_source!r}, whose held-out words are not recorded; "
                     "give the words to score with --words-file FILE (one per line, words it was not fitted on)")


def _report(adapter, source, target, words, where: str, as_json: bool, plot: str | None) -> dict:
    from dataclasses import asdict

    from fuse.core.evaluation import format_report, plot_report, quality_report

    cfg = adapter.config
    rep = quality_report(adapter, source, target, words)
    scores = asdict(rep.overall)
    out = {"source": cfg.source, "target": cfg.target, "scheme": cfg.scheme, "k": cfg.k, "lam": cfg.lam,
           "unit": cfg.unit, "language": cfg.language, "word_source": cfg.word_source, "fitted_words": cfg.n_fitted,
           "fit_seconds": cfg.fit_seconds, "evaluated_on": where, **{f"heldout_{k}": v for k, v in scores.items()},
           "tokens_per_char": cfg.extra.get("tokens_per_char"), "words_given": rep.n_words,
           "words_over_k": rep.n_over_k, "buckets": rep.buckets, "worst": rep.worst}
    if plot is not None:
        plot_report(rep, plot, title=f"{cfg.source} → {cfg.target} ({cfg.language}, k={cfg.k}): {where}")
        out["plot"] = str(plot)
    if as_json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(f"adapter {cfg.source} → {cfg.target} ({cfg.scheme}, k={cfg.k}, λ={cfg.lam:g}, unit={cfg.unit}, "
              f"{cfg.n_fitted} words of {cfg.word_source}, fit {cfg.fit_seconds:.1f}s)")
        print(f"evaluated on {where}")
        if "tokens_per_char" in cfg.extra:
            from fuse.core.adapter import SPELLING_TOKENS_PER_CHAR

            r = cfg.extra["tokens_per_char"]
            print(f"tokens per character of the fitted words: source {r['source']:.2f}, target {r['target']:.2f}"
                  + (f" (a side at {SPELLING_TOKENS_PER_CHAR} or more spells words in characters or bytes: "
                     "see docs/languages.md)" if max(r.values()) >= SPELLING_TOKENS_PER_CHAR else ""))
        print(format_report(rep))
        if plot is not None:
            print(f"plot written to {plot}")
    return out


def build(args) -> int:
    from fuse.core.adapter import TensorAdapter
    from fuse.core.fit_config import AdapterFitConfig
    from fuse.models.loading import load

    config = AdapterFitConfig(n_words=args.words, n_holdout=args.holdout, k=args.k, lam=args.lam, scheme=args.scheme,
                              seed=args.seed, language=args.language, unit=args.unit, words_file=args.words_file,
                              corpus=args.corpus)
    source, target = load(args.source), load(args.target)
    adapter = TensorAdapter.fit(source, target, config, progress=True)
    out = adapter.save_pretrained(Path(args.out))
    words, where = _eval_words(adapter, None, config)
    plot = None if args.plot is None else (args.plot or str(out / "quality.png"))
    _report(adapter, source, target, words, where, args.json, plot)
    if not args.json:
        print(f"saved to {out}")
    return 0


def evaluate(args) -> int:
    from fuse.core.adapter import CONFIG_NAME, TensorAdapter
    from fuse.models.loading import load

    cfg_path = Path(args.dir) / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(f"{args.dir} is not an adapter folder (no {CONFIG_NAME})")
    cfg = json.loads(cfg_path.read_text())
    source, target = load(cfg["source"]), load(cfg["target"])
    adapter = TensorAdapter.from_pretrained(args.dir, source=source, target=target)
    words, where = _eval_words(adapter, args.words_file)
    plot = None if args.plot is None else (args.plot or str(Path(args.dir) / "quality.png"))
    _report(adapter, source, target, words, where, args.json, plot)
    return 0
