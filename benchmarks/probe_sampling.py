"""probe_sampling: GCG on Gemma-3-270M with and without a cross-tokenizer draft (SmolLM2-135M), at equal wall time.

Task: make Gemma-3-270M continue ``prompt + free tokens`` with ``target`` (``Continuation``: mean cross-entropy of
the target's tokens). The scoring chain is ``Chain(gemma, [(Continuation(gemma, target), 1.0)])``; the probe run adds
``GCGConfig(probe=ProbeConfig(draft=Chain(smol, [(Continuation(smol, target), 1.0)])))``: SmolLM2 (byte-level BPE,
49,152 tokens) scores every candidate's *text* with its own tokenization, Gemma (SentencePiece-style, 262,144
tokens) scores a random probe of ``batch_size / sampling_factor`` of them, and their Spearman ρ decides how many of
SmolLM2's best Gemma also scores (Zhao et al., 2024; :mod:`fuse.optim.probe`).

Both runs get the same wall-clock budget ``--seconds`` per task (a large evaluation budget, stopped by
:func:`benchmarks.wallclock.run_timed`, histories cut at exactly ``--seconds``), the same seed, ``n_tokens`` free
tokens initialised to " x x … x", top-k 256, one swap per candidate. Runs of one task are interleaved (plain, probe),
so both see the same machine load. Reported per task: Gemma's loss at the wall-time budget, the speed-up in Gemma
evaluations/s and in steps/s, the quality cost (the loss at the same number of steps), the mean ρ of
``probe_history``.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.probe_sampling [--tasks 3] [--seconds 150] [--batch-size 64] [--replot]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics as st

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402
from benchmarks.wallclock import at_step, at_time, run_timed  # noqa: E402
from fuse.models.loading import load  # noqa: E402
from fuse.objectives import Continuation  # noqa: E402
from fuse.optim import GCGConfig, ProbeConfig  # noqa: E402
from fuse.optim.chain import Chain  # noqa: E402

logger = logging.getLogger("benchmarks.probe_sampling")

TASKS = [  # (prompt, continuation target); each target carries its own leading space
    ("Write a short poem about the sea.", " Sure, here is a poem about the sea"),
    ("What is the capital of Australia?", " The capital of Australia is Sydney"),
    ("Tell me about the moon.", " The moon is made of green cheese"),
    ("Explain how a bicycle works.", " A bicycle works by magic and good luck"),
    ("Describe your favourite colour.", " My favourite colour is purple because"),
]
EVAL_BUDGET = 10**6  # the wall clock stops the runs, not the evaluation budget


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--seconds", type=float, default=150.0, help="wall-clock budget of each run")
    p.add_argument("--n-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="GCG candidates per step")
    p.add_argument("--top-k", type=int, default=256)
    p.add_argument("--r", type=float, default=8.0, help="probe sampling's reduction factor")
    p.add_argument("--sampling-factor", type=int, default=16, help="probe = batch_size / sampling_factor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replot", action="store_true", help="redraw the PNG from the committed JSON")
    args = p.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / "probe_sampling.json").read_text())
        plot(saved["figures"]["tasks"], saved["config"]["seconds"])
        return
    if not 1 <= args.tasks <= len(TASKS):
        raise SystemExit(f"--tasks must be between 1 and {len(TASKS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gemma, smol = load("bundled:gemma3-270m"), load("bundled:smollm2-135m")
    init = " ".join(["x"] * args.n_tokens)
    T = args.seconds
    per_task = []
    for ti, (prompt, target) in enumerate(TASKS[: args.tasks]):
        chain = Chain(gemma, [(Continuation(gemma, target), 1.0)])
        draft = Chain(smol, [(Continuation(smol, target), 1.0)])
        common = dict(n_tokens=args.n_tokens, prefix=prompt, init_text=init, budget=EVAL_BUDGET,
                      batch_size=args.batch_size, top_k=args.top_k, seed=args.seed)
        runs = {}
        for name, probe in (("plain", None),
                            ("probe", ProbeConfig(draft=draft, r=args.r, sampling_factor=args.sampling_factor))):
            opt, res = run_timed(chain, GCGConfig(**common, probe=probe), seconds=T)
            cut = at_time(res.history, T)
            rhos = [h["rho"] for h in opt.probe_history]
            runs[name] = {
                "loss_at_T": cut["best_loss"], "steps_at_T": cut["step"], "evaluations_at_T": cut["evaluations"],
                "seconds_at_T": cut["seconds"], "text_at_T": cut["best_text"],
                "evals_per_s": cut["evaluations"] / cut["seconds"] if cut["seconds"] else 0.0,
                "steps_per_s": cut["step"] / cut["seconds"] if cut["seconds"] else 0.0,
                "draft_evaluations": res.draft_evaluations, "dropped": res.dropped, "cache_hits": res.cache_hits,
                "initial_loss": res.history[0]["best_loss"] if res.history else None,
                "rho_mean": st.mean(rhos) if rhos else None, "rho_sd": st.stdev(rhos) if len(rhos) > 1 else None,
                "filtered_mean": st.mean(h["filtered"] for h in opt.probe_history) if rhos else None,
                "probe_history": opt.probe_history,
                "history": [{k: h[k] for k in ("step", "evaluations", "best_loss", "seconds")} for h in res.history],
                "total_seconds": res.seconds, "stopped": res.stopped,
            }
            logger.info("task %d %s: loss %.3f at %.0fs after %d steps, %d Gemma evaluations (%.2f/s)%s", ti, name,
                        cut["best_loss"], T, cut["step"], cut["evaluations"], runs[name]["evals_per_s"],
                        f", mean rho {runs[name]['rho_mean']:.2f}" if rhos else "")
        plain, probe = runs["plain"], runs["probe"]
        same = min(plain["steps_at_T"], probe["steps_at_T"])
        per_task.append({
            "prompt": prompt, "target": target, "runs": runs, "same_steps": same,
            "plain_loss_at_same_steps": at_step(plain["history"], same)["best_loss"],
            "probe_loss_at_same_steps": at_step(probe["history"], same)["best_loss"],
            "eval_speedup": probe["evals_per_s"] / plain["evals_per_s"] if plain["evals_per_s"] else None,
            "step_speedup": probe["steps_per_s"] / plain["steps_per_s"] if plain["steps_per_s"] else None,
        })
    rows = []
    for t in per_task:
        pl, pr = t["runs"]["plain"], t["runs"]["probe"]
        rows.append([repr(t["target"].strip()),
                     f"{pl['loss_at_T']:.3f}", f"{pr['loss_at_T']:.3f}", f"{pr['loss_at_T'] - pl['loss_at_T']:+.3f}",
                     f"{pl['steps_at_T']} / {pr['steps_at_T']}", f"{pl['steps_per_s']:.3f} / {pr['steps_per_s']:.3f}",
                     f"{t['step_speedup']:.2f}×", f"{pl['evals_per_s']:.2f} / {pr['evals_per_s']:.2f}",
                     f"{t['plain_loss_at_same_steps']:.3f} / {t['probe_loss_at_same_steps']:.3f} ({t['same_steps']})",
                     f"{pr['rho_mean']:.2f} ± {pr['rho_sd'] or 0:.2f}" if pr["rho_mean"] is not None else "–"])
    mean = lambda key, run: st.mean(t["runs"][run][key] for t in per_task)  # noqa: E731
    summary = {
        "loss_at_T_plain": mean("loss_at_T", "plain"), "loss_at_T_probe": mean("loss_at_T", "probe"),
        "step_speedup_mean": st.mean(t["step_speedup"] for t in per_task),
        "gemma_eval_ratio_mean": st.mean(t["eval_speedup"] for t in per_task),
        "rho_mean": st.mean(t["runs"]["probe"]["rho_mean"] for t in per_task
                            if t["runs"]["probe"]["rho_mean"] is not None),
        "tasks_probe_better_at_T": sum(t["runs"]["probe"]["loss_at_T"] < t["runs"]["plain"]["loss_at_T"]
                                       for t in per_task),
    }
    md = markdown_table(["target", f"Gemma loss at {T:.0f} s: plain", "probe", "Δ (probe − plain)",
                         "steps plain / probe", "steps/s plain / probe", "step speed-up",
                         "Gemma evals/s plain / probe", "loss at equal steps plain / probe (steps)",
                         "probe ρ (mean ± sd)"], rows)
    md += (f"\n\nMean over {len(per_task)} tasks: loss at {T:.0f} s {summary['loss_at_T_plain']:.3f} (plain) vs "
           f"{summary['loss_at_T_probe']:.3f} (probe); probe better on {summary['tasks_probe_better_at_T']}/"
           f"{len(per_task)}; steps/s ×{summary['step_speedup_mean']:.2f}; Gemma evaluations/s "
           f"×{summary['gemma_eval_ratio_mean']:.2f}; mean Spearman ρ (SmolLM2 draft vs Gemma on the probe) "
           f"{summary['rho_mean']:.2f}.\n\n"
           f"GCG on Gemma-3-270M (float32, CPU, {torch.get_num_threads()} torch thread), {args.n_tokens} free tokens "
           f"from \" x x … x\" after the prompt, {args.batch_size} candidates per step, top-k {args.top_k}, one swap; "
           f"probe: SmolLM2-135M draft, r = {args.r:g}, sampling factor {args.sampling_factor} (probe of "
           f"{max(1, -(-args.batch_size // args.sampling_factor))} candidates). Each run stopped by the wall clock; "
           f"figures read at exactly {T:.0f} s. Gemma evals/s counts exact Gemma evaluations (the probe run "
           "also scores every candidate with the draft).\n")
    figures = {"summary": summary, "tasks": per_task}
    write_results("probe_sampling", config=vars(args) | {"tasks_used": TASKS[: args.tasks], "init_text": init},
                  seed=args.seed, figures=figures, markdown=md)
    plot(per_task, T)
    print(md)


def plot(per_task: list[dict], T: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_task), figsize=(4.2 * len(per_task), 3.4), squeeze=False)
    for ax, t in zip(axes[0], per_task):
        for name, style in (("plain", "-"), ("probe", "--")):
            h = [x for x in t["runs"][name]["history"] if x["seconds"] <= T]  # best so far after each step, to T
            ax.step([x["seconds"] for x in h] + [T], [x["best_loss"] for x in h] + [h[-1]["best_loss"]],
                    style, where="post", label=f"GCG {name}")
        ax.set_title(repr(t["target"].strip())[:40], fontsize=9)
        ax.set_xlabel("wall time (s)")
        ax.set_xlim(0, T)
    axes[0][0].set_ylabel("Gemma-3-270M loss (best so far)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "probe_sampling.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
