"""Prompt optimizers over a :class:`~fuse.optim.chain.Chain`: GCG, AutoDAN-style growth, PEZ, random search."""

from fuse.optim.autodan import AutoDAN
from fuse.optim.base import OptimResult, Optimizer
from fuse.optim.gcg import GCG
from fuse.optim.pez import PEZ
from fuse.optim.random_search import RandomSearch

OPTIMIZERS = {"gcg": GCG, "autodan": AutoDAN, "pez": PEZ, "random": RandomSearch}

__all__ = ["OPTIMIZERS", "Optimizer", "OptimResult", "GCG", "AutoDAN", "PEZ", "RandomSearch", "make_optimizer"]


def make_optimizer(name: str, chain, **kwargs) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](chain, **kwargs)
