"""A torchrun worker for tests/parallel/test_term_parallel.py: a PromptChain's terms dealt to ranks by model and by
term (TermParallelChain). Writes <out>/rank<r>.json."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import torch  # noqa: E402

torch.set_num_threads(1)

from fuse.parallel import TermParallelChain, init_from_env, rank, shutdown, world_size  # noqa: E402
from parallel_scenarios import prompt_chain, term_runs  # noqa: E402


def main(out: Path, models_dir: Path) -> None:
    assert init_from_env()
    chain = prompt_chain(models_dir)
    res = {"rank": rank(), "world_size": world_size()}
    for by in ("model", "term"):
        res[by] = term_runs(chain, lambda c: TermParallelChain(c, by=by))
    (out / f"rank{rank()}.json").write_text(json.dumps(res))
    shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
