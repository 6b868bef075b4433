"""Inversion: optimize a 12-token SmolLM2 prompt that MiniLM embeds close to a target sentence while
SmolLM2 finds it fluent, at equal budgets of exact objective evaluations.

Objective: ``nll_weight · NLL_SmolLM2(prompt) + cos_weight · (1 − cos_MiniLM(prompt, target))``; the
MiniLM term reaches SmolLM2's tokens through the padded adapter (8,000 words, k = 8).
Optimizers: GCG (greedy), AutoDAN-style growth + beam 4, PEZ, random search (greedy), same seed and
the same budget each. Reported: cosine reached and NLL, mean ± sd over targets, and evaluations/s.

Run: ``python -m benchmarks.inversion [--targets 20] [--budget 256]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics as st
import time
from pathlib import Path

from benchmarks.common import markdown_table, write_results
from fuse.optim.chain import Chain
from fuse.models.loading import load
from fuse.objectives import Fluency, Similarity
from fuse.optim import make_optimizer

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
SETTINGS = {
    "gcg": dict(search="greedy", batch_size=32, top_k=128),
    # complete_only: a 12-token prompt like the others, not a shorter one (a one-token text has NLL 0)
    "autodan+beam4": dict(search="beam", beam_width=4, complete_only=True),
    "pez": dict(search="greedy", batch_size=1),
    "random": dict(search="greedy", batch_size=32),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--budget", type=int, default=256)
    p.add_argument("--n-tokens", type=int, default=12)
    p.add_argument("--nll-weight", type=float, default=0.1)
    p.add_argument("--cos-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizers", nargs="*", default=None, choices=list(SETTINGS),
                   help="rerun only these; the others are kept from the committed results (same targets and budget)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    smol, minilm = load("bundled:smollm2-135m"), load("bundled:minilm-l6")
    todo = args.optimizers or list(SETTINGS)
    runs = {name: [] for name in SETTINGS}
    if args.optimizers and RESULT.exists():
        old = json.loads(RESULT.read_text())
        same = all(old["config"].get(k) == getattr(args, k) for k in ("targets", "budget", "n_tokens", "nll_weight",
                                                                        "cos_weight", "seed"))
        if not same:
            raise SystemExit("--optimizers needs the committed results to use the same targets, budget and weights")
        for name in SETTINGS:
            if name not in todo:
                runs[name] = old["figures"][name]["runs"]
    for ti, target in enumerate(TARGETS[: args.targets]):
        chain = Chain(smol, [(Fluency(smol), args.nll_weight), (Similarity(minilm, target), args.cos_weight)])
        for name, kw in SETTINGS.items():
            if name not in todo:
                continue
            kw = dict(kw)
            if name.startswith("autodan"):
                kw["batch_size"] = max(1, args.budget // args.n_tokens)  # spend the whole budget over n_tokens steps
            opt = make_optimizer(name.split("+")[0], chain, n_tokens=args.n_tokens, budget=args.budget, seed=args.seed, **kw)
            r = opt.run()
            nll, cos_loss = r.losses[chain.labels[0]], r.losses[chain.labels[1]]
            runs[name].append({"target": target, "text": r.best_text, "loss": r.best_loss, "cos": 1 - cos_loss, "nll": nll,
                               "evaluations": r.evaluations, "seconds": r.seconds})
            logging.info("target %d %s: cos %.3f nll %.2f (%d evals, %.0fs) %r", ti, name, 1 - cos_loss, nll,
                         r.evaluations, r.seconds, r.best_text)
    figures, rows = {}, []
    rand_cos = st.mean(x["cos"] for x in runs["random"])
    for name, rs in runs.items():
        cos = [x["cos"] for x in rs]
        nll = [x["nll"] for x in rs]
        evals = sum(x["evaluations"] for x in rs)
        secs = sum(x["seconds"] for x in rs)
        figures[name] = {"cos_mean": st.mean(cos), "cos_sd": st.stdev(cos) if len(cos) > 1 else 0.0,
                         "nll_mean": st.mean(nll), "nll_sd": st.stdev(nll) if len(nll) > 1 else 0.0,
                         "evaluations_mean": evals / len(rs), "evals_per_second": evals / secs,
                         "cos_gain_vs_random": st.mean(cos) - rand_cos,
                         "wins_vs_random": sum(a["cos"] > b["cos"] for a, b in zip(rs, runs["random"])), "runs": rs}
        f = figures[name]
        rows.append([name, f"{f['cos_mean']:.3f} ± {f['cos_sd']:.3f}", f"{f['cos_gain_vs_random']:+.3f}",
                     f"{f['wins_vs_random']}/{len(rs)}", f"{f['nll_mean']:.2f} ± {f['nll_sd']:.2f}",
                     f"{f['evaluations_mean']:.0f}", f"{f['evals_per_second']:.1f}"])
    md = markdown_table(["optimizer", "MiniLM cosine to target (mean ± sd)", "Δ vs random", "targets won vs random",
                         "SmolLM2 NLL (mean ± sd)", "evaluations", "evaluations / s"], rows)
    md += (f"\n\n{len(runs['random'])} target sentences; {args.n_tokens}-token SmolLM2 prompts; budget {args.budget} exact "
           f"evaluations each; objective {args.nll_weight}·NLL + {args.cos_weight}·(1 − cos). Examples:\n\n")
    for name, rs in runs.items():
        md += f"- {name}: {rs[0]['target']!r} → {rs[0]['text']!r}\n"
    if args.optimizers:
        md += (f"\nRerun in this run: {', '.join(todo)}; the other rows are kept from the committed run (same targets, "
               "budget and weights).\n")
    write_results("inversion", config=vars(args) | {"settings": SETTINGS}, seed=args.seed, figures=figures, markdown=md)
    print(md)


RESULT = Path(__file__).parent / "results" / "inversion.json"

if __name__ == "__main__":
    main()
