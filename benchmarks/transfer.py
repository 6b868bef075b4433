"""Benchmark ``transfer``: one span for two vendors' chat models (SmolLM2-135M and Gemma-3-270M), against the ways
the peers optimize a prompt for several models whose tokenizers differ.

Tasks: ``benchmarks/tasks/transfer.json`` (fixed before the first run): 8 chat prompts, each a user message ending in
``{optim_str}``, and the assistant's first words as the target; each model renders them with its own chat template
(:class:`fuse.PromptChain`). The objective is the mean of both models' per-token target CE; every result is scored
exactly by the one joint chain. A 12-token span starting from ``" x" * 12``; candidates are printable ASCII.

Methods (each run for ``--seconds`` of wall time and at least ``--evals`` exact evaluations, so that the same runs
are read at equal evaluations and at equal wall time):

- ``joint``: fuse's GCG on the joint chain; Gemma's gradient reaches SmolLM2's tokens through the bridge.
- ``joint-gemma``: the same with Gemma as the primary (its tokens optimized, SmolLM2's gradient bridged).
- ``text``: llm-attacks' fallback for models whose vocabularies differ: each model proposes single-token swaps in its
  own tokenization of the span from its own gradient alone; every candidate text is scored exactly on both models.
- ``both``: the same loop, but each vocabulary's swaps are ranked by the joint bridged gradient (SmolLM2's tokens
  through ``PromptChain([smol, gemma])``, Gemma's through ``PromptChain([gemma, smol])``).
- ``joint-loop``: the same loop with SmolLM2's vocabulary and the joint gradient only: with ``both`` it isolates
  proposals from each vocabulary from the rest of the search.
- ``smol-only`` / ``gemma-only``: fuse's GCG on one model, its best span then tried on both.
- ``random``: fuse's random search on the joint chain (the same swaps with no gradient).
- ``beast``: a gradient-free beam search in BEAST's manner: 3 beams, each extended by 7 tokens sampled from SmolLM2's
  next-token distribution after the rendered prompt, the beams kept by the joint loss; restarted when 12 tokens long.

Universal: one span fitted on 4 prompts at once (the mean over 4 prompts × 2 models), against a span fitted on the
first of them alone and the initial span, all scored on 4 prompts none of them saw; seeds 0 and 1.

Run: ``python -m benchmarks.transfer`` (about 45 minutes on 2 CPU cores); ``--tasks color --seconds 5 --evals 32``
for a smoke run (``--out DIR`` keeps its files out of ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch

import fuse
from benchmarks.common import markdown_table, write_results
from benchmarks.wallclock import at_evaluations, at_time, run_timed
from fuse.models.templates import GEMMA_CHAT_TEMPLATE
from fuse.optim import GCGConfig, PromptChain, RandomSearchConfig
from fuse.optim.vocab_filter import allowed_tokens

logger = logging.getLogger("benchmarks.transfer")
TASKS = Path(__file__).resolve().parent / "tasks" / "transfer.json"
N_TOKENS, INIT, BATCH, TOP_K = 12, " x" * 12, 32, 256
METHODS = ("joint", "joint-gemma", "text", "both", "joint-loop", "smol-only", "gemma-only", "random", "beast")


def point(t0, evals, loss, text):
    return {"evaluations": int(evals), "seconds": time.perf_counter() - t0, "best_loss": float(loss), "best_text": text}


def fuse_curve(chain, config, seconds, evals):
    """A fuse optimizer's curve: ``(evaluations, candidates, seconds, best_loss, best_text)`` after every step
    (``candidates``: :func:`~benchmarks.wallclock.run_timed`'s, the cascade's first-stage-only ones included)."""
    _, res = run_timed(chain, config, seconds=seconds, min_evaluations=evals)
    return [{k: h[k] for k in ("evaluations", "candidates", "seconds", "best_loss", "best_text")}
            for h in res.history], res


def vocab_loop(joint, proposers, seed, seconds, evals, batch=BATCH, top_k=TOP_K):
    """GCG over the span's text: each ``(model, gradient chain, allowed ids)`` proposes ``batch / len(proposers)``
    single-token swaps in its own tokenization of the current text, ranked by that chain's one-hot gradient; every
    candidate text is scored exactly on ``joint``. The current text moves to the step's best candidate when it
    improves (fuse's ``accept="improve"``)."""
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    current, best = INIT, float(joint.evaluate([INIT]).total[0])
    n_eval, dropped, seen = 1, 0, {INIT}
    curve = [point(t0, n_eval, best, current)]
    while not (time.perf_counter() - t0 >= seconds and n_eval >= evals):
        cands = []
        for model, chain, allowed in proposers:
            ids = list(model.tokenizer(current, add_special_tokens=False)["input_ids"])
            _, _, g = chain.gradients([ids], tokens=allowed)
            top = allowed[(-g[0]).topk(min(top_k, g.shape[-1]), dim=-1).indices.cpu()]   # (n, k)
            want, tries = batch // len(proposers), 0
            while want and tries < 8 * batch:
                tries += 1
                p = int(torch.randint(len(ids), (1,), generator=gen))
                new = list(ids)
                new[p] = int(top[p, int(torch.randint(top.shape[1], (1,), generator=gen))])
                text = model.tokenizer.decode(new, clean_up_tokenization_spaces=False)
                if text in seen:
                    continue
                seen.add(text)
                if not text.strip() or list(model.tokenizer(text, add_special_tokens=False)["input_ids"]) != new:
                    dropped += 1   # its own tokenizer reads it otherwise: the swap is not the candidate
                    continue
                cands.append(text)
                want -= 1
        if not cands:
            break
        loss = joint.evaluate(cands, batch_size=batch).total
        n_eval += len(cands)
        i = int(loss.argmin())
        if float(loss[i]) < best:
            best, current = float(loss[i]), cands[i]
        curve.append(point(t0, n_eval, best, current))
    return curve, dropped


def beast(joint, smol, allowed, seed, seconds, evals, beams=3, samples=7, n_tokens=N_TOKENS):
    """BEAST-style beam search with no gradient: tokens sampled from SmolLM2's next-token distribution after its
    rendering of the prompt (allowed tokens only), beams kept by the exact joint loss; best span of any length."""
    gen = torch.Generator().manual_seed(seed)
    before = joint.terms[0].objective.rendered.before_ids
    t0 = time.perf_counter()
    best, best_text, n_eval = float(joint.evaluate([INIT]).total[0]), INIT, 1
    curve = [point(t0, n_eval, best, best_text)]
    while not (time.perf_counter() - t0 >= seconds and n_eval >= evals):
        kept = [[]]
        for _ in range(n_tokens):
            z, _ = smol.next_token_state(torch.tensor([before + b for b in kept]))
            m = torch.full_like(z, float("-inf"))
            m[:, allowed.to(z.device)] = 0.0
            probs = torch.softmax(z + m, dim=-1).cpu()
            cands, texts = [], []
            for b, pr in zip(kept, probs):
                for t in torch.multinomial(pr, samples, replacement=False, generator=gen).tolist():
                    new = b + [t]
                    text = smol.tokenizer.decode(new, clean_up_tokenization_spaces=False)
                    if text.strip() and text not in texts and \
                            list(smol.tokenizer(text, add_special_tokens=False)["input_ids"]) == new:
                        cands.append(new)
                        texts.append(text)
            if not cands:
                break
            loss = joint.evaluate(texts, batch_size=BATCH).total
            n_eval += len(texts)
            order = [int(i) for i in loss.argsort() if math.isfinite(float(loss[i]))][:beams]
            if float(loss.min()) < best:
                best, best_text = float(loss.min()), texts[int(loss.argmin())]
            curve.append(point(t0, n_eval, best, best_text))
            kept = [cands[i] for i in order] or kept
    return curve


def task_chains(task, smol, gemma, bridge_weight: float = 1.0) -> dict:
    """The chains a task's methods run on: ``joint`` (SmolLM2's tokens; also the one exact scorer), ``joint-gemma``
    (Gemma's tokens) and one model alone (``smol-only``, ``gemma-only``), each model in its own chat template."""
    prompts = [(task["messages"], task["target"])]
    tpl = {gemma.name: GEMMA_CHAT_TEMPLATE}
    return {"joint": PromptChain([smol, gemma], prompts, chat_templates=tpl, bridge_weight=bridge_weight),
            "joint-gemma": PromptChain([gemma, smol], prompts, chat_templates=tpl, bridge_weight=bridge_weight),
            "smol-only": PromptChain([smol], prompts),
            "gemma-only": PromptChain([gemma], prompts, chat_templates=tpl)}


def rescore(joint, curve):
    """The curve with every best text scored exactly on the joint chain (for single-model runs)."""
    texts = sorted({c["best_text"] for c in curve})
    ev = joint.evaluate(texts)
    loss = dict(zip(texts, ev.total.tolist()))
    out, best = [], (float("inf"), None)
    for c in curve:
        best = min(best, (loss[c["best_text"]], c["best_text"]))  # a later text better on its model may be worse on both
        out.append({**c, "best_loss": best[0], "best_text": best[1]})
    return out


def run_task(task, smol, gemma, seconds, evals, seed, allowed):
    chains = task_chains(task, smol, gemma)
    joint = chains["joint"]
    cfg = dict(n_tokens=N_TOKENS, budget=10**6, batch_size=BATCH, seed=seed, init_text=INIT)
    curves, extra = {}, {}
    for name in METHODS:
        t0 = time.perf_counter()
        if name == "joint":
            curves[name], res = fuse_curve(joint, GCGConfig(**cfg), seconds, evals)
            extra[name] = {"dropped": res.dropped, "edge_drops": sum(joint.edge_drops.values())}
        elif name == "joint-gemma":
            c, res = fuse_curve(chains[name], GCGConfig(**cfg), seconds, evals)
            curves[name] = rescore(joint, c)   # the same exact scores, read through SmolLM2's tokenization
            extra[name] = {"dropped": res.dropped}
        elif name == "random":
            curves[name], res = fuse_curve(joint, RandomSearchConfig(**cfg), seconds, evals)
            extra[name] = {"dropped": res.dropped}
        elif name in ("smol-only", "gemma-only"):
            c, res = fuse_curve(chains[name], GCGConfig(**cfg), seconds, evals)
            curves[name] = rescore(joint, c)
            extra[name] = {"dropped": res.dropped, "own_loss": res.best_loss}
        elif name == "beast":
            curves[name] = beast(joint, smol, allowed[smol.name], seed, seconds, evals)
        else:
            if name == "text":
                props = [(smol, chains["smol-only"], allowed[smol.name]), (gemma, chains["gemma-only"], allowed[gemma.name])]
            elif name == "both":
                props = [(smol, joint, allowed[smol.name]), (gemma, chains["joint-gemma"], allowed[gemma.name])]
            else:
                props = [(smol, joint, allowed[smol.name])]
            curves[name], dropped = vocab_loop(joint, props, seed, seconds, evals)
            extra[name] = {"dropped": dropped}
        logger.info("%s %-10s best %.4f after %d evaluations, %.1f s", task["id"], name, curves[name][-1]["best_loss"],
                    curves[name][-1]["evaluations"], time.perf_counter() - t0)
    return joint, curves, extra


def cut(joint, curve, evals=None, seconds=None):
    """The method's best span at ``evals`` evaluations or at ``seconds``, scored on both models."""
    h = at_evaluations(curve, evals) if evals is not None else at_time(curve, seconds)
    text = h["best_text"] or INIT
    ev = joint.evaluate([text])
    return {"loss": float(ev.total[0]), "smol": float(ev.parts[0, 0]), "gemma": float(ev.parts[0, 1]),
            "match": bool(ev.match[0]), "text": text, "evaluations": h["evaluations"],
            "seconds": round(h["seconds"], 2)}


def universal(spec, smol, gemma, seed, evals):
    tpl = {gemma.name: GEMMA_CHAT_TEMPLATE}
    fit = [(p["messages"], spec["target"]) for p in spec["fit"]]
    unseen = PromptChain([smol, gemma], [(p["messages"], spec["target"]) for p in spec["unseen"]], chat_templates=tpl)
    cfg = GCGConfig(n_tokens=N_TOKENS, budget=evals, batch_size=BATCH, seed=seed, init_text=INIT)
    out = {}
    for name, prompts in (("universal", fit), ("single-prompt", fit[:1])):
        chain = PromptChain([smol, gemma], prompts, chat_templates=tpl)
        _, res = run_timed(chain, cfg)
        ev = chain.evaluate([res.best_free_text])
        out[name] = {"text": res.best_free_text, "fit_loss": float(ev.total[0]), "seconds": round(res.seconds, 1),
                     "evaluations": res.evaluations}
    out["initial"] = {"text": INIT}
    ev = unseen.evaluate([out[k]["text"] for k in ("universal", "single-prompt", "initial")])
    for k, loss, parts in zip(("universal", "single-prompt", "initial"), ev.total.tolist(), ev.parts.tolist()):
        out[k]["unseen_loss"] = loss
        out[k]["unseen_smol"] = sum(parts[0::2]) / len(parts[0::2])
        out[k]["unseen_gemma"] = sum(parts[1::2]) / len(parts[1::2])
    return out


def mean_curve(curves, key, grid):
    """Mean over tasks of the best joint loss at each grid point (a method's value before its first point: its
    first)."""
    out = []
    for x in grid:
        vals = []
        for c in curves:
            done = [h["best_loss"] for h in c if h[key] <= x]
            vals.append(done[-1] if done else c[0]["best_loss"])
        out.append(sum(vals) / len(vals))
    return out


def plot(all_curves, evals, seconds, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ge = list(range(0, evals + 1, 8))
    gs = [seconds * i / 60 for i in range(61)]
    for name in METHODS:
        cs = [c[name] for c in all_curves]
        axes[0].plot(ge, mean_curve(cs, "evaluations", ge), label=name, lw=2.2 if name == "joint" else 1.2)
        axes[1].plot(gs, mean_curve(cs, "seconds", gs), label=name, lw=2.2 if name == "joint" else 1.2)
    axes[0].set(xlabel="exact joint evaluations", ylabel="best joint CE (mean over tasks)", title="at equal evaluations")
    axes[1].set(xlabel="wall seconds", title="at equal wall time")
    axes[1].legend(fontsize=8)
    fig.suptitle("transfer: one span for SmolLM2-135M and Gemma-3-270M (8 chat tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows_by_task, key):
    header = ["task", *METHODS]
    rows = [[tid, *[r[m][key] for m in METHODS]] for tid, r in rows_by_task.items()]
    rows.append(["mean", *[sum(r[m][key] for r in rows_by_task.values()) / len(rows_by_task) for m in METHODS]])
    return markdown_table(header, rows)


def wins(rows_by_task, key="loss"):
    return {m: sum(r["joint"][key] < r[m][key] for r in rows_by_task.values()) for m in METHODS if m != "joint"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="*", help="task ids (default: all 8)")
    ap.add_argument("--seconds", type=float, default=30.0, help="wall seconds per run (and the equal-time cut)")
    ap.add_argument("--evals", type=int, default=256, help="exact evaluations per run at least (the equal-evals cut)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="seeds of the universal run")
    ap.add_argument("--no-universal", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    spec = json.loads(TASKS.read_text())
    tasks = [t for t in spec["tasks"] if not args.tasks or t["id"] in args.tasks]
    smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")
    allowed = {m.name: allowed_tokens(m.tokenizer, ascii_only=True) for m in (smol, gemma)}
    warm = PromptChain([smol, gemma], [(tasks[0]["messages"], tasks[0]["target"])],
                       chat_templates={gemma.name: GEMMA_CHAT_TEMPLATE})   # one-time costs out of the first run's clock
    warm.gradients([warm.primary.tokenizer(INIT, add_special_tokens=False)["input_ids"]], tokens=allowed[smol.name])
    warm.evaluate([INIT, INIT + " y"])
    at_evals, at_secs, curves_all, extras = {}, {}, [], {}
    for task in tasks:
        joint, curves, extra = run_task(task, smol, gemma, args.seconds, args.evals, 0, allowed)
        at_evals[task["id"]] = {m: cut(joint, curves[m], evals=args.evals) for m in METHODS}
        at_secs[task["id"]] = {m: cut(joint, curves[m], seconds=args.seconds) for m in METHODS}
        curves_all.append(curves)
        extras[task["id"]] = extra
    figures = {"at_evaluations": at_evals, "at_seconds": at_secs, "extra": extras,
               "curves": {t["id"]: c for t, c in zip(tasks, curves_all)},
               "wins_at_evaluations": wins(at_evals), "wins_at_seconds": wins(at_secs)}
    n = len(tasks)
    cross = {"smol: joint vs gemma-only": sum(r["joint"]["smol"] < r["gemma-only"]["smol"] for r in at_evals.values()),
             "gemma: joint vs smol-only": sum(r["joint"]["gemma"] < r["smol-only"]["gemma"] for r in at_evals.values())}
    figures["cross_model_wins"] = cross
    md = [f"One 12-token span for SmolLM2-135M and Gemma-3-270M on {n} chat tasks (`benchmarks/tasks/transfer.json`); "
          f"every run {args.seconds:g} s and at least {args.evals} exact joint evaluations, seed 0; batch {BATCH}, "
          f"top-k {TOP_K}, start `{INIT.strip()[:1]} x …` (12 tokens). Loss: mean of both models' per-token target CE, "
          "scored exactly on both. Methods: see the module's docstring.",
          "", f"## Best joint loss at {args.evals} evaluations", "", table(at_evals, "loss"),
          "", f"Tasks where `joint` is lower: {wins(at_evals)} (of {n}).",
          "", f"## Best joint loss at {args.seconds:g} s", "", table(at_secs, "loss"),
          "", f"Tasks where `joint` is lower: {wins(at_secs)} (of {n}).",
          "", f"## Per model, at {args.evals} evaluations", "",
          markdown_table(["model", *METHODS], [[k, *[sum(r[m][k] for r in at_evals.values()) / n for m in METHODS]]
                                               for k in ("smol", "gemma")]),
          "", f"On each model against GCG tuned on the other (tasks where `joint` is lower, of {n}): {cross}.",
          "", "## Greedy exact match (both models generate the target), at equal evaluations", "",
          markdown_table(["", *METHODS], [["tasks matched", *[sum(r[m]["match"] for r in at_evals.values())
                                                              for m in METHODS]]]),
          "", "## Best spans of `joint`", "",
          markdown_table(["task", "span", "SmolLM2 CE", "Gemma CE"],
                         [[t, repr(r["joint"]["text"]), r["joint"]["smol"], r["joint"]["gemma"]]
                          for t, r in at_evals.items()])]
    if not args.no_universal:
        uni = {s: universal(spec["universal"], smol, gemma, s, args.evals) for s in args.seeds}
        figures["universal"] = uni
        md += ["", f"## Universal span: fitted on 4 prompts, scored on 4 unseen ones (target "
                   f"{spec['universal']['target']!r}, {args.evals} evaluations)", "",
               markdown_table(["seed", "span", "fit loss", "unseen loss", "unseen SmolLM2", "unseen Gemma", "text"],
                              [[s, k, u[k].get("fit_loss", float("nan")), u[k]["unseen_loss"], u[k]["unseen_smol"],
                                u[k]["unseen_gemma"], repr(u[k]["text"])]
                               for s, u in uni.items() for k in ("universal", "single-prompt", "initial")])]
    out = args.out
    path = write_results("transfer", config={"tasks": [t["id"] for t in tasks], "seconds": args.seconds,
                                             "evals": args.evals, "n_tokens": N_TOKENS, "batch_size": BATCH,
                                             "top_k": TOP_K, "init_text": INIT, "methods": list(METHODS),
                                             "universal_seeds": [] if args.no_universal else args.seeds,
                                             "threads": torch.get_num_threads()},
                         seed=0, figures=figures, markdown="\n".join(md) + "\n\n![curves](transfer.png)\n",
                         directory=out)
    plot(curves_all, args.evals, args.seconds, path.with_suffix(".png"))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
