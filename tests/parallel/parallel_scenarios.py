"""What the 2-process tests run, both inside torchrun workers and in the test process (the one-process
reference): optimizers through DataParallelChain and a captioning job, on tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse.captioning import DEFAULT_CONFIG, Captioner
from fuse.captioning.scorers.image_text import ImageTextScorer
from fuse.captioning.scorers.lit import LiTConfig, LiTHeads
from fuse.captioning.vision.preprocess import Preprocess
from fuse.captioning.vision.tower import ImageTower
from fuse.core.adapter import TensorAdapter
from fuse.models.loading import load
from fuse.objectives import Continuation, Fluency, Similarity
from fuse.optim import make_optimizer
from fuse.optim.chain import Chain
from fuse.parallel import DataParallelChain, run_job
from tiny import WORDS, TinyNet, bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer

#: (optimizer, search, micro_batch): every optimizer, both searches, and the un-micro-batched split
RUNS = [("gcg", "greedy", 3), ("gcg", "beam", 3), ("random", "beam", 3), ("autodan", "beam", 3), ("pez", "greedy", 3),
        ("gcg", "greedy", None)]
IMAGES = [np.full((20, 30, 3), v, np.uint8) for v in (0, 60, 120, 180, 240)]
CAPTION = DEFAULT_CONFIG.override(n_tokens=3, batch_size=6, budget=18, beam_width=2, image_batch_size=2, seed=0)


def save_models(folder: Path) -> Path:
    """Save a tiny LM and encoder with their tokenizers under ``folder`` (every rank then loads the same
    files: WordPiece training is not reproducible across processes, as with a real checkpoint one saves)."""
    lm64 = tiny_causal_lm(bpe_tokenizer(), d=64, name="lm64")
    lm64.model.lm_head.weight.mul_(8)  # sharper next-token distributions: losses a prompt can move
    for name, m in (("lm", tiny_causal_lm(bpe_tokenizer(), d=16)), ("enc", tiny_encoder(wordpiece_tokenizer(), d=12)),
                    ("lm64", lm64)):
        m.model.save_pretrained(folder / name)
        m.tokenizer.save_pretrained(folder / name)
    return folder


def models(folder: Path):
    lm, enc = load(str(folder / "lm"), kind="causal_lm"), load(str(folder / "enc"), kind="encoder")
    return lm, enc, {enc.name: TensorAdapter.fit(lm, enc, words=WORDS, k=4)}


def optimize_all(lm, enc, adapters) -> dict:
    """Each run's result (exact floats) and the chain's evaluation of fixed texts, through DataParallelChain."""
    chain = Chain(lm, [(Fluency(lm), 1.0), (Similarity(enc, "a cat on a mat"), 2.0)], adapters=adapters)
    out = {}
    for name, search, micro in RUNS:
        dp = DataParallelChain(chain, micro_batch=micro)
        opt = make_optimizer(name, dp, n_tokens=3, prefix="An image of", budget=40 if name != "pez" else 8,
                             batch_size=8, search=search, beam_width=2, seed=1)
        r = opt.run()
        out[f"{name}-{search}-{micro}"] = dict(text=r.best_text, ids=r.best_ids, loss=r.best_loss, losses=r.losses,
                                               evaluations=r.evaluations, history=r.history, stopped=r.stopped)
    folder = lm.name.rsplit("/", 1)[0]
    out["gcg-center"] = center_run(folder)
    out["autodan-recorded"] = recorded_run(folder)
    out["prompt-chain"] = prompt_chain_run(lm, folder)
    texts = [" ".join(WORDS[i : i + 1 + i % 5]) for i in range(11)]
    ev = DataParallelChain(chain, micro_batch=3).evaluate(texts)
    out["evaluate"] = dict(total=ev.total.tolist(), parts=ev.parts.tolist())
    return out


def center_run(folder: str) -> dict:
    """GCG on a continuation task over a fixed prefix with a d = 64 LM: every step's scoring crops the KV cache of
    the center's gradient pass (computed on rank 0, broadcast with the gradient); micro-batches of 3."""
    lm64 = load(str(Path(folder) / "lm64"), kind="causal_lm")
    chain = DataParallelChain(Chain(lm64, [(Continuation(lm64, " over the lazy dog"), 1.0)]), micro_batch=3)
    opt = make_optimizer("gcg", chain, n_tokens=5, prefix="the quick brown fox", budget=64, batch_size=16, seed=2)
    used, score = [], opt.score

    def spy(frees, known=None):  # whether the center's cache is at hand on this rank when candidates are scored
        used.append(opt.state.lm().center_kv is not None)
        return score(frees, known)

    opt.score = spy
    r = opt.run()
    return dict(text=r.best_text, ids=r.best_ids, loss=r.best_loss, evaluations=r.evaluations, history=r.history,
                center_used=sum(used[1:]), scorings=len(used) - 1)


