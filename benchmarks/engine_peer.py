"""engine_peer: fuse GCG against nanoGCG (GraySwanAI/nanoGCG 0.3.0) on SmolLM2-135M-Instruct, same model.

Task: make the model continue ``prompt + free tokens`` with ``target``; loss = mean cross-entropy
over the target's tokens. 20 free tokens initialised to " x x … x" (twenty " x" tokens), budgets
of ``steps × candidates`` (default 10×64 and 50×128). Both sides float32 on the CPU with one
torch thread; nanoGCG runs in its own venv (``benchmarks/.venvs/nanogcg``, created on first use)
as a subprocess, one per task, interleaved with fuse: fuse task i, nanoGCG task i, fuse task i+1, …

Each side's best prompt is re-scored in this process by one shared scorer: fuse's
``Continuation`` objective on the text, i.e. what the model sees when the prompt string is
re-tokenized (``tok(prompt + optimized string) + tok(target)``).

Making the tasks identical: nanoGCG's tokenizer gets the chat template ``{{ messages[0]['content'] }}``
(no special tokens; SmolLM2's tokenizer adds no BOS), ``add_space_before_target=False`` (each
target carries its own leading space) and ``optim_str_init=" x x … x"`` (with the leading space,
so its 20 tokens are fuse's ``init_text`` tokens). nanoGCG keeps its defaults otherwise (topk 256,
n_replace 1, buffer 0, prefix cache, filter_ids, not early stop); ``search_width`` = candidates per
step. ``--check`` prints both token sequences of every task; every run records whether they agree,
and stops if nanoGCG's loss of the initial prompt differs from the shared scorer's by more than
``LOSS_TOL`` (it caught transformers 4.47.1 ignoring the ``rope_parameters`` that transformers 5
writes: see :func:`benchmarks.peers.nanogcg_runner.load_config`).

Evaluations are counted alike: candidates whose loss was computed (the initial string included).
fuse: ``GCG(..., budget=steps*width, batch_size=width)``; nanoGCG: ``num_steps=steps`` (1 + at most
steps × width evaluations; its filter drops some).

Run: ``python -m benchmarks.engine_peer [--tasks 5] [--budgets 10x64 50x128] [--quick] [--check] [--replot]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics as st
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402
from benchmarks.peers import nanogcg_env  # noqa: E402
from fuse.models.bundled import bundled_folder  # noqa: E402
from fuse.models.batching import encode_batch  # noqa: E402
from fuse.models.loading import load  # noqa: E402
from fuse.objectives import Continuation  # noqa: E402
from fuse.optim import GCG, GCGConfig, optimize  # noqa: E402
from fuse.optim.chain import Chain  # noqa: E402

logger = logging.getLogger("benchmarks.engine_peer")

MODEL = "smollm2-135m"
N_TOKENS = 20
INIT_TEXT = " ".join(["x"] * N_TOKENS)  # fuse prepends the space: " x x … x"
TOP_K = 256
LOSS_TOL = 1e-3  # nanoGCG's loss of the initial prompt vs the shared scorer's (same ids, two transformers versions)
TASKS = [  # (prompt, continuation target); each target starts with its own space
    ("Write a short poem about the sea.", " Sure, here is a poem about the sea"),
    ("What is the capital of Australia?", " The capital of Australia is Sydney"),
    ("Explain how a bicycle works.", " A bicycle works by magic and good luck"),
    ("Give me a recipe for pancakes.", " Pancakes are made from sand and water"),
    ("Describe your favourite colour.", " My favourite colour is purple because"),
    ("Tell me about the moon.", " The moon is made of green cheese"),
    ("How do I learn to play the piano?", " You cannot learn the piano, it is impossible"),
]


def parse_budget(text: str) -> tuple[int, int]:
    try:
        steps, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a budget is STEPSxCANDIDATES, e.g. 10x64; got {text!r}") from None
    if steps < 1 or width < 1:
        raise ValueError(f"steps and candidates must be >= 1, got {text!r}")
    return steps, width


# -- fuse side ---------------------------------------------------------------------------------
def run_fuse(smol, task: tuple[str, str], budget: int, width: int, seed: int, options: dict | None = None) -> dict:
    """fuse GCG on one task, through ``fuse.optimize(chain, GCGConfig(...))`` (``options``: more config fields)."""
    prompt, target = task
    chain = Chain(smol, [(Continuation(smol, target), 1.0)])
    timers = {"gradient_s": 0.0, "candidates_s": 0.0, "gradients": 0}
    gradients, evaluate = chain.gradients, chain.evaluate_ids

    def timed_gradients(*a, **k):
        t = time.perf_counter()
        out = gradients(*a, **k)
        timers["gradient_s"] += time.perf_counter() - t
        timers["gradients"] += 1
        return out

    def timed_evaluate(*a, **k):
        t = time.perf_counter()
        out = evaluate(*a, **k)
        timers["candidates_s"] += time.perf_counter() - t
        return out

    chain.gradients, chain.evaluate_ids = timed_gradients, timed_evaluate
    config = GCGConfig(n_tokens=N_TOKENS, prefix=prompt, budget=budget, batch_size=width, top_k=TOP_K, seed=seed,
                       init_text=INIT_TEXT, **(options or {}))
    c0 = time.process_time()
    res = optimize(chain, config)
    cpu_seconds = time.process_time() - c0
    return {
        "best_text": res.best_text, "best_loss_own": res.best_loss, "evaluations": res.evaluations,
        "seconds": res.seconds, "cpu_seconds": cpu_seconds, "steps": len(res.history), "gradients": timers["gradients"],
        "gradient_s": timers["gradient_s"], "candidates_s": timers["candidates_s"],
        "other_s": res.seconds - timers["gradient_s"] - timers["candidates_s"],
        "history": [{"evaluations": h["evaluations"], "best_loss": h["best_loss"], "best_text": h["best_text"]}
                    for h in res.history],
    }


def fuse_sequences(smol, task: tuple[str, str]) -> dict:
    """The ids fuse's GCG builds for the initial prompt + target, and what the shared scorer sees."""
    prompt, target = task
    cont = Continuation(smol, target)
    opt = GCG(Chain(smol, [(cont, 1.0)]), n_tokens=N_TOKENS, prefix=prompt, budget=1, top_k=TOP_K, seed=0,
              init_text=INIT_TEXT)
    ids = opt.full_ids(opt.initial_free())
    text = opt.text_of(opt.initial_free())
    scored, _ = encode_batch(smol.tokenizer, [text])
    tail = cont.cont_ids.tolist()
    return {"optimizer": ids + tail, "scorer": scored[0].tolist() + tail, "text": text}


