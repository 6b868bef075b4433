"""Gradient signal: does the bridged gradient predict how the secondary model's loss changes?

For each pair (primary → secondary) and 50 random prompts of 8–16 held-out words:

(i) **ρ**: Spearman correlation, over 256 random single-token swaps in the primary's tokens, between
    the first-order change predicted by the bridged one-hot gradient, ``g[i, v] − g[i, ids_i]``, and
    the actual change of the secondary's exact loss (each model tokenizes the decoded text itself);
(ii) **candidate gain** (how GCG uses a gradient): at 8 random positions, the 16 replacement tokens
    with the best bridged score over the whole (readable) vocabulary, evaluated exactly; their mean
    actual loss change minus that of 16 random replacements at the same positions (negative = the
    gradient finds better swaps than chance).

Variants: the per-bucket adapter, the padded adapter, the published routing defect reproduced
(every word given the first word's gradient, padded adapter), a random map of the same norm, and
the same-model ceiling (the secondary's own tokens swapped, scored by its own gradient).
Mean and 95% interval (normal approximation) over prompts.

Run: ``python -m benchmarks.gradient_signal [--prompts 50]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from benchmarks.common import markdown_table, write_results
from fuse.adapter import TensorAdapter
from fuse.adapter_cache import cached_adapter
from fuse.chain import Chain
from fuse.loading import load
from fuse.objectives import Fluency, Similarity
from fuse.optim.vocab_filter import allowed_tokens
from fuse.wordlist import split_words

PAIRS = [("bundled:smollm2-135m", "bundled:minilm-l6"), ("bundled:minilm-l6", "bundled:smollm2-135m"),
         ("bundled:smollm2-135m", "bundled:gemma3-270m"), ("bundled:gemma3-270m", "bundled:smollm2-135m")]
VARIANTS = ["bucket", "padded", "padded, input path only", "routing defect", "random map", "same-model ceiling",
            "same-model ceiling, input path only"]


def ci95(x):
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float(x.mean()) if len(x) else float("nan"), float("nan")
    return float(x.mean()), float(1.96 * x.std(ddof=1) / math.sqrt(len(x)))


def random_adapter(ad: TensorAdapter, seed: int) -> TensorAdapter:
    g = torch.Generator().manual_seed(seed)
    T = torch.randn(ad.T.shape, generator=g) * ad.T.norm() / math.sqrt(ad.T.numel())
    return TensorAdapter(ad.config, T.to(ad.T))


def secondary_objective(sec, target_text):
    return Similarity(sec, target_text) if sec.kind == "encoder" else Fluency(sec)


def exact_losses(obj, texts, batch_size=64):
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            out.append(obj.loss_texts(texts[i : i + batch_size]).float().cpu())
    return torch.cat(out)


def swap_texts(chain, ids, swaps):
    texts = []
    for p, v in swaps:
        new = list(ids)
        new[p] = v
        texts.append(chain.decode(new))
    return texts


def measure(chains: dict, obj, ids, allowed, rng, n_swaps, n_pos, n_cand) -> dict:
    """ρ and candidate gain for one prompt, for every chain (variant) over the same primary tokens.

    The random swaps and the random candidates are drawn once and evaluated once for all variants;
    only each variant's top-16 candidates differ.
    """
    first = next(iter(chains.values()))
    tok = first.primary.tokenizer
    special = set(tok.all_special_ids)
    positions = [i for i, t in enumerate(ids) if t not in special]
    base = float(exact_losses(obj, [first.decode(ids)])[0])
    al = allowed.tolist()
    swaps = [(rng.choice(positions), rng.choice(al)) for _ in range(n_swaps)]
    actual = (exact_losses(obj, swap_texts(first, ids, swaps)) - base).numpy()
    pos = rng.sample(positions, min(n_pos, len(positions)))
    rand = [(p, rng.choice(al)) for p in pos for _ in range(n_cand)]
    d_rand = float((exact_losses(obj, swap_texts(first, ids, rand)) - base).mean())
    out = {}
    for name, chain in chains.items():
        _, _, g = chain.gradient(torch.tensor(ids))
        g = g.float().cpu()
        pred = np.array([float(g[p, v] - g[p, ids[p]]) for p, v in swaps])
        ok = np.std(pred) > 0 and np.std(actual) > 0
        rho = spearmanr(pred, actual).statistic if ok else float("nan")
        best = []
        for p in pos:
            score = g[p, allowed] - g[p, ids[p]]
            best += [(p, v) for v in allowed[score.topk(n_cand, largest=False).indices].tolist()]
        d_best = float((exact_losses(obj, swap_texts(chain, ids, best)) - base).mean())
        out[name] = (float(rho), d_best, d_rand)
    return out


class InputPathOnly:
    """A chain whose LM secondary differentiates through inputs only (no target path): the ablation."""

    def __init__(self, chain, lm):
        self.chain, self.lm, self.primary = chain, lm, chain.primary

    def decode(self, ids):
        return self.chain.decode(ids)

    def gradient(self, ids):
        self.lm.target_gradient = False
        try:
            return self.chain.gradient(ids)
        finally:
            self.lm.target_gradient = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--gemma-prompts", type=int, default=None, help="fewer prompts for pairs with Gemma (slow on CPU)")
    p.add_argument("--swaps", type=int, default=256)
    p.add_argument("--positions", type=int, default=8)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, nargs="*", default=None, help="indices into PAIRS")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    split = split_words(8000, 2000, 0)
    models, figures, rows = {}, {}, []
    if args.pairs is not None and RESULT.exists():  # keep the pairs not rerun (same measurement settings)
        old = json.loads(RESULT.read_text())
        same = all(old["config"].get(k) == getattr(args, k) for k in ("swaps", "positions", "candidates", "seed"))
        if same:
            rerun = {f"{a} → {b}" for i, (a, b) in enumerate(PAIRS) if i in args.pairs}
            figures = {k: v for k, v in old["figures"].items() if k not in rerun}
    for pi, (pname, sname) in enumerate(PAIRS):
        if args.pairs is not None and pi not in args.pairs:
            continue
        for n in (pname, sname):
            if n not in models:
                models[n] = load(n)
        prim, sec = models[pname], models[sname]
        n_prompts = args.prompts if "gemma" not in pname + sname or args.gemma_prompts is None else args.gemma_prompts
        rng = random.Random(args.seed)
        prompts = [" ".join(rng.sample(split.holdout, rng.randint(8, 16))) for _ in range(n_prompts)]
        targets = [" ".join(rng.sample(split.holdout, rng.randint(8, 16))) for _ in range(n_prompts)]
        ads = {s: cached_adapter(prim, sec, n_words=8000, k=8, lam=1e-3, scheme=s, seed=0) for s in ("bucket", "padded")}
        allowed_p = allowed_tokens(prim.tokenizer)
        allowed_s = allowed_tokens(sec.tokenizer)
        res = {v: {"rho": [], "best": [], "rand": []} for v in VARIANTS}
        if sec.kind != "causal_lm":
            res = {v: r for v, r in res.items() if "input path only" not in v}
        t0 = time.perf_counter()
        for j, (text, target) in enumerate(zip(prompts, targets)):
            obj = secondary_objective(sec, target)
            ids = prim.tokenizer(text)["input_ids"]
            chains = {
                "bucket": Chain(prim, [(obj, 1.0)], adapters={sec.name: ads["bucket"]}),
                "padded": Chain(prim, [(obj, 1.0)], adapters={sec.name: ads["padded"]}),
                "routing defect": Chain(prim, [(obj, 1.0)], adapters={sec.name: ads["padded"]}, routing="first_word"),
                "random map": Chain(prim, [(obj, 1.0)], adapters={sec.name: random_adapter(ads["padded"], args.seed + j)}),
            }
            ceiling = {"same-model ceiling": Chain(sec, [(obj, 1.0)])}
            if sec.kind == "causal_lm":  # the target-path ablation only exists for an LM's NLL
                chains["padded, input path only"] = InputPathOnly(chains["padded"], sec)
                ceiling["same-model ceiling, input path only"] = InputPathOnly(ceiling["same-model ceiling"], sec)
            got = measure(chains, obj, ids, allowed_p, random.Random(args.seed * 1000 + j), args.swaps, args.positions,
                          args.candidates)
            got |= measure(ceiling, obj, sec.tokenizer(text)["input_ids"],
                           allowed_s, random.Random(args.seed * 1000 + j), args.swaps, args.positions, args.candidates)
            for v, r in got.items():
                for key, val in zip(("rho", "best", "rand"), r):
                    res[v][key].append(val)
            logging.info("%s → %s prompt %d/%d (%.0fs): ρ padded %.3f, gain padded %.4f", pname, sname, j + 1,
                         n_prompts, time.perf_counter() - t0, res["padded"]["rho"][-1],
                         res["padded"]["best"][-1] - res["padded"]["rand"][-1])
        key = f"{pname} → {sname}"
        figures[key] = {"prompts": n_prompts, "loss": "1-cos to a random held-out-word sentence" if sec.kind == "encoder"
                        else "mean token NLL", "seconds": time.perf_counter() - t0}
        for v in res:
            rho_m, rho_h = ci95(res[v]["rho"])
            diff = np.array(res[v]["best"]) - np.array(res[v]["rand"])
            d_m, d_h = ci95(diff)
            b_m, _ = ci95(res[v]["best"])
            r_m, _ = ci95(res[v]["rand"])
            figures[key][v] = {"rho_mean": rho_m, "rho_ci95": rho_h, "gain_mean": d_m, "gain_ci95": d_h,
                               "top16_change": b_m, "random16_change": r_m, "raw": res[v]}
        write_partial(args, figures)
    print(write_partial(args, figures))


def rows_of(figures):
    rows = []
    for key, f in sorted(figures.items(), key=lambda kv: [f"{a} → {b}" for a, b in PAIRS].index(kv[0])):
        for v in VARIANTS:
            if v in f:
                s = f[v]
                rows.append([key, v, f"{s['rho_mean']:.3f} ± {s['rho_ci95']:.3f}", f"{s['top16_change']:.4f}",
                             f"{s['random16_change']:.4f}", f"{s['gain_mean']:.4f} ± {s['gain_ci95']:.4f}",
                             "yes" if s["gain_mean"] + s["gain_ci95"] < 0 else "no", f["prompts"]])
    return rows


def write_partial(args, figures):
    rows = rows_of(figures)
    md = markdown_table(["pair (primary → secondary)", "variant", "Spearman ρ (95% CI)", "top-16 Δloss", "random-16 Δloss",
                         "gain = top16 − random (95% CI)", "interval below 0", "prompts"], rows)
    md += (f"\n\nΔloss: mean change of the secondary's exact loss after one token swap (lower is better). {args.swaps} random "
           f"swaps per prompt for ρ; {args.positions} positions × {args.candidates} candidates for the gain. Same-model "
           "ceiling: the secondary's own tokens, its own gradient. Adapters: 8,000 words, k = 8, λ = 1e-3. *Input path "
           "only*: the LM secondary's NLL differentiated through its inputs alone, as published code does (no target "
           "path; see docs/chain.md).\n")
    write_results("gradient_signal", config=vars(args) | {"pairs_run": list(figures)}, seed=args.seed, figures=figures,
                  markdown=md)
    return md


RESULT = Path(__file__).parent / "results" / "gradient_signal.json"

if __name__ == "__main__":
    main()
