"""``fuse flow``: train CaLMFlow models and sample from them."""

from __future__ import annotations

import json
from pathlib import Path

from fuse.cli.options import ConfigFlags, Flag, after_parse, on_first_parse


def register(sub) -> None:
    p = sub.add_parser("flow", help="CaLMFlow flow models: train and sample")
    fsub = p.add_subparsers(dest="flow_command", required=True)

    t = fsub.add_parser("train", help="train a CaLMFlow on a toy task")
    t.add_argument("--data", default="8gaussians-moons",
                   help="task: SRC-TGT (8gaussians, moons, circles, checkerboard, normal), gaussians-<d>d, or text-2d")
    t.add_argument("--out", required=True, help="checkpoint folder")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--head", choices=["gaussian", "vae"], default=None)
    t.add_argument("--path-noise", type=float, default=None)
    t.add_argument("--hidden-size", type=int, default=None)
    t.add_argument("--layers", type=int, default=None)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)
    on_first_parse(t, _train_options)  # fuse.flow imports transformers: only when `fuse flow train` is parsed

    s = fsub.add_parser("sample", help="sample a trained CaLMFlow to an (n, dim) .npy file")
    s.add_argument("checkpoint")
    s.add_argument("--prompt", default=None, help="text prompt (text-conditioned models)")
    s.add_argument("-n", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--temperature", type=float, default=None)
    s.add_argument("--batch-size", type=int, default=2048)
    s.add_argument("--out", default="samples.npy")
    s.add_argument("--plot", default=None, help="PNG path (default: beside --out for 2D data)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run_sample)


def _train_options(t) -> None:
    """TrainConfig's fields as flags (--steps, --batch-size, --lr, --seed, --checkpoint-every, ...); ``args.config``."""
    from fuse.flow.train import TrainConfig

    options = ConfigFlags([TrainConfig], flags={  # the command checkpoints every 250 steps (the dataclass: at the end)
        "checkpoint_every": Flag(default=250, help="write a checkpoint every this many steps (0: only at the end)"),
        "seed": Flag(help="seeds the model's initialization, the batches and the noise")})
    options.add_to(t, "training", "fuse.flow.train.TrainConfig")
    after_parse(t, lambda parser, args: setattr(args, "config", options.build(TrainConfig, options.given(args), parser)))


def run_train(args) -> int:
    from fuse.flow import CaLMFlow, Task
    from fuse.flow.train import model_for_task, train

    task = Task.parse(args.data)
    cfg = args.config  # built and validated from the flags while parsing
    if args.resume:
        model = CaLMFlow.from_pretrained(args.out)
    else:
        overrides = {k: v for k, v in {"head": args.head, "path_noise": args.path_noise, "hidden_size": args.hidden_size,
                                       "n_layers": args.layers}.items() if v is not None}
        model = model_for_task(task, seed=args.seed, **overrides)
    result = train(model, task, cfg, out=args.out, resume=args.resume, progress=not args.no_progress)
    tail = result.losses[-50:]
    print(json.dumps({"out": str(args.out), "task": task.name, "steps": result.steps, "seconds": round(result.seconds, 1),
                      "final_loss": sum(tail) / max(1, len(tail))}, sort_keys=True))
    return 0


def run_sample(args) -> int:
    import numpy as np

    from fuse.flow import CaLMFlow, Task
    from fuse.flow.sample import draw, scatter_png

    model = CaLMFlow.from_pretrained(args.checkpoint)
    x = draw(model, args.n, prompt=args.prompt, seed=args.seed, temperature=args.temperature,
             batch_size=args.batch_size, progress=not args.no_progress).cpu().numpy().astype(np.float32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, x)
    plot = args.plot or (str(out.with_suffix(".png")) if x.shape[1] == 2 else None)
    if plot and x.shape[1] == 2:
        import torch

        task = Task.from_dict(model.config.task)
        ref = None
        if not task.labels:
            ref = task.sample_target(min(args.n, 10000), torch.Generator().manual_seed(args.seed + 7))
        scatter_png(x, plot, reference=ref, title=args.prompt or task.name)
    print(json.dumps({"samples": str(out), "shape": list(x.shape), "plot": plot}, sort_keys=True))
    return 0