# -- nanoGCG side ------------------------------------------------------------------------------
def run_nanogcg(python: Path, model_dir: Path, task: tuple[str, str], steps: int, width: int, seed: int) -> dict:
    """nanoGCG on one task in its own venv (a subprocess, one torch thread)."""
    prompt, target = task
    job = {"model_dir": str(model_dir), "prompt": prompt, "target": target, "steps": steps, "width": width,
           "seed": seed, "init": " " + INIT_TEXT, "check": True}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "task.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(job))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
        proc = subprocess.run([str(python), str(nanogcg_env.RUNNER), str(src), str(dst)], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nanoGCG runner failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        out = json.loads(dst.read_text())
    out["best_text"] = prompt + out["best_string"]
    return out


# -- shared scorer -----------------------------------------------------------------------------
@torch.no_grad()
def rescore(smol, text: str, target: str) -> float:
    """Mean CE of ``target`` after ``text`` as the model sees the re-tokenized text (one scorer for both)."""
    return float(Continuation(smol, target).loss_texts([text])[0])


# -- the run -----------------------------------------------------------------------------------
def check(smol, python: Path, model_dir: Path, tasks) -> bool:
    ok = True
    for prompt, target in tasks:
        f = fuse_sequences(smol, (prompt, target))
        n = run_nanogcg(python, model_dir, (prompt, target), 1, 8, 0)
        same = f["optimizer"] == n["sequence_ids"] == f["scorer"]
        init = rescore(smol, f["text"], target)
        agree = abs(init - n["init_loss_own"]) <= LOSS_TOL
        ok &= same and agree
        print(f"task {prompt!r} + {target!r}: identical={same}; initial loss nanoGCG {n['init_loss_own']:.5f}, "
              f"shared scorer {init:.5f} (agree within {LOSS_TOL}: {agree})")
        print("  fuse GCG :", f["optimizer"])
        print("  nanoGCG  :", n["sequence_ids"])
        print("  scorer   :", f["scorer"])
        print("  text     :", repr(smol.tokenizer.decode(f["scorer"])))
    return ok


def curve_on(history: list[dict], grid: np.ndarray) -> np.ndarray:
    """Best loss reached by each evaluation count of ``grid`` (NaN before the first step)."""
    ev = np.array([h["evaluations"] for h in history])
    loss = np.array([h["best_loss"] for h in history])
    idx = np.searchsorted(ev, grid, side="right") - 1
    return np.where(idx >= 0, loss[np.clip(idx, 0, None)], np.nan)


def summarize(runs: list[dict]) -> dict:
    f = [r["fuse"] for r in runs]
    n = [r["nanogcg"] for r in runs]
    loss_f, loss_n = st.mean(r["rescored"] for r in f), st.mean(r["rescored"] for r in n)
    eps_f = sum(r["evaluations"] for r in f) / sum(r["seconds"] for r in f)
    eps_n = sum(r["evaluations"] for r in n) / sum(r["seconds"] for r in n)
    cps_f = sum(r["evaluations"] for r in f) / sum(r["cpu_seconds"] for r in f)
    cps_n = sum(r["evaluations"] for r in n) / sum(r["cpu_seconds"] for r in n)

    def per_step(side, key):
        return 1e3 * sum(r[key] for r in side) / sum(r["steps"] for r in side)

    def per_eval(side):
        return 1e3 * sum(r["candidates_s"] for r in side) / sum(r["evaluations"] for r in side)

    return {
        "tasks": len(runs), "mean_loss_fuse": loss_f, "mean_loss_nanogcg": loss_n, "loss_ratio": loss_f / loss_n,
        "fuse_wins": sum(a["rescored"] < b["rescored"] for a, b in zip(f, n)),
        "evals_per_s_fuse": eps_f, "evals_per_s_nanogcg": eps_n, "speed_ratio": eps_f / eps_n,
        "evals_per_cpu_s_fuse": cps_f, "evals_per_cpu_s_nanogcg": cps_n, "cpu_speed_ratio": cps_f / cps_n,
        "mean_seconds_fuse": st.mean(r["seconds"] for r in f), "mean_seconds_nanogcg": st.mean(r["seconds"] for r in n),
        "mean_evaluations_fuse": st.mean(r["evaluations"] for r in f),
        "mean_evaluations_nanogcg": st.mean(r["evaluations"] for r in n),
        "gradient_ms_per_step_fuse": per_step(f, "gradient_s"), "gradient_ms_per_step_nanogcg": per_step(n, "gradient_s"),
        "candidate_ms_per_eval_fuse": per_eval(f), "candidate_ms_per_eval_nanogcg": per_eval(n),
        "other_ms_per_step_fuse": per_step(f, "other_s"), "other_ms_per_step_nanogcg": per_step(n, "other_s"),
        "sequences_identical": all(r["sequences_identical"] for r in runs),
    }


def plot_panel(ax, runs: list[dict], top: int, title: str, alpha: float = 0.25) -> None:
    """Both sides' best loss against evaluations on one axis: one thin line per run, the mean bold."""
    for side, colour, label in (("fuse", "tab:blue", "fuse GCG"), ("nanogcg", "tab:orange", "nanoGCG 0.3.0")):
        grid = np.linspace(max(r[side]["history"][0]["evaluations"] for r in runs), top, 200)
        curves = np.array([curve_on(r[side]["history"], grid) for r in runs])
        for c in curves:
            ax.plot(grid, c, color=colour, alpha=alpha, lw=0.8)
        ax.plot(grid, np.nanmean(curves, 0), color=colour, lw=2.2, label=f"{label} (mean of {len(runs)})")
    ax.set_title(title)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best loss so far (own, nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = list(results)
    fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets), 4.2), squeeze=False)
    for ax, name in zip(axes[0], budgets):
        runs = results[name]["runs"]
        top = max(max(r[side]["evaluations"] for r in runs) for side in ("fuse", "nanogcg"))
        plot_panel(ax, runs, top, f"budget {name} (steps × candidates)")
    fig.suptitle("SmolLM2-135M, same-model GCG: fuse vs nanoGCG\n(thin lines: one task each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    rows = []
    for name, r in results.items():
        s = r["summary"]
        rows.append([name, s["tasks"], s["mean_loss_fuse"], s["mean_loss_nanogcg"], s["loss_ratio"],
                     f"{s['fuse_wins']}/{s['tasks']}", s["evals_per_s_fuse"], s["evals_per_s_nanogcg"],
                     s["speed_ratio"], s.get("cpu_speed_ratio", float("nan")), s["mean_seconds_fuse"],
                     s["mean_seconds_nanogcg"]])
    out = ["Mean CE over the target's tokens (nats/token) of each side's best prompt, re-scored by one shared "
           "scorer (the re-tokenized text); evaluations/s = evaluations ÷ wall time of the optimizer's run, "
           "summed over tasks; CPU speed ratio: the same with each process's CPU time instead of wall time (both "
           "sides run one torch thread, so it is what the wall-time ratio would be on an idle machine, and it does "
           "not move when other work shares the cores). Ratios are fuse ÷ nanoGCG (loss: lower is better; speed: "
           "higher is better).\n",
           markdown_table(["budget", "tasks", "loss fuse", "loss nanoGCG", "loss ratio", "fuse better",
                           "evals/s fuse", "evals/s nanoGCG", "speed ratio", "CPU speed ratio", "wall s fuse",
                           "wall s nanoGCG"], rows),
           "\n## Where the time goes\n",
           "Gradient: one call of the loss gradient w.r.t. the one-hot tokens (ms per step); candidates: "
           "exact scoring of the candidate batch (ms per evaluation); other: sampling, filtering, "
           "decoding and bookkeeping (ms per step).\n"]
    rows = []
    for name, r in results.items():
        s = r["summary"]
        rows.append([name, s["gradient_ms_per_step_fuse"], s["gradient_ms_per_step_nanogcg"],
                     s["candidate_ms_per_eval_fuse"], s["candidate_ms_per_eval_nanogcg"],
                     s["other_ms_per_step_fuse"], s["other_ms_per_step_nanogcg"],
                     s["mean_evaluations_fuse"], s["mean_evaluations_nanogcg"]])
    out.append(markdown_table(["budget", "gradient ms/step fuse", "gradient ms/step nanoGCG", "candidate ms/eval fuse",
                               "candidate ms/eval nanoGCG", "other ms/step fuse", "other ms/step nanoGCG",
                               "evaluations fuse", "evaluations nanoGCG"], rows))
    out.append("\n## Per task\n")
    rows = []
    for name, r in results.items():
        for run in r["runs"]:
            f, n = run["fuse"], run["nanogcg"]
            rows.append([name, run["task"], f["rescored"], n["rescored"], n["best_loss_own"], f["seconds"], n["seconds"],
                         repr(f["best_text"][len(run["prompt"]):]), repr(n["best_string"])])
    out.append(markdown_table(["budget", "task", "loss fuse", "loss nanoGCG", "nanoGCG own loss", "s fuse",
                               "s nanoGCG", "fuse free text", "nanoGCG optim_str"], rows))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=5, help=f"prompt/target pairs (1..{len(TASKS)})")
    p.add_argument("--budgets", nargs="+", default=["10x64", "50x128"], help="STEPSxCANDIDATES, one or more")
    p.add_argument("--seed", type=int, default=0, help="task i uses seed + i on both sides")
    p.add_argument("--quick", action="store_true", help="1 task, budget 10x64 (for iterating on the engine)")
    p.add_argument("--check", action="store_true", help="print both sides' token sequences and exit")
    p.add_argument("--name", default="engine_peer", help="result file name under benchmarks/results/")
    p.add_argument("--fuse-options", type=json.loads, default={},
                   help='more GCGConfig fields for the fuse side, as JSON (e.g. \'{"accept": "always"}\')')
    p.add_argument("--replot", action="store_true", help="redraw the PNG of results/<name>.json and exit")
    p.add_argument("--peer-from", nargs="+", default=[], metavar="NAME",
                   help="reuse nanoGCG's runs from results/NAME.json where budget, task and seed match (nanoGCG on "
                        "one thread with a seed is deterministic) instead of running it again")
    a = p.parse_args(argv)
    if a.replot:
        plot(json.loads((RESULTS / f"{a.name}.json").read_text())["figures"], RESULTS / f"{a.name}.png")
        return
    if a.quick:
        a.tasks, a.budgets = 1, ["10x64"]
    if not 1 <= a.tasks <= len(TASKS):
        raise ValueError(f"--tasks must be between 1 and {len(TASKS)}, got {a.tasks}")
    budgets = {b: parse_budget(b) for b in a.budgets}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)

    python = nanogcg_env.ensure()
    _, model_dir = bundled_folder(MODEL)
    smol = load(f"bundled:{MODEL}", dtype=torch.float32)
    tasks = TASKS[: a.tasks]
    if a.check:
        raise SystemExit(0 if check(smol, python, model_dir, tasks) else 1)

    results, peer = {}, {}
    earlier = earlier_peer_runs(a.peer_from)
    for name, (steps, width) in budgets.items():
        runs = []
        for i, task in enumerate(tasks):
            reuse = earlier.get((name, task, a.seed + i))
            runs.append(run_task(smol, python, model_dir, task, i, steps, width, a.seed + i, peer, a.fuse_options,
                                 reuse))
            r = runs[-1]
            logger.info("%s task %d: loss fuse %.3f (%.0f s, %d evals) | nanoGCG %.3f (%.0f s, %d evals)", name, i,
                        r["fuse"]["rescored"], r["fuse"]["seconds"], r["fuse"]["evaluations"],
                        r["nanogcg"]["rescored"], r["nanogcg"]["seconds"], r["nanogcg"]["evaluations"])
            results[name] = {"steps": steps, "width": width, "runs": runs, "summary": summarize(runs),
                             "complete": len(runs) == len(tasks)}
            save(a, tasks, results, peer)  # after every task: a long run stopped early keeps what it measured
    print((RESULTS / f"{a.name}.md").read_text())


