"""Condition any causal LM on action vectors by adding them, projected, to its upper attention outputs.

For each conditioned layer ``l`` and token position ``t``::

    attn_out_l[t] ← attn_out_l[t] + W_l a[t] + b_l,        a[t] = (w @ C)[sentence of token t+1]

where ``w`` are the action weights of the sentence the *next* token belongs to (so the LM is
told what the sentence it is writing should do). ``W_l`` (D → d) and ``b_l`` are the only new
weights; the base model stays frozen (its parameters keep ``requires_grad=False``; fuse never
changes them). Optional LoRA (via ``peft``) fine-tunes a private copy of the model.

The additions are made by forward hooks that exist only during :meth:`ActionConditionedLM.forward`,
so the wrapped model is unchanged outside it. Because nothing below the first conditioned layer
depends on the actions, :meth:`~ActionConditionedLM.hidden_before` can compute the hidden states
entering that layer once and :meth:`~ActionConditionedLM.forward` can start from them
(``start_layer``), which makes training on CPU affordable; :meth:`~ActionConditionedLM.check_start_layer`
verifies on a probe that this gives the same logits as the full model.

Example:
    >>> import torch
    >>> from fuse.planner.conditioning import ActionConditionedLM
    >>> # lm = fuse.load("bundled:smollm2-135m")
    >>> # clm = ActionConditionedLM(lm, action_dim=384, n_layers=4)
    >>> # logits = clm(input_ids=ids, actions=torch.zeros(*ids.shape, 384))   # (B, L, V)
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_LAYER_PATHS = ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                "transformer.layers", "layers")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")


class _Stop(Exception):
    pass


class _Passthrough(nn.Module):
    """Stands in for a skipped decoder layer: returns its input hidden states."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of a causal LM's decoder blocks (Llama, Gemma, Qwen, GPT-2, NeoX …)."""
    for path in _LAYER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and (n is None or len(m) == n)]
    if not lists:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__}: expected a ModuleList at one of "
                         f"{', '.join(_LAYER_PATHS)}")
    return max(lists, key=len)


