"""The nanoGCG virtual environment: ``benchmarks/.venvs/nanogcg`` (git-ignored), created on first use.

nanoGCG 0.3.0 pins ``transformers<=4.47.1``, so it never goes into the project's environment: it
runs in its own venv as a subprocess (:mod:`benchmarks.peers.nanogcg_runner`). Setup installs
``torch==2.13.0`` first (the local CPU wheel; a bare requirement would pull a CUDA build), then
``nanogcg==0.3.0 transformers==4.47.1``. Run ``python -m benchmarks.peers.nanogcg_env`` to set it up
alone.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

VENV = Path(__file__).resolve().parent.parent / ".venvs" / "nanogcg"
RUNNER = Path(__file__).resolve().parent / "nanogcg_runner.py"
REQUIREMENTS = (("torch==2.13.0",), ("nanogcg==0.3.0", "transformers==4.47.1"))


def python() -> Path:
    return VENV / "bin" / "python"


def ready() -> bool:
    if not python().exists():
        return False
    probe = "import nanogcg.gcg, transformers; assert transformers.__version__ == '4.47.1'"
    return subprocess.run([str(python()), "-c", probe], capture_output=True).returncode == 0


def ensure() -> Path:
    """The venv's python, creating the venv and installing nanoGCG first if needed."""
    if ready():
        return python()
    logger.info("creating %s (torch 2.13.0, nanogcg 0.3.0, transformers 4.47.1); takes a few minutes", VENV)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    for reqs in REQUIREMENTS:
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *reqs], check=True)
    if not ready():
        raise RuntimeError(f"nanoGCG could not be imported from {VENV} after installing it; remove the folder and retry")
    return python()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(ensure())
