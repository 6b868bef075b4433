"""Prompt optimization over a :class:`~fuse.optim.chain.Chain`: GCG, AutoDAN-style growth, PEZ, random search.

One entry point, ``fuse.optimize(chain, config)``, runs the optimizer that ``config``'s class names
(:class:`GCGConfig`, :class:`AutoDANConfig`, :class:`PEZConfig`, :class:`RandomSearchConfig`): that is the
documented call style (``fuse.optimize(chain, GCGConfig(n_tokens=20, budget=640))``). The optimizer classes still
accept a config or its fields as keywords, for existing code.
"""

import dataclasses

from fuse.optim.autodan import AutoDAN
from fuse.optim.base import OptimResult, Optimizer
from fuse.optim.config import AutoDANConfig, GCGConfig, OptimizerConfig, PEZConfig, ProbeConfig, RandomSearchConfig
from fuse.optim.gcg import GCG
from fuse.optim.pez import PEZ
from fuse.optim.random_search import RandomSearch

OPTIMIZERS = {"gcg": GCG, "autodan": AutoDAN, "pez": PEZ, "random": RandomSearch}
CONFIGS = {cls.config_class: cls for cls in OPTIMIZERS.values()}

__all__ = ["OPTIMIZERS", "Optimizer", "OptimResult", "GCG", "AutoDAN", "PEZ", "RandomSearch", "make_optimizer",
           "optimize", "OptimizerConfig", "GCGConfig", "AutoDANConfig", "PEZConfig", "RandomSearchConfig", "ProbeConfig"]


def make_optimizer(name: str, chain, config: OptimizerConfig | None = None, **kwargs) -> Optimizer:
    """An optimizer by name (``gcg``, ``autodan``, ``pez``, ``random``) from a config and/or keyword arguments."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](chain, config, **kwargs)


def optimize(chain, config: OptimizerConfig) -> OptimResult:
    """Run the optimizer that ``config`` belongs to on ``chain`` and return its :class:`OptimResult`.

    Example:
        >>> import fuse
        >>> from fuse.objectives import Continuation
        >>> lm = fuse.load("bundled:smollm2-135m")                                         # doctest: +SKIP
        >>> chain = fuse.Chain(lm, [(Continuation(lm, "Sure, here is"), 1.0)])             # doctest: +SKIP
        >>> res = fuse.optimize(chain, fuse.GCGConfig(n_tokens=20, budget=640, seed=0))   # doctest: +SKIP
    """
    cls = CONFIGS.get(type(config))
    if cls is None:
        raise ValueError(f"config must be one of {[c.__name__ for c in CONFIGS]}, got {type(config).__name__}")
    from fuse.parallel import DataParallelChain, initialized, is_main, world_size

    if initialized() and world_size() > 1 and not isinstance(chain, DataParallelChain):
        # under torchrun: every rank scores its share of each step's candidates (docs/scale-out.md)
        chain = DataParallelChain(chain)
        config = dataclasses.replace(config, progress=config.progress and is_main())
    return cls(chain, config).run()
