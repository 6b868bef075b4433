"""CaLMFlow benchmarks: 2D and high-dimensional transport against torchcfm CFM / OT-CFM, and
text conditioning (a confusion table of per-prompt MMD).

    python3 benchmarks/flow.py --part 2d        # -> results/flow_2d.{json,md,png}
    python3 benchmarks/flow.py --part highdim   # -> results/flow_highdim.*
    python3 benchmarks/flow.py --part text      # -> results/flow_text.*

Budgets are scaled down for a shared 2-core CPU (see --budget (CaLMFlow steps), --seeds); the
scale is recorded in each JSON config. Baselines: torchcfm ``ConditionalFlowMatcher`` and
``ExactOptimalTransportConditionalFlowMatcher`` (σ = 0.1) with an MLP vector field, integrated
with torchdiffeq (Euler, 100 steps). Each baseline is run twice: for CaLMFlow's number of steps,
and for the wall-clock seconds CaLMFlow's training took.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402
from fuse.flow import Task  # noqa: E402
from fuse.flow.data import HELDOUT_PROMPTS  # noqa: E402
from fuse.flow.metrics import GAMMAS, rbf_mmd, wasserstein2  # noqa: E402
from fuse.flow.train import TrainConfig, model_for_task, train  # noqa: E402

logger = logging.getLogger("benchmarks.flow")
EXTRA = ["torchcfm", "torchdiffeq", "pot", "matplotlib"]
N_EVAL = 10_000


# -- baselines ---------------------------------------------------------------------------------
class MLP(torch.nn.Module):
    def __init__(self, dim, width=256):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, width), torch.nn.SELU(), torch.nn.Linear(width, width),
                                       torch.nn.SELU(), torch.nn.Linear(width, width), torch.nn.SELU(), torch.nn.Linear(width, dim))

    def forward(self, t, x):
        t = t.reshape(-1, 1)
        if t.shape[0] != x.shape[0]:
            t = t.expand(x.shape[0], 1)
        return self.net(torch.cat([x, t], 1))


def train_cfm(kind, task, *, seed, steps=None, seconds=None, batch=256, lr=1e-3):
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher

    torch.manual_seed(seed)
    fm = ConditionalFlowMatcher(sigma=0.1) if kind == "cfm" else ExactOptimalTransportConditionalFlowMatcher(sigma=0.1)
    model = MLP(task.dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    step = 0
    while True:
        if steps is not None and step >= steps:
            break
        if seconds is not None and time.perf_counter() - t0 >= seconds:
            break
        x0, x1 = task.sample_source(batch, g), task.sample_target(batch, g)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        loss = (model(t[:, None], xt) - ut).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    return model, step, time.perf_counter() - t0


def sample_cfm(model, x0, n_steps=100):
    from torchdiffeq import odeint

    with torch.no_grad():
        traj = odeint(lambda t, x: model(t.reshape(1, 1), x), x0, torch.linspace(0, 1, n_steps + 1), method="euler")
    return traj[-1]


# -- helpers -------------------------------------------------------------------------------------
def metrics(x, y, seed):
    return {"mmd": rbf_mmd(x, y), "w2": wasserstein2(x, y, n=2000, seed=seed)}


def run_calmflow(task, *, seed, steps, batch_size, temperature, **overrides):
    model = model_for_task(task, seed=seed, **overrides)
    res = train(model, task, TrainConfig(steps=steps, batch_size=batch_size, seed=seed))
    return model, res


def transport_part(task_specs, *, seeds, budget, batch_size, name, calm_variants):
    rows, figures, plots = [], {}, {}
    for spec in task_specs:
        task = Task.parse(spec)
        per = {}
        for seed in seeds:
            g = torch.Generator().manual_seed(10_000 + seed)
            x0_eval, y_eval = task.sample_source(N_EVAL, g), task.sample_target(N_EVAL, g)
            y_ref = task.sample_target(N_EVAL, g)
            per.setdefault("target vs. target (floor)", []).append({**metrics(y_ref, y_eval, seed), "steps": 0, "train_s": 0.0, "sample_s": 0.0})
            calm_steps = calm_secs = None
            for label, overrides, tau in calm_variants:
                model, res = run_calmflow(task, seed=seed, steps=budget, batch_size=batch_size, temperature=tau, **overrides)
                t0 = time.perf_counter()
                x = model.sample(x0_eval, seed=seed, temperature=tau, batch_size=2048)
                ts = time.perf_counter() - t0
                per.setdefault(label, []).append({**metrics(x, y_eval, seed), "steps": res.steps, "train_s": res.seconds, "sample_s": ts})
                calm_steps = calm_steps or res.steps
                calm_secs = calm_secs or res.seconds
                if seed == seeds[0] and task.dim == 2:
                    plots[(spec, label)] = x
                logger.info("%s seed %d %s: %s", spec, seed, label, per[label][-1])
            for kind, kname in (("cfm", "CFM"), ("ot", "OT-CFM")):
                for budget_kind in ("equal time", "equal steps"):
                    kw = {"seconds": calm_secs} if budget_kind == "equal time" else {"steps": calm_steps}
                    model, steps, secs = train_cfm(kind, task, seed=seed, **kw)
                    t0 = time.perf_counter()
                    x = sample_cfm(model, x0_eval)
                    ts = time.perf_counter() - t0
                    label = f"torchcfm {kname} ({budget_kind})"
                    per.setdefault(label, []).append({**metrics(x, y_eval, seed), "steps": steps, "train_s": secs, "sample_s": ts})
                    if seed == seeds[0] and task.dim == 2:
                        plots[(spec, label)] = x
                    logger.info("%s seed %d %s: %s", spec, seed, label, per[label][-1])
        best_cfm = min(np.mean([r["mmd"] for r in per[k]]) for k in per if k.startswith("torchcfm"))
        best_cfm_w2 = min(np.mean([r["w2"] for r in per[k]]) for k in per if k.startswith("torchcfm"))
        figures[spec] = {}
        for label, runs in per.items():
            agg = {k: [r[k] for r in runs] for k in runs[0]}
            mmd_m, w2_m = float(np.mean(agg["mmd"])), float(np.mean(agg["w2"]))
            figures[spec][label] = {"runs": runs, "mmd_mean": mmd_m, "mmd_std": float(np.std(agg["mmd"])),
                                    "w2_mean": w2_m, "w2_std": float(np.std(agg["w2"]))}
            rows.append([spec, label, f"{mmd_m:.5f} ± {np.std(agg['mmd']):.5f}", f"{w2_m:.3f} ± {np.std(agg['w2']):.3f}",
                         f"{mmd_m / best_cfm:.2f}", f"{w2_m / best_cfm_w2:.2f}", f"{np.mean(agg['steps']):.0f}",
                         f"{np.mean(agg['train_s']):.1f}", f"{np.mean(agg['sample_s']):.2f}"])
        if task.dim == 2:
            y = task.sample_target(N_EVAL, torch.Generator().manual_seed(1))
            plot_grid(plots, spec, y, RESULTS / f"{name}.png")
    if not plots:
        plot_bars(figures, RESULTS / f"{name}.png")
    header = ["task", "method", f"MMD² (mean over γ∈{list(GAMMAS)})", "W2 (emd2, 2k)", "MMD ÷ best CFM", "W2 ÷ best CFM",
              "train steps", "train s", "sample s / 10k"]
    return rows, header, figures


def plot_grid(plots, spec, target, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(k[1], v) for k, v in plots.items() if k[0] == spec] + [("target", target)]
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.4))
    for ax, (label, x) in zip(axes, items):
        x = torch.as_tensor(x).numpy()
        ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.3)
        ax.set_title(label, fontsize=7)
        ax.set_xlim(-5, 7)
        ax.set_ylim(-5, 5)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(figures, path):
    """Bar charts of MMD² and W2 per method (for tasks that cannot be scattered)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(figures)
    fig, axes = plt.subplots(len(specs), 2, figsize=(11, 3.2 * len(specs)), squeeze=False)
    for row, spec in zip(axes, specs):
        labels = [k for k in figures[spec] if not k.startswith("target vs")]
        for ax, key in zip(row, ("mmd_mean", "w2_mean")):
            ax.barh(labels, [figures[spec][k][key] for k in labels])
            ax.set_title(f"{spec}: {key.split('_')[0].upper()}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def finish_md(name, md):
    p = RESULTS / f"{name}.md"
    p.write_text(p.read_text().replace(f"benchmarks/{name}.py", "benchmarks/flow.py"))


# -- parts ------------------------------------------------------------------------------------------
def part_transport(args, name, specs):
    variants = [("CaLMFlow (Gaussian head, bridge σ=1)", {}, 1.0),
                ("CaLMFlow (paper VAE head, straight, τ=1.7)", {"head": "vae", "path_noise": 0.0}, 1.7)]
    if name == "flow_highdim":
        variants = variants[:1]
    rows, header, figures = transport_part(specs, seeds=list(range(args.seeds)), budget=args.budget,
                                           batch_size=args.batch_size, name=name, calm_variants=variants)
    md = markdown_table(header, rows)
    config = {"tasks": specs, "seeds": args.seeds, "calmflow_steps": args.budget, "torch_threads": 1,
              "budget_note": "CaLMFlow trains a fixed number of steps; each baseline gets the same number of steps, and separately the wall-clock seconds the first CaLMFlow variant took", "calmflow_batch_contexts": args.batch_size,
              "n_eval": N_EVAL, "w2_subset": 2000, "gammas": list(GAMMAS), "cfm_batch": 256, "cfm_sigma": 0.1,
              "cfm_mlp": "3x256 SELU", "cfm_solver": "torchdiffeq euler 100 steps",
              "calmflow_default": "gpt2 3 layers, 96 hidden, 4 heads, n_times 16, n_traj 4", "scale_note":
              "budgets scaled down for a shared 2-core CPU; paper-scale runs train for hours"}
    write_results(name, config=config, seed=list(range(args.seeds)), figures=figures, markdown=md, extra_packages=EXTRA)
    finish_md(name, md)
    print(md)


def text_model(args):
    """The text-conditioned model (trained once, kept in the user cache, never committed)."""
    import json

    from fuse.models.cache import cache_dir
    from fuse.flow import CaLMFlow
    from fuse.flow.train import TrainResult

    folder = cache_dir("flow") / f"bench-text-2d-s0-{int(args.text_budget)}x{args.batch_size}"
    task = Task.parse("text-2d")
    if (folder / "trainer_state.json").is_file():
        st = json.loads((folder / "trainer_state.json").read_text())
        return CaLMFlow.from_pretrained(folder), task, TrainResult(st["steps"], st["seconds"], st["losses"])
    model = model_for_task(task, seed=0)
    res = train(model, task, TrainConfig(steps=int(args.text_budget), batch_size=args.batch_size, seed=0), out=folder)
    return model, task, res


def part_text(args):
    name = "flow_text"
    model, task, res = text_model(args)
    targets = sorted(task.labels)
    g = torch.Generator().manual_seed(77)
    refs = {t: task.sample_target(args.text_n, g, label=t) for t in targets}
    x0 = task.sample_source(args.text_n, g)
    prompts = [(t, p, "train") for t in targets for p in task.labels[t][:2]] + [(t, p, "held-out") for t in targets for p in HELDOUT_PROMPTS[t]]
    rows, conf, wins, plots = [], [], 0, {}
    for t, p, split in prompts:
        x = model.sample(x0, p, seed=1)
        mm = {u: rbf_mmd(x, refs[u]) for u in targets}
        best = min(mm, key=mm.get)
        wins += best == t
        off = min(v for u, v in mm.items() if u != t)
        conf.append({"prompt": p, "label": t, "split": split, "mmd": mm, "argmin": best})
        rows.append([f"{p!r}", t, split] + [f"{mm[u]:.4f}" + (" *" if u == t else "") for u in targets] + [f"{off / mm[t]:.1f}", "yes" if best == t else "no"])
        if split == "held-out" or p == task.labels[t][0]:
            plots[p] = x
    header = ["prompt", "true target", "split"] + [f"MMD² to {u}" for u in targets] + ["best wrong ÷ right", "diagonal wins"]
    md = (markdown_table(header, rows) + f"\n\nDiagonal wins: {wins}/{len(prompts)} prompts "
          f"(train {sum(c['argmin'] == c['label'] for c in conf if c['split'] == 'train')}/{sum(c['split'] == 'train' for c in conf)}, "
          f"held-out {sum(c['argmin'] == c['label'] for c in conf if c['split'] == 'held-out')}/{sum(c['split'] == 'held-out' for c in conf)}). "
          f"Model trained {res.steps} steps in {res.seconds:.0f} s.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(plots) + 1) // 2, figsize=(2.6 * ((len(plots) + 1) // 2), 5.4))
    for ax, (p, x) in zip(axes.flat, plots.items()):
        ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.3)
        ax.set_title(p, fontsize=8)
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    plt.close(fig)
    config = {"task": "text-2d (source N(0, I); targets " + ", ".join(targets) + ")", "train_seconds": res.seconds,
              "steps": res.steps, "batch_contexts": args.batch_size, "n_eval_per_prompt": args.text_n,
              "prompt_augment": 0.3, "temperature": 1.0}
    write_results(name, config=config, seed=0, figures={"confusion": conf, "diagonal_wins": wins, "n_prompts": len(prompts)},
                  markdown=md, extra_packages=EXTRA)
    finish_md(name, md)
    print(md)


def part_prompt(args):
    """Recover a prompt for a target set: SmolLM2 tokens → t-product adapter → the flow model's prompt embedding."""
    from fuse.optim.chain import Chain
    from fuse.flow.backbone import FlowBackbone, FlowMMD
    from fuse.optim import GCG, RandomSearch

    name = "flow_prompt"
    model, task, _ = text_model(args)
    model.requires_grad_(False)
    flow = FlowBackbone(model, name="calmflow-text-2d")
    from fuse.models.loading import load; smol = load("bundled:smollm2-135m")
    vocab = [w for w, i in sorted(flow.tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if i >= 2]
    t0 = time.perf_counter()
    from fuse.core.adapter import TensorAdapter
    adapter = TensorAdapter.fit(smol, flow, words=vocab, k=4, lam=1e-3, seed=0)
    fit_s = time.perf_counter() - t0
    rows, figures = [], {"adapter_fit_s": fit_s, "adapter_words": len(vocab), "targets": {}}
    for target_name in args.prompt_targets:
        target = task.sample_target(2000, torch.Generator().manual_seed(5), label=target_name)
        obj = FlowMMD(flow, target, n=args.prompt_n, seed=0)
        chain = Chain(smol, [(obj, 1.0)], adapters={flow.name: adapter})
        canon = float(chain.evaluate([task.labels[target_name][0]]).total[0])
        res = {}
        for oname, cls in (("GCG through adapter", GCG), ("random search", RandomSearch)):
            opt = cls(chain, n_tokens=args.prompt_tokens, budget=args.prompt_budget, batch_size=32, seed=0)
            r = opt.run()
            # the exact MMD of the found prompt on fresh samples (another seed, more samples)
            fresh = float(FlowMMD(flow, target, n=1024, seed=123).loss_texts([r.best_text])[0])
            res[oname] = {"text": r.best_text, "mmd_search": r.best_loss, "mmd_fresh": fresh, "evaluations": r.evaluations,
                          "seconds": r.seconds, "history": r.history}
            logger.info("%s %s: %r %.4f (fresh %.4f)", target_name, oname, r.best_text, r.best_loss, fresh)
        g = torch.Generator().manual_seed(9)
        rand_ids = [[int(i) for i in torch.randint(0, len(smol.tokenizer), (args.prompt_tokens,), generator=g)] for _ in range(32)]
        rand_texts = [t if t.strip() else "x" for t in (chain.decode(ids) for ids in rand_ids)]
        rand = chain.evaluate(rand_texts).total
        figures["targets"][target_name] = {"canonical_prompt": task.labels[target_name][0], "canonical_mmd": canon,
                                           "random_prompts_mmd_mean": float(rand.mean()), "random_prompts_mmd_min": float(rand.min()),
                                           **res}
        for oname, r in res.items():
            rows.append([target_name, oname, repr(r["text"]), f"{r['mmd_search']:.4f}", f"{r['mmd_fresh']:.4f}", r["evaluations"],
                         f"{r['seconds']:.0f}", f"{float(rand.mean()):.4f}", f"{float(rand.mean()) / max(r['mmd_search'], 1e-9):.1f}",
                         f"{canon:.4f}"])
    header = ["target", "optimizer", "prompt found (SmolLM2 text)", "MMD² (search)", "MMD² (fresh samples)", "evaluations", "s",
              "random prompts MMD² (mean of 32)", "random ÷ found", "canonical prompt MMD²"]
    md = markdown_table(header, rows) + f"\n\nAdapter SmolLM2-135M → flow prompt embedding fitted on {len(vocab)} words in {fit_s:.0f} s (k=4, λ=1e-3)."
    config = {"source": "bundled:smollm2-135m", "flow_model": "text-2d CaLMFlow (benchmarks --part text)", "n_tokens": args.prompt_tokens,
              "budget_evaluations": args.prompt_budget, "batch": 32, "mmd_samples_per_candidate": args.prompt_n,
              "targets": args.prompt_targets, "bridge_mode": "exact"}
    write_results(name, config=config, seed=0, figures=figures, markdown=md, extra_packages=EXTRA)
    finish_md(name, md)
    print(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["2d", "highdim", "text", "prompt"], required=True)
    ap.add_argument("--prompt-targets", nargs="+", default=["moons", "circles"])
    ap.add_argument("--prompt-tokens", type=int, default=2)
    ap.add_argument("--prompt-budget", type=int, default=320)
    ap.add_argument("--prompt-n", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=400, help="CaLMFlow training steps per model")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--text-budget", type=int, default=800, help="training steps of the text model")
    ap.add_argument("--text-n", type=int, default=2000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # the machine is shared: one thread per job avoids oversubscription
    if args.part == "2d":
        part_transport(args, "flow_2d", ["8gaussians-moons"])
    elif args.part == "highdim":
        part_transport(args, "flow_highdim", ["gaussians-16d", "gaussians-64d"])
    elif args.part == "text":
        part_text(args)
    else:
        part_prompt(args)


if __name__ == "__main__":
    main()