def find_attention(layer: nn.Module) -> nn.Module:
    """The self-attention sub-module of one decoder block."""
    for name in _ATTN_NAMES:
        mod = getattr(layer, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise ValueError(f"decoder block {type(layer).__name__} has no attention sub-module named one of {_ATTN_NAMES}")


class ActionConditionedLM(nn.Module):
    """A frozen causal LM whose upper attention outputs receive projected action vectors.

    Args:
        backbone: a :class:`~fuse.models.backbones.CausalLMBackbone`.
        action_dim: action-vector size ``D`` (the codebook's dimension).
        n_layers: condition the top ``n_layers`` decoder blocks (ignored when ``layers`` is given).
        layers: explicit block indices to condition.
        init_std: std of the initial projection weights (small, so the model starts close to the
            base model while gradients still reach the actions).
        lora_rank: > 0 fine-tunes a private copy of the model with LoRA of this rank on the
            conditioned blocks' ``q_proj``/``v_proj`` (needs ``peft``); 0 keeps the base frozen.
        seed: seeds the projection initialisation.
    """

    def __init__(self, backbone, action_dim: int, *, n_layers: int = 4, layers: list[int] | None = None,
                 init_std: float = 0.01, lora_rank: int = 0, lora_targets: tuple[str, ...] = ("q_proj", "v_proj"),
                 seed: int = 0):
        super().__init__()
        if not hasattr(backbone, "token_nll"):
            raise ValueError(f"backbone must be a CausalLMBackbone (fuse.load of a causal LM), got {type(backbone).__name__}")
        if not isinstance(action_dim, int) or action_dim < 1:
            raise ValueError(f"action_dim must be a positive int, got {action_dim!r}")
        self.backbone = backbone
        model = backbone.model
        if lora_rank:
            model = self._lora_copy(model, lora_rank, lora_targets, layers, n_layers)
        self._model = [model]  # a list: keeps the (possibly user-owned) model out of this module's state
        blocks = find_decoder_layers(self.base_model)
        n_total = len(blocks)
        if layers is None:
            if not isinstance(n_layers, int) or not 1 <= n_layers <= n_total:
                raise ValueError(f"n_layers must be an int in [1, {n_total}] (the model has {n_total} decoder blocks), got {n_layers!r}")
            layers = list(range(n_total - n_layers, n_total))
        layers = sorted(set(int(i) for i in layers))
        if not layers or layers[0] < 0 or layers[-1] >= n_total:
            raise ValueError(f"layers must be indices in [0, {n_total}), got {layers}")
        self.layer_ids = layers
        self.action_dim = action_dim
        self.lora_rank = lora_rank
        d = backbone.dim
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.ModuleList()
        for _ in layers:
            lin = nn.Linear(action_dim, d)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(d, action_dim, generator=g) * init_std)
                lin.bias.zero_()
            self.proj.append(lin.to(backbone.dtype).to(backbone.device))

    # -- model access ---------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """The causal LM that runs (the backbone's model, or its LoRA copy)."""
        return self._model[0]

    @property
    def base_model(self) -> nn.Module:
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    def _lora_copy(self, model, rank, targets, layers, n_layers):
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError("lora_rank > 0 needs the optional package peft: pip install --no-deps peft") from e
        n_total = len(find_decoder_layers(model))
        ids = layers if layers is not None else list(range(n_total - n_layers, n_total))
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(targets),
                         layers_to_transform=list(ids))
        return get_peft_model(copy.deepcopy(model), cfg)

    def lora_parameters(self) -> dict[str, torch.Tensor]:
        """The LoRA weights by name (empty without LoRA)."""
        if not self.lora_rank:
            return {}
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    # -- forward ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _hooks(self, actions: torch.Tensor | None):
        blocks = find_decoder_layers(self.base_model)
        handles = []
        if actions is not None:
            for proj, idx in zip(self.proj, self.layer_ids):
                def hook(module, args, output, proj=proj):
                    out = output[0] if isinstance(output, tuple) else output
                    out = out + proj(actions.to(out.dtype))
                    return (out, *output[1:]) if isinstance(output, tuple) else out
                handles.append(find_attention(blocks[idx]).register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def _skip_below(self, start_layer: int | None):
        if not start_layer:
            yield
            return
        blocks = find_decoder_layers(self.base_model)
        saved = [blocks[i] for i in range(start_layer)]
        try:
            for i in range(start_layer):
                blocks[i] = _Passthrough()
            yield
        finally:
            for i, blk in enumerate(saved):
                blocks[i] = blk

    def forward(self, input_ids: torch.Tensor | None = None, *, actions: torch.Tensor | None,
                attention_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                start_layer: int | None = None) -> torch.Tensor:
        """Logits ``(B, L, V)`` with actions added in the conditioned blocks.

        Args:
            input_ids: ``(B, L)`` token ids (or give ``inputs_embeds``).
            actions: ``(B, L, D)`` action vector per position (the action of the sentence the next
                token belongs to); ``None`` runs the unconditioned model (projections unused).
            attention_mask: ``(B, L)`` 1 for real tokens.
            inputs_embeds: ``(B, L, d)`` input embeddings, or with ``start_layer`` the hidden states
                entering block ``start_layer`` (from :meth:`hidden_before`).
            start_layer: skip blocks below this index (they must not be conditioned).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        ref = input_ids if input_ids is not None else inputs_embeds
        if actions is not None and (actions.ndim != 3 or tuple(actions.shape[:2]) != tuple(ref.shape[:2])
                                    or actions.shape[2] != self.action_dim):
            raise ValueError(f"actions must be (B, L, {self.action_dim}) = {(*ref.shape[:2], self.action_dim)}, "
                             f"got {tuple(actions.shape)}")
        if start_layer:
            if inputs_embeds is None:
                raise ValueError("start_layer needs inputs_embeds = hidden_before(start_layer, ...)")
            if start_layer > self.layer_ids[0]:
                raise ValueError(f"start_layer={start_layer} would skip conditioned block {self.layer_ids[0]}")
        with self._hooks(actions), self._skip_below(start_layer):
            out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return out.logits

    def _restricted_logits(self, ids, actions, attention_mask, vocab, inputs_embeds=None, start_layer=None):
        body = self.base_model.base_model
        head = self.base_model.get_output_embeddings()
        with self._hooks(actions), self._skip_below(start_layer):
            hidden = body(input_ids=None if inputs_embeds is not None else ids, inputs_embeds=inputs_embeds,
                          attention_mask=attention_mask, use_cache=False).last_hidden_state
        bias = head.bias[vocab] if getattr(head, "bias", None) is not None else None
        return F.linear(hidden, head.weight[vocab], bias)

    def token_nll(self, ids: torch.Tensor, attention_mask: torch.Tensor | None, actions: torch.Tensor | None, *,
                  vocab: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Per-position NLL ``(B, L-1)`` of ``ids[:, 1:]`` (0 where masked); kwargs go to :meth:`forward`.

        With ``vocab`` (sorted 1-D long tensor of token ids that contains every target) the softmax
        runs over those tokens only: a cheap training surrogate of the full NLL (the LM head and its
        softmax dominate the cost of a few conditioned blocks). Evaluate with ``vocab=None``.
        """
        if vocab is not None:
            if start_layer := kwargs.get("start_layer"):
                if start_layer > self.layer_ids[0]:
                    raise ValueError(f"start_layer={start_layer} would skip conditioned block {self.layer_ids[0]}")
            logits = self._restricted_logits(ids, actions, attention_mask, vocab, **kwargs)
            pos = torch.searchsorted(vocab, ids[:, 1:].contiguous())
            pos = pos.clamp_max(len(vocab) - 1)
            real = attention_mask[:, 1:].bool() if attention_mask is not None else torch.ones_like(pos, dtype=torch.bool)
            if bool(((vocab[pos] != ids[:, 1:]) & real).any()):
                raise ValueError("vocab must contain every target token id (build it from the training windows)")
            target = pos
        else:
            if "inputs_embeds" in kwargs:
                logits = self(actions=actions, attention_mask=attention_mask, **kwargs)
            else:
                logits = self(ids, actions=actions, attention_mask=attention_mask, **kwargs)
            target = ids[:, 1:]
        logits = logits[:, :-1]
        logits = logits if logits.dtype == torch.float64 else logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        if attention_mask is not None:
            nll = nll * attention_mask[:, 1:].to(nll.dtype)
        return nll

    def hidden_before(self, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, L, d)`` entering block ``layer`` (blocks above it are not run)."""
        blocks = find_decoder_layers(self.base_model)
        if not 0 <= layer < len(blocks):
            raise ValueError(f"layer must lie in [0, {len(blocks)}), got {layer}")
        captured = {}

        def pre(module, args, kwargs):
            captured["h"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        handle = blocks[layer].register_forward_pre_hook(pre, with_kwargs=True)
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"]

    def check_start_layer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          atol: float = 1e-4) -> bool:
        """True when starting from :meth:`hidden_before` reproduces the full model's logits on a probe."""
        layer = self.layer_ids[0]
        with torch.no_grad():
            actions = torch.randn(*input_ids.shape, self.action_dim, generator=torch.Generator().manual_seed(0)).to(self.backbone.device)
            full = self(input_ids, actions=actions, attention_mask=attention_mask)
            try:
                h = self.hidden_before(layer, input_ids, attention_mask)
                part = self(actions=actions, attention_mask=attention_mask, inputs_embeds=h, start_layer=layer)
            except Exception as e:  # an architecture whose blocks cannot be skipped this way
                logger.info("skipping lower blocks is not supported for %s: %s", type(self.model).__name__, e)
                return False
        err = (full - part).abs().max().item()
        logger.debug("start-layer check: max |Δlogit| = %.3g", err)
        return err <= atol * max(1.0, full.abs().max().item())
