"""Japanese and Chinese adapters SmolLM2 ↔ Gemma-3: held-out quality, as benchmarks/alignment.py does for English.

Words: ``wordfreq.top_n_list("ja" | "zh")`` (offline), seeded split: 8,000 fitted, 2,000 held out
(distinct strings, never fitted; those within k tokens in both models are scored). Words are
tokenized without a leading space (as inside running Japanese/Chinese text). k = 12 (the default
for languages written without spaces, see docs/languages.md). λ of every method chosen on 1,000
validation words carved from the fit words. Methods: padded t-product (fuse's default), per-token
linear map, mean-pooled linear map, random map of the padded map's norm.

Run: ``python -m benchmarks.nospace_alignment``.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

import benchmarks.alignment as al
from benchmarks.common import markdown_table, write_results
from fuse.core.adapter import ridge_fit
from fuse.core.slices import word_slices
from fuse.core.wordlist import split_words
from fuse.models.loading import load

PAIRS = [("bundled:smollm2-135m", "bundled:gemma3-270m"), ("bundled:gemma3-270m", "bundled:smollm2-135m")]
METHODS = ["(b) t-product padded", "(c) linear per token", "(d) mean-pooled linear"]
ENGLISH_TOP1 = {"bundled:smollm2-135m → bundled:gemma3-270m": 0.9375, "bundled:gemma3-270m → bundled:smollm2-135m": 0.9165}


def slices_for(a, b, words, k):
    XA, cA = word_slices(a, words, k, leading_space=False)
    XB, cB = word_slices(b, words, k, leading_space=False)
    keep = (cA <= k) & (cB <= k) & (cA > 0) & (cB > 0)
    return XA[keep].float(), cA[keep], XB[keep].float(), cB[keep]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--words", type=int, default=8000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--langs", nargs="*", default=["ja", "zh"])
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    al.K = args.k  # the English benchmark's fitting/scoring helpers, at this k
    lams = al.LAMS
    models = {n: load(n) for n in {m for pr in PAIRS for m in pr}}
    figures, rows = {}, []
    for lang in args.langs:
        split = split_words(args.words, 2000, args.seed, lang)
        assert not set(split.fit) & set(split.holdout)
        for src, tgt in PAIRS:
            a, b = models[src], models[tgt]
            t0 = time.perf_counter()
            with torch.no_grad():
                val_fits = al.fit_all(slices_for(a, b, split.fit[args.val:], args.k), lams)
                V = slices_for(a, b, split.fit[: args.val], args.k)
                chosen = {}
                for method in METHODS:
                    best = None
                    for lam, M in val_fits[method].items():
                        ps, pm = al.predict(method, M, V)
                        s = al.scores(ps, V[2], V[3], pred_mean=pm)
                        score = s.get("top1_slices", s["top1_mean"])
                        if best is None or score > best[1]:
                            best = (lam, score)
                    chosen[method] = best[0]
                F = slices_for(a, b, split.fit, args.k)
                fits = al.fit_all(F, sorted(set(chosen.values())))
                H = slices_for(a, b, split.holdout, args.k)
                key = f"{lang} {src} → {tgt}"
                f = {"n_fitted": int(F[0].shape[0]), "n_heldout_scored": int(H[0].shape[0]), "n_heldout": 2000}
                for method in METHODS:
                    ps, pm = al.predict(method, fits[method][chosen[method]], H)
                    f[method] = {"lam": chosen[method], **al.scores(ps, H[2], H[3], pred_mean=pm)}
                Tb = fits["(b) t-product padded"][chosen["(b) t-product padded"]]
                g = torch.Generator().manual_seed(args.seed)
                R = torch.randn(Tb.shape, generator=g) * Tb.norm() / (Tb.numel() ** 0.5)
                f["(e) random map"] = {"lam": None, **al.scores(al.predict("(e) random map", R, H)[0], H[2], H[3])}
            en = ENGLISH_TOP1[f"{src} → {tgt}"]
            f["top1_over_english"] = f["(b) t-product padded"]["top1_slices"] / en
            f["seconds"] = time.perf_counter() - t0
            figures[key] = f
            logging.info("%s: padded top-1 %.4f (%.2f× English) in %.0fs", key, f["(b) t-product padded"]["top1_slices"],
                         f["top1_over_english"], f["seconds"])
            for method in [*METHODS, "(e) random map"]:
                s = f[method]
                rows.append([lang, f"{src} → {tgt}", method, s["lam"] if s["lam"] is not None else "-", s["rel_error"],
                             s.get("top1_slices", "-"), s.get("top10_slices", "-"), s["top1_mean"], s["top10_mean"],
                             f"{f['n_heldout_scored']}/2000"])
    md = markdown_table(["lang", "pair", "method", "λ (val.)", "rel. error", "top-1 slices", "top-10 slices", "top-1 mean",
                         "top-10 mean", "held-out scored"], rows)
    md += "\n\n" + "\n".join(f"- {k}: padded top-1 = {v['top1_over_english']:.2f}× the English pair's "
                              f"({ENGLISH_TOP1[k.split(' ', 1)[1]]})" for k, v in figures.items())
    md += (f"\n\nwordfreq {'/'.join(args.langs)} lists; {args.words} fit words, 2,000 held-out words (distinct, never "
           f"fitted; scored if ≤ k tokens in both models), retrieval among all scored held-out words. k = {args.k}, no "
           f"leading space, λ from {lams} on {args.val} validation words carved from the fit words. English reference: "
           "benchmarks/results/alignment.md (k = 8).\n")
    write_results("nospace_alignment", config=vars(args) | {"pairs": PAIRS, "lams": lams}, seed=args.seed,
                  figures=figures, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