def recorded_run(folder: str) -> dict:
    """AutoDAN whose primary has a Fluency and a Continuation term: no fast path, so the new token is ranked by the
    LM logits recorded during the gradient pass (rank 0's, sent to the other ranks with the gradient)."""
    lm64 = load(str(Path(folder) / "lm64"), kind="causal_lm")
    chain = Chain(lm64, [(Fluency(lm64), 0.5), (Continuation(lm64, " over the lazy dog"), 1.0)])
    opt = make_optimizer("autodan", DataParallelChain(chain, micro_batch=3), n_tokens=3, prefix="the quick",
                         budget=36, batch_size=12, search="beam", beam_width=2, seed=0)
    assert not opt.fluency_at_end()
    fallbacks, forward = [], opt._lm_logprobs

    def spy(*a, **k):  # a separate forward: the recorded logits were not at hand on this rank
        fallbacks.append(1)
        return forward(*a, **k)

    opt._lm_logprobs = spy
    r = opt.run()
    return dict(text=r.best_text, loss=r.best_loss, evaluations=r.evaluations, history=r.history,
                fallbacks=len(fallbacks))


def prompt_chain_run(lm, folder: str) -> dict:
    """GCG on a PromptChain of two LMs (the span inside a prompt, text after it), data-parallel."""
    from fuse.optim.prompt_chain import PromptChain

    lm64 = load(str(Path(folder) / "lm64"), kind="causal_lm")
    prompts = [("the quick{optim_str} over the lazy", " dog"), ("a small{optim_str} on the", " lake")]
    chain = PromptChain([lm, lm64], prompts, adapters={lm64.name: TensorAdapter.fit(lm, lm64, words=WORDS, k=4)})
    opt = make_optimizer("gcg", DataParallelChain(chain, micro_batch=3), n_tokens=3, budget=48, batch_size=12, seed=3)
    r = opt.run()
    return dict(text=r.best_text, loss=r.best_loss, losses=r.losses, evaluations=r.evaluations, history=r.history,
                dropped=r.dropped)


def caption_job(lm, enc, adapters, log=None) -> list[dict] | None:
    """Caption IMAGES as a dataset job (each image alone), sharded across the ranks."""
    tower = ImageTower(TinyNet(n_classes=5), Preprocess(resize=40, crop=32), name="tiny-tower")
    scorer = ImageTextScorer(enc, tower, mode="lit", heads=LiTHeads(LiTConfig(image_dim=8, text_dim=12, dim=6, seed=1)))
    cap = Captioner(lm, scorer, CAPTION, adapters=adapters)
    rows = run_job([(f"img{i}", i) for i in range(len(IMAGES))], lambda i: cap([IMAGES[i]])[0].to_dict(), log=log)
    return None if rows is None else [{k: v for k, v in r.items() if k not in ("seconds", "world_size")} for r in rows]


# -- terms dealt to ranks (TermParallelChain): three LMs of three tokenizer kinds, two chat prompts ----------------------
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PLAIN = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
PROMPTS = [([{"role": "user", "content": "the quick{optim_str} over the lazy dog"}], " a cat"),
           ([{"role": "system", "content": "a picture"}, {"role": "user", "content": "of{optim_str}"}], "the sun")]
TEXTS = [" brown fox", " red mat", " small boat", "er fox", "s red mat"]  # the last two may merge with "quick"


def save_prompt_models(folder: Path) -> Path:
    from tiny import llama3_tokenizer, unigram_tokenizer

    for name, tok, seed in (("bpe-lm", bpe_tokenizer(), 0), ("uni-lm", unigram_tokenizer(), 1),
                            ("llama3-lm", llama3_tokenizer(), 2)):
        m = tiny_causal_lm(tok, d=16, seed=seed, name=name)
        m.model.lm_head.weight.mul_(8)
        m.model.save_pretrained(folder / name)
        m.tokenizer.save_pretrained(folder / name)
    return folder


def prompt_chain(folder: Path):
    from fuse.optim import PromptChain

    a, b, c = (load(str(folder / n), kind="causal_lm") for n in ("bpe-lm", "uni-lm", "llama3-lm"))
    adapters = {m.name: TensorAdapter.fit(a, m, words=WORDS, k=4) for m in (b, c)}
    return PromptChain([a, b, c], PROMPTS, adapters=adapters, chat_templates={a.name: CHATML, b.name: PLAIN})


def evaluation(ev) -> dict:
    return {"total": ev.total.tolist(), "parts": ev.parts.tolist(), "match": ev.match.tolist()}


def term_runs(chain, wrap) -> dict:
    """Gradients, exact scores and a GCG run on ``wrap(chain)`` (the plain chain for the one-process reference)."""
    from fuse.optim import GCGConfig, optimize

    c = wrap(chain)
    tok = chain.primary.tokenizer
    seqs = [s[:2] for s in tok(TEXTS[:3], add_special_tokens=False)["input_ids"]]
    loss, parts, g = c.embedding_gradients(seqs)
    _, _, g_tail = c.embedding_gradients(seqs, positions=[1])
    res = optimize(c, GCGConfig(n_tokens=3, budget=32, batch_size=8, top_k=16, seed=0, init_text=" a b c"))
    return {"mine": [chain.labels[i] for i in getattr(c, "mine", range(len(chain.terms)))],
            "loss": loss.tolist(), "parts": parts.tolist(), "grad": g.tolist(), "grad_tail": g_tail.tolist(),
            "evaluate_ids": evaluation(c.evaluate_ids(seqs)), "evaluate": evaluation(c.evaluate(TEXTS)),
            "gcg": {"ids": res.best_ids, "loss": res.best_loss, "evaluations": res.evaluations, "dropped": res.dropped,
                    "history": [[h["evaluations"], h["best_loss"]] for h in res.history]}}
