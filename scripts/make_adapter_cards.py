"""Write the adapter catalogue under adapters/: one folder per bundled pair with its config and card.

Each card's quality figures come from ``benchmarks/results/alignment.json`` (held-out words); the
config is the one ``fuse adapter build`` writes (weights are not committed: they are rebuilt on
first use into the cache). Run: ``python scripts/make_adapter_cards.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fuse.models.adapter_cache import cached_adapter
from fuse.models.loading import load

ROOT = Path(__file__).resolve().parents[1]


def main():
    results = json.loads((ROOT / "benchmarks/results/alignment.json").read_text())["figures"]
    models = {}
    for pair, methods in results.items():
        src, tgt = [x.strip() for x in pair.split("→")]
        for n in (src, tgt):
            models.setdefault(n, load(n))
        ad = cached_adapter(models[src], models[tgt], n_words=8000, k=8, lam=1e-3, scheme="padded", seed=0)
        folder = ROOT / "adapters" / f"{src.split(':')[1]}--{tgt.split(':')[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in vars(ad.config).items() if k != "fit_seconds"}
        (folder / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        rows = "\n".join(
            f"| {m} | {s['lam'] if s['lam'] is not None else '-'} | {s['rel_error']:.3f} | "
            f"{s.get('top1_slices', float('nan')):.3f} | {s['top1_mean']:.3f} |"
            for m, s in methods.items() if isinstance(s, dict))
        (folder / "README.md").write_text(f"""# Adapter card: {src} → {tgt}

t-product adapter, padded scheme, k = 8, λ = 1e-3 (relative), fitted in closed form on 8,000
frequent English words (`wordfreq`, seed 0); the 2,000 held-out words of that split were never
fitted. Weights are not committed: they are rebuilt deterministically on first use and cached.

Rebuild: `fuse adapter build {src} {tgt} --words 8000 --k 8 --lam 1e-3 --seed 0 --out DIR`
(or `fuse.models.adapter_cache.cached_adapter(source, target, n_words=8000, k=8, lam=1e-3, scheme="padded", seed=0)`).
`adapter_config.json` records both tokenizers' vocabulary hashes: loading against other tokenizers fails.

Held-out quality, from `benchmarks/results/alignment.json` (λ per method chosen on validation words):

| method | λ | rel. error | top-1 (slices) | top-1 (mean-pooled) |
|---|---|---|---|---|
{rows}
""")
        print("wrote", folder)


if __name__ == "__main__":
    main()
