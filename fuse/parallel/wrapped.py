"""What the two parallel wrappers of a chain share: the wrapped chain's contract and this process's place in the group.

:class:`~fuse.parallel.chain.DataParallelChain` splits a chain's candidates across ranks,
:class:`~fuse.parallel.terms.TermParallelChain` its terms; both are a :class:`RankedChain`, and neither wraps another
one (one split at a time).
"""

from __future__ import annotations

from fuse.optim.chain_base import BaseChain
from fuse.parallel.runtime import initialized, rank, world_size

__all__ = ["RankedChain"]


class RankedChain(BaseChain):
    """A chain wrapper on the ranks of a process group: ``primary``, ``terms``, ``adapters`` and ``layout()`` are the
    wrapped ``chain``'s; with ``local`` (or outside a group) it is rank 0 of 1."""

    chain: BaseChain
    local: bool

    @staticmethod
    def check_plain(chain, wrapper: str) -> None:
        """Refuse anything but a plain fuse chain as ``wrapper``'s chain (naming what was given and why)."""
        if isinstance(chain, RankedChain):
            raise ValueError(f"{wrapper} wraps a plain chain (Chain, PromptChain), got {type(chain).__name__}, which is "
                             "already split across ranks: use one of the two splits (candidates or terms), not both")
        if not isinstance(chain, BaseChain):
            raise ValueError(f"{wrapper} wraps a fuse chain, got {type(chain).__name__}")

    @property
    def primary(self):
        return self.chain.primary

    @property
    def terms(self):
        return self.chain.terms

    @property
    def adapters(self) -> dict:
        return getattr(self.chain, "adapters", {})

    def layout(self):
        """The wrapped chain's :meth:`~fuse.optim.chain_base.BaseChain.layout`."""
        return self.chain.layout()

    @property
    def world_size(self) -> int:
        return 1 if self.local or not initialized() else world_size()

    @property
    def rank(self) -> int:
        return 0 if self.local or not initialized() else rank()
