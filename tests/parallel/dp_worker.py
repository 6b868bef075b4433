"""A torchrun worker for tests/parallel/test_distributed.py: collectives, optimizers through
DataParallelChain, a captioning job, and rank-0-only output. Writes <out>/rank<r>.json."""

import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import torch  # noqa: E402

torch.set_num_threads(1)

from fuse.parallel import (JobLog, all_gather_json, all_gather_rows, broadcast_object, configure_logging,  # noqa: E402
                           init_from_env, main_stdout, rank, shutdown, world_size)
from parallel_scenarios import caption_job, models, optimize_all  # noqa: E402


def main(out: Path, models_dir: Path) -> None:
    assert init_from_env()
    configure_logging(logging.INFO)
    r, n = rank(), world_size()
    res = {"rank": r, "world_size": n}
    res["rows"] = all_gather_rows(torch.full((r + 1, 2), float(r))).tolist()
    got = broadcast_object({"a": (torch.arange(3.0) * (r + 1), 1.5, "x"), "b": [None, torch.ones(2, dtype=torch.float64) * (r + 7)]})
    res["broadcast"] = {"a": [got["a"][0].tolist(), got["a"][1], got["a"][2]], "b": [got["b"][0], got["b"][1].tolist()],
                        "types": [type(got["a"]).__name__, str(got["b"][1].dtype)]}
    res["json"] = all_gather_json({"rank": r, "text": "é" * r})
    lm, enc, adapters = models(models_dir)
    res["optim"] = optimize_all(lm, enc, adapters)
    res["captions"] = caption_job(lm, enc, adapters, log=JobLog(out / "captions.jsonl"))
    with main_stdout():
        print("PRINTED-ONCE")
    logging.getLogger("fuse.test").info("LOGGED-ONCE")
    (out / f"rank{r}.json").write_text(json.dumps(res))
    shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
