"""fuse.load: local folders, offline hub ids, bundled names, and clear errors."""

import pytest
import torch

import fuse
from fuse.models.backbones import Backbone, CausalLMBackbone, EncoderBackbone
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_local_folder_round_trip(tmp_path):
    lm = tiny_causal_lm(bpe_tokenizer(), d=8)
    lm.model.save_pretrained(tmp_path / "lm")
    lm.tokenizer.save_pretrained(tmp_path / "lm")
    back = fuse.load(str(tmp_path / "lm"), local_files_only=True)
    assert isinstance(back, CausalLMBackbone)
    assert back.vocab_hash == lm.vocab_hash
    torch.testing.assert_close(back.embeddings, lm.embeddings)
    assert not any(p.requires_grad for p in back.model.parameters())  # frozen
    enc = tiny_encoder(wordpiece_tokenizer(), d=6)
    enc.model.save_pretrained(tmp_path / "enc")
    enc.tokenizer.save_pretrained(tmp_path / "enc")
    assert isinstance(fuse.load(str(tmp_path / "enc"), local_files_only=True), EncoderBackbone)


def test_unknown_names_are_clear_errors(isolated_cache):
    with pytest.raises(ValueError, match="unknown bundled model 'nope'.*smollm2-135m"):
        fuse.load("bundled:nope")
    with pytest.raises(ValueError, match="does not exist"):
        fuse.load("/no/such/folder/model")
    with pytest.raises(ValueError, match="could not load model 'no-org/no-such-model'"):
        fuse.load("no-org/no-such-model", local_files_only=True)
    with pytest.raises(ValueError, match="non-empty"):
        fuse.load("")


def test_device_and_dtype_errors():
    with pytest.raises(ValueError, match="unknown device"):
        fuse.load("bundled:minilm-l6", device="tpu:7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            fuse.load("bundled:minilm-l6", device="cuda")
    with pytest.raises(ValueError, match="unknown dtype"):
        fuse.load("bundled:minilm-l6", dtype="float13")
    with pytest.raises(ValueError, match="unknown kind"):
        fuse.load("bundled:minilm-l6", kind="vision")


def test_tokenizer_model_mismatch_is_caught():
    small = tiny_causal_lm(wordpiece_tokenizer(), d=8)  # 250 rows
    with pytest.raises(ValueError, match="does not belong to this model"):
        Backbone(small.model, bpe_tokenizer(), "mismatch")  # 300 tokens > 250 rows


def test_slow_tokenizer_is_refused():
    class SlowTokenizer:  # stands in for a Python (slow) tokenizer: no character offsets
        is_fast = False

        def __len__(self):
            return 10

    model = tiny_encoder(wordpiece_tokenizer(), d=6).model
    with pytest.raises(ValueError, match="fast tokenizer"):
        Backbone(model, SlowTokenizer(), "slow")


def test_gemma_style_embedding_scale_is_included():
    lm = tiny_causal_lm(bpe_tokenizer(), d=8)

    class Scaled(torch.nn.Embedding):
        embed_scale = torch.tensor(3.0)

    emb = Scaled(lm.model.config.vocab_size, 8)
    emb.weight.data = lm.embeddings.clone()
    lm.model.set_input_embeddings(emb)
    torch.testing.assert_close(lm.embeddings, emb.weight * 3.0)
    torch.testing.assert_close(lm.embed(torch.tensor([5])), emb(torch.tensor([5])) * 3.0)
