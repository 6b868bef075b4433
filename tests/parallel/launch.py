"""Start ``python -m torch.distributed.run --standalone`` (loopback only) from the repository root, so the
workers import this checkout's ``fuse``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def torchrun(args: list[str], nproc: int = 2, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``args`` (a script path, or ``-m module ...``) on ``nproc`` gloo processes; returns the finished process."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    full.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    return subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)