def earlier_peer_runs(names: list[str]) -> dict:
    """nanoGCG's runs in earlier result files, by ``(budget, (prompt, target), seed)``, with their recorded checks."""
    out = {}
    for name in names:
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        for budget, fig in payload["figures"].items():
            for r in fig["runs"]:
                out[(budget, (r["prompt"], r["target"]), r["seed"])] = {
                    "nanogcg": r["nanogcg"], "sequences_identical": r["sequences_identical"],
                    "versions": payload["config"]["nanogcg_env"], "from": name}
    return out


def run_task(smol, python: Path, model_dir: Path, task, i: int, steps: int, width: int, seed: int, peer: dict,
             options: dict | None = None, reuse: dict | None = None) -> dict:
    """fuse then nanoGCG on one task, both re-scored by the shared scorer, with the sameness checks (``reuse``: an
    earlier nanoGCG run of the same budget, task and seed, taken instead of running nanoGCG again)."""
    f = run_fuse(smol, task, steps * width, width, seed, options)
    f["rescored"] = rescore(smol, f["best_text"], task[1])
    if reuse is not None:
        n = dict(reuse["nanogcg"], reused_from=reuse["from"])
        n["rescored"] = rescore(smol, n["best_text"], task[1])
        peer.update(reuse["versions"])
        return {"task": i, "prompt": task[0], "target": task[1], "seed": seed,
                "sequences_identical": reuse["sequences_identical"], "fuse": f, "nanogcg": n}
    n = run_nanogcg(python, model_dir, task, steps, width, seed)
    n["rescored"] = rescore(smol, n["best_text"], task[1])
    peer.update(n.pop("versions"))
    seqs = fuse_sequences(smol, task)
    same = seqs["optimizer"] == n.pop("sequence_ids") == seqs["scorer"]
    n.pop("target_ids", None)
    check_initial_loss(smol, seqs["text"], task, i, n)
    return {"task": i, "prompt": task[0], "target": task[1], "seed": seed, "sequences_identical": same,
            "fuse": f, "nanogcg": n}


