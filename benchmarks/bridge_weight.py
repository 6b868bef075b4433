"""Benchmark ``bridge_weight``: how much the other model's bridged gradient should count in GCG's proposals when one
span is optimized for SmolLM2-135M and Gemma-3-270M (``PromptChain(bridge_weight=w)``; every candidate is always
scored exactly on both models).

``w = 1`` is the objective's own gradient (the primary's exact gradient plus the other model's through the adapter),
``w = 0`` the primary's gradient alone (llm-attacks' way for models of other vocabularies, with one vocabulary).

- **tune**: 3 tasks that are not the transfer benchmark's (``benchmarks/tasks/bridge_weight.json``), seeds 0 and 1,
  256 exact evaluations, either model's tokens optimized, ``w`` in {0, 0.25, 1}; the protocol of
  ``benchmarks/transfer.py`` otherwise (12 tokens from ``x x …``, batch 32, top-k 256).
- **final**: the transfer benchmark's 8 tasks with Gemma-3's tokens optimized and ``w = 0`` and ``w = 1``, each run
  30 s and at least 256 evaluations, read at 256 evaluations and at 30 s as there; both columns run here, side by
  side, and the other methods' figures are read from ``benchmarks/results/transfer.json`` (the same machine, seed and
  protocol: at equal evaluations a run is the same run, at 30 s it depends on the machine's load).

Run: ``python -m benchmarks.bridge_weight`` (about 20 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import fuse
from benchmarks.common import markdown_table, write_results
from benchmarks.transfer import BATCH, INIT, N_TOKENS, TASKS, TOP_K, cut, fuse_curve, rescore, task_chains
from fuse.optim import GCGConfig

logger = logging.getLogger("benchmarks.bridge_weight")
TUNE = Path(__file__).resolve().parent / "tasks" / "bridge_weight.json"
WEIGHTS = (0.0, 0.25, 1.0)


def chains(task, smol, gemma, w, primary):
    """``(the exact joint scorer, the chain searched: either model's tokens, bridge weight w)`` (the weight changes
    only the gradient, so the scorer may carry it too)."""
    c = task_chains(task, smol, gemma, bridge_weight=w)
    return c["joint"], c["joint-gemma" if primary == "gemma" else "joint"]


def tune(smol, gemma, seeds, evals):
    rows = []
    for task in json.loads(TUNE.read_text())["tasks"]:
        for seed in seeds:
            for primary in ("smol", "gemma"):
                for w in WEIGHTS:
                    joint, chain = chains(task, smol, gemma, w, primary)
                    cfg = GCGConfig(n_tokens=N_TOKENS, budget=evals, batch_size=BATCH, top_k=TOP_K, seed=seed,
                                    init_text=INIT)
                    res = fuse.optimize(chain, cfg)
                    ev = joint.evaluate([res.best_free_text])
                    rows.append({"task": task["id"], "seed": seed, "primary": primary, "bridge_weight": w,
                                 "loss": float(ev.total[0]), "smol": float(ev.parts[0, 0]),
                                 "gemma": float(ev.parts[0, 1]), "text": res.best_free_text,
                                 "evaluations": res.evaluations, "seconds": round(res.seconds, 2)})
                    logger.info("tune %s seed %d %s w=%.2f: %.4f", task["id"], seed, primary, w, rows[-1]["loss"])
    return rows


def final(smol, gemma, seconds, evals):
    out = {}
    for task in json.loads(TASKS.read_text())["tasks"]:
        out[task["id"]] = {}
        for w in (0.0, 1.0):
            joint, chain = chains(task, smol, gemma, w, "gemma")
            cfg = GCGConfig(n_tokens=N_TOKENS, budget=10**6, batch_size=BATCH, top_k=TOP_K, seed=0, init_text=INIT)
            curve, _ = fuse_curve(chain, cfg, seconds, evals)
            rescored = rescore(joint, curve)  # read through SmolLM2's tokenization, as in transfer
            out[task["id"]][f"gemma w={w:g}"] = {"evaluations": cut(joint, rescored, evals=evals),
                                                 "seconds": cut(joint, rescored, seconds=seconds)}
            logger.info("final %s w=%g: %.4f at %d evaluations", task["id"], w,
                        out[task["id"]][f"gemma w={w:g}"]["evaluations"]["loss"], evals)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--evals", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--parts", nargs="*", default=["tune", "final"], choices=["tune", "final"])
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")
    chains(json.loads(TASKS.read_text())["tasks"][0], smol, gemma, 1.0, "gemma")[1].evaluate([INIT])  # warm-up
    figures, md = {}, [__doc__.split("\n\n")[0].replace("\n", " "), ""]
    if "tune" in args.parts:
        rows = figures["tune"] = tune(smol, gemma, args.seeds, args.evals)
        md += [f"## Tuning: 3 tasks × seeds {args.seeds}, {args.evals} evaluations, mean joint loss", ""]
        table = []
        for primary in ("smol", "gemma"):
            means = {w: statistics.mean(r["loss"] for r in rows if r["primary"] == primary and r["bridge_weight"] == w)
                     for w in WEIGHTS}
            pairs = sorted({(r["task"], r["seed"]) for r in rows})
            get = {(r["task"], r["seed"], r["primary"], r["bridge_weight"]): r["loss"] for r in rows}
            wins = sum(get[t, s, primary, 0.0] < get[t, s, primary, 1.0] for t, s in pairs)
            table.append([f"{primary}'s tokens"] + [round(means[w], 3) for w in WEIGHTS] + [f"{wins} of {len(pairs)}"])
        md += [markdown_table(["optimized", *(f"w={w:g}" for w in WEIGHTS), "w=0 lower than w=1"], table), ""]
        md += [markdown_table(["task", "seed", "optimized", "w", "joint", "SmolLM2", "Gemma"],
                              [[r["task"], r["seed"], r["primary"], r["bridge_weight"], round(r["loss"], 3),
                                round(r["smol"], 3), round(r["gemma"], 3)] for r in rows]), ""]
    if "final" in args.parts:
        fin = figures["final"] = final(smol, gemma, args.seconds, args.evals)
        ref_path = Path(__file__).resolve().parent / "results" / "transfer.json"
        ref = json.loads(ref_path.read_text())["figures"] if ref_path.is_file() else None
        for key, label, cut_key in (("evaluations", f"{args.evals} evaluations", "at_evaluations"),
                                    ("seconds", f"{args.seconds:g} s", "at_seconds")):
            cols = ["gemma w=0", "gemma w=1"]
            others = [m for m in (ref[cut_key][next(iter(fin))] if ref else {}) if m != "joint-gemma"]
            head = ["task", *cols, *(f"{m} (transfer)" for m in others)]
            body = [[t, *(round(fin[t][c][key]["loss"], 3) for c in cols),
                     *(round(ref[cut_key][t][m]["loss"], 3) for m in others)] for t in fin]
            body.append(["mean", *(round(statistics.mean(r[i] for r in body), 3) for i in range(1, len(head)))])
            md += [f"## The transfer tasks, Gemma-3's tokens optimized, at {label}", "", markdown_table(head, body), ""]
            wins = {m: sum(fin[t]["gemma w=0"][key]["loss"] < (fin[t][m][key]["loss"] if m in cols else
                                                                ref[cut_key][t][m]["loss"]) for t in fin)
                    for m in ["gemma w=1", *others]}
            md += [f"Tasks where `gemma w=0` is lower (of {len(fin)}): {wins}.", ""]
            figures.setdefault("wins_w0", {})[key] = wins
    write_results("bridge_weight", config={"weights": WEIGHTS, "seeds": args.seeds, "evals": args.evals,
                                           "seconds": args.seconds, "n_tokens": N_TOKENS, "batch_size": BATCH,
                                           "top_k": TOP_K, "init_text": INIT, "parts": args.parts},
                  seed=0, figures=figures, markdown="\n".join(md), directory=args.out)


if __name__ == "__main__":
    main()
