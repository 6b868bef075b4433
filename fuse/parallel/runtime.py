"""Where this process stands in a ``torchrun`` job: the process group, its rank, rank-0-only output.

``torchrun`` (``python -m torch.distributed.run``) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_from_env` turns those
into a process group (gloo for CPU tensors, NCCL for CUDA tensors when CUDA is present) and pins
each rank to the GPU of its ``LOCAL_RANK``. Without those variables everything here answers for a
single process (rank 0 of 1), so code written against this module runs unchanged either way.

Example:
    >>> from fuse.parallel import runtime
    >>> runtime.init_from_env()          # False: not launched by torchrun
    False
    >>> runtime.rank(), runtime.world_size(), runtime.is_main()
    (0, 1, True)
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import time
from typing import Iterator

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: the variables torchrun sets for every worker; all must be present to form a group
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether this process was started by torchrun (its rendezvous variables are set)."""
    return all(os.environ.get(v) for v in LAUNCH_ENV)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if initialized() else 0


def launch_rank() -> int:
    """torchrun's ``RANK`` for this process, whether or not a process group was formed (0 when not launched)."""
    return _env_int("RANK", 0) if launched() else 0


def world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if initialized() else 1


def local_rank() -> int:
    """Rank on this node (``LOCAL_RANK``; 0 when not launched by torchrun)."""
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def is_main() -> bool:
    """True on rank 0, the one process that prints and writes final outputs."""
    return rank() == 0


def default_backend() -> str:
    """``"cpu:gloo,cuda:nccl"`` when CUDA is available (each tensor's device picks its backend), else ``"gloo"``."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


#: default seconds a collective waits for the other ranks: long, because at the end of a dataset job the
#: ranks that finished wait for the slowest one (a rank that dies is caught by torchrun, not by this)
DEFAULT_TIMEOUT_S = 24 * 3600.0


def init_from_env(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Form the process group from torchrun's environment, once.

    Args:
        backend: a ``torch.distributed`` backend string; default :func:`default_backend`.
        timeout_s: how long a collective waits for the other ranks before failing (default
            ``FUSE_DIST_TIMEOUT`` from the environment, else 24 hours).

    Returns:
        True when a process group exists after the call (this call made it, or one existed),
        False when the process was not launched by torchrun (a single process).
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if not launched():
        return False
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world} must be >= 1")
    if timeout_s is None:
        raw = os.environ.get("FUSE_DIST_TIMEOUT", "")
        try:
            timeout_s = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"FUSE_DIST_TIMEOUT={raw!r} must be a number of seconds") from None
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    backend = backend or default_backend()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    logger.info("rank %d of %d joined the process group (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def shutdown(sync: bool = True) -> None:
    """Leave the process group (if any); safe to call more than once.

    Args:
        sync: wait for every rank first (a barrier), so no rank tears its connections down while
            another still reads the last collective's data (gloo aborts the reader then). Pass
            ``False`` on an error path, where another rank may never arrive.
    """
    if initialized():
        n = dist.get_world_size()
        if sync and n > 1:
            dist.barrier()
            # A rank may leave the barrier and close its gloo connections while another still finishes it, and gloo
            # then aborts that one ("terminate called without an active exception"). So every rank also waits, on
            # the rendezvous store (not on gloo), until all have left the barrier: no collective is in flight when
            # the first connection closes.
            try:
                store = dist.distributed_c10d._get_default_store()
                store.add("fuse/shutdown", 1)
                deadline = time.monotonic() + 60
                while int(store.add("fuse/shutdown", 0)) < n and time.monotonic() < deadline:
                    time.sleep(0.005)
            except (AttributeError, RuntimeError) as e:  # pragma: no cover - a backend without a default store
                logger.debug("shutdown without the store handshake: %s", e)
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if initialized() and dist.get_world_size() > 1:
        dist.barrier()


def configure_logging(level: int = logging.WARNING) -> None:
    """Log at ``level`` on rank 0 and at WARNING or above elsewhere, each line tagged with its rank
    when there are several."""
    tag = f"[rank {rank()}/{world_size()}] " if world_size() > 1 else ""
    level = level if is_main() else max(level, logging.WARNING)
    logging.basicConfig(level=level, format=f"{tag}%(levelname)s %(name)s: %(message)s")
    if not is_main():
        logging.getLogger().setLevel(level)


@contextlib.contextmanager
def main_stdout() -> Iterator[None]:
    """Within the block, standard output of every rank but 0 goes to ``os.devnull`` (rank 0 prints once)."""
    if is_main():
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield
        sys.stdout.flush()
