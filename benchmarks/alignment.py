"""Alignment benchmark: how well word maps carry held-out words between bundled models.

Pairs SmolLM2→MiniLM, MiniLM→SmolLM2, SmolLM2→Gemma-3, Gemma-3→SmolLM2. Fit on N words of the
seeded wordfreq split; λ of every method is chosen on a validation split carved from the fit
words (never on the held-out words); then refit on all fit words and score on 2,000 held-out words:

* relative reconstruction error of the target slices (for the mean-pooled map: of the mean vectors),
* retrieval top-1/top-10 among all held-out words, in slice space (k·d) and in mean-pooled space,
  by cosine after centring on the held-out targets' mean.

Run: ``python -m benchmarks.alignment [--words 8000] [--big 32000]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from benchmarks.baselines import mean_linear_fit, mean_vectors, token_linear_fit, token_linear_map
from benchmarks.common import markdown_table, write_results
from fuse.adapter import TensorAdapter
from fuse.evaluation import retrieval
from fuse.loading import load
from fuse.slices import word_slices
from fuse.tproduct import t_product
from fuse.wordlist import split_words

PAIRS = [("bundled:smollm2-135m", "bundled:minilm-l6"), ("bundled:minilm-l6", "bundled:smollm2-135m"),
         ("bundled:smollm2-135m", "bundled:gemma3-270m"), ("bundled:gemma3-270m", "bundled:smollm2-135m")]
LAMS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
K = 8


def scores(pred_slices, true_slices, cB, pred_mean=None):
    """Slice and mean-space scores; ``pred_mean`` overrides the mean of the predicted slices."""
    out = {}
    if pred_slices is not None:
        out["rel_error"] = (torch.linalg.vector_norm(pred_slices.double() - true_slices.double())
                            / torch.linalg.vector_norm(true_slices.double())).item()
        r = retrieval(pred_slices, true_slices)
        out["top1_slices"], out["top10_slices"] = r[1], r[10]
        pred_mean = mean_vectors(pred_slices, cB) if pred_mean is None else pred_mean
    true_mean = mean_vectors(true_slices, cB)
    if "rel_error" not in out:
        out["rel_error"] = (torch.linalg.vector_norm(pred_mean.double() - true_mean.double())
                            / torch.linalg.vector_norm(true_mean.double())).item()
    r = retrieval(pred_mean, true_mean)
    out["top1_mean"], out["top10_mean"] = r[1], r[10]
    return out


def slices_for(a, b, words):
    XA, cA = word_slices(a, words, K)
    XB, cB = word_slices(b, words, K)
    keep = (cA <= K) & (cB <= K) & (cA > 0) & (cB > 0)
    return XA[keep].float(), cA[keep], XB[keep].float(), cB[keep]


def run_methods(a, b, fit_words, eval_words, lams, seed):
    """Fit every method for each λ in ``lams`` on fit_words and score on eval_words."""
    XA, cA, XB, cB = slices_for(a, b, eval_words)
    res = {}
    for lam in lams:
        t0 = time.perf_counter()
        for scheme in ("bucket", "padded"):
            ad = TensorAdapter.fit(a, b, words=fit_words, k=K, lam=lam, scheme=scheme, seed=seed)
            with torch.no_grad():
                res[(f"t-product {scheme}", lam)] = scores(ad.map(XA, cA, cB), XB, cB)
        FA, fcA, FB, fcB = slices_for(a, b, fit_words)
        W = token_linear_fit(FA, fcA, FB, fcB, lam)
        res[("linear per token", lam)] = scores(token_linear_map(W, XA, cA, cB), XB, cB)
        Wm = mean_linear_fit(FA, fcA, FB, fcB, lam)
        res[("mean-pooled linear", lam)] = scores(None, XB, cB, pred_mean=(mean_vectors(XA, cA).double() @ Wm).float())
        logging.info("λ=%g done in %.1fs", lam, time.perf_counter() - t0)
    # random map: a t-product with a Gaussian kernel of the padded map's norm
    ad = TensorAdapter.fit(a, b, words=fit_words, k=K, lam=1e-3, scheme="padded", seed=seed)
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(ad.T.shape, generator=g) * ad.T.norm() / (ad.T.numel() ** 0.5)
    P = t_product(XA, R) * (torch.arange(K) < cB.unsqueeze(1)).float().unsqueeze(1)
    res[("random map", None)] = scores(P, XB, cB)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--words", type=int, default=8000)
    p.add_argument("--big", type=int, default=32000, help="also fit the padded map on this many words (0: skip)")
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    split = split_words(max(args.words, args.big), 2000, args.seed)
    fit_all = split.fit[: args.words]
    models = {}
    rows, figures = [], {}
    for src, tgt in PAIRS:
        for name in (src, tgt):
            if name not in models:
                models[name] = load(name)
        a, b = models[src], models[tgt]
        t0 = time.perf_counter()
        # 1) choose λ per method on a validation split of the fit words
        val = run_methods(a, b, fit_all[args.val:], fit_all[: args.val], LAMS, args.seed)
        best = {}
        for (method, lam), s in val.items():
            if method not in best or s["top1_slices" if "top1_slices" in s else "top1_mean"] > best[method][1]:
                best[method] = (lam, s.get("top1_slices", s["top1_mean"]))
        # 2) refit on all fit words with the chosen λ, score on held-out words
        pair_key = f"{src} → {tgt}"
        figures[pair_key] = {}
        for method, (lam, _) in best.items():
            test = run_methods(a, b, fit_all, split.holdout, [lam] if lam is not None else [1e-3], args.seed)
            s = test[(method, lam)]
            figures[pair_key][method] = {"lam": lam, **s}
        if args.big:
            lam = best["t-product padded"][0]
            XA, cA, XB, cB = slices_for(a, b, split.holdout)
            ad = TensorAdapter.fit(a, b, words=split.fit[: args.big], k=K, lam=lam, scheme="padded", seed=args.seed)
            with torch.no_grad():
                figures[pair_key][f"t-product padded, {args.big} words"] = {"lam": lam, **scores(ad.map(XA, cA, cB), XB, cB)}
        logging.info("%s done in %.0fs", pair_key, time.perf_counter() - t0)
        for method, s in figures[pair_key].items():
            rows.append([pair_key, method, s["lam"] if s["lam"] is not None else "-", s["rel_error"],
                         s.get("top1_slices", "-"), s.get("top10_slices", "-"), s["top1_mean"], s["top10_mean"]])
    md = markdown_table(["pair", "method", "λ (val.)", "rel. error", "top-1 slices", "top-10 slices", "top-1 mean", "top-10 mean"], rows)
    md += ("\n\nHeld-out: 2,000 words never fitted; retrieval among all of them (chance 0.05%). λ chosen per method on "
           f"{args.val} validation words carved from the {args.words} fit words. Mean-pooled linear (d) is scored in its own "
           "mean-pooled space; every other method is scored in both spaces. k = 8.\n")
    write_results("alignment", config={"pairs": PAIRS, "words": args.words, "big": args.big, "val": args.val, "k": K,
                                       "lams": LAMS, "holdout": 2000}, seed=args.seed, figures=figures, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
