"""In-context autoregressive learning benchmark (Sander et al., ICML 2024, scaled to 2 CPU cores).

Trains a one-layer linear-attention transformer on ``s_{t+1} = W s_t`` (augmented tokens, Haar
orthogonal and commuting W) and the non-augmented positional two-layer variant; reports how close
the trained layer is to one gradient step on the in-context least-squares loss (relative distance
and fitted step size), and its error against in-context OLS across context lengths.

Run: ``python3 benchmarks/icl_ar.py [--train-steps N] [--batch-size B]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402

from fuse.icl import ICLConfig, train  # noqa: E402

RUNS = [("augmented", "orthogonal", "ones"), ("augmented", "commuting", "ones"), ("positional", "orthogonal", "ones"),
        ("augmented", "commuting", "random")]
SHOW_T = (1, 2, 5, 10, 25, 49)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--d", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids OpenMP spin-waiting when other jobs share the 2 cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    for variant, kind, s0 in RUNS:
        cfg = ICLConfig(d=args.d, steps=args.steps, kind=kind, variant=variant, train_steps=args.train_steps,
                        batch_size=args.batch_size, seed=args.seed, s0=s0)
        _, res = train(cfg)
        results[f"{variant}/{kind}" + ("" if s0 == "ones" else f"/s0={s0}")] = res.to_dict()
        logging.info("%s/%s/%s: loss %.4f eta %.3f rel %.3f (%.0fs)", variant, kind, s0, res.losses[-1], res.eta,
                     res.rel_dist_all, res.seconds)
    T = args.steps - 1
    shown = [t for t in SHOW_T if t <= T]
    summary = []
    for key, r in results.items():
        summary.append([key, sum(r["losses"][-50:]) / 50, r["eta"], r["rel_dist_all"], r["rel_dist"][-1],
                        r["rel_dist_precond_all"], r["mse_model"][-1], r["mse_gd"][-1], r["mse_ols"][-1], r["seconds"]])
    md = (f"d = {args.d}, {args.steps} transitions per sequence, Adam lr 1e-2, {args.train_steps} steps of batch "
          f"{args.batch_size} (fresh sequences every step; the paper trains longer with batch 1024), evaluation on "
          "2048 fresh sequences. `rel. dist` = ||f_θ − η̂·G|| / ||f_θ|| with G_t = (1/t) Σ_j s_j s_{j−1}ᵀ s_t the "
          "one-GD-step direction; `precond.` fits a step matrix Γ instead of a scalar (C_t Γ s_t). "
          "s_0 is the normalised all-ones vector unless the run says `s0=random` (uniform on the sphere per sequence).\n\n"
          + markdown_table(["run", "final train MSE", "η̂", "rel. dist (all t)", "rel. dist (t = T)",
                            "rel. dist precond. (all t)", "MSE model (t = T)", "MSE GD-step (t = T)",
                            "MSE OLS (t = T)", "train s"], summary))
    for key, r in results.items():
        rows = [[t, r["mse_model"][t - 1], r["mse_gd"][t - 1], r["mse_precond"][t - 1], r["mse_ols"][t - 1],
                 r["mse_model"][t - 1] / max(r["mse_ols"][t - 1], 1e-300), r["rel_dist"][t - 1]] for t in shown]
        md += f"\n\n### {key}: error against context length t\n\n" + markdown_table(
            ["t", "MSE model", "MSE GD step (η̂)", "MSE precond. GD", "MSE OLS", "model / OLS", "rel. dist to GD"], rows)
    figures = {k: {kk: v for kk, v in r.items() if kk != "losses"} | {"final_loss": sum(r["losses"][-50:]) / 50}
               for k, r in results.items()}
    config = {"threads": args.threads, "d": args.d, "steps": args.steps, "train_steps": args.train_steps, "batch_size": args.batch_size,
              "lr": 1e-2, "eval_sequences": 2048, "runs": [f"{v}/{k}/s0={s}" for v, k, s in RUNS],
              "scale_note": "scaled down from the paper (batch 1024, longer training) to fit 2 CPU cores"}
    write_results("icl_ar", config=config, seed=args.seed, figures=figures, markdown=md)
    plot(results, RESULTS / "icl_ar.png")
    print(md)
    return 0


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(results) + 1, figsize=(4.2 * (len(results) + 1), 3.6))
    for ax, (key, r) in zip(axes, results.items()):
        t = np.arange(1, len(r["mse_model"]) + 1)
        ax.semilogy(t, r["mse_model"], label="trained layer")
        ax.semilogy(t, r["mse_gd"], "--", label=f"one GD step (η̂={r['eta']:.2f})")
        ax.semilogy(t, np.maximum(r["mse_ols"], 1e-16), ":", label="OLS")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("context length t")
        ax.set_ylabel("MSE of ŝ_{t+1}")
        ax.legend(fontsize=7)
    for key, r in results.items():
        axes[-1].plot(np.arange(1, len(r["rel_dist"]) + 1), r["rel_dist"], label=key)
    axes[-1].set_title("relative distance trained vs GD step", fontsize=9)
    axes[-1].set_xlabel("context length t")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
