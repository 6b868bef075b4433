"""Benchmark ``transfer_seeds``: the transfer benchmark's GCG methods again at other seeds, to see how much of its
per-task ranking is the seed.

The 8 tasks and the protocol of ``benchmarks/transfer.py`` (12 tokens from ``x x …``, batch 32, top-k 256), at a
budget of exactly 256 exact evaluations (no wall-clock cut), seeds 1 and 2 (``transfer`` ran seed 0): fuse GCG with
SmolLM2's tokens and Gemma's gradient bridged (``joint``), with Gemma's tokens and SmolLM2's gradient bridged
(``joint-gemma``), and GCG on one model then tried on both (``smol-only``, ``gemma-only``); every best span scored
exactly on both models.

``--seconds 30`` instead runs ``joint``, ``joint-gemma`` and ``gemma-only`` for 30 s and at least 256 evaluations each,
read at 256 evaluations and at 30 s as ``transfer`` reads its runs (results ``transfer_seeds_timed``); the methods of a
seed run one after another on the same machine, so they compare at equal time within a seed.

Run: ``python -m benchmarks.transfer_seeds`` (about 20 minutes on 2 CPU cores), then
``python -m benchmarks.transfer_seeds --seconds 30`` (about 25 minutes).
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

logger = logging.getLogger("benchmarks.transfer_seeds")
METHODS = ("joint", "joint-gemma", "smol-only", "gemma-only")
TIMED = ("joint", "joint-gemma", "gemma-only")  # --seconds: the runs read at equal time too


def run_timed(task, smol, gemma, seed, evals, seconds) -> dict:
    """``{method: {"evaluations": cut at evals, "seconds": cut at seconds}}`` for the timed methods."""
    chains = task_chains(task, smol, gemma)
    joint = chains["joint"]
    cfg = GCGConfig(n_tokens=N_TOKENS, budget=10**6, batch_size=BATCH, top_k=TOP_K, seed=seed, init_text=INIT)
    out = {}
    for name in TIMED:
        chain = chains[name]
        curve, _ = fuse_curve(chain, cfg, seconds, evals)
        curve = curve if chain is joint else rescore(joint, curve)
        out[name] = {"evaluations": cut(joint, curve, evals=evals), "seconds": cut(joint, curve, seconds=seconds)}
        logger.info("%s seed %d %-11s %.4f at %d evaluations, %.4f at %g s", task["id"], seed, name,
                    out[name]["evaluations"]["loss"], evals, out[name]["seconds"]["loss"], seconds)
    return out


def seed_tables(rows, methods, lead, evals, seconds, reached="evaluations reached",
                cell=lambda c: f"{c['loss']:.3f} ({c['evaluations']})") -> tuple[list[str], dict]:
    """Markdown and summary of timed runs ``{seed: {task: {method: {"evaluations": cut, "seconds": cut}}}}``: per seed
    and cut, each method's best joint loss by task (``cell`` of the cut), the mean, and the tasks where ``lead`` is
    lower than each other method."""
    md, summary = [], {}
    for s, by_task in rows.items():
        for key, label in (("evaluations", f"{evals} evaluations"), ("seconds", f"{seconds:g} s")):
            means = {m: statistics.mean(r[m][key]["loss"] for r in by_task.values()) for m in methods}
            beats = {m: sum(r[lead][key]["loss"] < r[m][key]["loss"] for r in by_task.values())
                     for m in methods if m != lead}
            summary.setdefault(s, {})[key] = {"mean": means, f"{lead} lower": beats}
            md += [f"## Seed {s}, at {label}: best joint loss ({reached})", "",
                   markdown_table(["task", *methods], [[t, *(cell(r[m][key]) for m in methods)]
                                                       for t, r in by_task.items()]
                                  + [["mean", *(round(means[m], 3) for m in methods)]]), "",
                   f"Tasks where `{lead}` is lower (of {len(by_task)}): {beats}.", ""]
    return md, summary


def timed_main(args, tasks, smol, gemma) -> None:
    warm = task_chains(tasks[0], smol, gemma)["joint"]
    warm.embedding_gradients([warm.primary.tokenizer(INIT, add_special_tokens=False)["input_ids"]])
    warm.evaluate([INIT, INIT + " y"])  # one-time costs out of the first run's clock
    rows = {s: {t["id"]: run_timed(t, smol, gemma, s, args.evals, args.seconds) for t in tasks} for s in args.seeds}
    methods = TIMED
    body, summary = seed_tables(rows, methods, "joint-gemma", args.evals, args.seconds)
    md = [__doc__.split("\n\n")[0].replace("\n", " "), "", *body]
    write_results("transfer_seeds_timed", config={"seeds": args.seeds, "evals": args.evals, "seconds": args.seconds,
                                                  "tasks": [t["id"] for t in tasks], "n_tokens": N_TOKENS,
                                                  "batch_size": BATCH, "top_k": TOP_K, "init_text": INIT,
                                                  "methods": list(methods)},
                  seed=args.seeds[0], figures={"runs": rows, "summary": summary}, markdown="\n".join(md),
                  directory=args.out)


def run(task, smol, gemma, seed, evals) -> dict:
    chains = task_chains(task, smol, gemma)
    joint = chains["joint"]
    cfg = GCGConfig(n_tokens=N_TOKENS, budget=evals, batch_size=BATCH, top_k=TOP_K, seed=seed, init_text=INIT)
    out = {}
    for name in METHODS:
        res = fuse.optimize(chains[name], cfg)
        ev = joint.evaluate([res.best_free_text])
        out[name] = {"loss": float(ev.total[0]), "smol": float(ev.parts[0, 0]), "gemma": float(ev.parts[0, 1]),
                     "text": res.best_free_text, "evaluations": res.evaluations}
        logger.info("%s seed %d %-11s %.4f", task["id"], seed, name, out[name]["loss"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--evals", type=int, default=256)
    ap.add_argument("--tasks", nargs="*", help="task ids (default: all 8)")
    ap.add_argument("--seconds", type=float, default=None, help="timed runs of joint, joint-gemma and gemma-only")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tasks = [t for t in json.loads(TASKS.read_text())["tasks"] if not args.tasks or t["id"] in args.tasks]
    smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")
    if args.seconds is not None:
        return timed_main(args, tasks, smol, gemma)
    rows = {s: {t["id"]: run(t, smol, gemma, s, args.evals) for t in tasks} for s in args.seeds}
    md = [__doc__.split("\n\n")[0].replace("\n", " "), ""]
    summary = {}
    for s, by_task in rows.items():
        means = {m: statistics.mean(r[m]["loss"] for r in by_task.values()) for m in METHODS}
        beats = {m: sum(r["joint-gemma"]["loss"] < r[m]["loss"] for r in by_task.values()) for m in METHODS
                 if m != "joint-gemma"}
        beats_joint = {m: sum(r["joint"]["loss"] < r[m]["loss"] for r in by_task.values()) for m in METHODS
                       if m != "joint"}
        summary[s] = {"mean": means, "joint-gemma lower": beats, "joint lower": beats_joint}
        md += [f"## Seed {s}, {args.evals} evaluations: best joint loss", "",
               markdown_table(["task", *METHODS], [[t, *(round(r[m]["loss"], 3) for m in METHODS)]
                                                   for t, r in by_task.items()]
                              + [["mean", *(round(means[m], 3) for m in METHODS)]]), "",
               f"Tasks where `joint-gemma` is lower (of {len(by_task)}): {beats}; where `joint` is lower: "
               f"{beats_joint}.", ""]
    write_results("transfer_seeds", config={"seeds": args.seeds, "evals": args.evals, "tasks": [t["id"] for t in tasks],
                                            "n_tokens": N_TOKENS, "batch_size": BATCH, "top_k": TOP_K,
                                            "init_text": INIT, "methods": list(METHODS)},
                  seed=args.seeds[0], figures={"runs": rows, "summary": summary}, markdown="\n".join(md),
                  directory=args.out)


if __name__ == "__main__":
    main()
