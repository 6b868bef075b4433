"""Benchmark ``transfer_cascade``: bridged joint GCG made cheaper per step, so that it also wins at equal wall time.

``transfer`` and ``transfer_seeds --seconds 30`` found joint GCG with Gemma-3's tokens and SmolLM2's gradient bridged
(``joint-gemma``) lower than GCG on Gemma alone at equal evaluations (7 of 8 tasks at each of three seeds) but tied
at 30 s: every joint candidate is scored on both models, so GCG on one model runs twice the evaluations per second.
``GCGConfig(cascade=f)`` scores each step's candidates on Gemma's own terms first and only the best fraction ``f`` of
them on SmolLM2 too; the step keeps the best by the joint loss.

- **tune**: ``f`` in {0.125, 0.25, 0.5} against ``gemma-only`` on the 3 tasks of ``benchmarks/tasks/bridge_weight.json``
  (none of the transfer tasks), seeds 0 and 1, every run 30 s and at least 256 candidates scored, read at 30 s.
- **final**: the transfer benchmark's 8 tasks (``benchmarks/tasks/transfer.json``), seeds 0, 1 and 2, the chosen ``f``
  (``joint-cascade``) against ``joint-gemma`` (every candidate on both models), ``joint`` (SmolLM2's tokens, Gemma's
  gradient bridged) and ``gemma-only``, all run here one after another, read at 256 evaluations and at 30 s as
  ``transfer`` reads its runs. "Evaluations" here are candidates scored on any model: for the cascade the ones
  scored on Gemma alone count as much as the ones scored on both (the count least kind to it); the whole evaluations
  (on both models) are reported beside them. Seed 0's other methods (text-level GCG, random search,
  BEAST, ...) are read from ``benchmarks/results/transfer.json`` (same protocol, an earlier session on a machine of
  the same kind).

The protocol of ``benchmarks/transfer.py`` otherwise: 12 tokens from ``x x …``, batch 32, top-k 256, printable-ASCII
candidates; every best span scored exactly on both models through SmolLM2's tokenization.

Run: ``python -m benchmarks.transfer_cascade`` (about 70 minutes on 2 CPU cores); ``--parts tune`` or
``--parts final`` alone; ``--tasks color --seeds 0 --seconds 5 --evals 32 --out DIR`` for a smoke run.
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
from benchmarks.transfer_seeds import seed_tables
from benchmarks.wallclock import at_evaluations, at_time
from fuse.optim import GCGConfig

logger = logging.getLogger("benchmarks.transfer_cascade")
TUNE = Path(__file__).resolve().parent / "tasks" / "bridge_weight.json"
FRACTIONS = (0.125, 0.25, 0.5)
CHOSEN = 0.25  # from the tuning part (benchmarks/results/transfer_cascade.md)
FINAL = ("joint-cascade", "joint-gemma", "joint", "gemma-only")


def one_run(task, smol, gemma, method, seed, seconds, evals, fraction=CHOSEN) -> dict:
    """``{"evaluations": cut at evals, "seconds": cut at seconds, "run": counters}`` of one method on one task."""
    chains = task_chains(task, smol, gemma)
    joint = chains["joint"]
    chain = chains["joint-gemma" if method.startswith("joint-c") else method]
    cfg = GCGConfig(n_tokens=N_TOKENS, budget=10**6, batch_size=BATCH, top_k=TOP_K, seed=seed, init_text=INIT,
                    cascade=fraction if method.startswith("joint-c") else None)
    curve, res = fuse_curve(chain, cfg, seconds, evals)
    # "evaluations" here: candidates scored on any model (the cascade's first-stage-only ones too), "whole": on both
    curve = [{**h, "evaluations": h["candidates"], "whole": h["evaluations"]} for h in curve]
    curve = curve if chain is joint else rescore(joint, curve)
    out = {"evaluations": {**cut(joint, curve, evals=evals), "whole": at_evaluations(curve, evals)["whole"]},
           "seconds": {**cut(joint, curve, seconds=seconds), "whole": at_time(curve, seconds).get("whole", 0)},
           "run": {"evaluations": res.evaluations, "cascade_evaluations": res.cascade_evaluations,
                   "gradient_calls": res.gradient_calls, "seconds": round(res.seconds, 2),
                   "steps": len(res.history)}}
    logger.info("%s seed %d %-14s %.4f at %d candidates, %.4f at %g s (%d whole + %d first-stage-only evaluations)",
                task["id"], seed, method, out["evaluations"]["loss"], evals, out["seconds"]["loss"], seconds,
                res.evaluations, res.cascade_evaluations)
    return out


def tune(smol, gemma, seeds, seconds, evals) -> dict:
    rows = {}
    for task in json.loads(TUNE.read_text())["tasks"]:
        for seed in seeds:
            rows[f"{task['id']}/{seed}"] = {
                "gemma-only": one_run(task, smol, gemma, "gemma-only", seed, seconds, evals),
                **{f"cascade {f:g}": one_run(task, smol, gemma, "joint-cascade", seed, seconds, evals, f)
                   for f in FRACTIONS}}
    return rows


def final(smol, gemma, tasks, seeds, seconds, evals) -> dict:
    return {str(s): {t["id"]: {m: one_run(t, smol, gemma, m, s, seconds, evals) for m in FINAL} for t in tasks}
            for s in seeds}


def lower(rows, a, b, key) -> int:
    return sum(r[a][key]["loss"] < r[b][key]["loss"] for r in rows.values())


def tune_report(rows, seconds) -> list[str]:
    cols = ["gemma-only", *(f"cascade {f:g}" for f in FRACTIONS)]
    return [f"## Tuning: 3 tasks of their own × seeds, best joint loss at {seconds:g} s (candidates scored / whole evaluations)", "",
            markdown_table(["task/seed", *cols],
                           [[k, *(f"{r[c]['seconds']['loss']:.3f} ({r[c]['seconds']['evaluations']}/{r[c]['seconds']['whole']})" for c in cols)]
                            for k, r in rows.items()]
                           + [["mean", *(round(statistics.mean(r[c]["seconds"]["loss"] for r in rows.values()), 3)
                                         for c in cols)]]), "",
            f"Pairs where the cascade is lower than `gemma-only` at {seconds:g} s (of {len(rows)}): "
            f"{ {c: lower(rows, c, 'gemma-only', 'seconds') for c in cols[1:]} }.", ""]


def final_report(figures, tasks, evals, seconds) -> list[str]:
    runs = {str(k): v for k, v in figures["final"].items()}
    tasks = [t for t in tasks if t["id"] in next(iter(runs.values()))]
    md, summary = seed_tables(runs, FINAL, "joint-cascade", evals, seconds,
                              reached="candidates scored / whole evaluations",
                              cell=lambda c: f"{c['loss']:.3f} ({c['evaluations']}/{c['whole']})")
    figures["summary"] = summary
    seeds = list(runs)
    for key, label in (("evaluations", f"{evals} evaluations"), ("seconds", f"{seconds:g} s")):
        mean_by_task = {t["id"]: {m: statistics.mean(runs[s][t["id"]][m][key]["loss"] for s in seeds) for m in FINAL}
                        for t in tasks}
        beats = {m: sum(v["joint-cascade"] < v[m] for v in mean_by_task.values()) for m in FINAL[1:]}
        pairs = {m: sum(lower(runs[s], "joint-cascade", m, key) for s in seeds) for m in FINAL[1:]}
        summary.setdefault("all seeds", {})[key] = {
            "mean": {m: statistics.mean(v[m] for v in mean_by_task.values()) for m in FINAL},
            "tasks lower by the seeds' mean": beats, "task-seed pairs lower": pairs}
        md += [f"## Seeds {', '.join(seeds)}, at {label}: the seeds' mean per task", "",
               markdown_table(["task", *FINAL], [[t, *(round(v[m], 3) for m in FINAL)] for t, v in mean_by_task.items()]
                              + [["mean", *(round(summary["all seeds"][key]["mean"][m], 3) for m in FINAL)]]), "",
               f"Tasks where `joint-cascade` is lower by the seeds' mean (of {len(tasks)}): {beats}; task-seed pairs "
               f"where it is lower (of {len(tasks) * len(seeds)}): {pairs}.", ""]
    every = [r for by in runs.values() for r in by.values()]
    speed = {m: statistics.mean(r[m]["run"]["evaluations"] / r[m]["run"]["seconds"] for r in every) for m in FINAL}
    first = statistics.mean(r["joint-cascade"]["run"]["cascade_evaluations"] / r["joint-cascade"]["run"]["seconds"]
                            for r in every)   # candidates scored on Gemma alone
    steps = {m: statistics.mean(r[m]["run"]["steps"] / r[m]["run"]["seconds"] for r in every) for m in FINAL}
    figures["speed"] = {"whole evaluations per second": speed, "cascade first-stage per second": first,
                        "steps per second": steps}
    md += ["## Speed (mean over runs)", "",
           markdown_table(["", *FINAL], [["whole evaluations / s", *(round(speed[m], 2) for m in FINAL)],
                                         ["steps / s", *(round(steps[m], 3) for m in FINAL)]]), "",
           f"The cascade also scored {first:.2f} candidates / s on Gemma alone.", ""]
    ref_path = Path(__file__).resolve().parent / "results" / "transfer.json"
    if "0" in runs and ref_path.is_file():
        ref = json.loads(ref_path.read_text())["figures"]
        for key, cut_key in (("evaluations", "at_evaluations"), ("seconds", "at_seconds")):
            others = [m for m in ref[cut_key][tasks[0]["id"]] if m not in FINAL]
            beats = {m: sum(runs["0"][t["id"]]["joint-cascade"][key]["loss"] < ref[cut_key][t["id"]][m]["loss"]
                            for t in tasks) for m in others}
            figures.setdefault("against_transfer_seed0", {})[key] = beats
            md += [f"Seed 0 at {key}: tasks where `joint-cascade` is lower than `transfer`'s other methods "
                   f"(of {len(tasks)}): {beats}.", ""]
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="*", default=["tune", "final"], choices=["tune", "final"])
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: 0 1 (tune), 0 1 2 (final)")
    ap.add_argument("--tasks", nargs="*", help="final: transfer task ids (default: all 8)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--evals", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")
    spec = json.loads(TASKS.read_text())
    tasks = [t for t in spec["tasks"] if not args.tasks or t["id"] in args.tasks]
    warm = task_chains(tasks[0], smol, gemma)["joint-gemma"]
    warm.embedding_gradients([warm.primary.tokenizer(INIT, add_special_tokens=False)["input_ids"]])
    warm.evaluate([INIT, INIT + " y"])  # one-time costs out of the first run's clock
    out_dir = args.out or Path(__file__).resolve().parent / "results"
    before = out_dir / "transfer_cascade.json"
    figures = json.loads(before.read_text())["figures"] if before.is_file() else {}  # a part not rerun is kept
    if "tune" in args.parts:
        figures["tune"] = tune(smol, gemma, args.seeds or [0, 1], args.seconds, args.evals)
    if "final" in args.parts:
        figures["final"] = final(smol, gemma, tasks, args.seeds or [0, 1, 2], args.seconds, args.evals)
    md = [__doc__.split("\n\n")[0].replace("\n", " "), ""]
    if "tune" in figures:
        md += tune_report(figures["tune"], args.seconds)
    if "final" in figures:
        md += final_report(figures, tasks, args.evals, args.seconds)
    parts = sorted(k for k in ("tune", "final") if k in figures)
    write_results("transfer_cascade", config={"parts": parts, "fractions": FRACTIONS, "chosen": CHOSEN,
                                              "seeds": args.seeds, "seconds": args.seconds, "evals": args.evals,
                                              "tasks": [t["id"] for t in tasks], "n_tokens": N_TOKENS,
                                              "batch_size": BATCH, "top_k": TOP_K, "init_text": INIT},
                  seed=0, figures=figures, markdown="\n".join(md), directory=args.out)


if __name__ == "__main__":
    main()
