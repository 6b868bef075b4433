"""``fuse planner``: train a planner-conditioned LM on a corpus, and generate with it."""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


def _train_flags():
    from fuse.cli.options import ConfigFlags, Flag
    from fuse.planner.train import TrainConfig

    return ConfigFlags([TrainConfig], flags={
        # the command trains with the restricted softmax and shows its bars (the dataclass: full softmax, no bars)
        "restrict_vocab": Flag(("--full-softmax",), invert=True, default=True,
                               help="train with the full-vocabulary softmax (slower)"),
        "seed": Flag(help="seeds the corpus split, the k-means actions, the batches and the Gumbel noise"),
        "mix": Flag(skip=True), "progress": Flag(skip=True)})


TRAIN_OPTIONS = _train_flags()


def _train_config(parser, args) -> None:
    """``args.config``: the TrainConfig of the flags, its mix from --mix-start/--mix-steps."""
    from fuse.planner import MixSchedule, TrainConfig

    try:
        mix = MixSchedule(args.mix_start, 0.0, args.mix_steps)
    except ValueError as e:
        parser.error(f"argument --mix-start/--mix-steps: {e}")
    args.config = TRAIN_OPTIONS.build(TrainConfig, TRAIN_OPTIONS.given(args), parser, mix=mix, progress=True)


def register(sub) -> None:
    from fuse.cli.options import after_parse

    p = sub.add_parser("planner", help="planner-conditioned language models (sentence actions steer an LM)")
    ps = p.add_subparsers(dest="planner_command", required=True)

    t = ps.add_parser("train", help="embed sentences, fit k-means actions, train planner + conditioned LM")
    t.add_argument("--corpus", required=True, help="a text/reST file (documents separated by '---' lines) or a folder")
    t.add_argument("--pattern", default="*", help="file glob inside a corpus folder (e.g. '*.rst.txt')")
    t.add_argument("--out", required=True, help="folder for the trained model (safetensors + JSON)")
    t.add_argument("--model", default="bundled:smollm2-135m", help="causal LM backbone")
    t.add_argument("--encoder", default="bundled:minilm-l6", help="sentence encoder for the actions")
    t.add_argument("--mode", default="soft", choices=["none", "fixed", "oracle", "hard", "straight_through", "gumbel", "soft"])
    t.add_argument("--k", type=int, default=64, help="number of actions (k-means clusters)")
    t.add_argument("--layers", type=int, default=4, help="condition this many top decoder blocks")
    t.add_argument("--tau", type=float, default=1.0)
    t.add_argument("--max-tokens", type=int, default=128)
    t.add_argument("--max-documents", type=int, default=None)
    t.add_argument("--max-windows", type=int, default=None)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--mix-start", type=float, default=0.0, help="oracle share at step 0 (predicted modes)")
    t.add_argument("--mix-steps", type=int, default=0, help="steps over which the oracle share falls to 0")
    t.add_argument("--lora-rank", type=int, default=0, help="> 0: LoRA on the conditioned blocks (needs peft)")
    TRAIN_OPTIONS.add_to(t, "training", "fuse.planner.TrainConfig (--mix-start/--mix-steps make its mix)")
    t.set_defaults(func=run_train)
    after_parse(t, _train_config)

    g = ps.add_parser("generate", help="continue a prompt with a trained planner-conditioned LM")
    g.add_argument("--model-dir", required=True, help="folder written by `fuse planner train`")
    g.add_argument("--model", default=None, help="backbone (default: the one it was trained on)")
    g.add_argument("--encoder", default=None, help="sentence encoder (default: the codebook's)")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=60)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=run_generate)


def run_train(args) -> int:
    import torch

    from fuse.models.loading import load
    from fuse.planner import (ActionCodebook, PlannerLM, build_data, embed_documents, load_corpus, split_documents,
                              train)

    docs = load_corpus(args.corpus, pattern=args.pattern, max_documents=args.max_documents, seed=args.seed)
    if len(docs) >= 2:
        train_docs, val_docs = split_documents(docs, val_fraction=args.val_fraction, seed=args.seed)
    else:
        train_docs, val_docs = docs, []
    encoder = load(args.encoder)
    train_emb = embed_documents(encoder, train_docs, progress=True)
    codebook = ActionCodebook.fit(torch.cat(train_emb), args.k, seed=args.seed, encoder=args.encoder)
    lm = load(args.model)
    train_data = build_data(train_docs, lm.tokenizer, train_emb, codebook, max_tokens=args.max_tokens,
                            max_windows=args.max_windows, seed=args.seed, progress=True)
    val_data = None
    if val_docs:
        val_data = build_data(val_docs, lm.tokenizer, embed_documents(encoder, val_docs, progress=True), codebook,
                              max_tokens=args.max_tokens, seed=args.seed)
    counts = torch.bincount(torch.cat(train_data.labels), minlength=codebook.k)
    model = PlannerLM.build(lm, codebook, mode=args.mode, tau=args.tau, fixed_action=int(counts.argmax()),
                            n_layers=args.layers, lora_rank=args.lora_rank, seed=args.seed)
    if not args.lora_rank:
        b = train_data.collate([0], max_sentences=model.planner.config.max_sentences)
        if model.conditioned.check_start_layer(b.input_ids, b.attention_mask):
            train_data.cache_hidden(model.conditioned, batch_size=args.batch_size, progress=True)
            if val_data is not None:
                val_data.cache_hidden(model.conditioned, batch_size=args.batch_size, progress=True)
    cfg = args.config  # built and validated from the flags while parsing
    res = train(model, train_data, cfg, val_data=val_data, checkpoint_dir=args.out)
    out = {"out": args.out, "mode": args.mode, "steps": res.steps, "train_seconds": round(res.seconds, 1),
           "final_train_nll": res.nll_history[-1]}
    if res.val is not None:
        out.update(val_perplexity=res.val.perplexity, val_action_accuracy=res.val.action_accuracy)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def run_generate(args) -> int:
    import json as _json
    from pathlib import Path

    from fuse.models.loading import load
    from fuse.planner.generate import generate
    from fuse.planner.model import MODEL_JSON, PlannerLM

    cfg_path = Path(args.model_dir) / MODEL_JSON
    if not cfg_path.is_file():
        raise ValueError(f"{args.model_dir} holds no planner LM ({MODEL_JSON} missing); train one with `fuse planner train`")
    cfg = _json.loads(cfg_path.read_text())
    lm = load(args.model or cfg["backbone"])
    model = PlannerLM.load(args.model_dir, lm)
    encoder = load(args.encoder or cfg["codebook"]["encoder"])
    print(args.prompt + generate(model, encoder, args.prompt, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, seed=args.seed, progress=True))
    return 0
