"""Planner-conditioned language models (DESIGN §9).

Sentences → MiniLM embeddings → seeded k-means actions (:mod:`~fuse.planner.actions`); a small
causal transformer predicts the next sentence's action (:mod:`~fuse.planner.planner`); any causal
LM receives ``softmax(scores/τ) @ codebook`` added to its upper attention outputs
(:mod:`~fuse.planner.conditioning`), in one of several modes (:mod:`~fuse.planner.modes`), trained
jointly (:mod:`~fuse.planner.train`) and sampled (:mod:`~fuse.planner.generate`).
"""

from fuse.planner.actions import ActionCodebook, embed_sentences
from fuse.planner.conditioning import ActionConditionedLM
from fuse.planner.corpus import Document, documents_from_texts, load_corpus, split_documents
from fuse.planner.data import PlannerData, build_data, embed_documents
from fuse.planner.model import PlannerLM
from fuse.planner.modes import MODES, MixSchedule, action_weights
from fuse.planner.planner import Planner, PlannerConfig
from fuse.planner.train import EvalResult, TrainConfig, TrainResult, evaluate, train

__all__ = [
    "ActionCodebook", "ActionConditionedLM", "Document", "EvalResult", "MODES", "MixSchedule", "Planner",
    "PlannerConfig", "PlannerData", "PlannerLM", "TrainConfig", "TrainResult", "action_weights", "build_data",
    "documents_from_texts", "embed_documents", "embed_sentences", "evaluate", "load_corpus", "split_documents", "train",
]
