"""Tiny random models with tokenizers trained in-process (BPE, Unigram, WordPiece).

Everything is built in memory in well under a second, so the suite is offline and fast while the
tokenizers are genuinely different.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a picture of a cat sitting on a red mat in the sun",
    "language models read words as tokens and tokens as vectors",
    "gradients flow from one frozen model into another model's prompt",
    "an image of a small boat on a calm blue lake at sunset",
    "numbers like 3.14 and 42 appear in text, as do names: Alice, Bob.",
    "naïve café déjà vu — unicode text with accents and dashes",
    "tensors stack slices; the fourier transform diagonalizes circulant blocks",
] * 4


#: the Unigram and WordPiece trainers are not deterministic across processes (their vocabularies break ties by hash
#: order): at their default sizes the tokenizers are loaded from files trained once by this module (a few KB), so
#: every test process sees the same vocabulary. Delete a file to retrain it (``python tests/tiny.py`` rewrites them).
DATA = Path(__file__).resolve().parent / "data"


def _saved(name: str, vocab_size: int, default: int) -> Tokenizer | None:
    path = DATA / f"{name}-tokenizer.json"
    return Tokenizer.from_file(str(path)) if vocab_size == default and path.exists() else None


def _wrap(tok: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


@functools.lru_cache(maxsize=None)
def bpe_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Byte-level BPE like GPT-2/SmolLM2 (``Ġ`` marks a leading space), with a BOS token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return _wrap(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@functools.lru_cache(maxsize=None)
def unigram_tokenizer(vocab_size: int = 200) -> PreTrainedTokenizerFast:
    """SentencePiece-style Unigram (``▁`` marks a word start), no special tokens added."""
    saved = _saved("unigram", vocab_size, 200)
    if saved is not None:
        return _wrap(saved, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<unk>", "<eos>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return _wrap(tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


@functools.lru_cache(maxsize=None)
def wordpiece_tokenizer(vocab_size: int = 250) -> PreTrainedTokenizerFast:
    """BERT-style WordPiece (``##`` continuations, lowercasing), with [CLS] … [SEP]."""
    saved = _saved("wordpiece", vocab_size, 250)
    if saved is not None:
        return _wrap(saved, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                                        show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return _wrap(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")


#: Llama-3's chat template (as its tokenizer_config.json carries it, without the tool-calling parts)
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


@functools.lru_cache(maxsize=None)
def llama3_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Byte-level BPE like Llama-3: ``<|begin_of_text|>`` added in use, and a chat template that writes it too."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    out = _wrap(tok, bos_token=bos, eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    out.chat_template = LLAMA3_CHAT_TEMPLATE
    return out


TOKENIZERS = {"bpe": bpe_tokenizer, "unigram": unigram_tokenizer, "wordpiece": wordpiece_tokenizer}


def tiny_causal_lm(tokenizer, d: int = 16, seed: int = 0, name: str = "tiny-lm", dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    from fuse.models.backbones import CausalLMBackbone

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).eval().to(dtype)
    model.requires_grad_(False)
    return CausalLMBackbone(model, tokenizer, name)


def tiny_encoder(tokenizer, d: int = 12, seed: int = 0, name: str = "tiny-encoder", dtype=torch.float32):
    from transformers import BertConfig, BertModel

    from fuse.models.backbones import EncoderBackbone

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=1,
                     num_attention_heads=2, max_position_embeddings=128)
    model = BertModel(cfg, add_pooling_layer=False).eval().to(dtype)
    model.requires_grad_(False)
    return EncoderBackbone(model, tokenizer, name)


# Shared by several test folders.
WORDS = ("the quick brown fox jumps over lazy dog picture cat sitting red mat sun language models read words "
         "tokens vectors gradients flow frozen model prompt image small boat calm blue lake sunset numbers names "
         "tensors stack slices transform circulant blocks naïve café unicode accents dashes").split()


def tiny_clip(tok):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    from fuse.models.backbones.clip import CLIPBackbone

    torch.manual_seed(0)
    tc = CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, max_position_embeddings=64, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id, projection_dim=8)
    vc = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                          image_size=32, patch_size=8, projection_dim=8)
    m = CLIPModel(CLIPConfig(text_config=tc.to_dict(), vision_config=vc.to_dict(), projection_dim=8)).eval()
    m.requires_grad_(False)
    return CLIPBackbone(m, tok, "tiny-clip")


class TinyNet(torch.nn.Module):
    """An EfficientNet-shaped stand-in: ``extract_features`` (B, 8, h, w) and a classifier ``_fc``."""

    def __init__(self, n_classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self._fc = torch.nn.Linear(8, n_classes)

    def extract_features(self, x):
        return torch.relu(self.conv(x))


def tiny_chain():
    """A tiny LM (fluency, weight 1) and a tiny encoder (1 − cos to "a cat on a mat", weight 2) behind an adapter."""
    from fuse.core.adapter import TensorAdapter
    from fuse.objectives import Fluency, Similarity
    from fuse.optim.chain import Chain

    lm = tiny_causal_lm(bpe_tokenizer(), d=16)
    enc = tiny_encoder(wordpiece_tokenizer(), d=12)
    ad = TensorAdapter.fit(lm, enc, words=WORDS, k=4)
    return Chain(lm, [(Fluency(lm), 1.0), (Similarity(enc, "a cat on a mat"), 2.0)], adapters={enc.name: ad})


if __name__ == "__main__":  # retrain the saved tokenizers (their vocabularies then change: rerun the suite)
    DATA.mkdir(exist_ok=True)
    for name in ("unigram", "wordpiece"):
        (DATA / f"{name}-tokenizer.json").unlink(missing_ok=True)
    unigram_tokenizer().backend_tokenizer.save(str(DATA / "unigram-tokenizer.json"))
    wordpiece_tokenizer().backend_tokenizer.save(str(DATA / "wordpiece-tokenizer.json"))
