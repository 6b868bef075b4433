"""fuse: carry gradients between frozen models with different tokenizers.

The core: words (:mod:`fuse.words`), the t-product algebra (:mod:`fuse.tproduct`), word slices
(:mod:`fuse.slices`), the closed-form adapter (:mod:`fuse.adapter`) and the gradient bridge
(:mod:`fuse.bridge`). ``fuse.load`` loads bundled, local and hub models as frozen backbones.
"""

from fuse._version import __version__
from fuse.adapter import AdapterConfig, TensorAdapter
from fuse.backbones import Backbone, CausalLMBackbone, EncoderBackbone
from fuse.bridge import Bridge, BridgeOutput
from fuse.chain import Chain
from fuse.loading import load
from fuse.slices import word_slices
from fuse.words import WordGroups, align, group_ids, group_text

__all__ = [
    "__version__",
    "load",
    "word_slices",
    "TensorAdapter",
    "AdapterConfig",
    "Bridge",
    "Chain",
    "BridgeOutput",
    "Backbone",
    "CausalLMBackbone",
    "EncoderBackbone",
    "WordGroups",
    "group_text",
    "group_ids",
    "align",
]
