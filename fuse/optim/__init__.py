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
from fuse.optim.prompt_chain import PromptChain, as_prompts
from fuse.optim.random_search import RandomSearch

OPTIMIZERS = {"gcg": GCG, "autodan": AutoDAN, "pez": PEZ, "random": RandomSearch}
CONFIGS = {cls.config_class: cls for cls in OPTIMIZERS.values()}

__all__ = ["OPTIMIZERS", "Optimizer", "OptimResult", "GCG", "AutoDAN", "PEZ", "RandomSearch", "make_optimizer",
           "optimize", "optimize_prompt", "PromptChain", "OptimizerConfig", "GCGConfig", "AutoDANConfig", "PEZConfig", "RandomSearchConfig", "ProbeConfig"]


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
    from fuse.parallel import DataParallelChain, TermParallelChain, initialized, is_main, world_size

    if initialized() and world_size() > 1 and not isinstance(chain, (DataParallelChain, TermParallelChain)):
        # under torchrun: every rank scores its share of each step's candidates (docs/scale-out.md)
        chain = DataParallelChain(chain)
        config = dataclasses.replace(config, progress=config.progress and is_main())
    return cls(chain, config).run()


def optimize_prompt(models, messages, target: str | None = None, config: OptimizerConfig | None = None, *,
                    adapters: dict | None = None, chat_templates: dict | None = None,
                    bridge_weight: float = 1.0) -> OptimResult:
    """Optimize the ``{optim_str}`` span of a prompt for one or several models: the short call (nanoGCG's
    ``run(model, tokenizer, messages, target, config)``, taking several models).

    Args:
        models: a causal-LM backbone or a list of them (``models[0]``'s tokens are optimized; the others are reached
            through adapters built on first use and cached, unless given in ``adapters``). Put first the model that is
            hardest to move: on the ``transfer`` benchmark, optimizing Gemma-3's tokens with SmolLM2's gradient
            bridged reached a mean joint loss of 3.51 against 4.15 the other way round (docs/prompts.md).
        messages: messages with ``{optim_str}`` once (each model renders them with its chat template), a string with
            it, or — with ``target=None`` — a list of ``(messages, target)`` pairs (a universal span: the mean over
            pairs and models).
        target: what every model should generate after the prompt.
        config: the optimizer's config (default ``GCGConfig()``); its ``prefix`` must stay empty.
        chat_templates: ``{model name: Jinja template}`` for models without one (the bundled Gemma-3:
            :data:`fuse.models.templates.GEMMA_CHAT_TEMPLATE`).
        bridge_weight: how much the other models' bridged gradient counts in the proposals (1: the objective's
            gradient; 0: ``models[0]``'s own, every candidate still scored on all): :class:`PromptChain`.

    Returns:
        :class:`OptimResult`; ``best_text``/``best_free_text`` are the span's text, ``losses`` each (model, prompt)
        term, ``dropped`` includes candidates whose edges merged with a model's fixed text.

    Example:
        >>> smol, gemma = fuse.load("bundled:smollm2-135m"), fuse.load("bundled:gemma3-270m")    # doctest: +SKIP
        >>> res = fuse.optimize_prompt([gemma, smol], [{"role": "user", "content": "Tell me a joke{optim_str}"}],
        ...                            "Sure", GCGConfig(n_tokens=8, budget=256),
        ...                            chat_templates={gemma.name: GEMMA_CHAT_TEMPLATE})         # doctest: +SKIP
    """
    chain = PromptChain(models, as_prompts(messages, target), adapters=adapters, chat_templates=chat_templates,
                        bridge_weight=bridge_weight)
    return optimize(chain, GCGConfig() if config is None else config)
