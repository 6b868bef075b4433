"""Benchmark: planner-conditioned SmolLM2 on the Python documentation, every mode side by side.

Corpus: the reStructuredText sources of the Python 3.11 documentation (Debian ``python3.11-doc``,
``/usr/share/doc/python3.11/html/_sources``, PSF licence), markup stripped, split by document
(seeded). Actions: bundled MiniLM sentence embeddings, seeded k-means. Backbone: bundled
SmolLM2-135M, frozen; only the action projections on the top blocks (and the planner) train.

Modes compared on validation perplexity (full softmax): the base model (no training), no planner
(projection bias only), a fixed action (the most frequent training action), oracle actions
(upper bound), predicted hard actions, straight-through, and the joint soft mixture; plus the
planner's action accuracy and training time per mode, over several seeds.

Run: ``python3 -m benchmarks.planner`` (see ``--help`` for the scale).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from benchmarks.common import RESULTS, markdown_table, write_results

CORPUS = "/usr/share/doc/python3.11/html/_sources"
MODES = ["none", "fixed", "oracle", "hard", "straight_through", "soft"]


def _ms(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=48)
    ap.add_argument("--sentences-per-document", type=int, default=30)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--val-fraction", type=float, default=0.25)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--train-windows", type=int, default=96)
    ap.add_argument("--val-windows", type=int, default=24)
    ap.add_argument("--layers", type=int, default=2, help="conditioned top blocks")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--name", default="planner")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("benchmarks.planner")
    torch.manual_seed(0)

    from fuse.models.loading import load
    from fuse.planner import (ActionCodebook, PlannerLM, TrainConfig, build_data, embed_documents, evaluate, load_corpus,
                              split_documents, train)

    t_setup = time.perf_counter()
    docs = load_corpus(CORPUS, pattern="*.rst.txt", max_documents=args.documents,
                       max_sentences_per_document=args.sentences_per_document, seed=0)
    train_docs, val_docs = split_documents(docs, val_fraction=args.val_fraction, seed=0)
    encoder = load("bundled:minilm-l6")
    t = time.perf_counter()
    train_emb = embed_documents(encoder, train_docs, batch_size=64)
    val_emb = embed_documents(encoder, val_docs, batch_size=64)
    embed_s = time.perf_counter() - t
    del encoder
    codebook = ActionCodebook.fit(torch.cat(train_emb), args.k, seed=0, encoder="bundled:minilm-l6")
    lm = load("bundled:smollm2-135m")
    train_data = build_data(train_docs, lm.tokenizer, train_emb, codebook, max_tokens=args.max_tokens,
                            max_windows=args.train_windows, seed=0)
    val_data = build_data(val_docs, lm.tokenizer, val_emb, codebook, max_tokens=args.max_tokens,
                          max_windows=args.val_windows, seed=0)
    counts = Counter(int(x) for lab in train_data.labels for x in lab)
    fixed_action = counts.most_common(1)[0][0]
    val_labels = [int(x) for lab in val_data.labels for x in lab]
    majority_acc = sum(x == fixed_action for x in val_labels) / len(val_labels)

    probe = PlannerLM.build(lm, codebook, mode="none", n_layers=args.layers, seed=0)
    b = train_data.collate([0, 1], max_sentences=64)
    if not probe.conditioned.check_start_layer(b.input_ids, b.attention_mask):
        raise SystemExit("starting from cached hidden states does not reproduce SmolLM2's logits")
    t = time.perf_counter()
    train_data.cache_hidden(probe.conditioned, batch_size=8)
    val_data.cache_hidden(probe.conditioned, batch_size=8)
    cache_s = time.perf_counter() - t
    base = evaluate(probe, val_data, batch_size=8)  # zero-initialised bias, no actions: exactly the base model
    setup_s = time.perf_counter() - t_setup
    log.info("setup %.0f s (embed %.0f s, cache %.0f s); base ppl %.3f; %d/%d windows, %d/%d tokens",
             setup_s, embed_s, cache_s, base.perplexity, len(train_data), len(val_data), train_data.n_tokens(),
             val_data.n_tokens())

    runs = []
    modes = args.modes.split(",")
    for seed in range(args.seeds):
        for mode in modes:
            model = PlannerLM.build(lm, codebook, mode=mode, tau=args.tau, fixed_action=fixed_action,
                                    n_layers=args.layers, seed=seed)
            cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=5, seed=seed,
                              restrict_vocab=True, eval_batch_size=8)
            res = train(model, train_data, cfg, val_data=val_data)
            runs.append({"mode": mode, "seed": seed, "val_perplexity": res.val.perplexity, "val_nll": res.val.nll,
                         "action_accuracy": res.val.action_accuracy, "train_seconds": res.seconds,
                         "first_train_nll": res.nll_history[0], "last_train_nll": res.nll_history[-1]})
            log.info("seed %d %-16s ppl %.3f acc %.3f  %.0f s", seed, mode, res.val.perplexity,
                     res.val.action_accuracy, res.seconds)

    summary = {}
    for mode in modes:
        rs = [r for r in runs if r["mode"] == mode]
        ppl, ppl_sd = _ms([r["val_perplexity"] for r in rs])
        acc, acc_sd = _ms([r["action_accuracy"] for r in rs])
        sec, _ = _ms([r["train_seconds"] for r in rs])
        summary[mode] = {"ppl_mean": ppl, "ppl_sd": ppl_sd, "acc_mean": acc, "acc_sd": acc_sd, "train_s_mean": sec}

    def paired(a, b):
        d = [ra["val_perplexity"] - rb["val_perplexity"]
             for ra in runs if ra["mode"] == a for rb in runs if rb["mode"] == b and rb["seed"] == ra["seed"]]
        return _ms(d), sum(x < 0 for x in d), len(d)

    comparisons = {}
    if "soft" in modes:
        for other in ("hard", "none", "straight_through", "fixed"):
            if other in modes:
                (m, sd), wins, n = paired("soft", other)
                comparisons[f"soft_minus_{other}"] = {"mean": m, "sd": sd, "soft_better_seeds": wins, "seeds": n,
                                                      "ratio": summary["soft"]["ppl_mean"] / summary[other]["ppl_mean"]}

    # -- tables and plot
    ref = summary.get("none", {}).get("ppl_mean", base.perplexity)
    rows = [["base SmolLM2 (no training)", base.perplexity, "-", "-", "-", "-"]]
    for mode in modes:
        s = summary[mode]
        acc = "-" if s["acc_mean"] != s["acc_mean"] else f"{s['acc_mean']:.3f} ± {s['acc_sd']:.3f}"
        rows.append([mode, s["ppl_mean"], f"± {s['ppl_sd']:.3f}", s["ppl_mean"] / ref, acc, s["train_s_mean"]])
    table = markdown_table(["mode", "val perplexity (mean)", "sd over seeds", "ratio to no planner",
                            "planner action accuracy", "train s / run"], rows)
    per_seed = markdown_table(["mode", "seed", "val ppl", "action acc", "train s"],
                              [[r["mode"], r["seed"], r["val_perplexity"], r["action_accuracy"], r["train_seconds"]] for r in runs])
    comp_rows = [[k.replace("_minus_", " − "), v["mean"], v["sd"], f"{v['soft_better_seeds']}/{v['seeds']}", v["ratio"]]
                 for k, v in comparisons.items()]
    comp = markdown_table(["paired difference (val ppl)", "mean", "sd", "seeds where soft is lower", "ppl ratio"], comp_rows)
    verdict = _verdict(comparisons)
    md = (f"Corpus: Python 3.11 documentation reST sources (Debian `python3.11-doc`, PSF licence), {len(docs)} documents "
          f"(seeded subset, first {args.sentences_per_document} sentences each), split by document: "
          f"{len(train_docs)} train / {len(val_docs)} validation. Backbone: SmolLM2-135M (frozen), top {args.layers} "
          f"blocks conditioned. K = {args.k} actions (MiniLM + k-means). {len(train_data)} train windows "
          f"({train_data.n_tokens()} tokens), {len(val_data)} validation windows ({val_data.n_tokens()} tokens), "
          f"≤ {args.max_tokens} tokens each. {args.steps} steps × batch {args.batch_size} per run, lr {args.lr}, "
          f"τ = {args.tau}, {args.seeds} seeds. Training softmax restricted to the training windows' token ids; "
          f"validation perplexity uses the full softmax. Planner majority-action accuracy on validation: "
          f"{majority_acc:.3f}.\n\n"
          f"**Scale warning:** this is a tiny run sized for a shared 2-core CPU (setup {setup_s:.0f} s); see docs/planner.md.\n\n"
          f"{table}\n\n{comp}\n\n{verdict}\n\n<details><summary>per seed</summary>\n\n{per_seed}\n\n</details>\n")
    plot = _plot(summary, modes, base.perplexity, RESULTS / f"{args.name}.png")
    figures = {"runs": runs, "summary": summary, "comparisons": comparisons, "base_perplexity": base.perplexity,
               "majority_action_accuracy": majority_acc, "setup_seconds": setup_s, "embed_seconds": embed_s,
               "cache_seconds": cache_s, "verdict": verdict, "plot": plot}
    config = {**vars(args), "corpus": CORPUS, "corpus_licence": "PSF (Python Software Foundation License)",
              "backbone": "bundled:smollm2-135m", "encoder": "bundled:minilm-l6", "fixed_action": fixed_action,
              "train_documents": len(train_docs), "val_documents": len(val_docs), "train_windows": len(train_data),
              "val_windows": len(val_data), "train_tokens": train_data.n_tokens(), "val_tokens": val_data.n_tokens(),
              "restrict_vocab": True, "split_seed": 0, "kmeans_seed": 0}
    path = write_results(args.name, config=config, seed=list(range(args.seeds)), figures=figures, markdown=md,
                         extra_packages=["scikit-learn", "matplotlib"])
    print(md)
    print(f"wrote {path}")
    return 0


def _verdict(c: dict) -> str:
    parts = []
    for other, label in (("hard", "predicted hard actions"), ("none", "no planner")):
        v = c.get(f"soft_minus_{other}")
        if v is None:
            continue
        better = v["mean"] < 0
        sig = v["seeds"] > 1 and abs(v["mean"]) > 2 * v["sd"] / v["seeds"] ** 0.5
        parts.append(f"The joint soft mixture {'beats' if better else 'does not beat'} {label} on validation perplexity "
                     f"by {abs(v['mean']):.3f} ({'lower' if better else 'higher'}; paired mean ± sd {v['mean']:.3f} ± "
                     f"{v['sd']:.3f} over {v['seeds']} seeds, lower in {v['soft_better_seeds']}/{v['seeds']}; "
                     f"{'beyond' if sig else 'within'} 2 standard errors).")
    return " ".join(parts)


def _plot(summary, modes, base_ppl, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    means = [summary[m]["ppl_mean"] for m in modes]
    sds = [summary[m]["ppl_sd"] for m in modes]
    ax.bar(modes, means, yerr=sds, capsize=4, color=["#999", "#bbb", "#4a4", "#c66", "#c96", "#36c"][: len(modes)])
    ax.axhline(base_ppl, color="k", ls="--", lw=1, label="base SmolLM2")
    lo = min(min(means) - 2 * max(sds + [0.0]), base_ppl) * 0.97
    ax.set_ylim(lo, max(means + [base_ppl]) * 1.02)
    ax.set_ylabel("validation perplexity")
    ax.set_title("Planner-conditioned SmolLM2 (mean ± sd over seeds)")
    ax.legend()
    plt.xticks(rotation=20)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


if __name__ == "__main__":
    raise SystemExit(main())
