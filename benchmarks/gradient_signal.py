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

The LM secondary's loss is ``−log p(text)`` (total nats, :class:`~fuse.objectives.Fluency` with
``reduction="sum"``): a swap made in the primary's vocabulary changes how many tokens the secondary
sees, and the per-token mean rewards a text for gaining easy tokens (a random WordPiece token is
often a long rare word that SmolLM2 spells in several predictable pieces), which no first-order
prediction can see. The gradient's ranking of candidates is the same under either reduction (one
prompt, one token count); the table also reports the gain measured on the per-token mean.

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
from fuse.models.batching import encode_batch
from fuse.core.adapter import TensorAdapter
from fuse.models.adapter_cache import cached_adapter
from fuse.optim.chain import Chain
from fuse.models.loading import load
from fuse.objectives import Fluency, Similarity
from fuse.optim.vocab_filter import allowed_tokens
from fuse.core.wordlist import split_words

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
    return Similarity(sec, target_text) if sec.kind == "encoder" else Fluency(sec, reduction="sum")


def exact_losses(obj, texts, batch_size=64):
    """``(loss, per-token mean)`` of each text; the second is None unless ``obj`` is a summed NLL."""
    out, per_token = [], []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            ids, mask = encode_batch(obj.backbone.tokenizer, texts[i : i + batch_size], obj.backbone.device)
            loss = obj.loss(obj.backbone.embed(ids), ids, mask).float().cpu()  # as loss_texts, keeping the mask
            out.append(loss)
            if isinstance(obj, Fluency) and obj.reduction == "sum":
                per_token.append(loss / (mask.sum(1) - 1).clamp_min(1).float().cpu())
    return torch.cat(out), (torch.cat(per_token) if per_token else None)


def _rho(pred, actual):
    ok = np.std(pred) > 0 and np.std(actual) > 0
    return float(spearmanr(pred, actual).statistic) if ok else float("nan")


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
    base, base_tok = exact_losses(obj, [first.decode(ids)])

    def changes(texts):  # actual change of the loss, and of the per-token mean where there is one
        loss, tok = exact_losses(obj, texts)
        return (loss - base).numpy(), (None if tok is None else (tok - base_tok).numpy())

    al = allowed.tolist()
    swaps = [(rng.choice(positions), rng.choice(al)) for _ in range(n_swaps)]
    actual, actual_tok = changes(swap_texts(first, ids, swaps))
    pos = rng.sample(positions, min(n_pos, len(positions)))
    rand = [(p, rng.choice(al)) for p in pos for _ in range(n_cand)]
    d_rand, d_rand_tok = changes(swap_texts(first, ids, rand))
    out = {}
    for name, chain in chains.items():
        _, _, g = chain.gradient(torch.tensor(ids))
        g = g.float().cpu()
        pred = np.array([float(g[p, v] - g[p, ids[p]]) for p, v in swaps])
        best = []
        for p in pos:
            score = g[p, allowed] - g[p, ids[p]]
            best += [(p, v) for v in allowed[score.topk(n_cand, largest=False).indices].tolist()]
        d_best, d_best_tok = changes(swap_texts(chain, ids, best))
        out[name] = {"rho": _rho(pred, actual), "best": float(d_best.mean()), "rand": float(d_rand.mean())}
        if actual_tok is not None:
            out[name] |= {"rho_tok": _rho(pred, actual_tok), "best_tok": float(d_best_tok.mean()),
                          "rand_tok": float(d_rand_tok.mean())}
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
    p.add_argument("--rewrite-table", action="store_true", help="rewrite the markdown from the JSON; measure nothing")
    p.set_defaults(lm_loss="sum")  # recorded in the config: results measured on the per-token mean are not merged
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.rewrite_table:
        old = json.loads(RESULT.read_text())
        write_partial(argparse.Namespace(**(old["config"] | {"rewrite_table": False})), old["figures"])
        return
    split = split_words(8000, 2000, 0)
    models, figures = {}, {}
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
        res = {v: {} for v in VARIANTS}
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
                for key, val in r.items():
                    res[v].setdefault(key, []).append(val)
            logging.info("%s → %s prompt %d/%d (%.0fs): ρ padded %.3f, gain padded %.4f", pname, sname, j + 1,
                         n_prompts, time.perf_counter() - t0, res["padded"]["rho"][-1],
                         res["padded"]["best"][-1] - res["padded"]["rand"][-1])
        key = f"{pname} → {sname}"
        figures[key] = {"prompts": n_prompts, "loss": "1-cos to a random held-out-word sentence" if sec.kind == "encoder"
                        else "-log p(text), total nats", "seconds": time.perf_counter() - t0}
        for v in res:
            figures[key][v] = summarize(res[v]) | {"raw": res[v]}
        figures = write_partial(args, figures)
    print(RESULT.with_suffix(".md").read_text())


