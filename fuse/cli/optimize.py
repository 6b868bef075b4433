"""``fuse optimize``: optimize a prompt in one model's tokens against a weighted objective over several models."""

from __future__ import annotations

import argparse
import json

from fuse.parallel.config import DEFAULT_PARALLEL, SHARDS

# options that do not change a target's result (left out of the job id that guards resuming)
_NOT_RESULT = ("func", "command", "verbose", "json", "no_progress", "targets", "output", "shard")


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
    p.add_argument("--json", action="store_true", help="print one JSON object (one per line, in input order, with --targets)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--micro-batch", type=int, default=DEFAULT_PARALLEL.micro_batch,
                   help="candidates per forward and unit of the split across torchrun ranks: the result is the same "
                        "for any number of processes; 0: one piece per rank at --batch-size (docs/scale-out.md)")
    p.add_argument("--shard", choices=SHARDS, default=DEFAULT_PARALLEL.shard, help="how --targets are dealt to ranks")
    p.add_argument("--targets", metavar="FILE", default=None,
                   help="optimize one prompt per target: a text file (one target text per line) or JSONL "
                        "({\"target_text\": ..., \"id\": ..., and any of prefix, seed, n_tokens, budget}); "
                        "sharded across torchrun ranks")
    p.add_argument("--output", metavar="FILE.jsonl", default=None,
                   help="with --targets: append each finished target's record here; a rerun skips finished ones")
    p.set_defaults(func=run)


def run(args) -> int:
    from fuse.optim.chain import Chain
    from fuse.models.loading import load
    from fuse.objectives import Fluency
    from fuse.optim import make_optimizer
    from fuse.parallel import DataParallelChain, JobLog, ParallelConfig, is_main, job_id, run_job, world_size
    from fuse.parallel.targets import read_targets

    if args.target_text is not None and not args.target_text.strip():
        raise ValueError("--target-text is empty")
    if args.targets is not None and args.target_text is not None:
        raise ValueError("give either --target-text or --targets FILE, not both")
    if args.output is not None and args.targets is None:
        raise ValueError("--output FILE.jsonl goes with --targets FILE (one record per target)")
    args.micro_batch = args.micro_batch or None
    ParallelConfig(micro_batch=args.micro_batch, shard=args.shard)  # validates
    targets = read_targets(args.targets) if args.targets is not None else None
    log = JobLog(args.output, job=job_id({k: v for k, v in vars(args).items() if k not in _NOT_RESULT})) if args.output else None
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
    adapters: dict = {}

    def optimize(*, target_text, local: bool, progress: bool, **overrides) -> dict:
        chain = Chain(primary, terms, target_text=target_text, adapters=adapters)
        adapters.update(chain.adapters)
        opts = {**dict(n_tokens=args.n_tokens, prefix=args.prefix, budget=args.budget, seed=args.seed), **overrides}
        kwargs = dict(batch_size=args.batch_size, search=args.search, beam_width=args.beam_width, progress=progress, **opts)
        if args.optimizer == "gcg":
            kwargs["top_k"] = args.top_k
        if args.optimizer == "autodan":
            kwargs["complete_only"] = not args.any_length
        dp = DataParallelChain(chain, micro_batch=args.micro_batch, local=local)
        res = make_optimizer(args.optimizer, dp, **kwargs).run()
        return {"best_text": res.best_text, "best_loss": res.best_loss, "losses": res.losses,
                "evaluations": res.evaluations, "seconds": round(res.seconds, 3), "optimizer": res.optimizer,
                "search": res.search, "stopped": res.stopped, "seed": opts["seed"], "world_size": world_size()}

    if targets is not None:  # a dataset job: targets dealt to ranks, each optimized by one rank alone
        rows = run_job(targets, lambda item: {"target_text": item["target_text"], **optimize(
            local=True, progress=False, **item)}, log=log, how=args.shard, progress=not args.no_progress, desc="targets")
        if rows is None:  # not rank 0
            return 0
        for r in rows:
            print(json.dumps(r) if args.json else f"{r['key']}\t{r['best_text']!r}\t{r['best_loss']:.4f}")
        return 0
    out = optimize(target_text=args.target_text, local=False, progress=not args.no_progress and is_main())
    res = argparse.Namespace(**out)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"best: {res.best_text!r}\nweighted loss {res.best_loss:.4f}  " +
              "  ".join(f"{k}={v:.4f}" for k, v in res.losses.items()) +
              f"\n{res.evaluations} evaluations in {res.seconds:.1f}s ({res.stopped})")
    return 0
