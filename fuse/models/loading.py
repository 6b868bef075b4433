"""``fuse.load``: one entry point for bundled, local and hub models."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from fuse.models.backbones import Backbone, CausalLMBackbone, EncoderBackbone

logger = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
_KINDS = {"causal_lm": CausalLMBackbone, "encoder": EncoderBackbone}


def offline_default() -> bool:
    """Whether loading must stay off the network by default (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set)."""
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_device(device) -> torch.device:
    """``device`` (``None``: CPU) as a ``torch.device``; a ``ValueError`` for an unknown or unavailable one."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:0' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
    return dev


def resolve_dtype(dtype) -> torch.dtype:
    """``dtype`` (``None``: float32; a name such as ``"bf16"``) as a floating ``torch.dtype``, else a ``ValueError``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
        if dtype not in table:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
        return table[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def load(name_or_path: str, *, device=None, dtype=None, device_map=None, local_files_only: bool | None = None,
         kind: str | None = None, trust_remote_code: bool = False) -> Backbone:
    """Load a frozen model with its tokenizer as a backbone.

    Args:
        name_or_path: ``bundled:NAME`` (see ``fuse models``), a local folder, or a hub id.
        device: where the model lives (default CPU): ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: weight dtype (default float32): ``torch.bfloat16``, ``"bfloat16"``, ``"float16"``, ...
        device_map: place a model larger than one device across several (``"auto"``, or a dict), through
            ``accelerate`` (``pip install accelerate``); excludes ``device``. The backbone's device is then its
            input embedding's device, where fuse puts the token ids and reads the losses.
        local_files_only: never touch the network (default: True when ``HF_HUB_OFFLINE`` is set).
        kind: ``"causal_lm"`` or ``"encoder"``; inferred from the config's architectures if omitted.
        trust_remote_code: passed to ``transformers``; off unless you ask.

    Returns:
        a :class:`~fuse.models.backbones.Backbone` (``CausalLMBackbone`` or ``EncoderBackbone``), frozen.

    Example:
        >>> import fuse
        >>> lm = fuse.load("bundled:smollm2-135m")       # doctest: +SKIP
        >>> lm.embeddings.shape                            # doctest: +SKIP
        torch.Size([49152, 576])
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise ValueError(f"name_or_path must be a non-empty string, got {name_or_path!r}")
    name = str(name_or_path)
    if device_map is not None and device is not None:
        raise ValueError("give device or device_map, not both (device_map places the model across devices itself)")
    if device_map is not None:
        try:
            import accelerate  # noqa: F401
        except ImportError as e:
            raise ValueError("device_map needs the accelerate package: pip install accelerate") from e
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(_KINDS)}")
    if local_files_only is None:
        local_files_only = offline_default()

    if name.startswith(BUNDLED_PREFIX):
        from fuse.models.bundled import bundled_folder

        spec, folder = bundled_folder(name[len(BUNDLED_PREFIX):])
        return _load_folder(str(folder), name, kind or spec.kind, dev, dt, True, False, device_map)
    if not Path(name).exists() and (name.count("/") > 1 or name.startswith((".", "/", "~"))):
        raise ValueError(f"model folder {name!r} does not exist; pass an existing folder, a hub id such as "
                         f"'org/model', or a bundled name ('fuse models' lists them)")
    return _load_folder(name, name, kind, dev, dt, local_files_only, trust_remote_code, device_map)


def _infer_kind(config) -> str:
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        return "causal_lm"
    if getattr(config, "is_decoder", False) or getattr(config, "model_type", "") in {"gpt2", "llama", "gemma3_text", "qwen2", "mistral"}:
        return "causal_lm"
    return "encoder"


def _dtype_kwarg() -> str:
    """``dtype`` (transformers >= 4.56) or ``torch_dtype`` (older releases, which would ignore ``dtype``)."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_folder(path: str, name: str, kind, dev, dt, local_files_only: bool, trust_remote_code: bool,
                 device_map=None) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    common = dict(local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(path, **common)
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **common)
    except (OSError, ValueError) as e:
        where = "in the local cache (offline mode)" if local_files_only else "locally or on the hub"
        raise ValueError(
            f"could not load model {name!r} {where}: {e}. Check the name (a hub id 'org/model', a local "
            f"folder, or one of the bundled names listed by `fuse models`)."
        ) from e
    kind = kind or _infer_kind(config)
    cls = AutoModelForCausalLM if kind == "causal_lm" else AutoModel
    if device_map is not None:
        model = cls.from_pretrained(path, device_map=device_map, **{_dtype_kwarg(): dt}, **common).eval()
    else:
        model = cls.from_pretrained(path, **{_dtype_kwarg(): dt}, **common).to(dev).eval()
    model.requires_grad_(False)
    logger.info("loaded %s (%s) on %s as %s", name, type(model).__name__,
                dev if device_map is None else getattr(model, "hf_device_map", device_map), dt)
    return _KINDS[kind](model, tokenizer, name)
