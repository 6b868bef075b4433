"""Row pairing on real Japanese and Chinese sentences: does every gradient row pair the same characters?

For each sentence (Debian manpages-ja / manpages-zh, :mod:`benchmarks.cjk_text`) and each direction
SmolLM2 ↔ Gemma-3, the bridge's plan is built exactly as :meth:`fuse.core.bridge.Bridge.plan` does
(decode the source ids, re-tokenize with the target, align, cut into rows) for each unit. A row is
*same-bytes* when the non-space characters its source tokens cover equal those its target tokens
cover (recomputed here from the offsets, not read from the plan) and it has ≤ k tokens each side.

Run: ``python -m benchmarks.nospace_rows [--sentences 600]`` (needs manpages-ja, manpages-zh).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from benchmarks.cjk_text import sentences
from benchmarks.common import markdown_table, write_results
from fuse.core.bridge import make_plan
from fuse.core.units import UNITS, covered_chars
from fuse.core.words import align, group_ids
from fuse.models.loading import load

MODELS = ["bundled:smollm2-135m", "bundled:gemma3-270m"]
K = 8


def measure(src, tgt, texts, unit, k=K):
    rows = same = tokens = covered_tokens = 0
    per_sentence = []
    for text in texts:
        ids = src.tokenizer(text)["input_ids"]
        a, b = align(group_ids(src.tokenizer, ids), tgt.tokenizer)
        plan = make_plan(a, b, k, unit)
        R = plan.src_idx.shape[0]
        per_sentence.append(R)
        for r in range(R):
            ps = [p for p in plan.src_idx[r].tolist() if p >= 0]
            pt = [p for p in plan.tgt_idx[r].tolist() if p >= 0]
            ok = (covered_chars(a.text, a.offsets, ps) == covered_chars(a.text, b.offsets, pt)
                  and 1 <= len(ps) <= k and 1 <= len(pt) <= k)
            rows += 1
            same += ok and bool(plan.exact[r])
        n_src = sum(1 for w in a.word_of_token if w >= 0)
        tokens += n_src
        covered_tokens += int((plan.src_idx >= 0).sum())
    return {"sentences": len(texts), "rows": rows, "same_bytes_rows": same, "same_bytes_frac": same / max(rows, 1),
            "rows_per_sentence_mean": statistics.mean(per_sentence), "rows_per_sentence_min": min(per_sentence),
            "source_tokens_routed_frac": covered_tokens / max(tokens, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sentences", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--units", nargs="*", default=list(UNITS))
    p.add_argument("--ks", type=int, nargs="*", default=[8, 12], help="k values (12: the default for ja/zh adapters)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("fuse.core.bridge").setLevel(logging.ERROR)  # counted below instead of logged per span
    models = {n: load(n) for n in MODELS}
    figures, rows = {}, []
    for lang in ("ja", "zh"):
        texts = sentences(lang, args.sentences, args.seed)
        for sname, tname in (MODELS, MODELS[::-1]):
            for k in args.ks:
                for unit in args.units:
                    t0 = time.perf_counter()
                    f = measure(models[sname], models[tname], texts, unit, k)
                    f["seconds"] = time.perf_counter() - t0
                    key = f"{lang} {sname} → {tname} {unit} k={k}"
                    figures[key] = f
                    logging.info("%s: %.4f same-bytes rows, %.1f rows/sentence", key, f["same_bytes_frac"],
                                 f["rows_per_sentence_mean"])
                    rows.append([lang, f"{sname} → {tname}", k, unit, f["sentences"], f["rows"], f["same_bytes_frac"],
                                 f["rows_per_sentence_mean"], f["rows_per_sentence_min"],
                                 f["source_tokens_routed_frac"]])
    md = markdown_table(["lang", "direction", "k", "unit", "sentences", "rows", "same-bytes rows (≤ k each side)",
                         "rows / sentence", "min rows", "source tokens routed"], rows)
    md += (f"\n\nReal sentences from Debian manpages-ja / manpages-zh (8–120 characters, distinct, seeded sample). "
           "A row counts when its source and target tokens cover the same non-space characters (hence the "
           "same bytes) and it has 1..k tokens on each side; position chunks of a longer unit never count. "
           "*source tokens routed*: the share of the source's word tokens that are in some row (the rest get no "
           "gradient through the bridge).\n")
    write_results("nospace_rows", config=vars(args) | {"models": MODELS}, seed=args.seed, figures=figures,
                  markdown=md, extra_packages=["fugashi", "unidic-lite", "jieba"])
    print(md)


if __name__ == "__main__":
    main()
