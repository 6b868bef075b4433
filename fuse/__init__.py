"""fuse: carry gradients between frozen models with different tokenizers.

The core: words (:mod:`fuse.core.words`), the t-product algebra (:mod:`fuse.core.tproduct`), word slices
(:mod:`fuse.core.slices`), the closed-form adapter (:mod:`fuse.core.adapter`) and the gradient bridge
(:mod:`fuse.core.bridge`). ``fuse.load`` loads bundled, local and hub models as frozen backbones.
"""

from fuse._version import __version__
from fuse.core.adapter import AdapterConfig, TensorAdapter
from fuse.core.fit_config import AdapterFitConfig
from fuse.models.backbones import Backbone, CausalLMBackbone, EncoderBackbone
from fuse.core.bridge import Bridge, BridgeOutput
from fuse.optim.chain import Chain
from fuse.models.loading import load
from fuse.optim import (AutoDANConfig, GCGConfig, OptimResult, PEZConfig, ProbeConfig, PromptChain,
                        RandomSearchConfig, optimize, optimize_prompt)
from fuse.core.slices import word_slices
from fuse.core.words import WordGroups, align, group_ids, group_text

__all__ = [
    "__version__",
    "load",
    "word_slices",
    "TensorAdapter",
    "AdapterConfig",
    "AdapterFitConfig",
    "Bridge",
    "Chain",
    "optimize",
    "optimize_prompt",
    "PromptChain",
    "OptimResult",
    "GCGConfig",
    "AutoDANConfig",
    "PEZConfig",
    "RandomSearchConfig",
    "ProbeConfig",
    "BridgeOutput",
    "Backbone",
    "CausalLMBackbone",
    "EncoderBackbone",
    "WordGroups",
    "group_text",
    "group_ids",
    "align",
]
