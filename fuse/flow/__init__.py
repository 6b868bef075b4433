"""Flow-model backbones: CaLMFlow (flow matching as a Volterra equation solved by a causal LM)."""

from fuse.flow.config import CaLMFlowConfig
from fuse.flow.data import Task
from fuse.flow.model import CaLMFlow, FlowLoss
from fuse.flow.text import build_prompt_tokenizer
from fuse.flow.tokenizer import GaussianHead

__all__ = ["CaLMFlow", "CaLMFlowConfig", "FlowLoss", "GaussianHead", "Task", "build_prompt_tokenizer"]
