"""``fuse demo``: the main job on the bundled real models."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: adapters between bundled models, their quality, a bridged gradient, three zero-shot captions")
    p.add_argument("--words", type=int, default=8000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-captions", action="store_true", help="skip captioning three skimage photos (about 2 min on 2 cores)")
    p.add_argument("--no-span", action="store_true", help="skip optimizing one span for both bundled LMs (about 45 s)")
    p.add_argument("--caption-tokens", type=int, default=8, help="caption length in tokens after 'An image of'")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from fuse.models.adapter_cache import cached_adapter
    from fuse.core.bridge import Bridge
    from fuse.core.evaluation import evaluate_adapter
    from fuse.models.loading import load
    from fuse.core.wordlist import split_words

    smol, minilm = load("bundled:smollm2-135m"), load("bundled:minilm-l6")
    held = split_words(args.words, 2000, args.seed).holdout
    print("Adapters between bundled models (fitted on wordfreq words; scored on 2,000 held-out words):")
    for src, tgt in ((smol, minilm), (minilm, smol)):
        ad = cached_adapter(src, tgt, n_words=args.words, seed=args.seed, progress=True)
        s = evaluate_adapter(ad, src, tgt, held)
        print(f"  {src.name:>22} → {tgt.name:<22} rel. error {s.rel_error:.3f}  top-1 {s.top1:6.1%}  top-10 {s.top10:6.1%}")

    # a MiniLM similarity sends gradients to SmolLM2's prompt tokens
    ad = cached_adapter(smol, minilm, n_words=args.words, seed=args.seed)
    prompt = "An image of a small boat on a calm lake"
    ids = torch.tensor(smol.tokenizer(prompt)["input_ids"])
    x = smol.embed(ids).detach().requires_grad_()
    out = Bridge(smol, minilm, ad)(ids, x)
    target = minilm.embed_text("a sailing ship at sea").detach()[0]
    loss = minilm.cosine_loss(out.inputs_embeds[None], target)[0]
    loss.backward()
    print(f"\nMiniLM 1 − cos({prompt!r}, 'a sailing ship at sea') = {loss.item():.4f}")
    print("gradient norm reaching each SmolLM2 word:")
    for w, pos in zip(out.plan.source.words, out.plan.source.positions()):
        print(f"  {w:>10}  {x.grad[pos].norm().item():.4f}")
    if not args.no_span:
        one_span(smol, args)
    if not args.no_captions:
        caption_photos(smol, args)
    return 0


#: the span demo's chat prompt and target (the first task of benchmarks/tasks/transfer.json)
SPAN_PROMPT, SPAN_TARGET, SPAN_INIT = [{"role": "user", "content": "Name one color{optim_str}"}], "Purple", " x" * 12


def one_span(smol, args) -> None:
    """One 12-token span that makes both bundled LMs answer a chat prompt with a target (:func:`fuse.optimize_prompt`).

    Gemma-3's tokens are optimized and SmolLM2's gradient reaches them through the adapter (the better primary of
    the two on the transfer benchmark); each model renders the chat with its own template. One torch thread, so the
    lines are the same on any machine with the same package versions."""
    import torch

    from fuse.models.loading import load
    from fuse.models.templates import GEMMA_CHAT_TEMPLATE
    from fuse.optim import GCGConfig, PromptChain, optimize

    gemma = load("bundled:gemma3-270m")
    config = GCGConfig(n_tokens=12, budget=256, batch_size=32, top_k=256, init_text=SPAN_INIT, seed=args.seed,
                       progress=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chain = PromptChain([gemma, smol], [(SPAN_PROMPT, SPAN_TARGET)], chat_templates={gemma.name: GEMMA_CHAT_TEMPLATE})
        res = optimize(chain, config)
        print(f"\nOne span for both LMs (GCG on Gemma-3's tokens, SmolLM2's gradient bridged; {config.budget} exact "
              f"evaluations, batch {config.batch_size}, seed {config.seed}), each in its own chat template:")
        print(f"  user: {SPAN_PROMPT[0]['content']!r}  assistant target: {SPAN_TARGET!r}")
        print(f"  span {res.best_free_text!r}")
        start = gemma.tokenizer(SPAN_INIT, add_special_tokens=False)["input_ids"]
        for label, text, ids in (("start", SPAN_INIT, start), ("found", res.best_free_text, res.best_free_ids)):
            spans = chain.span_ids([text], [ids])
            ev = chain.evaluate_ids([ids])
            for i, term in enumerate(chain.terms):
                obj = term.objective
                m = obj.backbone
                prompt = torch.tensor([obj.full_ids(spans[obj.model][0])], device=m.device)
                with torch.no_grad():
                    out = m.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4,
                                           do_sample=False, pad_token_id=m.tokenizer.eos_token_id)
                reply = m.tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
                print(f"  {label}: {m.name:<22} target CE {float(ev.parts[0, i]):.3f}  greedy reply {reply!r}")
            print(f"  {label}: mean target CE {float(ev.total[0]):.3f}")
    finally:
        torch.set_num_threads(before)


PHOTOS = ("astronaut", "chelsea", "coffee")


def caption_photos(smol, args) -> None:
    """Zero-shot captions of skimage's photos: SmolLM2 writes, the bundled image–text scorer guides it.

    The search runs with one torch thread (``CaptionConfig.num_threads``), so these captions are the
    same on every machine with the same package versions, whatever its core count."""
    try:
        import skimage.data
    except ImportError:
        print("\n(captions skipped: scikit-image is not installed; `pip install scikit-image` or scripts/install.sh)")
        return
    from dataclasses import replace

    from fuse.captioning import DEFAULT_CONFIG, caption

    search = DEFAULT_CONFIG.optim  # the default search of `fuse caption`, at --caption-tokens × its candidates per step
    search = replace(search, n_tokens=args.caption_tokens, budget=args.caption_tokens * search.batch_size, seed=args.seed)
    cfg = replace(DEFAULT_CONFIG, optim=search)
    images = [getattr(skimage.data, name)() for name in PHOTOS]
    print(f"\nZero-shot captions (SmolLM2 writes; bundled scorer: EfficientNet-Lite0's ImageNet classes in MiniLM's "
          f"text space; {search.n_tokens} tokens, AutoDAN + beam {search.beam_width}, {search.batch_size} candidates per "
          f"step, seed {search.seed}):")
    for name, c in zip(PHOTOS, caption(images, lm=smol, config=cfg, progress=True)):
        print(f"  skimage.data.{name:<10} {c.caption!r}  (image cos {c.image_score:.3f})")
