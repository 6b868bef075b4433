"""Same results before and after an engine change: the best texts and exact losses of fixed runs, as JSON lines.

Runs, on the bundled models with one torch thread (CPU float32):
- ``engine_peer``: fuse GCG on the engine_peer tasks at 10×64 (SmolLM2, 20 free tokens, nanoGCG's init);
- ``inversion``: one inversion target (SmolLM2 fluency + MiniLM similarity) for GCG, AutoDAN + beam 4, PEZ and
  random search at 128 evaluations, through ``fuse.optimize``;
- ``caption``: one skimage photo captioned with the default search and the bundled scorer;
- ``cli``: ``fuse optimize`` (GCG and AutoDAN) on the default CLI chain, through the CLI's code path.

Run it on two commits and diff the outputs (``fuse demo``'s output is diffed separately)::

    OMP_NUM_THREADS=1 python -m benchmarks.same_results > before.jsonl   # on the old commit
    OMP_NUM_THREADS=1 python -m benchmarks.same_results > after.jsonl    # on the new one
    diff before.jsonl after.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from fuse.models.loading import load  # noqa: E402
from fuse.objectives import Continuation, Fluency, Similarity  # noqa: E402
from fuse.optim import AutoDANConfig, GCGConfig, PEZConfig, RandomSearchConfig, optimize  # noqa: E402
from fuse.optim.chain import Chain  # noqa: E402

PARTS = ("engine_peer", "inversion", "caption", "cli")


def emit(part: str, name: str, text, loss, evaluations=None) -> None:
    print(json.dumps({"part": part, "run": name, "text": text, "loss": loss, "evaluations": evaluations},
                     ensure_ascii=False), flush=True)


def engine_peer(smol, n_tasks: int) -> None:
    from benchmarks.engine_peer import INIT_TEXT, N_TOKENS, TASKS, TOP_K

    for i, (prompt, target) in enumerate(TASKS[:n_tasks]):
        chain = Chain(smol, [(Continuation(smol, target), 1.0)])
        res = optimize(chain, GCGConfig(n_tokens=N_TOKENS, prefix=prompt, budget=640, batch_size=64, top_k=TOP_K,
                                        seed=i, init_text=INIT_TEXT))
        emit("engine_peer", f"task{i}", res.best_text, res.best_loss, res.evaluations)


def inversion(smol, minilm) -> None:
    from benchmarks.inversion import SETTINGS, TARGETS

    target = TARGETS[0]
    chain = Chain(smol, [(Fluency(smol), 0.1), (Similarity(minilm, target), 1.0)])
    for name, (cls, opts) in SETTINGS.items():
        opts = dict(opts)
        if cls is AutoDANConfig:
            opts["batch_size"] = 128 // 12
        res = optimize(chain, cls(n_tokens=12, budget=128, seed=0, **opts))
        emit("inversion", name, res.best_text, res.best_loss, res.evaluations)


def caption(smol) -> None:
    import skimage.data

    from fuse.captioning import DEFAULT_CONFIG
    from fuse.captioning import caption as run_caption

    (c,) = run_caption([skimage.data.rocket()], lm=smol, config=DEFAULT_CONFIG)
    emit("caption", "rocket", c.caption, c.loss, c.evaluations)


def cli() -> None:
    from fuse.cli import main

    for opt in ("gcg", "autodan"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["optimize", "--primary", "bundled:smollm2-135m", "--secondary", "bundled:minilm-l6:1.0",
                  "--target-text", "a sailing ship at sea", "--budget", "96", "--batch-size", "16", "--n-tokens", "6",
                  "--optimizer", opt, "--seed", "0", "--json"])
        res = json.loads(out.getvalue().strip().splitlines()[-1])
        emit("cli", opt, res.get("best_text"), res.get("best_loss"), res.get("evaluations"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--tasks", type=int, default=7, help="engine_peer tasks")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    smol = load("bundled:smollm2-135m")
    minilm = load("bundled:minilm-l6") if "inversion" in a.parts else None
    if "engine_peer" in a.parts:
        engine_peer(smol, a.tasks)
    if "inversion" in a.parts:
        inversion(smol, minilm)
    if "caption" in a.parts:
        caption(smol)
    if "cli" in a.parts:
        cli()


if __name__ == "__main__":
    main()