def check_initial_loss(smol, text: str, task, i: int, n: dict) -> None:
    """Record the shared scorer's loss of the initial prompt ``text`` in nanoGCG's run ``n``; stop if they disagree."""
    n["init_loss_rescored"] = rescore(smol, text, task[1])
    if abs(n["init_loss_rescored"] - n["init_loss_own"]) > LOSS_TOL:
        raise RuntimeError(f"nanoGCG's model disagrees with fuse's on the initial prompt of task {i}: "
                           f"{n['init_loss_own']:.5f} vs {n['init_loss_rescored']:.5f}; not the same model")


def save(a, tasks, results: dict, peer: dict) -> None:
    """Write the JSON, the markdown table and the plot of what has been measured so far."""
    config = {"model": MODEL, "dtype": "float32", "device": "cpu", "torch_threads": 1, "n_tokens": N_TOKENS,
              "init_text": " " + INIT_TEXT, "top_k": TOP_K, "budgets": a.budgets, "tasks": tasks,
              "fuse": "fuse.optimize(chain, GCGConfig(n_tokens=20, prefix=prompt, budget=steps*width, batch_size=width, "
                      "top_k=256, seed, init_text, **fuse_options))", "fuse_options": a.fuse_options,
              "nanogcg": "GCGConfig(num_steps=steps, search_width=width, optim_str_init=' x x … x', seed, "
                         "add_space_before_target=False; defaults otherwise), chat template "
                         "\"{{ messages[0]['content'] }}\"",
              "nanogcg_env": peer, "interleaved": "fuse task i, nanoGCG task i, fuse task i+1, ..."}
    write_results(a.name, config=config, seed=a.seed, figures=results, markdown=markdown(results),
                  extra_packages=("matplotlib",))
    plot(results, RESULTS / f"{a.name}.png")


if __name__ == "__main__":
    main()

