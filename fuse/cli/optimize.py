"""``fuse optimize``: optimize a prompt in one model's tokens against a weighted objective over several models.

The optimizer's flags are generated from the config dataclasses (:mod:`fuse.optim.config`, through
:mod:`fuse.cli.options`): every field of every optimizer's config is a flag, with that dataclass's default, so the
command and ``fuse.optimize(chain, config)`` agree; the config is built and validated while the command line is parsed.
"""

from __future__ import annotations

import json

from fuse.cli.options import ConfigFlags, Flag, after_parse
from fuse.optim import OPTIMIZERS
from fuse.optim.config import ACCEPT, SEARCHES
from fuse.optim.vocab_filter import VOCABULARIES
from fuse.parallel.config import SHARDS, ParallelConfig

# options that do not change a target's result (left out of the job id that guards resuming)
_NOT_RESULT = ("func", "command", "verbose", "json", "no_progress", "targets", "output", "shard", "config", "parallel",
               "prompts", "model", "chat_template", "split_terms", "parallel_given",
               "bridge_weight")  # (the --prompts options do not go with --targets)

#: the irregular optimizer flags, shared with ``fuse caption``; every other field's flag is plain ``--field-name``
OPTIMIZER_FLAGS = {
    "search": Flag(choices=SEARCHES),
    "accept": Flag(choices=ACCEPT),
    "vocabulary": Flag(choices=VOCABULARIES),
    "complete_only": Flag(("--any-length",), invert=True,
                          help="return the best prompt of any length up to --n-tokens (default: exactly --n-tokens)"),
    "use_gradient": Flag(("--no-gradient",), invert=True,
                         help="rank candidates by the primary LM's logits only, not the chain's gradient (the control)"),
    "progress": Flag(("--no-progress",), invert=True, default=True, help="no progress bars"),
    "init_text": Flag(help="initial optimized tokens as text (e.g. 'x x x x'; default: random allowed tokens)"),
    "combine": Flag(default_help="batch-size // 8"),
    "probe": Flag(skip=True),  # a draft chain: built from --probe-draft MODEL
    "lr": Flag(help="AdamW's learning rate (published: 0.1)"),
    "weight_decay": Flag(help="AdamW's weight decay (published: 0.1)"),
}
CONFIG_CLASSES = {name: cls.config_class for name, cls in OPTIMIZERS.items()}
OPTIMIZER_OPTIONS = ConfigFlags(CONFIG_CLASSES.values(), flags=OPTIMIZER_FLAGS,
                                labels={c: n for n, c in CONFIG_CLASSES.items()})
PARALLEL_FLAGS = {
    "micro_batch": Flag(none=0, help="candidates per forward and unit of the split across torchrun ranks: the result "
                                     "is the same for any number of processes; 0: one piece per rank at --batch-size "
                                     "(docs/scale-out.md)"),
    "shard": Flag(choices=SHARDS, help="how --targets are dealt to ranks"),
}
PARALLEL_OPTIONS = ConfigFlags([ParallelConfig], flags=PARALLEL_FLAGS)
# flags that came with the generated options: a job id counts them only when changed, so a job begun before resumes
_NEWER = ("eval_batch_size", "patience", "target_loss", "ascii_only", "cache", "lm_weight", "no_gradient", "lr",
          "weight_decay", "cascade", "vocabulary")


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
    p.add_argument("--json", action="store_true", help="print one JSON object (one per line, in input order, with --targets)")
    p.add_argument("--targets", metavar="FILE", default=None,
                   help="optimize one prompt per target: a text file (one target text per line) or JSONL "
                        "({\"target_text\": ..., \"id\": ..., and any of prefix, seed, n_tokens, budget}); "
                        "sharded across torchrun ranks")
    p.add_argument("--prompts", metavar="FILE", default=None,
                   help="optimize one span for every prompt in FILE and every LM (--primary and each --model): JSONL of "
                        "{\"messages\": [...with {optim_str}], \"target\": ...} (or \"prompt\": a string with "
                        "{optim_str}); several prompts make a universal span (docs/prompts.md)")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="with --prompts: another LM that must continue every prompt with its target (its gradient "
                        "reaches the span through an adapter)")
    p.add_argument("--chat-template", action="append", default=[], metavar="MODEL=FILE",
                   help="with --prompts: the Jinja chat template MODEL renders the messages with (a file, or 'gemma' "
                        "for fuse's Gemma-style one: the bundled Gemma-3 has none)")
    p.add_argument("--bridge-weight", type=float, default=1.0,
                   help="with --prompts: how much the --model LMs' bridged gradient counts in the proposals (1: the "
                        "objective's gradient; 0: the primary's own; every candidate is scored on all; default 1)")
    p.add_argument("--split-terms", choices=("model", "term"), default=None,
                   help="with --prompts under torchrun: deal the objective's terms to the ranks instead of the "
                        "candidates (model: each rank runs one model's terms, so each model needs one rank's device; "
                        "term: (prompt, model) pair i on rank i mod N); the same steps on every rank (docs/prompts.md)")
    p.add_argument("--output", metavar="FILE.jsonl", default=None,
                   help="with --targets: append each finished target's record here; a rerun skips finished ones")
    g = p.add_argument_group("optimizer", "the fields of the --optimizer's config (fuse/optim/config.py); [gcg] and "
                                          "the like: only those optimizers have the option")
    g.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="gcg", help="(default: gcg)")
    OPTIMIZER_OPTIONS.add_to(g)
    g.add_argument("--probe-draft", default=None, metavar="MODEL",
                   help="[gcg] probe sampling with this small draft model (any tokenizer) pre-screening candidates")
    PARALLEL_OPTIONS.add_to(p, "scale-out", "fuse.parallel.ParallelConfig (docs/scale-out.md)")
    p.set_defaults(func=run)
    after_parse(p, finish)


