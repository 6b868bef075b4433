"""engine_peer_long: fuse GCG against nanoGCG 0.3.0 at the budgets GCG users run (30×128 and 60×128).

The same task, model (SmolLM2-135M-Instruct, float32, CPU, one torch thread per side), shared scorer and
sameness checks as :mod:`benchmarks.engine_peer`, on the tasks of ``benchmarks/tasks/engine_peer_long.json``
(committed before any tuning; none is an ``engine_peer`` task), two seeds each.

Parts (``--parts``), each resumable (a finished (task, seed) run is kept and skipped):

- ``peer``: nanoGCG once per (task, seed), 60 steps on the first ``long_tasks`` tasks, 30 on the rest. nanoGCG on
  one thread with a seed is deterministic and nothing in it depends on ``num_steps``, so its 30×128 result on a
  long task is its best string over the first 30 steps of the 60-step run.
- ``tune``: fuse alone at 30×64 on ``engine_peer``'s tasks 0 and 1 (not final tasks), seeds 0 and 1, for each
  variant of :data:`VARIANTS`; the table ``engine_peer_long_tune.md`` chose the final options.
- ``fuse``: fuse with ``--fuse-options`` (the chosen ones) on the same plan; its 30×128 figure on a long task is the
  best sequence scored within the first 3,840 evaluations of its 60×128 run (what a 30×128 run scores, up to the
  last step's remainder, since no GCG option depends on the budget).
- ``report``: the table, the JSON and the plot: best loss against evaluations, both sides.

Speed is evaluations per CPU second of each optimizer's run (the two sides may run at once on separate cores).
Readability is measured too: the mean NLL per token of each side's optimized span under the model (after the
prompt), the primary's own fluency of the result.

Run: ``python -m benchmarks.engine_peer_long --parts peer`` (about 70 min on one core) alongside
``--parts tune`` then ``--parts fuse --fuse-options '{...}'`` on the other core, then ``--parts report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics as st
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import engine_peer as ep  # noqa: E402
from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402
from benchmarks.peers import nanogcg_env  # noqa: E402
from fuse.models.bundled import bundled_folder  # noqa: E402
from fuse.models.loading import load  # noqa: E402

logger = logging.getLogger("benchmarks.engine_peer_long")

TASKS_FILE = Path(__file__).resolve().parent / "tasks" / "engine_peer_long.json"
WIDTH = 128
LONG, SHORT = 60, 30  # steps
TUNE_TASKS, TUNE_SEEDS, TUNE_BUDGET = (0, 1), (0, 1), (30, 64)
#: the fuse options tried at 30x64 on engine_peer's tasks 0 and 1 (``{}``: today's defaults)
VARIANTS = {
    "default": {},
    "printable": {"vocabulary": "printable"},
    "printable+always": {"vocabulary": "printable", "accept": "always"},
}


def final_plan() -> tuple[list[tuple[str, str]], list[int], int]:
    spec = json.loads(TASKS_FILE.read_text())
    return [tuple(t) for t in spec["tasks"]], list(spec["seeds"]), int(spec["long_tasks"])


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["figures"] if path.exists() else {}


def _save(name: str, figures: dict, config: dict, markdown: str) -> None:
    write_results(name, config=config, seed=0, figures=figures, markdown=markdown, extra_packages=("matplotlib",))


def span_nll(smol, prompt: str, span: str) -> float:
    """Mean NLL per token of ``span`` after ``prompt`` under the model: how fluent (readable) the optimized text is."""
    return ep.rescore(smol, prompt, span)


def best_within(history: list[dict], evaluations: int) -> tuple[int, float]:
    """Index of the last history entry with at most ``evaluations`` evaluations, and its best loss."""
    idx = max(i for i, h in enumerate(history) if h["evaluations"] <= evaluations)
    return idx, history[idx]["best_loss"]


# -- parts -------------------------------------------------------------------------------------
def plan(tasks, seeds, n_long: int, done: dict, only: list[str] | None = None):
    """``(key, task index, task, seed, steps, budgets' steps)`` of each final run not in ``done`` (and in ``only``)."""
    for i, task in enumerate(tasks):
        for seed in seeds:
            key = f"{i}/{seed}"
            if key in done or (only and key not in only):
                continue
            steps = LONG if i < n_long else SHORT
            yield key, i, task, seed, steps, [b for b in (SHORT, LONG) if b <= steps]


def part_peer(smol, python, model_dir, tasks, seeds, n_long) -> None:
    runs = _load("engine_peer_long_peer")
    for key, i, task, seed, steps, budgets in plan(tasks, seeds, n_long, runs):
        n = ep.run_nanogcg(python, model_dir, task, steps, WIDTH, seed)
        versions = n.pop("versions")
        n["budgets"] = {}
        for b in budgets:
            losses = n["losses"][:b]
            j = int(np.argmin(losses))
            text = task[0] + n["strings"][j]
            n["budgets"][f"{b}x{WIDTH}"] = {
                "best_string": n["strings"][j], "own_loss": float(losses[j]), "rescored": ep.rescore(smol, text, task[1]),
                "evaluations": n["history"][b - 1]["evaluations"], "cpu_seconds": n["history"][b - 1]["cpu_seconds"],
                "span_nll": span_nll(smol, task[0], n["strings"][j])}
        n.pop("sequence_ids", None)
        n.pop("target_ids", None)
        ep.check_initial_loss(smol, ep.fuse_sequences(smol, task)["text"], task, i, n)
        runs[key] = {"task": i, "seed": seed, "steps": steps, "nanogcg": n}
        logger.info("peer task %d seed %d: %s", i, seed,
                    {b: round(v["rescored"], 4) for b, v in n["budgets"].items()})
        _save("engine_peer_long_peer", runs, {"tasks": tasks, "width": WIDTH, "nanogcg_env": versions,
                                              "nanogcg": "GCGConfig(num_steps, search_width=128, optim_str_init, "
                                                         "seed, add_space_before_target=False)"},
              "nanoGCG's side of engine_peer_long (see engine_peer_long.md).\n")


def fuse_run(smol, task, steps: int, width: int, seed: int, options: dict, budgets: list[tuple[int, int]]) -> dict:
    """fuse on one task for ``steps × width`` evaluations, read at each of ``budgets`` (a prefix of the run)."""
    f = ep.run_fuse(smol, task, steps * width, width, seed, options)
    f["budgets"] = {}
    for b_steps, b_width in budgets:
        idx, loss = best_within(f["history"], b_steps * b_width)
        text = f["history"][idx]["best_text"]
        f["budgets"][f"{b_steps}x{b_width}"] = {
            "best_text": text, "own_loss": loss, "rescored": ep.rescore(smol, text, task[1]),
            "evaluations": f["history"][idx]["evaluations"], "span_nll": span_nll(smol, task[0], text[len(task[0]):])}
    return f


def part_fuse(smol, tasks, seeds, n_long, options: dict, name: str, only: list[str] | None = None) -> None:
    runs = _load(name)
    if runs and runs.get("options") != options:
        raise ValueError(f"{name}.json holds runs with fuse options {runs.get('options')}, not {options}; "
                         f"pass --name for a new file")
    runs["options"] = options
    for key, i, task, seed, steps, budgets in plan(tasks, seeds, n_long, runs, only):
        runs[key] = {"task": i, "seed": seed, "steps": steps,
                     "fuse": fuse_run(smol, task, steps, WIDTH, seed, options, [(b, WIDTH) for b in budgets])}
        logger.info("fuse task %d seed %d: %s", i, seed,
                    {b: round(v["rescored"], 4) for b, v in runs[key]["fuse"]["budgets"].items()})
        _save(name, runs, {"tasks": tasks, "width": WIDTH, "fuse_options": options},
              "fuse's side of engine_peer_long (see engine_peer_long.md).\n")


def part_tune(smol) -> None:
    name = "engine_peer_long_tune"
    runs = _load(name)
    steps, width = TUNE_BUDGET
    for variant, options in VARIANTS.items():
        for i in TUNE_TASKS:
            for seed in TUNE_SEEDS:
                key = f"{variant}/{i}/{seed}"
                if key in runs:
                    continue
                f = fuse_run(smol, ep.TASKS[i], steps, width, seed, options, [TUNE_BUDGET])
                runs[key] = {"variant": variant, "options": options, "task": i, "seed": seed, "fuse": f}
                logger.info("tune %s task %d seed %d: %.4f", variant, i, seed, f["budgets"][f"{steps}x{width}"]["rescored"])
                _save(name, runs, {"tasks": [ep.TASKS[i] for i in TUNE_TASKS], "seeds": TUNE_SEEDS,
                                   "budget": f"{steps}x{width}", "variants": VARIANTS}, tune_markdown(runs))


def tune_markdown(runs: dict) -> str:
    steps, width = TUNE_BUDGET
    b = f"{steps}x{width}"
    rows = []
    for variant in VARIANTS:
        mine = [r for k, r in runs.items() if r["variant"] == variant]
        if not mine:
            continue
        loss = [r["fuse"]["budgets"][b]["rescored"] for r in mine]
        nll = [r["fuse"]["budgets"][b]["span_nll"] for r in mine]
        eps = sum(r["fuse"]["evaluations"] for r in mine) / sum(r["fuse"]["cpu_seconds"] for r in mine)
        rows.append([variant, json.dumps(VARIANTS[variant]), len(mine), st.mean(loss), st.mean(nll), eps,
                     " / ".join(f"{x:.3f}" for x in loss)])
    return (f"Tuning at {b} on engine_peer's tasks {list(TUNE_TASKS)} (not final tasks), seeds {list(TUNE_SEEDS)}: "
            "mean CE of the target after the best prompt (shared scorer), mean NLL per token of the optimized span "
            "(readability: lower reads more like text), evaluations per CPU second.\n\n"
            + markdown_table(["variant", "fuse options", "runs", "mean loss", "span NLL", "evals/CPU s",
                              "loss per run (task, seed)"], rows))



# -- report ------------------------------------------------------------------------------------
def paired(tasks, fuse_runs: dict, peer_runs: dict, budget: str) -> list[dict]:
    """(task, seed) pairs both sides ran at ``budget``, each with both sides' figures at that budget."""
    out = []
    for key, pr in peer_runs.items():
        fr = fuse_runs.get(key)
        if fr is None or budget not in pr["nanogcg"]["budgets"] or budget not in fr["fuse"]["budgets"]:
            continue
        out.append({"task": pr["task"], "seed": pr["seed"], "prompt": tasks[pr["task"]][0],
                    "fuse": fr["fuse"], "nanogcg": pr["nanogcg"],
                    "f": fr["fuse"]["budgets"][budget], "n": pr["nanogcg"]["budgets"][budget]})
    return sorted(out, key=lambda r: (r["task"], r["seed"]))


def summary(rows: list[dict]) -> dict:
    lf, ln = [r["f"]["rescored"] for r in rows], [r["n"]["rescored"] for r in rows]

    def rate(side):  # evaluations per CPU second of the whole runs the rows draw from
        return sum(r[side]["evaluations"] for r in rows) / sum(r[side]["cpu_seconds"] for r in rows)

    return {"pairs": len(rows), "tasks": len({r["task"] for r in rows}), "mean_loss_fuse": st.mean(lf),
            "mean_loss_nanogcg": st.mean(ln), "loss_ratio": st.mean(lf) / st.mean(ln),
            "fuse_wins": sum(a < b for a, b in zip(lf, ln)),
            "evals_per_cpu_s_fuse": rate("fuse"), "evals_per_cpu_s_nanogcg": rate("nanogcg"),
            "cpu_speed_ratio": rate("fuse") / rate("nanogcg"),
            "span_nll_fuse": st.mean(r["f"]["span_nll"] for r in rows),
            "span_nll_nanogcg": st.mean(r["n"]["span_nll"] for r in rows)}


def report(tasks, seeds, n_long, names: list[str]) -> None:
    fuse_runs, peer_runs = {}, _load("engine_peer_long_peer")
    for name in names:
        part = _load(name)
        if fuse_runs and part.get("options") != fuse_runs.get("options"):
            raise ValueError(f"{name}.json ran fuse options {part.get('options')}, not {fuse_runs.get('options')}")
        fuse_runs.update(part)
    options = fuse_runs.get("options", {})
    figures = {}
    for steps in (SHORT, LONG):
        b = f"{steps}x{WIDTH}"
        rows = paired(tasks, fuse_runs, peer_runs, b)
        if rows:
            figures[b] = {"steps": steps, "width": WIDTH, "summary": summary(rows), "runs": rows}
    config = {"model": ep.MODEL, "dtype": "float32", "device": "cpu", "torch_threads": 1, "n_tokens": ep.N_TOKENS,
              "init_text": " " + ep.INIT_TEXT, "top_k": ep.TOP_K, "tasks": tasks, "seeds": seeds, "long_tasks": n_long,
              "fuse_options": options, "tasks_file": str(TASKS_FILE.relative_to(TASKS_FILE.parents[2]))}
    _save("engine_peer_long", figures, config, report_markdown(figures, options))
    plot(figures, RESULTS / "engine_peer_long.png")
    print((RESULTS / "engine_peer_long.md").read_text())


def report_markdown(figures: dict, options: dict) -> str:
    rows = []
    for b, fig in figures.items():
        s = fig["summary"]
        rows.append([b, s["tasks"], s["pairs"], s["mean_loss_fuse"], s["mean_loss_nanogcg"], s["loss_ratio"],
                     f"{s['fuse_wins']}/{s['pairs']}", s["evals_per_cpu_s_fuse"], s["evals_per_cpu_s_nanogcg"],
                     s["cpu_speed_ratio"], s["span_nll_fuse"], s["span_nll_nanogcg"]])
    out = [f"fuse options: `{json.dumps(options)}` (chosen at 30x64 on other tasks: engine_peer_long_tune.md). "
           "Loss: mean CE over the target's tokens of each side's best prompt, re-scored by one shared scorer; "
           "fuse better: (task, seed) pairs where fuse's loss is lower; evaluations per CPU second of each side's "
           "whole runs (one torch thread each); span NLL: mean NLL per token of the optimized text after the prompt "
           "under the model (readability; lower reads more like text). Ratios are fuse / nanoGCG. The 30x128 row "
           "reads the long tasks' 60x128 runs at 3,840 evaluations.\n",
           markdown_table(["budget", "tasks", "pairs", "loss fuse", "loss nanoGCG", "loss ratio", "fuse better",
                           "evals/CPU s fuse", "evals/CPU s nanoGCG", "CPU speed ratio", "span NLL fuse",
                           "span NLL nanoGCG"], rows),
           "\n## Per (task, seed)\n"]
    rows = []
    for b, fig in figures.items():
        for r in fig["runs"]:
            rows.append([b, r["task"], r["seed"], r["f"]["rescored"], r["n"]["rescored"], r["f"]["span_nll"],
                         r["n"]["span_nll"], repr(r["f"]["best_text"][len(r["prompt"]):]), repr(r["n"]["best_string"])])
    out.append(markdown_table(["budget", "task", "seed", "loss fuse", "loss nanoGCG", "span NLL fuse",
                               "span NLL nanoGCG", "fuse text", "nanoGCG optim_str"], rows))
    return "\n".join(out)


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(6 * len(figures), 4.2), squeeze=False)
    for ax, (b, f) in zip(axes[0], figures.items()):
        ep.plot_panel(ax, f["runs"], f["steps"] * f["width"],
                      f"budget {b} (steps x candidates), {f['summary']['tasks']} tasks x seeds", alpha=0.2)
    fig.suptitle("SmolLM2-135M, same-model GCG at long budgets: fuse vs nanoGCG (thin lines: one task and seed)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=("peer", "tune", "fuse", "report"), default=["report"])
    p.add_argument("--fuse-options", type=json.loads, default={},
                   help="GCGConfig fields for the fuse part, as JSON (the options the tuning chose)")
    p.add_argument("--name", nargs="+", default=["engine_peer_long_fuse"],
                   help="result file of the fuse part (report: one or more, merged)")
    p.add_argument("--runs", nargs="+", default=None, metavar="TASK/SEED",
                   help="fuse part: only these runs (e.g. 0/0 2/1), to split the part over processes")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    tasks, seeds, n_long = final_plan()
    smol = load(f"bundled:{ep.MODEL}", dtype=torch.float32) if set(a.parts) - {"report"} else None
    for part in a.parts:
        if part == "peer":
            _, model_dir = bundled_folder(ep.MODEL)
            part_peer(smol, nanogcg_env.ensure(), model_dir, tasks, seeds, n_long)
        elif part == "tune":
            part_tune(smol)
        elif part == "fuse":
            part_fuse(smol, tasks, seeds, n_long, a.fuse_options, a.name[0], a.runs)
        else:
            report(tasks, seeds, n_long, a.name)


if __name__ == "__main__":
    main()
