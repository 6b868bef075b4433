"""The published FUSE captioning protocol on COCO, for users with the data and a real CLIP.

An LM writes (GPT-2-medium in the paper; any causal LM ``fuse.load`` accepts), CLIP
(``openai/clip-vit-base-patch32``) judges, and CLIP's gradient reaches the LM's tokens through the
t-product adapter: prefix "An image of", α = (1, 22) for (LM NLL, 1 − cos), AutoDAN + beam 4, 16
tokens, 64 candidates per step. Beside it, at the same number of exact evaluations, the
MAGIC/ZeroCap-style control (the LM's top-k next tokens scored exactly, no gradient). Metrics:
BLEU-4, CIDEr, ROUGE-L, and METEOR / SPICE where Java is installed (pycocoevalcap), CLIP-S
(Hessel et al.: 2.5 · max(cos, 0) under the same CLIP), seconds per image.

Input: a folder of images and a COCO captions file (``captions_val2017.json``: ``images`` with
``id`` and ``file_name``, ``annotations`` with ``image_id`` and ``caption``)::

    python -m benchmarks.captioning --part coco --images val2017/ \\
        --annotations annotations/captions_val2017.json --n-images 500 \\
        --clip openai/clip-vit-base-patch32 --lm gpt2-medium --output coco_captions.jsonl

Every finished caption is appended to ``--output`` (JSON lines keyed by method and image id), so a
rerun resumes where it stopped; the loop is ``for item in items: record = caption_one(item);
write(record)`` over items keyed by image id, ready to be sharded by rank (``--rank R --world-size
N`` takes every N-th item; run the metrics once, after all shards, with ``--metrics-only``).
Results: ``results/captioning_coco.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import RESULTS, markdown_table, write_results

logger = logging.getLogger("benchmarks.captioning_coco")
EXTRA = ["pycocoevalcap"]
METHODS = {
    "fuse": "FUSE: AutoDAN + adapter gradient",
    "magic": "MAGIC/ZeroCap-style: LM top-k, exact scorer, no gradient",
    "random": "random search",
    "lm": "LM alone (no image)",
}


@dataclass(frozen=True)
class Item:
    """One image to caption: its COCO id, file and reference captions."""

    image_id: int
    path: Path
    references: tuple[str, ...]


def load_coco(annotations: str | os.PathLike, images: str | os.PathLike, *, n_images: int | None = None,
              seed: int = 0) -> list[Item]:
    """The images of a COCO captions file that exist in ``images``, sorted by id (a seeded sample of
    ``n_images`` when given).

    Raises:
        ValueError: the file is missing or not a COCO captions file, or no listed image is in the folder.
    """
    ann, folder = Path(annotations), Path(images)
    if not ann.is_file():
        raise ValueError(f"annotations file {str(ann)!r} not found; pass the COCO captions JSON (captions_val2017.json)")
    if not folder.is_dir():
        raise ValueError(f"images folder {str(folder)!r} not found; pass the folder holding the COCO images (val2017/)")
    try:
        data = json.loads(ann.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{ann} is not JSON ({e}); pass the COCO captions annotation file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{ann} is not a COCO captions file: it needs lists 'images' (id, file_name) and "
                         "'annotations' (image_id, caption)")
    refs: dict[int, list[str]] = {}
    for a in data["annotations"]:
        if "image_id" not in a or "caption" not in a:
            raise ValueError(f"{ann}: an annotation lacks 'image_id' or 'caption': {a!r}")
        refs.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
    items = []
    for im in data["images"]:
        if "id" not in im or "file_name" not in im:
            raise ValueError(f"{ann}: an image entry lacks 'id' or 'file_name': {im!r}")
        path = folder / im["file_name"]
        if int(im["id"]) in refs and path.is_file():
            items.append(Item(int(im["id"]), path, tuple(refs[int(im["id"])])))
    if not items:
        raise ValueError(f"none of the {len(data['images'])} images listed in {ann} (with a caption) is in {folder}")
    items.sort(key=lambda i: i.image_id)
    if n_images is not None:
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        items = sorted(random.Random(seed).sample(items, min(n_images, len(items))), key=lambda i: i.image_id)
    return items


def shard(items: list, rank: int = 0, world_size: int = 1) -> list:
    """Every ``world_size``-th item starting at ``rank`` (the items of one torchrun process)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return items[rank::world_size]