def finish(parser, args) -> None:
    """Build and validate the configs while parsing: ``args.config`` (the optimizer's) and ``args.parallel``."""
    given = OPTIMIZER_OPTIONS.given(args)
    args.config = OPTIMIZER_OPTIONS.build(CONFIG_CLASSES[args.optimizer], given, parser)
    args.parallel_given = PARALLEL_OPTIONS.given(args)
    args.parallel = PARALLEL_OPTIONS.build(ParallelConfig, args.parallel_given, parser)


def job_options(args) -> dict:
    """What names a job (its id guards resuming): every result-changing option as given on the command line."""
    out = {k: v for k, v in vars(args).items() if k not in _NOT_RESULT}
    for dest in _NEWER:
        spec = next(s for s in OPTIMIZER_OPTIONS.specs.values() if s.dest == dest)
        if out.get(dest) == spec.cli_default:
            out.pop(dest, None)
    return out


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


def chat_templates(specs: list[str]) -> dict[str, str]:
    """``{model name: template}`` from ``--chat-template MODEL=FILE`` flags (``gemma``: fuse's Gemma-style one)."""
    from pathlib import Path

    from fuse.models.templates import GEMMA_CHAT_TEMPLATE

    out = {}
    for spec in specs:
        name, sep, where = spec.rpartition("=")
        if not sep or not name or not where:
            raise ValueError(f"--chat-template takes MODEL=FILE (or MODEL=gemma), got {spec!r}")
        if where == "gemma":
            out[name] = GEMMA_CHAT_TEMPLATE
        elif Path(where).is_file():
            out[name] = Path(where).read_text(encoding="utf-8")
        else:
            raise ValueError(f"--chat-template {spec!r}: {where!r} is neither a file nor 'gemma'")
    return out


def run_prompts(args, load) -> dict:
    """``--prompts FILE``: one span for every prompt and every LM (:class:`fuse.PromptChain`)."""
    from dataclasses import replace

    from fuse.optim import PromptChain, optimize
    from fuse.optim.prompt_chain import check_bridge_weight
    from fuse.optim.prompt_file import read_prompts
    from fuse.parallel import DataParallelChain, TermParallelChain, is_main, world_size

    clash = [flag for flag, given in (("--targets", args.targets), ("--target-text", args.target_text),
                                      ("--target-continuation", args.target_continuation),
                                      ("--secondary", args.secondary), ("--primary-weight", args.primary_weight),
                                      ("--probe-draft", args.probe_draft),
                                      ("--prefix", args.config.prefix)) if given]
    if clash:
        raise ValueError(f"--prompts FILE sets the whole objective (every model continues every prompt with its "
                         f"target); drop {', '.join(clash)}")
    check_bridge_weight(args.bridge_weight, "; fix --bridge-weight")  # before any model loads
    prompts = read_prompts(args.prompts)
    templates = chat_templates(args.chat_template)
    models = [load(name, device=args.device, dtype=args.dtype) for name in [args.primary, *args.model]]
    unknown = sorted(set(templates) - {m.name for m in models} - {args.primary, *args.model})
    if unknown:
        raise ValueError(f"--chat-template for {unknown}, which is not --primary or a --model")
    spelled = dict(zip([args.primary, *args.model], models))
    templates = {getattr(spelled.get(k), "name", k): v for k, v in templates.items()}
    chain = PromptChain(models, prompts, chat_templates=templates, loss="mellowmax" if args.mellowmax else "ce",
                        bridge_weight=args.bridge_weight)
    config = replace(args.config, progress=not args.no_progress and is_main())
    if args.split_terms is not None:
        if "micro_batch" in args.parallel_given:
            raise ValueError("--micro-batch splits the candidates and --split-terms the terms: give one of them")
        wrapped = TermParallelChain(chain, by=args.split_terms)
    else:
        wrapped = DataParallelChain(chain, micro_batch=args.parallel.micro_batch)
    res = optimize(wrapped, config)
    return {"best_text": res.best_free_text, "best_loss": res.best_loss, "losses": res.losses,
            "evaluations": res.evaluations, "cascade_evaluations": res.cascade_evaluations,
            "dropped": res.dropped, "seconds": round(res.seconds, 3),
            "optimizer": res.optimizer, "stopped": res.stopped, "matched": res.matched, "seed": config.seed,
            "prompts": len(prompts), "models": [m.name for m in models], "world_size": world_size()}


