"""``fuse caption IMG...``: zero-shot captions (and steered captions) for image files.

The search's flags are those of ``fuse optimize`` (every field of the ``--optimizer``'s config) with the captioning
search's defaults (:data:`fuse.captioning.DEFAULT_CONFIG`); the captioning-only flags come from
:class:`~fuse.captioning.CaptionConfig`. The config is built and validated while the command line is parsed.
"""

from __future__ import annotations

import csv
import json
import sys

from fuse.cli.optimize import CONFIG_CLASSES, OPTIMIZER_FLAGS, PARALLEL_FLAGS
from fuse.cli.options import ConfigFlags, Flag, after_parse
from fuse.optim import OPTIMIZERS
from fuse.parallel.config import ParallelConfig

SEARCH_FLAGS = {
    **OPTIMIZER_FLAGS,
    "n_tokens": Flag(help="tokens grown after the prefix"),
    "prefix": Flag(help="fixed text the caption starts with"),
    "batch_size": Flag(help="candidates evaluated exactly per step"),
    "budget": Flag(default=None, default_help="n-tokens × batch-size", help="exact evaluations per image"),
    "use_gradient": Flag(("--no-gradient",), invert=True, help="rank candidates by LM logits only (the control)"),
    "progress": Flag(skip=True),  # the search of one image runs without a bar; --no-progress is the images' bar
}
CAPTION_FLAGS = {
    "optim": Flag(skip=True),  # the search: the flags above
    "alpha": Flag(metavar=("LM", "IMAGE"), help="weights of LM NLL and 1 − cos"),
    "num_threads": Flag(none=0, help="torch CPU threads while captioning (same captions on any machine with the same "
                                     "count); 0: keep torch's setting"),
}


def _image_suffixes() -> set[str]:
    """Every file ending Pillow can open (a folder given on the command line expands to those files)."""
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def register(sub) -> None:
    from fuse.captioning import DEFAULT_CONFIG, CaptionConfig

    search = ConfigFlags(CONFIG_CLASSES.values(), base=DEFAULT_CONFIG.optim, flags=SEARCH_FLAGS,
                         labels={c: n for n, c in CONFIG_CLASSES.items()})
    caption = ConfigFlags([CaptionConfig], base=DEFAULT_CONFIG, flags=CAPTION_FLAGS)
    shard = ConfigFlags([ParallelConfig], flags={**PARALLEL_FLAGS, "shard": Flag(
        choices=PARALLEL_FLAGS["shard"].choices, help="how images are dealt to torchrun ranks")}, only=("shard",))
    p = sub.add_parser("caption", help="caption images zero-shot: an LM writes, an image–text model judges")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, ...) or folders (their images, sorted)")
    p.add_argument("--lm", default="bundled:smollm2-135m", help="the writing causal LM")
    p.add_argument("--scorer", default="bundled",
                   help="image–text judge: bundled (the label bridge, best on photos), bundled:lit (clip art), bundled:sum, or a CLIP id/folder")
    p.add_argument("--steer", default=None, help="steer sentiment: positive or negative (zero-shot MiniLM classifier)")
    caption.add_to(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of {image, caption, ...}")
    p.add_argument("--csv", metavar="FILE", default=None, help="also write the captions to a CSV file")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="FILE.jsonl: append each finished image's record (a rerun skips finished images); "
                        "any other name: also write the JSON list to it at the end")
    shard.add_to(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("search", "the fields of the --optimizer's config (fuse/optim/config.py), with the "
                                       "captioning search's defaults; [gcg] and the like: only those optimizers have the option")
    g.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=DEFAULT_CONFIG.optimizer,
                   help=f"(default: {DEFAULT_CONFIG.optimizer})")
    search.add_to(g)
    p.set_defaults(func=run)

    def finish(parser, args) -> None:
        """``args.config``: the CaptionConfig of the flags (the search's budget defaults to n-tokens × batch-size)."""
        given = search.given(args)
        base = DEFAULT_CONFIG.override(optimizer=args.optimizer).optim  # the shared fields kept; PEZ: greedy
        if given.get("budget") is None:
            given["budget"] = given.get("n_tokens", base.n_tokens) * given.get("batch_size", base.batch_size)
        optim = search.build(CONFIG_CLASSES[args.optimizer], given, parser, base=base)
        args.config = caption.build(CaptionConfig, caption.given(args), parser, base=DEFAULT_CONFIG, optim=optim)
        args.shard = shard.build(ParallelConfig, shard.given(args), parser).shard

    after_parse(p, finish)


def run(args) -> int:
    from fuse.captioning import Captioner
    from fuse.parallel import JobLog, job_id, run_job
    from fuse.parallel.files import expand_folders

    cfg = args.config  # built and validated from the flags while parsing (register's finish)
    images = expand_folders(args.images, _image_suffixes())
    jsonl = bool(args.output) and args.output.endswith(".jsonl")
    job = dict(lm=args.lm, scorer=args.scorer, steer=args.steer, config=cfg.to_dict())
    log = JobLog(args.output, job=job_id(job)) if jsonl else None
    captioner = Captioner(args.lm, args.scorer, cfg, steer=args.steer)  # every image captioned alone: same on any N ranks
    rows = run_job([(im, im) for im in images], lambda im: captioner([im])[0].to_dict(), log=log, how=args.shard,
                   progress=not args.no_progress, desc="captions")
    if rows is None:  # not rank 0: rank 0 prints and writes
        return 0
    if args.output and not jsonl:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=2)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["image", "caption", "image_score", "nll", "loss", "evaluations", "seconds", "error"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r[k] for k in w.fieldnames})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['image']}\t{r['caption']}" if r["error"] is None else f"{r['image']}\tERROR: {r['error']}")
    bad = [r for r in rows if r["error"]]
    for r in bad:
        print(f"fuse: could not caption {r['error']}", file=sys.stderr)
    return 1 if bad else 0
