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
directions (``--direction qwen-gemma`` / ``gemma-qwen``: the optional Qwen2.5 model, whose tokenizer holds
Japanese, in place of SmolLM2). Adapters: wordfreq ``ja`` list, the default's 32,000 words (``--n-words``;
``--compare-words 8000`` adds an 8,000-word adapter side by side), k = 12, λ = 1e-3, padded.

Run: ``python -m benchmarks.nospace_gradient --stage choose`` then ``--stage final --unit boundary``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time

import numpy as np
import torch

from benchmarks.cjk_text import sentences
from benchmarks.common import RESULTS, markdown_table, write_results
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
QWEN = "bundled:qwen2.5-coder-0.5b"  # optional: a pair whose tokenizers both hold Japanese (--direction qwen-gemma)
DIRECTIONS = {"both": [(GEMMA, SMOL), (SMOL, GEMMA)], "gemma-smol": [(GEMMA, SMOL)], "smol-gemma": [(SMOL, GEMMA)],
              "qwen-gemma": [(QWEN, GEMMA)], "gemma-qwen": [(GEMMA, QWEN)]}


def cjk_tokens(tokenizer) -> torch.Tensor:
    ids = allowed_tokens(tokenizer, ascii_only=False)
    keep = [i for i in ids.tolist() if has_cjk(tokenizer.decode([i]))]
    return torch.tensor(keep, dtype=torch.long)


def with_unit(ad: TensorAdapter, unit: str) -> TensorAdapter:
    return TensorAdapter(dataclasses.replace(ad.config, unit=unit), ad.T)


def run_pair(prim, sec, prompts, units, args):
    ad = cached_adapter(prim, sec, AdapterFitConfig(language="ja", n_words=args.n_words), progress=False)
    fewer = (cached_adapter(prim, sec, AdapterFitConfig(language="ja", n_words=args.compare_words), progress=False)
             if args.compare_words else None)
    allowed_p, allowed_s = cjk_tokens(prim.tokenizer), cjk_tokens(sec.tokenizer)
    res: dict = {}
    t0 = time.perf_counter()
    for j, text in enumerate(prompts):
        obj = Fluency(sec, reduction="sum")
        ids = prim.tokenizer(text)["input_ids"]
        chains = {f"unit={u}": Chain(prim, [(obj, 1.0)], adapters={sec.name: with_unit(ad, u)}) for u in units}
        if fewer is not None:
            chains[f"unit={units[0]}, {args.compare_words} words"] = Chain(
                prim, [(obj, 1.0)], adapters={sec.name: with_unit(fewer, units[0])})
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
        if "best_tok" in r:
            out[v]["gain_tok_mean"], out[v]["gain_tok_ci95"] = ci95(np.array(r["best_tok"]) - np.array(r["rand_tok"]))
            out[v]["rho_tok_mean"] = ci95(r["rho_tok"])[0]
    add_ratios(out)
    return out


def add_ratios(out: dict) -> None:
    """Each variant's gain as a fraction of the same-model ceiling's (total and per-token NLL)."""
    for suffix in ("", "_tok"):
        ceil = out["same-model ceiling"].get(f"gain{suffix}_mean")
        for v, s in out.items():
            if isinstance(s, dict) and f"gain{suffix}_mean" in s and ceil:
                s[f"of_ceiling{suffix}"] = s[f"gain{suffix}_mean"] / ceil


