"""Frozen models wrapped with their tokenizer, input-embedding matrix and differentiable losses."""

from fuse.models.backbones.base import Backbone
from fuse.models.backbones.causal_lm import CausalLMBackbone
from fuse.models.backbones.encoder import EncoderBackbone

__all__ = ["Backbone", "CausalLMBackbone", "EncoderBackbone"]
