"""``fuse optimize``: optimize a prompt in one model's tokens against a weighted objective over several models."""

from __future__ import annotations

import json


def _secondary(spec: str) -> tuple[str, float]:
    name, _, weight = spec.rpartition(":")
    if not name or not weight:
        raise ValueError(f"--secondary takes MODEL:WEIGHT (e.g. bundled:minilm-l6:1.0), got {spec!r}")
    try:
        return name, float(weight)
    except ValueError:
        raise ValueError(f"--secondary weight must be a number, got {weight!r} in {spec!r}") from None


def register(sub) -> None:
    p = sub.add_parser("optimize", help="optimize a prompt across models (GCG, AutoDAN, PEZ, random search)")
    p.add_argument("--primary", required=True, help="model whose tokens are optimized")
    p.add_argument("--primary-weight", type=float, default=1.0, help="weight of the primary's own fluency (NLL); 0 drops it")
    p.add_argument("--secondary", action="append", default=[], metavar="MODEL:WEIGHT",
                   help="another model and its weight; encoders score similarity to --target-text, LMs fluency")
    p.add_argument("--target-text", default=None, help="text the encoders should find the prompt similar to")
    p.add_argument("--prefix", default="", help="fixed text before the optimized tokens")
    p.add_argument("--n-tokens", type=int, default=8)
    p.add_argument("--budget", type=int, default=500, help="exact objective evaluations")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=["gcg", "autodan", "pez", "random"], default="gcg")
    p.add_argument("--search", choices=["greedy", "beam"], default="greedy")
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--top-k", type=int, default=256, help="GCG: candidate tokens per position")
    p.add_argument("--any-length", action="store_true",
                   help="AutoDAN: return the best prompt of any length up to --n-tokens (default: exactly --n-tokens)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from fuse.optim.chain import Chain
    from fuse.models.loading import load
    from fuse.objectives import Fluency
    from fuse.optim import make_optimizer

    if args.target_text is not None and not args.target_text.strip():
        raise ValueError("--target-text is empty")
    primary = load(args.primary)
    terms = []
    if args.primary_weight > 0:
        if primary.kind != "causal_lm":
            raise ValueError("--primary-weight > 0 scores the primary's fluency and needs a causal LM; pass --primary-weight 0")
        terms.append((Fluency(primary), args.primary_weight))
    for spec in args.secondary:
        name, weight = _secondary(spec)
        terms.append((load(name), weight))
    if not terms:
        raise ValueError("nothing to optimize: give --secondary MODEL:WEIGHT or a --primary-weight > 0")
    chain = Chain(primary, terms, target_text=args.target_text)
    kwargs = dict(n_tokens=args.n_tokens, prefix=args.prefix, budget=args.budget, batch_size=args.batch_size,
                  search=args.search, beam_width=args.beam_width, seed=args.seed, progress=not args.no_progress)
    if args.optimizer == "gcg":
        kwargs["top_k"] = args.top_k
    if args.optimizer == "autodan":
        kwargs["complete_only"] = not args.any_length
    res = make_optimizer(args.optimizer, chain, **kwargs).run()
    out = {"best_text": res.best_text, "best_loss": res.best_loss, "losses": res.losses, "evaluations": res.evaluations,
           "seconds": round(res.seconds, 3), "optimizer": res.optimizer, "search": res.search, "stopped": res.stopped,
           "seed": args.seed}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"best: {res.best_text!r}\nweighted loss {res.best_loss:.4f}  " +
              "  ".join(f"{k}={v:.4f}" for k, v in res.losses.items()) +
              f"\n{res.evaluations} evaluations in {res.seconds:.1f}s ({res.stopped})")
    return 0
