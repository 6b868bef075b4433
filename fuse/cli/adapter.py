"""``fuse adapter build|eval``."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("adapter", help="build and evaluate t-product adapters between two models")
    asub = p.add_subparsers(dest="adapter_command", required=True)
    b = asub.add_parser("build", help="fit an adapter SRC → TGT and save it")
    b.add_argument("source", help="source model (bundled:NAME, a folder or a hub id)")
    b.add_argument("target", help="target model")
    b.add_argument("--words", type=int, default=8000, help="number of shared words to fit on (default 8000)")
    b.add_argument("--holdout", type=int, default=2000, help="held-out words for the quality report (default 2000)")
    b.add_argument("--k", type=int, default=8, help="tube length: tokens per word the map covers (default 8)")
    b.add_argument("--lam", type=float, default=1e-3, help="relative ridge weight (default 1e-3)")
    b.add_argument("--scheme", choices=["padded", "bucket"], default="padded")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--json", action="store_true", help="print the quality as JSON")
    b.set_defaults(func=build)
    e = asub.add_parser("eval", help="held-out quality of a saved adapter")
    e.add_argument("dir", help="adapter folder")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=evaluate)


def _report(adapter, source, target, as_json: bool) -> dict:
    from dataclasses import asdict

    from fuse.core.evaluation import evaluate_adapter
    from fuse.core.wordlist import split_words

    cfg = adapter.config
    if cfg.word_source == "user" or cfg.n_holdout == 0:
        raise ValueError("this adapter was fitted on a user word list; no held-out split is recorded to evaluate on")
    held = split_words(cfg.n_words, cfg.n_holdout, cfg.seed).holdout
    scores = asdict(evaluate_adapter(adapter, source, target, held))
    out = {"source": cfg.source, "target": cfg.target, "scheme": cfg.scheme, "k": cfg.k, "lam": cfg.lam,
           "fitted_words": cfg.n_fitted, "fit_seconds": cfg.fit_seconds, **{f"heldout_{k}": v for k, v in scores.items()}}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        print(f"adapter {cfg.source} → {cfg.target} ({cfg.scheme}, k={cfg.k}, λ={cfg.lam:g}, {cfg.n_fitted} words, "
              f"fit {cfg.fit_seconds:.1f}s)")
        print(f"held-out ({scores['n_words']} words never fitted): relative error {scores['rel_error']:.3f}, "
              f"retrieval top-1 {scores['top1']:.1%}, top-10 {scores['top10']:.1%}")
    return out


def build(args) -> int:
    from fuse.core.adapter import TensorAdapter
    from fuse.models.loading import load

    source, target = load(args.source), load(args.target)
    adapter = TensorAdapter.fit(source, target, n_words=args.words, n_holdout=args.holdout, k=args.k, lam=args.lam,
                                scheme=args.scheme, seed=args.seed, progress=True)
    out = adapter.save_pretrained(Path(args.out))
    _report(adapter, source, target, args.json)
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
    _report(adapter, source, target, args.json)
    return 0
