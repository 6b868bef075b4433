"""Frozen models wrapped with their tokenizer, input-embedding matrix and differentiable losses."""

from fuse.backbones.base import Backbone
from fuse.backbones.causal_lm import CausalLMBackbone
from fuse.backbones.encoder import EncoderBackbone

__all__ = ["Backbone", "CausalLMBackbone", "EncoderBackbone"]
