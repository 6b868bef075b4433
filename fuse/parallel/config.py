"""Options of the scale-out layer, shared by the Python API and the ``fuse`` command line."""

from __future__ import annotations

from dataclasses import dataclass

SHARDS = ("round_robin", "contiguous")


@dataclass
class ParallelConfig:
    """How work is split across the ranks of a torchrun job.

    Attributes:
        micro_batch: texts per forward pass when candidates are evaluated, and the unit in which a
            step's candidates are split across ranks. With a number, every text is scored in the
            same micro-batch whatever the number of processes, so 1, 2 or N processes give
            bit-identical losses and decisions. ``None``: each rank scores one contiguous piece with
            the caller's batch size (one fewer constraint, but batches of other shapes round the
            last bit differently, so N processes equal one process only up to float rounding).
            Raise it on GPUs (e.g. ``batch_size / N``) so each forward stays large.
        shard: how dataset items are dealt to ranks: ``"round_robin"`` (item i to rank i mod N;
            balances when cost drifts along the list) or ``"contiguous"`` (rank r takes the r-th
            block; keeps each rank's items together).
    """

    micro_batch: int | None = 8
    shard: str = "round_robin"

    def __post_init__(self):
        if self.micro_batch is not None:
            if isinstance(self.micro_batch, bool) or not isinstance(self.micro_batch, int) or self.micro_batch < 1:
                raise ValueError(f"micro_batch must be a positive integer or None, got {self.micro_batch!r}")
        if self.shard not in SHARDS:
            raise ValueError(f"unknown shard {self.shard!r}; use one of {SHARDS}")


DEFAULT_PARALLEL = ParallelConfig()