def finished(path: Path | None) -> dict[str, dict]:
    """Records already in a JSON-lines output file, by key (a torn last line from a crash is skipped)."""
    out = {}
    if path is None or not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s: skipping an unfinished line", path)
            continue
        out[r["key"]] = r
    return out


def append(path: Path | None, record: dict) -> None:
    """Append one record as a JSON line and flush it to disk."""
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def method_config(cfg, method: str):
    """The search of ``method`` at the budget of ``cfg``.

    ``fuse``: as is (AutoDAN ranks each step's candidates by the scorer's gradient through the adapter plus
    the LM's log-probability); ``magic``: AutoDAN ranking by the LM's log-probabilities alone, its top-k
    scored exactly by the same objective (no gradient); ``random``: random search; ``lm``: the same search
    as ``fuse`` (run it with ``with_image=False`` for the LM alone).
    """
    if method in ("fuse", "lm"):
        return cfg
    if method == "magic":
        return cfg.override(use_gradient=False)
    if method == "random":
        return cfg.override(optimizer="random")
    raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS)}")


def caption_items(items: list[Item], captioner, *, methods=("fuse", "magic"), output: Path | None = None) -> dict[str, dict]:
    """Caption every item with every method, appending each record to ``output``; finished keys are skipped."""
    done = finished(output)
    records = {}
    for m in methods:
        cfg = method_config(captioner.config, m)
        for item in items:
            key = f"{m}|{item.image_id}"
            if key in done:
                records[key] = done[key]
                continue
            feats = captioner.scorer.encode_images([item.path])[0]
            c = captioner.caption_features(feats, str(item.path), config=cfg)
            rec = {"key": key, "method": m, "image_id": item.image_id, "file": item.path.name, "caption": c.caption,
                   "image_score": c.image_score, "seconds": c.seconds, "evaluations": c.evaluations}
            append(output, rec)
            records[key] = rec
            logger.info("%s: %s (%.1f s)", key, c.caption, c.seconds)
    return records


def score(items: list[Item], records: dict[str, dict], scorer, *, methods=("fuse", "magic"), prefix: str = "An image of",
          batch_size: int = 16) -> dict[str, dict]:
    """COCO metrics, CLIP-S and seconds per image of each method over ``items``."""
    from fuse.captioning.evaluation import clip_score, coco_metrics

    refs = {str(i.image_id): list(i.references) for i in items}
    feats = torch.cat([scorer.encode_images([i.path for i in items[j : j + batch_size]]) for j in range(0, len(items), batch_size)])
    out = {}
    for m in methods:
        recs = [records.get(f"{m}|{i.image_id}") for i in items]
        if any(r is None for r in recs):
            raise ValueError(f"method {m}: {sum(r is None for r in recs)} of {len(items)} images have no caption yet; "
                             "finish every shard first")
        caps = [r["caption"] for r in recs]
        met = coco_metrics({str(i.image_id): c for i, c in zip(items, caps)}, refs, prefix=prefix)
        cs = clip_score(scorer, feats, caps, prefix=prefix)
        out[m] = {**met, "CLIP-S": float(cs.mean()), "sec_per_image": sum(r["seconds"] for r in recs) / len(recs),
                  "evaluations_per_image": sum(r["evaluations"] for r in recs) / len(recs), "n_images": len(items)}
    return out


