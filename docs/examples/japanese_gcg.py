"""Gemma-3 steered by a SmolLM2 objective, on a Japanese prompt (docs/languages.md).

The free span is Gemma-3's tokens in Japanese scripts only (ascii_only=False, vocabulary="japanese"); the loss
is SmolLM2's cross-entropy of the continuation 東京 after the decoded text, reached through a Japanese adapter
(wordfreq ja words, k = 12, unit "boundary": every gradient row pairs the same characters).

Run: ``PYTHONPATH=. python docs/examples/japanese_gcg.py`` (a few minutes on a CPU).
"""

import logging

import fuse
from fuse.core.fit_config import AdapterFitConfig
from fuse.core.units import has_cjk
from fuse.models.adapter_cache import cached_adapter
from fuse.objectives import Continuation
from fuse.optim import GCGConfig, optimize

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
gemma, smol = fuse.load("bundled:gemma3-270m"), fuse.load("bundled:smollm2-135m")
adapter = cached_adapter(gemma, smol, AdapterFitConfig(language="ja"))   # k=12, unit="boundary"
chain = fuse.Chain(gemma, [(Continuation(smol, "東京"), 1.0)], adapters={smol.name: adapter})
config = GCGConfig(prefix="日本の首都は", n_tokens=4, init_text="大阪と京都", ascii_only=False, vocabulary="japanese",
                   budget=192, batch_size=32, top_k=64, seed=0)
result = optimize(chain, config)
print("start  :", config.prefix + config.init_text)
print("best   :", result.best_text, f"(SmolLM2 CE of 東京 {result.best_loss:.3f})")
print("span   :", repr(result.best_free_text), "Japanese characters in the span:", has_cjk(result.best_free_text))
print("history:", [round(h["best_loss"], 3) for h in result.history])
