"""Collectives for results of different lengths on each rank, without pickle.

``torch.distributed.all_gather`` needs equal shapes on every rank; a shard of candidates or a
rank's finished dataset items differ in length. :func:`all_gather_rows` exchanges the row counts
first, pads to the longest and cuts the padding off again, returning the rows of rank 0, then
rank 1, … — the global order when ranks hold contiguous shards. JSON-able values travel as UTF-8
bytes (:func:`all_gather_json`, :func:`broadcast_json`); :func:`broadcast_object` also carries
tensors (exact bits) inside nested tuples, lists and dicts. Nothing is pickled.

Every function is the identity in a single process. Tensors travel on a device the process group
can carry (CPU with gloo, the rank's GPU with NCCL) and come back on the device they were given.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist

from fuse.parallel.runtime import initialized

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16,
                                                      torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                                                      torch.bool, torch.complex64, torch.complex128)}


class RankFailed(RuntimeError):
    """Another rank failed inside a collective step; the message names it and its error."""


def _active() -> bool:
    return initialized() and dist.get_world_size() > 1


def comm_device(device: torch.device) -> torch.device:
    """The device a tensor on ``device`` travels on: itself when the group's backend carries it,
    else the CPU (gloo) or this rank's current GPU (NCCL only)."""
    backend = str(dist.get_backend()).lower()
    if device.type == "cuda" and "nccl" in backend:
        return device
    if device.type == "cpu" and "gloo" in backend:
        return device
    if "gloo" in backend:
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def all_gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's ``local (n_r, *rest)`` along dim 0 in rank order; ``n_r`` may differ
    (also 0) but ``rest`` and the dtype must agree."""
    return _gather_rows(local)[0]


def _gather_rows(local: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    if not _active():
        return local, [local.shape[0]]
    dev = comm_device(local.device)
    world = dist.get_world_size()
    n = torch.tensor([local.shape[0]], dtype=torch.long, device=dev)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    longest = max(counts)
    if longest == 0:
        return local, counts
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.to(dev)
    bufs = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(bufs, padded)
    return torch.cat([b[:c] for b, c in zip(bufs, counts)]).to(local.device), counts


def _to_bytes(obj: Any) -> torch.Tensor:
    data = json.dumps(obj, sort_keys=True).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def _from_bytes(t: torch.Tensor) -> Any:
    return json.loads(bytes(t.cpu().tolist()).decode("utf-8"))


def all_gather_json(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, …]`` for a JSON-able ``obj`` (``[obj]`` in a single process)."""
    if not _active():
        return [json.loads(json.dumps(obj))]
    rows, sizes = _gather_rows(_to_bytes(obj))
    out, start = [], 0
    for s in sizes:
        out.append(_from_bytes(rows[start : start + s]))
        start += s
    return out


def _broadcast_bytes(data: torch.Tensor | None, src: int) -> torch.Tensor:
    dev = comm_device(torch.device("cpu"))
    n = torch.tensor([0 if data is None else data.numel()], dtype=torch.long, device=dev)
    dist.broadcast(n, src)
    buf = data.to(dev) if dist.get_rank() == src else torch.empty(int(n), dtype=torch.uint8, device=dev)
    dist.broadcast(buf, src)
    return buf


def broadcast_json(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s JSON-able ``obj`` on every rank (the other ranks' ``obj`` is ignored)."""
    if not _active():
        return obj
    buf = _broadcast_bytes(_to_bytes(obj) if dist.get_rank() == src else None, src)
    return obj if dist.get_rank() == src else _from_bytes(buf)


def _spec(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {"t": "tensor", "shape": list(obj.shape), "dtype": str(obj.dtype).removeprefix("torch."),
                "device": obj.device.type}
    if isinstance(obj, (tuple, list)):
        return {"t": type(obj).__name__, "v": [_spec(v, tensors) for v in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise ValueError("broadcast_object carries dicts with string keys only")
        return {"t": "dict", "v": {k: _spec(v, tensors) for k, v in obj.items()}}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"t": "value", "v": obj}
    raise ValueError(f"broadcast_object cannot carry a {type(obj).__name__}; use tensors, numbers, strings, "
                     "None, and tuples/lists/dicts of them")


def _build(spec: Any, tensors: list[torch.Tensor]) -> Any:
    kind = spec["t"]
    if kind == "tensor":
        return tensors.pop(0)
    if kind in ("tuple", "list"):
        items = [_build(s, tensors) for s in spec["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _build(s, tensors) for k, s in spec["v"].items()}
    return spec["v"]


def _local_device(kind: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if kind == "cuda" else torch.device(kind)


def _tensor_specs(spec: Any) -> list[dict]:
    if spec["t"] == "tensor":
        return [spec]
    if spec["t"] in ("tuple", "list"):
        return [s for v in spec["v"] for s in _tensor_specs(v)]
    if spec["t"] == "dict":
        return [s for v in spec["v"].values() for s in _tensor_specs(v)]
    return []


def broadcast_object(obj: Any = None, src: int = 0, *, error: str | None = None) -> Any:
    """Rank ``src``'s ``obj`` (tensors, numbers, strings, None, nested tuples/lists/dicts) on every rank.

    Tensors arrive bit for bit, on the CPU or, for CUDA tensors, on each rank's current GPU. When
    rank ``src`` passes ``error`` (it failed to compute ``obj``), every other rank raises
    :class:`RankFailed` with that message (rank ``src`` itself should re-raise its own exception).
    """
    if not _active():
        return obj
    me = dist.get_rank()
    tensors: list[torch.Tensor] = []
    if me == src:
        spec = {"t": "error", "v": error} if error is not None else _spec(obj, tensors)
        _broadcast_bytes(_to_bytes(spec), src)
    else:
        spec = _from_bytes(_broadcast_bytes(None, src))
    if spec["t"] == "error":
        if me == src:
            return None
        raise RankFailed(f"rank {src} failed: {spec['v']}")
    received = []
    for i, s in enumerate(_tensor_specs(spec)):
        dtype = _DTYPES[s["dtype"]]
        if me == src:
            t = tensors[i]
            dev = comm_device(t.device)
            dist.broadcast(t.detach().contiguous().to(dev), src)
        else:
            dev = comm_device(_local_device(s["device"]))
            t = torch.empty(s["shape"], dtype=dtype, device=dev)
            dist.broadcast(t, src)
            received.append(t.to(_local_device(s["device"])))
    if me == src:
        return obj
    return _build(spec, received)


def check_all(error: str | None) -> None:
    """Every rank says whether its part failed (``error`` message or ``None``); if any did, every
    rank raises :class:`RankFailed` naming the failed ranks (so no rank waits forever for another)."""
    if not _active():
        return
    errors = all_gather_json(error)
    bad = [f"rank {r}: {e}" for r, e in enumerate(errors) if e is not None]
    if bad:
        raise RankFailed("; ".join(bad))
