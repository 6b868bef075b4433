"""Scale-out on ``torch.distributed`` (launched by ``torchrun``): data-parallel candidate evaluation
(:class:`DataParallelChain`) and sharded, resumable dataset jobs (:func:`run_job`, :class:`JobLog`).

See docs/scale-out.md.
"""

from fuse.parallel.chain import DataParallelChain, shard_bounds
from fuse.parallel.collectives import (RankFailed, all_gather_json, all_gather_rows, broadcast_json, broadcast_object,
                                       check_all)
from fuse.parallel.config import DEFAULT_PARALLEL, SHARDS, ParallelConfig
from fuse.parallel.jobs import JobError, JobLog, job_id, run_job, shard
from fuse.parallel.terms import TermParallelChain
from fuse.parallel.runtime import (barrier, configure_logging, init_from_env, initialized, is_main, launch_rank, launched,
                                   main_stdout,
                                   rank, shutdown, world_size)

__all__ = ["DataParallelChain", "TermParallelChain", "shard_bounds", "RankFailed", "all_gather_json", "all_gather_rows", "broadcast_json",
           "broadcast_object", "check_all", "DEFAULT_PARALLEL", "SHARDS", "ParallelConfig", "JobError", "JobLog", "job_id",
           "run_job", "shard", "barrier", "configure_logging", "init_from_env", "initialized", "is_main", "launch_rank", "launched",
           "main_stdout", "rank", "shutdown", "world_size"]
