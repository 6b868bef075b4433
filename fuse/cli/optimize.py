"""``fuse optimize``: optimize a prompt in one model's tokens against a weighted objective over several models.

Every default comes from the optimizer's config dataclass (:mod:`fuse.optim.config`), so the command and
``fuse.optimize(chain, config)`` agree.
"""

from __future__ import annotations

import json

from fuse.optim.config import AutoDANConfig, GCGConfig, OptimizerConfig, PEZConfig, RandomSearchConfig

BASE, GCG_D, AUTODAN_D, PEZ_D = OptimizerConfig(), GCGConfig(), AutoDANConfig(), PEZConfig()


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
    p.add_argument("--primary-weight", type=float, default=None,
                   help="weight of the primary's own fluency (NLL); 0 drops it (default 1.0, or 0 with --target-continuation)")
    p.add_argument("--secondary", action="append", default=[], metavar="MODEL:WEIGHT",
                   help="another model and its weight; encoders score similarity to --target-text, LMs fluency")
    p.add_argument("--target-text", default=None, help="text the encoders should find the prompt similar to")
    p.add_argument("--target-continuation", default=None, metavar="TEXT",
                   help="make the primary continue the prompt with TEXT (the GCG / nanoGCG task)")
    p.add_argument("--mellowmax", action="store_true", help="continuation loss: mellowmax of the target logits (nanoGCG's option)")
    p.add_argument("--device", default=None, help="device of every model: cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--dtype", default=None, help="weights' dtype: float32 (default), bfloat16, float16")
    p.add_argument("--prefix", default=BASE.prefix, help="fixed text before the optimized tokens")
    p.add_argument("--n-tokens", type=int, default=BASE.n_tokens)
    p.add_argument("--init-text", default=BASE.init_text, help="initial optimized tokens as text (e.g. 'x x x x')")
    p.add_argument("--budget", type=int, default=BASE.budget, help="exact objective evaluations")
    p.add_argument("--batch-size", type=int, default=BASE.batch_size, help="candidates per step")
    p.add_argument("--optimizer", choices=["gcg", "autodan", "pez", "random"], default="gcg")
    p.add_argument("--search", choices=["greedy", "beam"], default=BASE.search)
    p.add_argument("--beam-width", type=int, default=BASE.beam_width)
    p.add_argument("--top-k", type=int, default=GCG_D.top_k, help="GCG: candidate tokens per position")
    p.add_argument("--n-replace", type=int, default=GCG_D.n_replace, help="GCG / random: positions swapped per candidate")
    p.add_argument("--buffer-size", type=int, default=GCG_D.buffer_size, help="GCG: attack buffer size (nanoGCG's)")
    p.add_argument("--accept", choices=["improve", "always"], default=GCG_D.accept,
                   help="GCG / random: move only to better candidates, or always to the step's best (nanoGCG)")
    p.add_argument("--early-stop", action="store_true", help="stop once the primary produces --target-continuation exactly")
    p.add_argument("--probe-draft", default=None, metavar="MODEL",
                   help="GCG: probe sampling with this small draft model (any tokenizer) pre-screening candidates")
    p.add_argument("--any-length", action="store_true",
                   help="AutoDAN: return the best prompt of any length up to --n-tokens (default: exactly --n-tokens)")
    p.add_argument("--seed", type=int, default=BASE.seed)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def build_terms(args, load):
    """The chain's terms from the command line: ``(primary, terms, target_text)``; also used for the probe draft."""
    from fuse.objectives import Continuation, Fluency

    primary = load(args.primary, device=args.device, dtype=args.dtype)
    terms = []
    primary_weight = args.primary_weight
    if primary_weight is None:  # the primary's fluency by default; not when it must continue with a target
        primary_weight = 0.0 if args.target_continuation is not None else 1.0
    if args.target_continuation is not None:
        if not args.target_continuation.strip():
            raise ValueError("--target-continuation is empty")
        if primary.kind != "causal_lm":
            raise ValueError("--target-continuation needs a causal-LM primary")
        terms.append((Continuation(primary, args.target_continuation, loss="mellowmax" if args.mellowmax else "ce"), 1.0))
    if primary_weight > 0:
        if primary.kind != "causal_lm":
            raise ValueError("--primary-weight > 0 scores the primary's fluency and needs a causal LM; pass --primary-weight 0")
        terms.append((Fluency(primary), primary_weight))
    for spec in args.secondary:
        name, weight = _secondary(spec)
        terms.append((load(name, device=args.device, dtype=args.dtype), weight))
    if not terms:
        raise ValueError("nothing to optimize: give --secondary MODEL:WEIGHT, --target-continuation or a --primary-weight > 0")
    return primary, terms


def make_config(args):
    common = dict(n_tokens=args.n_tokens, prefix=args.prefix, budget=args.budget, batch_size=args.batch_size,
                  search=args.search, beam_width=args.beam_width, seed=args.seed, progress=not args.no_progress,
                  init_text=args.init_text, early_stop=args.early_stop)
    if args.optimizer == "gcg":
        return GCGConfig(**common, top_k=args.top_k, n_replace=args.n_replace, buffer_size=args.buffer_size,
                         accept=args.accept)
    if args.optimizer == "random":
        return RandomSearchConfig(**common, n_replace=args.n_replace)
    if args.optimizer == "autodan":
        return AutoDANConfig(**common, complete_only=not args.any_length)
    return PEZConfig(**common)


def run(args) -> int:
    from fuse.models.loading import load
    from fuse.optim import ProbeConfig, optimize
    from fuse.optim.chain import Chain

    if args.target_text is not None and not args.target_text.strip():
        raise ValueError("--target-text is empty")
    primary, terms = build_terms(args, load)
    chain = Chain(primary, terms, target_text=args.target_text)
    config = make_config(args)
    if args.probe_draft:
        if args.optimizer != "gcg":
            raise ValueError("--probe-draft works with --optimizer gcg")
        draft_args = type(args)(**{**vars(args), "primary": args.probe_draft, "secondary": []})
        d_primary, d_terms = build_terms(draft_args, load)
        d_terms += [(load(name, device=args.device, dtype=args.dtype), w) for name, w in map(_secondary, args.secondary)]
        from dataclasses import replace

        config = replace(config, probe=ProbeConfig(draft=Chain(d_primary, d_terms, target_text=args.target_text)))
    res = optimize(chain, config)
    out = {"best_text": res.best_text, "best_free_text": res.best_free_text, "best_loss": res.best_loss,
           "losses": res.losses, "evaluations": res.evaluations, "seconds": round(res.seconds, 3),
           "evaluations_per_second": round(res.evaluations_per_second, 3), "optimizer": res.optimizer,
           "search": res.search, "stopped": res.stopped, "matched": res.matched, "seed": args.seed,
           "device": str(primary.device), "dtype": str(primary.dtype).removeprefix("torch.")}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"best: {res.best_text!r}\nweighted loss {res.best_loss:.4f}  " +
              "  ".join(f"{k}={v:.4f}" for k, v in res.losses.items()) +
              f"\n{res.evaluations} evaluations in {res.seconds:.1f}s ({res.stopped})")
    return 0
