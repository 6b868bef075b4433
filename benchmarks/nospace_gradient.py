"""Gradient signal on Japanese prompts: does the bridged gradient find better token swaps than chance?

As benchmarks/gradient_signal.py (its ``measure``): for each prompt, the secondary LM's exact loss
``−log p(text)`` (total nats) after single-token swaps in the primary's tokens; *gain* = mean Δloss of
the 16 best swaps by the bridged gradient at 8 random positions minus that of 16 random swaps at the
same positions (negative = better than chance), against the same-model ceiling (the secondary's own
tokens, its own gradient) and a random map of the adapter's norm. Candidates: tokens that decode to
text holding CJK characters (the span stays Japanese). Prompts: real Japanese sentences of ≤ 20
characters from Debian manpages-ja.

Stages: ``--stage choose`` compares the units (``word``, ``boundary``, ``segmenter``) on 6 prompts,
Gemma-3 → SmolLM2; ``--stage final --unit U`` measures the chosen unit on 12 prompts in both
directions. Adapters: wordfreq ``ja`` list, 8,000 words, k = 12, λ = 1e-3, padded.

Run: ``python -m benchmarks.nospace_gradient --stage choose`` then ``--stage final --unit boundary``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import time

import numpy as np
import torch

from benchmarks.cjk_text import sentences
from benchmarks.common import markdown_table, write_results
from benchmarks.gradient_signal import ci95, measure, random_adapter
from fuse.core.adapter import TensorAdapter
from fuse.core.fit_config import AdapterFitConfig
from fuse.core.units import UNITS, has_cjk
from fuse.models.adapter_cache import cached_adapter
from fuse.models.loading import load
from fuse.objectives import Fluency
from fuse.optim.chain import Chain
from fuse.optim.vocab_filter import allowed_tokens

SMOL, GEMMA = "bundled:smollm2-135m", "bundled:gemma3-270m"


def cjk_tokens(tokenizer) -> torch.Tensor:
    ids = allowed_tokens(tokenizer, ascii_only=False)
    keep = [i for i in ids.tolist() if has_cjk(tokenizer.decode([i]))]
    return torch.tensor(keep, dtype=torch.long)


def with_unit(ad: TensorAdapter, unit: str) -> TensorAdapter:
    return TensorAdapter(dataclasses.replace(ad.config, unit=unit), ad.T)


def run_pair(prim, sec, prompts, units, args):
    ad = cached_adapter(prim, sec, AdapterFitConfig(language="ja"), progress=False)
    allowed_p, allowed_s = cjk_tokens(prim.tokenizer), cjk_tokens(sec.tokenizer)
    res: dict = {}
    t0 = time.perf_counter()
    for j, text in enumerate(prompts):
        obj = Fluency(sec, reduction="sum")
        ids = prim.tokenizer(text)["input_ids"]
        chains = {f"unit={u}": Chain(prim, [(obj, 1.0)], adapters={sec.name: with_unit(ad, u)}) for u in units}
        chains["random map"] = Chain(prim, [(obj, 1.0)], adapters={sec.name: random_adapter(with_unit(ad, units[0]),
                                                                                              args.seed + j)})
        got = measure(chains, obj, ids, allowed_p, random.Random(args.seed * 1000 + j), args.swaps, args.positions,
                      args.candidates)
        got |= measure({"same-model ceiling": Chain(sec, [(obj, 1.0)])}, obj, sec.tokenizer(text)["input_ids"],
                       allowed_s, random.Random(args.seed * 1000 + j), args.swaps, args.positions, args.candidates)
        for v, r in got.items():
            for key, val in r.items():
                res.setdefault(v, {}).setdefault(key, []).append(val)
        logging.info("%s → %s prompt %d/%d (%.0fs)", prim.name, sec.name, j + 1, len(prompts), time.perf_counter() - t0)
    out = {"prompts": prompts, "seconds": time.perf_counter() - t0}
    for v, r in res.items():
        gain = np.array(r["best"]) - np.array(r["rand"])
        m, h = ci95(gain)
        rho_m, rho_h = ci95(r["rho"])
        out[v] = {"gain_mean": m, "gain_ci95": h, "rho_mean": rho_m, "rho_ci95": rho_h, "raw": r}
    ceil = out["same-model ceiling"]["gain_mean"]
    for v in out:
        if isinstance(out[v], dict) and "gain_mean" in out[v]:
            out[v]["of_ceiling"] = out[v]["gain_mean"] / ceil if ceil else float("nan")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=["choose", "final"], default="choose")
    p.add_argument("--unit", default="boundary", help="the unit measured in the final stage")
    p.add_argument("--prompts", type=int, default=None, help="default 6 (choose) / 12 (final)")
    p.add_argument("--swaps", type=int, default=128)
    p.add_argument("--positions", type=int, default=8)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("fuse.core.bridge").setLevel(logging.ERROR)
    n = args.prompts or (6 if args.stage == "choose" else 12)
    prompts = sentences("ja", n, args.seed + (0 if args.stage == "choose" else 1), min_chars=6, max_chars=20)
    models = {m: load(m) for m in (SMOL, GEMMA)}
    if args.stage == "choose":
        pairs, units = [(GEMMA, SMOL)], list(UNITS)
    else:
        pairs, units = [(GEMMA, SMOL), (SMOL, GEMMA)], [args.unit]
    figures, rows = {}, []
    for pname, sname in pairs:
        f = run_pair(models[pname], models[sname], prompts, units, args)
        key = f"{pname} → {sname}"
        figures[key] = f
        for v, s in f.items():
            if isinstance(s, dict) and "gain_mean" in s:
                rows.append([key, v, f"{s['gain_mean']:.3f} ± {s['gain_ci95']:.3f}", f"{s['of_ceiling']:.2f}",
                             f"{s['rho_mean']:.3f} ± {s['rho_ci95']:.3f}", len(prompts)])
    md = markdown_table(["pair (primary → secondary)", "variant", "gain = top16 − random16 Δloss (95% CI, nats)",
                         "gain / ceiling", "Spearman ρ (95% CI)", "prompts"], rows)
    md += ("\n\nSecondary loss: −log p(text) of the secondary LM (total nats); lower is better, so a more negative gain "
           "is a better gradient. Prompts: real Japanese sentences (≤ 20 characters, manpages-ja): "
           + " / ".join(prompts) + f". {args.positions} positions × {args.candidates} candidates per prompt; "
           f"{args.swaps} random swaps for ρ. Candidates: tokens whose text holds CJK characters. Adapter: wordfreq ja, "
           "8,000 words, k = 12, λ = 1e-3, padded; the unit decides the bridge's rows.\n")
    name = "nospace_gradient_choose" if args.stage == "choose" else "nospace_gradient"
    write_results(name, config=vars(args) | {"pairs": pairs, "units": units}, seed=args.seed, figures=figures,
                  markdown=md)
    print(md)


if __name__ == "__main__":
    main()
