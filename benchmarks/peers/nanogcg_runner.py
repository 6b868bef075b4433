"""Run nanoGCG on one task; executed by ``benchmarks/engine_peer.py`` inside ``benchmarks/.venvs/nanogcg``.

This script never imports fuse (its environment has transformers 4.47.1, which nanoGCG 0.3.0 pins).

Usage: ``python nanogcg_runner.py TASK.json OUT.json``. The task is
``{"model_dir", "prompt", "target", "steps", "width", "seed", "init", "check"}``: the SmolLM2 folder
fuse caches (safetensors + tokenizer.json), the prompt, the continuation target, the number of
steps, candidates per step (nanoGCG's ``search_width``), the seed and the initial optimized string.

The tokenizer gets a trivial chat template (the message's content, nothing else) so that the model
sees ``tok(prompt) + optim_ids + tok(target)``; ``add_space_before_target=False`` (the target
carries its own leading space); every other nanoGCG option keeps its default (topk 256,
n_replace 1, buffer 0, prefix cache on, filter_ids on, no early stop).

Written to OUT.json: the best string and nanoGCG's own loss of it, the per-step losses and
strings, the evaluations (candidates whose loss was computed, the initial string included) and
the process's CPU seconds after each step, wall time of ``GCG.run`` and its split into gradient,
candidate scoring and the rest (sampling, filtering, bookkeeping), and in check mode the token ids
of the sequence nanoGCG builds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast  # noqa: E402

import nanogcg.gcg  # noqa: E402
from nanogcg.gcg import GCG, GCGConfig  # noqa: E402

TEMPLATE = "{{ messages[0]['content'] }}"


def load_config(model_dir: Path):
    """The model config as transformers 5 meant it.

    transformers 5 writes RoPE settings as ``"rope_parameters": {"rope_theta": ..., "rope_type": ...}``;
    4.47.1 reads only a top-level ``rope_theta`` and would silently fall back to 10,000 (SmolLM2
    uses 100,000): a different model. Copy the values across; refuse RoPE types we do not map.
    """
    config = AutoConfig.from_pretrained(model_dir)
    raw = json.loads((model_dir / "config.json").read_text())
    rope = raw.get("rope_parameters")
    if rope:
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_parameters {rope} need a mapping to transformers 4.47.1's rope_scaling")
        config.rope_theta = float(rope["rope_theta"])
        config.rope_scaling = None
    return config


def load(model_dir: Path):
    """The model in float32 and its tokenizer read from tokenizer.json (transformers 5 wrote the
    folder's tokenizer_config.json with a class 4.47.1 does not know)."""
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    special = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(cfg.get(k), str)}
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), **special)
    tok.chat_template = TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=load_config(model_dir),
                                                 torch_dtype=torch.float32).eval()
    model.requires_grad_(False)
    return model, tok


def ids_of_embeds(embeds: torch.Tensor, weight: torch.Tensor) -> list[int]:
    """Token ids whose embedding rows are exactly ``embeds (1, L, d)`` (to read back what nanoGCG built)."""
    out = []
    for e in embeds[0]:
        d = (weight - e).abs().amax(1)
        i = int(d.argmin())
        if float(d[i]) != 0.0:
            raise RuntimeError("an embedding row matches no token exactly")
        out.append(i)
    return out


def main() -> None:
    task = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(1)
    model, tok = load(Path(task["model_dir"]))
    config = GCGConfig(num_steps=int(task["steps"]), search_width=int(task["width"]), optim_str_init=task["init"],
                       seed=int(task["seed"]), add_space_before_target=False, verbosity="WARNING")
    gcg = GCG(model, tok, config)
    nanogcg.gcg.logger.setLevel("WARNING")

    timers = {"gradient_s": 0.0, "candidates_s": 0.0}
    evals: list[int] = []  # candidates scored, per call of the scorer (first call: the initial string)
    stamps: list[float] = []  # process CPU time after each call of the scorer
    seen: dict = {}
    grad_fn, cand_fn = gcg.compute_token_gradient, gcg._compute_candidates_loss_original

    def gradient(optim_ids):
        seen.setdefault("first_optim_ids", optim_ids[0].tolist())
        t = time.perf_counter()
        out = grad_fn(optim_ids)
        timers["gradient_s"] += time.perf_counter() - t
        return out

    def candidates(search_batch_size, input_embeds):
        t = time.perf_counter()
        out = cand_fn(search_batch_size, input_embeds)
        timers["candidates_s"] += time.perf_counter() - t
        evals.append(int(input_embeds.shape[0]))
        stamps.append(time.process_time())
        if len(evals) == 1:
            seen["init_loss"] = float(out.min())
        return out

    gcg.compute_token_gradient, gcg._compute_candidates_loss_original = gradient, candidates
    t0, c0 = time.perf_counter(), time.process_time()
    result = gcg.run(task["prompt"], task["target"])
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    cumulative, n = [], 0
    for e in evals:
        n += e
        cumulative.append(n)
    best, curve = seen["init_loss"], []
    for loss, ev, cpu in zip(result.losses, cumulative[1:], stamps[1:]):
        best = min(best, float(loss))
        curve.append({"evaluations": ev, "best_loss": best, "step_loss": float(loss), "cpu_seconds": cpu - c0})
    out = {
        "best_string": result.best_string,
        "best_loss_own": float(result.best_loss),
        "init_loss_own": seen["init_loss"],
        "losses": [float(x) for x in result.losses],
        "strings": list(result.strings),
        "history": curve,
        "evaluations": cumulative[-1],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "gradient_s": timers["gradient_s"],
        "candidates_s": timers["candidates_s"],
        "other_s": seconds - timers["gradient_s"] - timers["candidates_s"],
        "steps": len(result.losses),
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "nanogcg": _version("nanogcg"),
                     "tokenizers": _version("tokenizers")},
    }
    if task.get("check"):
        w = gcg.embedding_layer.weight
        out["sequence_ids"] = (ids_of_embeds(gcg.before_embeds, w) + seen["first_optim_ids"]
                               + ids_of_embeds(gcg.after_embeds, w) + gcg.target_ids[0].tolist())
        out["target_ids"] = gcg.target_ids[0].tolist()
    Path(sys.argv[2]).write_text(json.dumps(out))


def _version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