def main(argv=None, *, lm=None, scorer=None, adapters: dict | None = None, results_dir: Path | None = None) -> dict:
    """Command line (see the module docstring); ``lm`` / ``scorer`` backbones (and their ``adapters``) may be passed in."""
    from fuse.captioning import PUBLISHED_CONFIG, CaptionConfig, Captioner

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True, help="folder of COCO images (val2017/)")
    p.add_argument("--annotations", required=True, help="COCO captions JSON (captions_val2017.json)")
    p.add_argument("--n-images", type=int, default=None, help="a seeded sample of this many images (default: all)")
    p.add_argument("--clip", default="openai/clip-vit-base-patch32", help="CLIP hub id or folder (the scorer)")
    p.add_argument("--lm", default="gpt2-medium", help="the writing causal LM (any name fuse.load accepts)")
    p.add_argument("--methods", default="fuse,magic")
    p.add_argument("--n-tokens", type=int, default=PUBLISHED_CONFIG.optim.n_tokens)
    p.add_argument("--batch-size", type=int, default=PUBLISHED_CONFIG.optim.batch_size)
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--alpha", type=float, default=22.0)
    p.add_argument("--lm-weight", type=float, default=PUBLISHED_CONFIG.optim.lm_weight,
                   help="weight of the LM log-probability in AutoDAN's ranking (published: 1)")
    p.add_argument("--prefix", default="An image of")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda:LOCAL_RANK when a GPU is present)")
    p.add_argument("--output", default=None, help="JSON lines of finished captions (appended; a rerun resumes)")
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    p.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    p.add_argument("--metrics-only", action="store_true", help="score the finished captions in --output, caption nothing")
    p.add_argument("--name", default="captioning_coco", help="results/<name>.{json,md}")
    args = p.parse_args(argv)
    methods = tuple(args.methods.split(","))
    for m in methods:
        method_config(CaptionConfig(), m)  # validates the name
    items = load_coco(args.annotations, args.images, n_images=args.n_images, seed=args.seed)
    output = Path(args.output) if args.output else None
    if args.device is None and torch.cuda.is_available():  # one GPU per torchrun process
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    if scorer is None:
        from fuse.captioning.scorers import load_scorer

        scorer = load_scorer(args.clip, device=args.device)
    cfg = CaptionConfig(alpha=(1.0, args.alpha)).override(prefix=args.prefix, n_tokens=args.n_tokens,
                                                          batch_size=args.batch_size, beam_width=args.beam_width,
                                                          lm_weight=args.lm_weight, seed=args.seed)
    if args.metrics_only:
        records = finished(output)
    else:
        if lm is None:
            from fuse.models.loading import load

            lm = load(args.lm, device=args.device)
        captioner = Captioner(lm, scorer, cfg, adapters=adapters)
        t0 = time.perf_counter()
        records = caption_items(shard(items, args.rank, args.world_size), captioner, methods=methods, output=output)
        logger.info("rank %d captioned %d images in %.0f s", args.rank, len(records) // len(methods), time.perf_counter() - t0)
        if args.world_size > 1:
            logger.info("rank %d done; score all shards once with --metrics-only", args.rank)
            return {}
    figs = score(items, records, scorer, methods=methods, prefix=cfg.optim.prefix)
    cols = ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE", "CLIP-S", "sec_per_image"]
    rows = [[METHODS[m]] + [("n/a" if figs[m].get(c) is None else figs[m][c]) for c in cols] for m in methods]
    md = (f"COCO protocol: {len(items)} images of `{Path(args.annotations).name}`; `{args.lm}` writes, `{args.clip}` "
          f"judges; {cfg.optim.n_tokens} tokens after \"{cfg.optim.prefix}\", beam {cfg.optim.beam_width}, {cfg.optim.batch_size} candidates per "
          f"step, α = {cfg.alpha}, budget {cfg.evaluations} exact evaluations per image for both searches. METEOR and "
          "SPICE need Java (n/a without it). CLIP-S = 2.5 · max(cos, 0) under the same CLIP (so it favours the method "
          "that optimizes it).\n\n"
          + markdown_table(["method", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE", "CLIP-S", "s / image"], rows)
          + "\n\nRun: `python -m benchmarks.captioning --part coco --images DIR --annotations FILE`.")
    write_results(args.name, config={"caption": cfg.to_dict(), "lm": args.lm, "clip": args.clip, "n_images": len(items),
                                     "methods": list(methods), "annotations": Path(args.annotations).name},
                  seed=args.seed, figures=figs, markdown=md, extra_packages=EXTRA, directory=results_dir or RESULTS)
    print(md)
    return figs


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    main()
