"""Inversion: optimize a 12-token SmolLM2 prompt that MiniLM embeds close to a target sentence while
SmolLM2 finds it fluent, at equal budgets of exact objective evaluations and at equal wall time.

Objective: ``nll_weight · NLL_SmolLM2(prompt) + cos_weight · (1 − cos_MiniLM(prompt, target))``; the
MiniLM term reaches SmolLM2's tokens through the padded adapter (8,000 words, k = 8).
Optimizers (``fuse.optimize(chain, <Config>(...))``): GCG (greedy), AutoDAN-style growth + beam 4 (its default
``complete_only=True``: a 12-token prompt like the others), PEZ, random search (greedy), same seed each.

Two comparisons per target:

- equal budget: ``--budget`` exact evaluations each (the committed 128), compared side by side with the previous
  committed run ("before": the same targets, read from ``results/inversion.json`` before it is overwritten);
- equal wall time: ``--seconds`` each (:func:`benchmarks.wallclock.run_timed`, histories cut at exactly that time).
  GCG, PEZ and random search run until the clock stops them. AutoDAN's length is fixed (``n_tokens`` steps, one
  gradient each), so its candidates per step are scaled from its equal-budget run of the same target to fill the
  time (at least ``beam_width``) and it runs to the end: the table gives the seconds it actually took.

Reported: cosine reached and NLL, mean ± sd over targets, evaluations and evaluations/s.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.inversion [--targets 20] [--budget 128] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics as st
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from benchmarks.common import markdown_table, write_results  # noqa: E402
from benchmarks.wallclock import at_time, run_timed  # noqa: E402
from fuse.models.loading import load  # noqa: E402
from fuse.objectives import Fluency, Similarity  # noqa: E402
from fuse.optim import AutoDANConfig, GCGConfig, PEZConfig, RandomSearchConfig  # noqa: E402
from fuse.optim.chain import Chain  # noqa: E402

TARGETS = [
    "A dog runs across the green field to catch a ball.",
    "The old bridge was closed after the heavy storm.",
    "She poured hot coffee into a blue ceramic mug.",
    "Children are building a sandcastle on the beach.",
    "The train to the city leaves at seven every morning.",
    "A small bird is singing on the branch outside my window.",
    "He fixed the broken bicycle with a few simple tools.",
    "The museum opened a new exhibition about ancient Egypt.",
    "Fresh bread and cheese were served for lunch.",
    "Snow covered the mountains and the quiet village below.",
    "The scientist recorded the results in her notebook.",
    "A red sailboat drifts slowly across the calm lake.",
    "Our team won the final match in the last minute.",
    "The cat is sleeping on a warm blanket by the fire.",
    "Heavy traffic delayed the bus for almost an hour.",
    "They planted tomatoes and beans in the garden this spring.",
    "The concert hall was full of music and applause.",
    "An old man reads a newspaper on the park bench.",
    "The company released a faster version of its software.",
    "Rain fell all night and the river rose over its banks.",
]
SETTINGS = {  # (config class, options); AutoDAN's batch_size is set from the budget (all of it over n_tokens steps)
    "gcg": (GCGConfig, dict(search="greedy", batch_size=32, top_k=128)),
    "autodan+beam4": (AutoDANConfig, dict(search="beam", beam_width=4)),
    "pez": (PEZConfig, dict(search="greedy", batch_size=1)),
    "random": (RandomSearchConfig, dict(search="greedy", batch_size=32)),
}
RESULT = Path(__file__).parent / "results" / "inversion.json"
TIME_BUDGET_EVALS = 10**6  # the wall clock stops the equal-time runs, not the evaluation budget


def previous_runs() -> tuple[dict, str | None]:
    """Per-optimizer equal-budget runs of the committed result file (either layout), and its date."""
    if not RESULT.exists():
        return {}, None
    old = json.loads(RESULT.read_text())
    figs = old["figures"].get("equal_budget", old["figures"])
    return {name: f["runs"] for name, f in figs.items() if isinstance(f, dict) and "runs" in f}, old.get("date")


def summarize(rs: list[dict], rand: list[dict]) -> dict:
    cos, nll = [x["cos"] for x in rs], [x["nll"] for x in rs]
    evals, secs = sum(x["evaluations"] for x in rs), sum(x["seconds"] for x in rs)
    return {"cos_mean": st.mean(cos), "cos_sd": st.stdev(cos) if len(cos) > 1 else 0.0,
            "loss_mean": st.mean(x["loss"] for x in rs), "steps_mean": st.mean(x.get("steps", 0) for x in rs),
            "nll_mean": st.mean(nll), "nll_sd": st.stdev(nll) if len(nll) > 1 else 0.0,
            "evaluations_mean": evals / len(rs), "evals_per_second": evals / secs if secs else 0.0,
            "seconds_mean": secs / len(rs),
            "cos_gain_vs_random": st.mean(cos) - st.mean(x["cos"] for x in rand),
            "wins_vs_random": sum(a["cos"] > b["cos"] for a, b in zip(rs, rand)), "runs": rs}


def record(chain, target, res, cut=None) -> dict:
    nll, cos_loss = res.losses[chain.labels[0]], res.losses[chain.labels[1]]
    out = {"target": target, "text": res.best_text, "loss": res.best_loss, "cos": 1 - cos_loss, "nll": nll,
           "evaluations": res.evaluations, "seconds": res.seconds, "steps": len(res.history),
           "complete": len(res.best_free_ids) == res.config["n_tokens"]}
    if cut is not None and cut["best_text"] is None:  # not one step done by T: keep the first step's result
        out["late"] = True
    elif cut is not None:  # equal wall time: the figures the run had reached at exactly T seconds
        out.update(loss=cut["best_loss"], evaluations=cut["evaluations"], seconds=cut["seconds"], steps=cut["step"])
        if cut["best_text"] != res.best_text:  # the clock stopped it after a step that improved: score the text at T
            ev = chain.evaluate([cut["best_text"]])
            out.update(text=cut["best_text"], nll=float(ev.parts[0, 0]), cos=1 - float(ev.parts[0, 1]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--budget", type=int, default=128)
    p.add_argument("--seconds", type=float, default=20.0, help="wall-clock budget of each equal-time run")
    p.add_argument("--n-tokens", type=int, default=12)
    p.add_argument("--nll-weight", type=float, default=0.1)
    p.add_argument("--cos-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-json", action="store_true",
                   help="rewrite the tables from the runs in results/inversion.json (no optimization)")
    args = p.parse_args()
    if not 1 <= args.targets <= len(TARGETS):
        raise SystemExit(f"--targets must be between 1 and {len(TARGETS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    before, before_date = previous_runs()
    if args.from_json:
        saved = json.loads(RESULT.read_text())
        for k in ("targets", "budget", "seconds", "n_tokens", "nll_weight", "cos_weight", "seed"):
            setattr(args, k, saved["config"][k])
        before, before_date = saved["figures"]["before"]["runs"], saved["figures"]["before"]["date"]
    budget_runs = {name: [] for name in SETTINGS}
    time_runs = {name: [] for name in SETTINGS}
    T = args.seconds

    def report() -> str:  # written after every target, so a run cut short still leaves its figures
        eq_budget = {name: summarize(rs, budget_runs["random"]) for name, rs in budget_runs.items()}
        eq_time = {name: summarize(rs, time_runs["random"]) for name, rs in time_runs.items()}
        n = len(budget_runs["random"])
        used = set(TARGETS[:n])
        before_same = {}
        for name, rs in before.items():
            sub = [x for x in rs if x["target"] in used]
            if sub and name in SETTINGS:
                before_same[name] = {"cos_mean": st.mean(x["cos"] for x in sub), "nll_mean": st.mean(x["nll"] for x in sub),
                                     "loss_mean": st.mean(x["loss"] for x in sub),
                                     "evals_per_second": sum(x["evaluations"] for x in sub) / sum(x["seconds"] for x in sub),
                                     "evaluations_mean": st.mean(x["evaluations"] for x in sub), "targets": len(sub),
                                     "cos_mean_all": st.mean(x["cos"] for x in rs), "targets_all": len(rs)}
        rows = []
        for name, f in eq_budget.items():
            b = before_same.get(name)
            rows.append([name, f"{f['loss_mean']:.3f}", f"{b['loss_mean']:.3f}" if b else "–",
                         f"{f['cos_mean']:.3f} ± {f['cos_sd']:.3f}", f"{b['cos_mean']:.3f}" if b else "–",
                         f"{f['cos_gain_vs_random']:+.3f}", f"{f['wins_vs_random']}/{len(f['runs'])}",
                         f"{f['nll_mean']:.2f} ± {f['nll_sd']:.2f}", f"{b['nll_mean']:.2f}" if b else "–",
                         f"{f['evaluations_mean']:.0f}" + (f" ({b['evaluations_mean']:.0f})" if b else ""),
                         f"{f['steps_mean']:.0f}",
                         f"{f['evals_per_second']:.1f}", f"{b['evals_per_second']:.1f}" if b else "–",
                         f"{f['evals_per_second'] / b['evals_per_second']:.2f}×" if b else "–"])
        md = (f"## Equal budget: {args.budget} exact evaluations\n\n"
              + markdown_table(["optimizer", "objective (mean)", "before", "MiniLM cosine (mean ± sd)", "before",
                                "Δ cos vs random", "won vs random", "SmolLM2 NLL (mean ± sd)", "before",
                                "evaluations (before)", "steps", "evaluations / s",
                                "before", "speed ratio"], rows))
        md += (f"\n\n\"before\": the previous committed run ({before_date}) on the same {n} targets"
               + (f" (its mean cosine over all {next(iter(before_same.values()))['targets_all']} targets: "
                  + ", ".join(f"{k} {v['cos_mean_all']:.3f}" for k, v in before_same.items()) + ")" if before_same else "")
               + ". Speed ratio: evaluations/s now ÷ before (same machine type, 1 torch thread; the machine is shared, "
               "so expect ±20 % from load alone).\n\n")
        rows = []
        for name, f in eq_time.items():
            rows.append([name, f"{f['loss_mean']:.3f}", f"{f['cos_mean']:.3f} ± {f['cos_sd']:.3f}",
                         f"{f['cos_gain_vs_random']:+.3f}",
                         f"{f['wins_vs_random']}/{len(f['runs'])}", f"{f['nll_mean']:.2f} ± {f['nll_sd']:.2f}",
                         f"{f['evaluations_mean']:.0f}", f"{st.mean(x['steps'] for x in f['runs']):.0f}",
                         f"{f['seconds_mean']:.1f}", f"{f['evals_per_second']:.1f}", f"{sum(x['complete'] for x in f['runs'])}/{len(f['runs'])}"])
        md += (f"## Equal wall time: {T:.0f} s each\n\n"
               + markdown_table(["optimizer", "objective (mean)", "MiniLM cosine (mean ± sd)", "Δ cos vs random",
                                 "won vs random",
                                 "SmolLM2 NLL (mean ± sd)", "evaluations", "steps", "seconds", "evaluations / s",
                                 f"complete {args.n_tokens}-token prompts"], rows))
        md += (f"\n\n{n} target sentences (of {len(TARGETS)}); {args.n_tokens}-token SmolLM2 prompts; objective "
               f"{args.nll_weight}·NLL + {args.cos_weight}·(1 − cos); float32 CPU, 1 torch thread. Equal time: figures "
               f"read at exactly {T:.0f} s; AutoDAN (fixed length) gets its candidates per step scaled from its equal-budget run "
               "to fill the time, at least its beam width, and runs to the end (its seconds are in the table). "
               "Examples (equal budget):\n\n")
        for name, rs in budget_runs.items():
            md += f"- {name}: {rs[0]['target']!r} → {rs[0]['text']!r}\n"
        config = vars(args) | {"settings": {k: {"config": c.__name__, **kw} for k, (c, kw) in SETTINGS.items()},
                               "targets_used": TARGETS[:n], "targets_done": n}
        write_results("inversion", config=config, seed=args.seed, markdown=md,
                      figures={"equal_budget": eq_budget, "equal_time": eq_time,
                               "before": {"date": before_date, "same_targets": before_same, "runs": before}})
        return md

    if args.from_json:
        budget_runs = {k: v["runs"] for k, v in saved["figures"]["equal_budget"].items()}
        time_runs = {k: v["runs"] for k, v in saved["figures"]["equal_time"].items()}
        print(report())
        return
    smol, minilm = load("bundled:smollm2-135m"), load("bundled:minilm-l6")
    for ti, target in enumerate(TARGETS[: args.targets]):
        chain = Chain(smol, [(Fluency(smol), args.nll_weight), (Similarity(minilm, target), args.cos_weight)])
        for name, (cls, kw) in SETTINGS.items():
            common = dict(n_tokens=args.n_tokens, seed=args.seed, **kw)
            if cls is AutoDANConfig:
                common["batch_size"] = max(1, args.budget // args.n_tokens)  # the whole budget over n_tokens steps
            _, r = run_timed(chain, cls(**common, budget=args.budget))
            budget_runs[name].append(record(chain, target, r))
            if cls is AutoDANConfig:
                # AutoDAN's length is fixed (n_tokens steps, one gradient each): scale its candidates per step by
                # time / (its budget run's time) and let it finish (cut at T, it would return a shorter prompt)
                common["batch_size"] = max(common["beam_width"], int(common["batch_size"] * 0.9 * T / r.seconds))
                _, rt = run_timed(chain, cls(**common, budget=TIME_BUDGET_EVALS))
                time_runs[name].append(record(chain, target, rt))
            else:
                _, rt = run_timed(chain, cls(**common, budget=TIME_BUDGET_EVALS), seconds=T)
                time_runs[name].append(record(chain, target, rt, at_time(rt.history, T)))
            b, t = budget_runs[name][-1], time_runs[name][-1]
            logging.info("target %d %s: budget %d: cos %.3f nll %.2f (%.1fs) | %.0fs: cos %.3f nll %.2f (%d evals) %r",
                         ti, name, args.budget, b["cos"], b["nll"], b["seconds"], T, t["cos"], t["nll"],
                         t["evaluations"], t["text"])
        md = report()
    print(md)


if __name__ == "__main__":
    main()
