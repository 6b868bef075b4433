"""Scale-out benchmark: 1 against 2 processes under torchrun (gloo) for ``optimize`` and ``caption`` on
the bundled models, with the same-result check, and the step cost model of docs/scale-out.md fitted
to the measured phases.

* ``optimize``: GCG on SmolLM2-135M (fluency 0.1) + MiniLM (1 − cos to a target, through the
  adapter), 8 free tokens, 64 candidates per step, fixed budget. Each N runs under
  ``python -m torch.distributed.run --nproc_per_node N``; every rank holds the chain, rank 0
  computes the gradient and broadcasts it, each rank scores its share of the candidates in
  micro-batches of 8, the losses are all-gathered. The N = 1 run also times the plain chain
  (no wrapper, evaluation in one batch of 64): the peer users run today.
* ``rounding``: the same 64 texts scored in one batch and in 2, 3, 4, 7 pieces: how many exact
  losses change in their last bits (why the split is made in world-size-independent micro-batches).
* ``caption``: ``fuse caption FOLDER --output results.jsonl`` on skimage photos as a sharded
  dataset job (each rank captions its own images), wall time of the whole command.

On this 2-core machine (shared with other jobs; the load average is recorded) expect overhead and
little or no speed-up; the figures that carry over are the phase costs fitted into
``t_step(N) = t_grad + t_bcast + (B/N)·t_eval + t_gather``.

Run: ``python -m benchmarks.scaling`` (about 10 minutes here; ``--parts rounding`` alone, the
other parts keep their saved figures) → ``results/scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
OPT = dict(primary="bundled:smollm2-135m", secondary="bundled:minilm-l6", target="a sailing ship at sea", weight_lm=0.1,
           n_tokens=8, batch_size=64, budget=448, micro_batch=8, top_k=256, seed=0)
CAP = dict(photos=["astronaut", "chelsea", "coffee", "rocket"], n_tokens=4, batch_size=16, beam_width=2, seed=0)


def _torchrun(n: int, args: list[str], timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return proc, wall


# -- the optimize worker (runs on every rank) ---------------------------------------------------
def worker_optimize(out: Path, device: str | None) -> None:
    import torch

    torch.set_num_threads(1)
    from fuse.models.loading import load
    from fuse.objectives import Fluency, Similarity
    from fuse.optim import GCG
    from fuse.optim.chain import Chain
    from fuse.parallel import DataParallelChain, init_from_env, is_main, rank, shutdown, world_size

    init_from_env()
    dev = None if device is None else (f"cuda:{torch.cuda.current_device()}" if device == "cuda" else device)
    t0 = time.perf_counter()
    lm, enc = load(OPT["primary"], device=dev), load(OPT["secondary"], device=dev)
    chain = Chain(lm, [(Fluency(lm), OPT["weight_lm"]), (Similarity(enc, OPT["target"]), 1.0)])
    load_s = time.perf_counter() - t0
    chain.evaluate(["warm up the kernels", "a second text"])  # first-call allocations out of the timings
    kw = dict(n_tokens=OPT["n_tokens"], budget=OPT["budget"], batch_size=OPT["batch_size"], top_k=OPT["top_k"], seed=OPT["seed"])
    res = {"rank": rank(), "world_size": world_size(), "load_s": load_s}
    if world_size() == 1:  # the peer: the plain chain, as one process runs it without the wrapper
        t0 = time.perf_counter()
        r = GCG(chain, **kw).run()
        res["plain"] = dict(seconds=time.perf_counter() - t0, best_text=r.best_text, best_loss=r.best_loss,
                            evaluations=r.evaluations, steps=len(r.history))
    dp = DataParallelChain(chain, micro_batch=OPT["micro_batch"])
    t0 = time.perf_counter()
    r = GCG(dp, **kw).run()
    res["dp"] = dict(seconds=time.perf_counter() - t0, best_text=r.best_text, best_loss=r.best_loss,
                     best_ids=r.best_ids, evaluations=r.evaluations, steps=len(r.history), history=r.history,
                     stats=dict(dp.stats))
    from fuse.parallel import all_gather_json

    ranks = all_gather_json(res)
    if is_main():
        out.write_text(json.dumps(ranks))
    shutdown()


# -- the driver ---------------------------------------------------------------------------------
def run_optimize(n: int, device: str | None) -> tuple[list[dict], float]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        args = ["-m", "benchmarks.scaling", "--worker", "optimize", "--out", str(out)] + (["--device", device] if device else [])
        _, wall = _torchrun(n, args)
        return json.loads(out.read_text()), wall


def run_caption(n: int, folder: Path, output: Path) -> tuple[list[dict], float]:
    args = ["-m", "fuse", "caption", str(folder), "--output", str(output), "--json", "--no-progress",
            "--n-tokens", str(CAP["n_tokens"]), "--batch-size", str(CAP["batch_size"]), "--beam-width", str(CAP["beam_width"]),
            "--seed", str(CAP["seed"])]
    proc, wall = _torchrun(n, args)
    return json.loads(proc.stdout[proc.stdout.index("[") :]), wall


def fit(one: list[dict], two: list[dict], B: int) -> dict:
    """Phase constants of t_step(N) = t_grad + t_bcast + (B/N)·t_eval + t_gather from the measured runs.

    ``B_run`` is the mean number of candidates per step of the measured runs (the budget cuts the last
    step, and duplicates are dropped); the predictions use ``B`` (candidates per full step)."""
    d1, d2 = one[0]["dp"], two[0]["dp"]
    s1, r0, r1 = d1["stats"], d2["stats"], two[1]["dp"]["stats"]
    steps = d1["steps"]
    B_run = d1["evaluations"] / steps
    t_grad = s1["gradient_s"] / s1["gradient_calls"]
    t_eval = s1["evaluate_s"] / d1["evaluations"]
    t_bcast = r0["broadcast_s"] / r0["broadcast_calls"]  # rank 0 sends; rank 1's time includes waiting for the gradient
    t_gather = min(r0["gather_s"], r1["gather_s"]) / r0["gather_calls"]  # the faster rank's wait: exchange + imbalance
    t_eval2 = max(r0["evaluate_s"], r1["evaluate_s"]) / (d2["evaluations"] / 2)

    def model(N, b, te):
        return t_grad + (t_bcast + t_gather if N > 1 else 0.0) + (b / N) * te

    return dict(steps=steps, B=B, B_run=B_run, t_grad_s=t_grad, t_eval_per_candidate_s=t_eval,
                t_eval_per_candidate_2proc_s=t_eval2, t_bcast_s=t_bcast, t_gather_s=t_gather,
                measured_step_s={1: d1["seconds"] / steps, 2: d2["seconds"] / d2["steps"]},
                model_run_step_s={1: model(1, B_run, t_eval), 2: model(2, B_run, t_eval2)},
                model_step_s={N: model(N, B, t_eval) for N in (1, 2, 4, 8)})


def rounding() -> dict:
    """How often a text's exact loss changes in its last bits when scored in a batch of another shape:
    64 texts in one batch against the same texts in 2, 3, 4 and 7 contiguous pieces (why the split
    is made in micro-batches)."""
    import random

    import torch

    torch.set_num_threads(1)
    from fuse.core.wordlist import frequent_words
    from fuse.models.loading import load
    from fuse.objectives import Fluency, Similarity
    from fuse.optim.chain import Chain

    lm, enc = load(OPT["primary"]), load(OPT["secondary"])
    chain = Chain(lm, [(Fluency(lm), OPT["weight_lm"]), (Similarity(enc, OPT["target"]), 1.0)])
    rng, words = random.Random(OPT["seed"]), frequent_words(2000)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) for _ in range(64)]
    full = chain.evaluate(texts, batch_size=64).total
    out = {}
    for pieces in (2, 3, 4, 7):
        k = -(-len(texts) // pieces)
        split = torch.cat([chain.evaluate(texts[i : i + k], batch_size=k).total for i in range(0, len(texts), k)])
        out[pieces] = dict(differ=int((split != full).sum()), max_abs=float((split - full).abs().max()))
    return out


def measure(args) -> dict:
    figures: dict = {"load_average": os.getloadavg()}
    if "rounding" in args.parts:
        figures["rounding"] = rounding()
    if "optimize" in args.parts:
        one, wall1 = run_optimize(1, args.device)
        two, wall2 = run_optimize(2, args.device)
        same = all(r["dp"]["best_ids"] == one[0]["dp"]["best_ids"] and r["dp"]["best_loss"] == one[0]["dp"]["best_loss"]
                   and r["dp"]["history"] == one[0]["dp"]["history"] for r in two)
        figures["optimize"] = dict(one=one, two=two, launch_wall_s={1: wall1, 2: wall2}, same_result=same,
                                   plain_equals_dp_text=one[0]["plain"]["best_text"] == one[0]["dp"]["best_text"])
    if "caption" in args.parts:
        import skimage.data
        from PIL import Image

        with tempfile.TemporaryDirectory() as d:
            folder = Path(d) / "photos"
            folder.mkdir()
            for name in CAP["photos"]:
                Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.png")
            cap1, w1 = run_caption(1, folder, Path(d) / "one.jsonl")
            cap2, w2 = run_caption(2, folder, Path(d) / "two.jsonl")
        drop = ("seconds", "world_size", "key")
        same = [{k: v for k, v in r.items() if k not in drop} for r in cap1] == [{k: v for k, v in r.items() if k not in drop} for r in cap2]
        figures["caption"] = dict(one=cap1, two=cap2, wall_s={1: w1, 2: w2}, same_result=same,
                                  per_image_s={1: [r["seconds"] for r in cap1], 2: [r["seconds"] for r in cap2]})
    return figures


def render(figures: dict) -> str:
    rows = []
    if "optimize" in figures:
        o = figures["optimize"]
        one, two = o["one"][0], o["two"][0]
        o["cost_model"] = c = fit(o["one"], o["two"], OPT["batch_size"])
        base = one["plain"]["seconds"]
        job = f"optimize (GCG, {one['dp']['evaluations']} evals)"
        rows += [[job, "1, plain Chain (peer)", f"{base:.1f}", "1.00", "—", repr(one["plain"]["best_text"])],
                 [job, "1, DataParallelChain", f"{one['dp']['seconds']:.1f}", f"{one['dp']['seconds'] / base:.2f}",
                  "reference", repr(one["dp"]["best_text"])],
                 [job, "2, DataParallelChain", f"{two['dp']['seconds']:.1f}", f"{two['dp']['seconds'] / base:.2f}",
                  "identical" if o["same_result"] else "DIFFERENT", repr(two["dp"]["best_text"])]]
    if "caption" in figures:
        cp = figures["caption"]
        w1, w2 = ({int(k): v for k, v in cp["wall_s"].items()}[n] for n in (1, 2))  # JSON keys are strings
        label = f"caption ({len(cp['one'])} photos, whole command)"
        rows += [[label, "1", f"{w1:.1f}", "1.00", "reference", " / ".join(r["caption"] for r in cp["one"])],
                 [label, "2", f"{w2:.1f}", f"{w2 / w1:.2f}", "identical" if cp["same_result"] else "DIFFERENT", ""]]
    md = [markdown_table(["job", "processes", "seconds", "time ratio", "result vs 1 process", "result"], rows)]
    if "optimize" in figures:
        o = figures["optimize"]
        lw = {int(k): v for k, v in o["launch_wall_s"].items()}
        md += ["", f"Optimize seconds are the search alone; the whole launch (start, model loading, search) took "
               f"{lw[1]:.0f} s with 1 process (which also ran the plain peer) and {lw[2]:.0f} s with 2.", "",
               f"Cost model `t_step(N) = t_grad + t_bcast + (B/N)·t_eval + t_gather`, constants fitted to the runs "
               f"above (seconds; the runs averaged B = {c['B_run']:.0f} candidates per step):", "",
               markdown_table(["t_grad", "t_eval / candidate (1 proc)", "t_eval / candidate (2 procs on 2 shared cores)",
                               "t_bcast (gradient)", "t_gather"],
                              [[c["t_grad_s"], c["t_eval_per_candidate_s"], c["t_eval_per_candidate_2proc_s"], c["t_bcast_s"],
                                c["t_gather_s"]]]),
               "", markdown_table(["N", "measured step (s)", "model, measured t_eval (s)"],
                                  [[N, c["measured_step_s"][N], c["model_run_step_s"][N]] for N in (1, 2)]),
               "", f"Prediction at B = {c['B']} with one device per rank (t_eval as with 1 process, no contention) — a model, "
               "not a measurement:", "",
               markdown_table(["N", "model step (s)", "model speed-up vs N=1"],
                              [[N, c["model_step_s"][N], c["model_step_s"][1] / c["model_step_s"][N]] for N in (1, 2, 4, 8)])]
    if "rounding" in figures:
        r = {int(k): v for k, v in figures["rounding"].items()}
        md += ["", "Batch-shape rounding (why candidates are split in micro-batches): the same 64 texts scored in one "
               "batch and in N contiguous pieces:", "",
               markdown_table(["pieces", "totals that differ (of 64)", "largest difference"],
                              [[p, r[p]["differ"], r[p]["max_abs"]] for p in sorted(r)])]
    la = figures["load_average"]
    md += ["", f"Load average when the run started (1, 5, 15 min): {tuple(round(x, 1) for x in la)} on "
           f"{os.cpu_count()} CPUs shared with other jobs; torch threads 1 per process."]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["optimize"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help="cpu (default) or cuda: each rank loads the models on its own GPU")
    ap.add_argument("--parts", nargs="+", choices=["optimize", "caption", "rounding"],
                    default=["optimize", "caption", "rounding"], help="what to measure (parts not run keep their saved figures)")
    ap.add_argument("--render", action="store_true", help="re-render results/scaling.{md,png} from the JSON, no new runs")
    args = ap.parse_args()
    if args.worker == "optimize":
        return worker_optimize(args.out, args.device)
    if args.render:
        saved = json.loads((RESULTS / "scaling.json").read_text())
        figures, config = saved["figures"], saved["config"]
    else:
        figures, config = measure(args), dict(optimize=OPT, caption=CAP, device=args.device or "cpu")
        saved = RESULTS / "scaling.json"
        if saved.exists():  # parts not run this time keep their figures
            old = json.loads(saved.read_text())["figures"]
            keep = {k: v for k, v in old.items() if k in ("optimize", "caption", "rounding")}
            if not {"optimize", "caption"} & set(args.parts):  # the load average belongs to the timed runs
                figures.pop("load_average")
            figures = {**keep, **{k: v for k, v in old.items() if k == "load_average"}, **figures}
    md = render(figures)
    write_results("scaling", config=config, seed=OPT["seed"], figures=figures, markdown=md, extra_packages=["scikit-image"])
    _plot(figures)
    print(md)


def _plot(figures: dict) -> None:
    if "optimize" not in figures:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = figures["optimize"]["cost_model"]
    Ns = [1, 2, 4, 8]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(Ns, [c["model_step_s"][N] for N in Ns], "o-", label=f"model, B = {c['B']}, one device per rank")
    ax.plot([1, 2], [c["model_run_step_s"][N] for N in (1, 2)], "s--", label=f"model, B = {c['B_run']:.0f}, measured t_eval")
    ax.plot([1, 2], [c["measured_step_s"][N] for N in (1, 2)], "k^", ms=9, label="measured (2 shared CPU cores)")
    ax.set_xlabel("processes N (one device each)")
    ax.set_ylabel("seconds per GCG step")
    ax.set_xticks(Ns)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("GCG step: t_grad + t_bcast + (B/N)·t_eval + t_gather")
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=120)


if __name__ == "__main__":
    main()
