"""A torchrun worker for the kill / fail / resume test: 12 items through run_job on a JobLog.

FAIL_KEY: that item raises (a clean failure); KILL_KEY: the process dies on that item (os._exit);
JOB_ID: the job's id (another one than the log's is refused on every rank).
Each finished computation is appended to <out>/calls-<rank>.txt; rank 0 prints the records."""

import json
import os
import sys
import time
from pathlib import Path

from fuse.parallel import JobError, JobLog, init_from_env, is_main, rank, run_job, shutdown

KEYS = [f"k{i:02d}" for i in range(12)]


def work(key: str, out: Path) -> dict:
    if key == os.environ.get("KILL_KEY"):
        os._exit(17)
    if key == os.environ.get("FAIL_KEY"):
        raise ValueError(f"cannot process {key}")
    time.sleep(0.05)
    with open(out / f"calls-{rank()}.txt", "a") as f:
        f.write(key + "\n")
    return {"value": sum(map(ord, key)) / 7.0}


def main(out: Path) -> int:
    init_from_env()
    main_rank = is_main()
    try:
        log = JobLog(out / "results.jsonl", job=os.environ.get("JOB_ID", "job-1"))
        rows = run_job([(k, k) for k in KEYS], lambda k: work(k, out), log=log)
    except (JobError, ValueError) as e:
        if main_rank:
            print(f"JOB-ERROR: {e}", file=sys.stderr)
        return 3
    finally:
        shutdown()
    if main_rank:
        for r in rows:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