def summarize(r: dict) -> dict:
    out = {}
    for suffix in ("", "_tok"):
        if "best" + suffix not in r:
            continue
        rho_m, rho_h = ci95(r["rho" + suffix])
        d_m, d_h = ci95(np.array(r["best" + suffix]) - np.array(r["rand" + suffix]))
        out |= {f"rho{suffix}_mean": rho_m, f"rho{suffix}_ci95": rho_h, f"gain{suffix}_mean": d_m,
                f"gain{suffix}_ci95": d_h, f"top16{suffix}_change": ci95(r["best" + suffix])[0],
                f"random16{suffix}_change": ci95(r["rand" + suffix])[0]}
    return out


def over_random_map(f: dict, v: str) -> str:
    """Paired per prompt: this variant's top-16 Δloss minus the random map's (the stricter control:
    the same linear scoring over the same vocabulary, without the adapter's information)."""
    if v in ("random map",) or "ceiling" in v or "random map" not in f:
        return "—"
    m, h = ci95(np.array(f[v]["raw"]["best"]) - np.array(f["random map"]["raw"]["best"]))
    return f"{m:.4f} ± {h:.4f}"


def rows_of(figures):
    rows = []
    for key, f in sorted(figures.items(), key=lambda kv: [f"{a} → {b}" for a, b in PAIRS].index(kv[0])):
        for v in VARIANTS:
            if v in f:
                s = f[v]
                tok = (f"{s['gain_tok_mean']:.4f} ± {s['gain_tok_ci95']:.4f}" if "gain_tok_mean" in s else "—")
                rows.append([key, v, f"{s['rho_mean']:.3f} ± {s['rho_ci95']:.3f}", f"{s['top16_change']:.4f}",
                             f"{s['random16_change']:.4f}", f"{s['gain_mean']:.4f} ± {s['gain_ci95']:.4f}",
                             "yes" if s["gain_mean"] + s["gain_ci95"] < 0 else "no", over_random_map(f, v), tok,
                             f["prompts"]])
    return rows


MEASUREMENT = ("swaps", "positions", "candidates", "seed", "lm_loss")


def write_partial(args, figures):
    """Write the figures merged with those already on disk for other pairs (same measurement settings),
    so that pairs run in separate processes end in one table. Returns the merged figures."""
    if RESULT.exists():
        old = json.loads(RESULT.read_text())
        if all(old["config"].get(k) == getattr(args, k) for k in MEASUREMENT):
            figures = {k: v for k, v in old["figures"].items() if k not in figures} | figures
    rows = rows_of(figures)
    md = markdown_table(["pair (primary → secondary)", "variant", "Spearman ρ (95% CI)", "top-16 Δloss", "random-16 Δloss",
                         "gain = top16 − random (95% CI)", "interval below 0", "top16 − random map's top16 (95% CI)",
                         "gain on mean token NLL (95% CI)", "prompts"], rows)
    md += (f"\n\nΔloss: mean change of the secondary's exact loss after one token swap (lower is better): 1 − cos for "
           "MiniLM, −log p(text) in nats for an LM (the last column measures the same candidates on the per-token mean "
           "NLL, which rewards swaps that add easy tokens; see the module docstring). "
           "*top16 − random map's top16*: paired per prompt, the variant's selected swaps against those a random "
           "map of the same norm selects (same linear scoring, no adapter information): the stricter control. "
           f"{args.swaps} random "
           f"swaps per prompt for ρ; {args.positions} positions × {args.candidates} candidates for the gain. Same-model "
           "ceiling: the secondary's own tokens, its own gradient. Adapters: 8,000 words, k = 8, λ = 1e-3. *Input path "
           "only*: the LM secondary's NLL differentiated through its inputs alone, as published code does (no target "
           "path; see docs/chain.md).\n")
    write_results("gradient_signal", config=vars(args) | {"pairs_run": list(figures)}, seed=args.seed, figures=figures,
                  markdown=md)
    return figures


RESULT = Path(__file__).parent / "results" / "gradient_signal.json"

if __name__ == "__main__":
    main()
