"""``fuse caption IMG...``: zero-shot captions (and steered captions) for image files."""

from __future__ import annotations

import csv
import json
import sys

from fuse.optim import OPTIMIZERS
from fuse.parallel.config import DEFAULT_PARALLEL, SHARDS


def _image_suffixes() -> set[str]:
    """Every file ending Pillow can open (a folder given on the command line expands to those files)."""
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def register(sub) -> None:
    p = sub.add_parser("caption", help="caption images zero-shot: an LM writes, an image–text model judges")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, ...) or folders (their images, sorted)")
    p.add_argument("--lm", default="bundled:smollm2-135m", help="the writing causal LM")
    p.add_argument("--scorer", default="bundled",
                   help="image–text judge: bundled (the label bridge, best on photos), bundled:lit (clip art), bundled:sum, or a CLIP id/folder")
    p.add_argument("--prefix", default="An image of")
    p.add_argument("--n-tokens", type=int, default=None, help="tokens grown after the prefix (default: the tuned value)")
    p.add_argument("--alpha", type=float, nargs=2, default=None, metavar=("LM", "IMAGE"), help="weights of LM NLL and 1 − cos")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="autodan")
    p.add_argument("--no-gradient", action="store_true", help="rank candidates by LM logits only (the control)")
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=None, help="candidates evaluated per step")
    p.add_argument("--budget", type=int, default=None, help="exact evaluations per image")
    p.add_argument("--steer", default=None, help="steer sentiment: positive or negative (zero-shot MiniLM classifier)")
    p.add_argument("--steer-weight", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON list of {image, caption, ...}")
    p.add_argument("--csv", metavar="FILE", default=None, help="also write the captions to a CSV file")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="FILE.jsonl: append each finished image's record (a rerun skips finished images); "
                        "any other name: also write the JSON list to it at the end")
    p.add_argument("--shard", choices=SHARDS, default=DEFAULT_PARALLEL.shard, help="how images are dealt to torchrun ranks")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import asdict, replace

    from fuse.captioning import DEFAULT_CONFIG, Captioner
    from fuse.parallel import JobLog, job_id, run_job
    from fuse.parallel.files import expand_folders

    cfg = replace(DEFAULT_CONFIG, prefix=args.prefix, optimizer=args.optimizer, use_gradient=not args.no_gradient,
                  beam_width=args.beam_width, seed=args.seed, budget=args.budget,
                  **{k: v for k, v in dict(n_tokens=args.n_tokens, batch_size=args.batch_size, steer_weight=args.steer_weight,
                                           alpha=tuple(args.alpha) if args.alpha else None).items() if v is not None})
    if args.optimizer == "pez":
        cfg = replace(cfg, search="greedy")
    images = expand_folders(args.images, _image_suffixes())
    jsonl = bool(args.output) and args.output.endswith(".jsonl")
    job = dict(lm=args.lm, scorer=args.scorer, steer=args.steer, config=asdict(cfg))
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
