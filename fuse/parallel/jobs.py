"""Dataset jobs: items keyed by a string, dealt to ranks, each finished item appended to a JSONL log.

A job is a list of ``(key, item)`` pairs and a function ``item -> dict``. :func:`run_job` skips the
keys already in the :class:`JobLog` (resume), deals the rest to the ranks (:func:`shard`), and
appends every finished record to the log at once (one ``write`` of one line under a file lock,
flushed and fsynced), so a run killed at any point keeps every item it finished and a rerun of the
same command does only the rest. At the end rank 0 returns every record in input order, once.

The log is the only state: on several nodes it must sit on a filesystem every node sees (NFS, a
shared volume), where ``filelock`` works.

Example:
    >>> from fuse.parallel.jobs import JobLog, run_job
    >>> rows = run_job([("a", 1), ("b", 2)], lambda x: {"square": x * x}, log=JobLog("/tmp/squares.jsonl"))  # doctest: +SKIP
    >>> [r["square"] for r in rows]                                                                       # doctest: +SKIP
    [1, 4]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock
from tqdm.auto import tqdm

from fuse.parallel.collectives import RankFailed, all_gather_json, broadcast_json
from fuse.parallel.config import DEFAULT_PARALLEL, SHARDS
from fuse.parallel.runtime import is_main, rank, world_size

logger = logging.getLogger(__name__)


class JobError(RankFailed):
    """An item (or a rank) failed; raised alike on every rank; everything finished before is kept in the log."""


def shard(n: int, rank_: int, world: int, how: str = DEFAULT_PARALLEL.shard) -> list[int]:
    """Indices of ``n`` items that rank ``rank_`` of ``world`` takes.

    ``"round_robin"``: ``rank_, rank_ + world, …``; ``"contiguous"``: the ``rank_``-th of ``world``
    near-equal blocks. Over all ranks every index appears exactly once.
    """
    if how not in SHARDS:
        raise ValueError(f"unknown shard {how!r}; use one of {SHARDS}")
    if world < 1 or not 0 <= rank_ < world or n < 0:
        raise ValueError(f"shard needs n >= 0 and 0 <= rank < world; got n={n}, rank={rank_}, world={world}")
    if how == "round_robin":
        return list(range(rank_, n, world))
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return list(range(start, start + base + (rank_ < extra)))


def job_id(options: dict) -> str:
    """12 hex digits naming a job's options (sorted JSON): records of other options are refused on resume."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]


class JobLog:
    """An append-only JSONL file of finished records, safe for many processes.

    Args:
        path: the ``.jsonl`` file (created with its folder on the first append).
        job: the job's id (:func:`job_id` of its options); records written under another id make
            :meth:`records` raise, so a rerun with other options never mixes results.
    """

    def __init__(self, path, job: str | None = None):
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"a job log is a .jsonl file (one JSON record per line), got {str(self.path)!r}")
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"{str(self.path)!r} is a folder; give a .jsonl file path")
        self.job = job
        self._lock = FileLock(str(self.path) + ".lock")

    def append(self, record: dict) -> None:
        """Append one record as one line: a single write under the lock, flushed and fsynced."""
        if "key" not in record:
            raise ValueError("a job record needs a 'key'")
        line = json.dumps({**record, "job": self.job} if self.job else record, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a line torn by a killed writer: end it first
                    line = "\n" + line
                data = line.encode("utf-8")
                written = os.write(fd, data)
                while written < len(data):  # pragma: no cover - regular files take a whole write
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)

    def records(self) -> dict[str, dict]:
        """Finished records by key (the first one of a key wins; torn lines are skipped with a warning)."""
        if not self.path.exists():
            return {}
        out: dict[str, dict] = {}
        torn = 0
        with self._lock, open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    torn += 1
                    continue
                if not isinstance(rec, dict) or "key" not in rec:
                    torn += 1
                    continue
                if self.job and rec.get("job") != self.job:
                    raise ValueError(f"{str(self.path)!r} holds results of a job with other options (job "
                                     f"{rec.get('job')!r}, this one {self.job!r}); give another output file, or "
                                     "delete it to start over")
                rec.pop("job", None)
                out.setdefault(str(rec["key"]), rec)
        if torn:
            logger.warning("%s: skipped %d incomplete line(s) (a writer was killed mid-line); those items run again",
                           self.path, torn)
        return out


def run_job(items: Iterable[tuple[str, Any]], fn: Callable[[Any], dict], *, log: JobLog | None = None,
            how: str = DEFAULT_PARALLEL.shard, progress: bool = False, desc: str = "items") -> list[dict] | None:
    """Run ``fn`` on every item not yet in ``log``, sharded across the ranks of the process group.

    Args:
        items: ``(key, item)`` pairs; keys are unique strings and define the output order.
        fn: ``item -> dict`` (JSON-able); the record stored is ``{"key": key, **fn(item), "world_size": N}``.
        log: where finished records are appended (``None``: kept in memory only, no resume).
        how: ``"round_robin"`` or ``"contiguous"`` (see :func:`shard`).
        progress: a tqdm bar of this rank's items, on rank 0 only.

    Returns:
        on rank 0, every record (resumed ones included) in input order; ``None`` on other ranks.

    Raises:
        JobError: on every rank when any rank's item failed, naming the rank and item; the
            records finished before stay in the log, so rerunning resumes.
    """
    items = list(items)
    keys = [k for k, _ in items]
    if any(not isinstance(k, str) or not k for k in keys):
        raise ValueError("every job item needs a non-empty string key")
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"job key {dup!r} appears more than once; keys must be unique")
    n, r = world_size(), rank()
    done, problem = {}, None
    if is_main() and log is not None:
        try:
            done = log.records()
        except ValueError as e:  # e.g. a log of other options: every rank must stop, not wait for rank 0
            problem = str(e)
    state = broadcast_json({"done": sorted(done), "problem": problem} if is_main() else None)
    if state["problem"] is not None:
        raise ValueError(state["problem"])
    done_keys = set(state["done"])
    pending = [i for i, k in enumerate(keys) if k not in done_keys]
    mine = [pending[j] for j in shard(len(pending), r, n, how)]
    if done_keys:
        logger.info("resuming: %d of %d items already in %s; %d to run", len(done_keys & set(keys)), len(keys),
                    log.path if log is not None else "the log", len(pending))
    new, error = [], None
    bar = tqdm(total=len(mine), desc=desc, disable=not (progress and is_main()))
    try:
        for i in mine:
            try:
                rec = {"key": keys[i], **fn(items[i][1]), "world_size": n}
            except Exception as e:  # stop this rank, tell the others, keep what is written
                error = f"item {keys[i]!r}: {type(e).__name__}: {e}"
                logger.error("rank %d failed on %s", r, error)
                break
            if log is not None:
                log.append(rec)
            new.append(rec)
            bar.update(1)
    finally:
        bar.close()
    statuses = all_gather_json(error)
    bad = [f"rank {k} failed on {e}" for k, e in enumerate(statuses) if e is not None]
    if bad:
        where = f"; the finished items are kept in {str(log.path)!r}: rerun the same command to resume" if log else ""
        raise JobError("; ".join(bad) + where)
    gathered = [rec for part in all_gather_json(new) for rec in part]
    if not is_main():
        return None
    by_key = {**done, **{rec["key"]: rec for rec in gathered}}
    return [by_key[k] for k in keys]


__all__ = ["JobError", "JobLog", "RankFailed", "job_id", "run_job", "shard"]