def table(figures: dict, prompts_note: str, args) -> str:
    rows = []
    for key, f in figures.items():
        for v, s in f.items():
            if isinstance(s, dict) and "gain_mean" in s:
                tok = (f"{s['gain_tok_mean']:.3f} ± {s['gain_tok_ci95']:.3f}" if "gain_tok_mean" in s else "—")
                rows.append([key, v, f"{s['gain_mean']:.3f} ± {s['gain_ci95']:.3f}", f"{s['of_ceiling']:.2f}",
                             f"{s['rho_mean']:.3f} ± {s['rho_ci95']:.3f}", tok, f"{s.get('of_ceiling_tok', float('nan')):.2f}",
                             f"{s.get('rho_tok_mean', float('nan')):.3f}", len(f["prompts"])])
    md = markdown_table(["pair (primary → secondary)", "variant", "gain, total NLL (95% CI, nats)", "/ ceiling",
                         "ρ, total NLL", "gain, per-token NLL (95% CI)", "/ ceiling", "ρ, per-token", "prompts"], rows)
    return md + ("\n\nGain = mean Δloss of the 16 best swaps by the gradient − that of 16 random swaps at the same positions "
                 "(negative = the gradient finds better swaps than chance). Secondary loss −log p(text): total nats "
                 "(the gradient_signal convention) and, on the same candidates, the per-token mean. On Japanese the two "
                 "disagree: a swap made in the primary's vocabulary changes how many tokens the secondary sees (SmolLM2 "
                 "spells a CJK character in 2–3 byte tokens), which a first-order prediction cannot see; the bridged "
                 "top-16 favour long tokens that add many low-surprise byte tokens (total up, per-token down). Prompts: "
                 f"real Japanese sentences (≤ 20 characters, manpages-ja): {prompts_note}. {args.positions} positions × "
                 f"{args.candidates} candidates per prompt; {args.swaps} random swaps for ρ. Candidates: tokens whose text "
                 f"holds CJK characters. Adapter: wordfreq ja, {getattr(args, 'n_words', 8000):,} words, k = 12, λ = 1e-3, "
                 "padded; the unit decides the bridge's rows.\n")


def _stored(name: str) -> dict:
    """A stored result, ``results/NAME.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=["choose", "final"], default="choose")
    p.add_argument("--unit", default="boundary", help="the unit measured in the final stage")
    p.add_argument("--prompts", type=int, default=None, help="default 6 (choose) / 12 (final)")
    p.add_argument("--swaps", type=int, default=128)
    p.add_argument("--positions", type=int, default=8)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-words", type=int, default=None,
                   help="words the adapters are fitted on (default: AdapterFitConfig's, 32,000 for ja)")
    p.add_argument("--compare-words", type=int, default=0,
                   help="also measure an adapter fitted on this many words, side by side (0: only the default's)")
    p.add_argument("--prompts-from", metavar="NAME", help="the prompts of results/NAME.json (the same prompts as a "
                   "stored run; this machine's manpages-ja may draw others)")
    p.add_argument("--rewrite", metavar="NAME", help="rewrite results/NAME.md from its JSON; measure nothing")
    p.add_argument("--direction", choices=list(DIRECTIONS), default="both",
                   help="final stage: one direction per process (results/nospace_gradient_<direction>.*)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("fuse.core.bridge").setLevel(logging.ERROR)
    if args.rewrite:
        old = _stored(args.rewrite)
        for f in old["figures"].values():
            for s in f.values():
                if isinstance(s, dict) and "raw" in s and "best_tok" in s["raw"]:
                    r = s["raw"]
                    s["gain_tok_mean"], s["gain_tok_ci95"] = ci95(np.array(r["best_tok"]) - np.array(r["rand_tok"]))
                    s["rho_tok_mean"] = ci95(r["rho_tok"])[0]
            add_ratios(f)
        cfg = argparse.Namespace(**old["config"])
        prompts = next(iter(old["figures"].values()))["prompts"]
        write_results(args.rewrite, config=old["config"], seed=old["seed"], figures=old["figures"],
                      markdown=table(old["figures"], " / ".join(prompts), cfg))
        return
    if args.prompts_from:
        prompts = next(iter(_stored(args.prompts_from)["figures"].values()))["prompts"]
    else:
        n = args.prompts or (6 if args.stage == "choose" else 12)
        prompts = sentences("ja", n, args.seed + (0 if args.stage == "choose" else 1), min_chars=6, max_chars=20)
    if args.stage == "choose":
        pairs, units = [(GEMMA, SMOL)], list(UNITS)
    else:
        pairs, units = DIRECTIONS[args.direction], [args.unit]
    models = {m: load(m) for pair in pairs for m in pair}
    args.n_words = args.n_words or AdapterFitConfig(language="ja").n_words  # recorded with the results
    figures = {f"{prim} → {sec}": run_pair(models[prim], models[sec], prompts, units, args) for prim, sec in pairs}
    md = table(figures, " / ".join(prompts), args)
    name = "nospace_gradient_choose" if args.stage == "choose" else "nospace_gradient"
    if args.stage == "final" and args.direction != "both":
        name += "_" + args.direction
    write_results(name, config=vars(args) | {"pairs": pairs, "units": units}, seed=args.seed, figures=figures,
                  markdown=md)
    print(md)


if __name__ == "__main__":
    main()
