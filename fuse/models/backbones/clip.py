"""Image–text models (CLIP through ``transformers`` and through ``open_clip``) as differentiable scorers.

The text tower runs from ``inputs_embeds``; the pooled position is taken from the token ids (the
EOS position, as the model itself does), so both the exact bridge and the surrogate work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fuse.models.backbones.base import Backbone


class CLIPBackbone(Backbone):
    """A frozen ``transformers`` ``CLIPModel`` with its tokenizer (and optional image processor)."""

    kind = "image_text"

    def __init__(self, model, tokenizer, name: str | None = None, processor=None, validate: bool = True):
        super().__init__(model, tokenizer, name, validate=validate)
        self.processor = processor

    @property
    def embedding_module(self):
        return self.model.text_model.embeddings.token_embedding

    def text_features(self, inputs_embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` L2-normalised projected text features from token embeddings."""
        from transformers.masking_utils import create_causal_mask

        tm = self.model.text_model
        hidden = tm.embeddings(inputs_embeds=inputs_embeds)
        mask = create_causal_mask(config=tm.config, inputs_embeds=hidden, attention_mask=attention_mask, past_key_values=None)
        hidden = tm.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        hidden = tm.final_layer_norm(hidden)
        eos = tm.eos_token_id
        if eos == 2:  # legacy configs: the EOS is the highest id
            pos = ids.to(torch.int).argmax(-1)
        else:
            pos = (ids == eos).int().argmax(-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos]
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` L2-normalised image features from preprocessed ``pixel_values (B, 3, H, W)``."""
        out = self.model.vision_model(pixel_values=pixel_values.to(self.device, self.dtype))
        return F.normalize(self.model.visual_projection(out.pooler_output), dim=-1)

    def loss(self, inputs_embeds, ids, attention_mask, image_features: torch.Tensor) -> torch.Tensor:
        """``1 − cos(text, image)`` per sequence."""
        t = self.text_features(inputs_embeds, ids, attention_mask)
        return 1.0 - (t * image_features.to(t)).sum(-1)


class OpenCLIPBackbone(Backbone):
    """An ``open_clip`` model. Its tokenizer must be a fast Hugging Face tokenizer (``hf-hub:`` models)."""

    kind = "image_text"

    def __init__(self, model, tokenizer, name: str | None = None, validate: bool = False):
        super().__init__(model, tokenizer, name, validate=validate)

    @property
    def embedding_module(self):
        return self.model.token_embedding

    def text_features(self, inputs_embeds, ids, attention_mask=None) -> torch.Tensor:
        m = self.model
        L = inputs_embeds.shape[1]
        x = inputs_embeds + m.positional_embedding[:L].to(inputs_embeds)
        attn = m.attn_mask[:L, :L] if getattr(m, "attn_mask", None) is not None else None
        x = m.transformer(x, attn_mask=attn)
        x = m.ln_final(x)
        eot = getattr(self.tokenizer, "eos_token_id", None)
        pos = (ids == eot).int().argmax(-1) if eot is not None else ids.argmax(-1)
        pooled = x[torch.arange(x.shape[0], device=x.device), pos]
        if getattr(m, "text_projection", None) is not None:
            proj = m.text_projection
            pooled = proj(pooled) if isinstance(proj, torch.nn.Module) else pooled @ proj
        return F.normalize(pooled, dim=-1)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(pixel_values.to(self.device)), dim=-1)

    loss = CLIPBackbone.loss