def run(args) -> int:
    from dataclasses import replace

    from fuse.models.loading import load
    from fuse.optim import ProbeConfig, optimize
    from fuse.optim.chain import Chain
    from fuse.parallel import DataParallelChain, JobLog, is_main, job_id, run_job, world_size
    from fuse.parallel.targets import read_targets

    if args.prompts is not None:
        out = run_prompts(args, load)
        if args.json:
            print(json.dumps(out))
        else:
            print(f"span: {out['best_text']!r}\nmean loss over {out['prompts']} prompt(s) × {len(out['models'])} "
                  f"model(s) {out['best_loss']:.4f}  " + "  ".join(f"{k}={v:.4f}" for k, v in out["losses"].items()) +
                  f"\n{out['evaluations']} evaluations in {out['seconds']:.1f}s ({out['stopped']}; {out['dropped']} "
                  "dropped)")
        return 0
    if args.model or args.chat_template or args.split_terms or args.bridge_weight != 1.0:
        raise ValueError("--model, --chat-template, --split-terms and --bridge-weight go with --prompts FILE")
    if args.target_text is not None and not args.target_text.strip():
        raise ValueError("--target-text is empty")
    if args.targets is not None and args.target_text is not None:
        raise ValueError("give either --target-text or --targets FILE, not both")
    if args.output is not None and args.targets is None:
        raise ValueError("--output FILE.jsonl goes with --targets FILE (one record per target)")
    if args.probe_draft and args.optimizer != "gcg":
        raise ValueError("--probe-draft works with --optimizer gcg")
    args.micro_batch = args.parallel.micro_batch
    base = args.config  # built and validated from the flags while parsing (finish), before any model is loaded
    targets = read_targets(args.targets) if args.targets is not None else None
    log = JobLog(args.output, job=job_id(job_options(args))) if args.output else None
    primary, terms = build_terms(args, load)
    draft = None
    if args.probe_draft:
        draft_args = type(args)(**{**vars(args), "primary": args.probe_draft, "secondary": []})
        d_primary, d_terms = build_terms(draft_args, load)
        d_terms += [(load(name, device=args.device, dtype=args.dtype), w) for name, w in map(_secondary, args.secondary)]
        draft = (d_primary, d_terms)
    adapters: dict = {}

    def run_one(*, target_text, local: bool, progress: bool, **overrides) -> dict:
        chain = Chain(primary, terms, target_text=target_text, adapters=adapters)
        adapters.update(chain.adapters)
        config = replace(base, progress=progress, **overrides)
        if draft is not None:
            config = replace(config, probe=ProbeConfig(draft=Chain(*draft, target_text=target_text)))
        res = optimize(DataParallelChain(chain, micro_batch=args.micro_batch, local=local), config)
        return {"best_text": res.best_text, "best_free_text": res.best_free_text, "best_loss": res.best_loss,
                "losses": res.losses, "evaluations": res.evaluations, "seconds": round(res.seconds, 3),
                "evaluations_per_second": round(res.evaluations_per_second, 3), "optimizer": res.optimizer,
                "search": res.search, "stopped": res.stopped, "matched": res.matched, "seed": config.seed,
                "device": str(primary.device), "dtype": str(primary.dtype).removeprefix("torch."),
                "world_size": world_size()}

    if targets is not None:  # a dataset job: targets dealt to ranks, each optimized by one rank alone
        rows = run_job(targets, lambda item: {"target_text": item["target_text"], **run_one(
            local=True, progress=False, **item)}, log=log, how=args.parallel.shard, progress=not args.no_progress, desc="targets")
        if rows is None:  # not rank 0
            return 0
        for r in rows:
            print(json.dumps(r) if args.json else f"{r['key']}\t{r['best_text']!r}\t{r['best_loss']:.4f}")
        return 0
    out = run_one(target_text=args.target_text, local=False, progress=not args.no_progress and is_main())
    if args.json:
        print(json.dumps(out))
    else:
        print(f"best: {out['best_text']!r}\nweighted loss {out['best_loss']:.4f}  " +
              "  ".join(f"{k}={v:.4f}" for k, v in out["losses"].items()) +
              f"\n{out['evaluations']} evaluations in {out['seconds']:.1f}s ({out['stopped']})")
    return 0
