"""Backbone losses: exact text path equals the embeddings path; classifiers; CLIP cross-check."""

import pytest
import torch

from fuse.models.backbones.classifier import SENTIMENT, ClassifierBackbone, ZeroShotClassifier
from fuse.models.batching import encode_batch
from fuse.objectives import ClassifierLabel, Continuation, Fluency, ImageText, Similarity, as_objective
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_clip, tiny_encoder, wordpiece_tokenizer

TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(bpe_tokenizer(), d=16)


@pytest.fixture(scope="module")
def enc():
    return tiny_encoder(wordpiece_tokenizer(), d=12)


def test_fluency_matches_manual_cross_entropy(lm):
    texts = ["a cat on a mat", "the quick brown fox jumps"]
    got = Fluency(lm).loss_texts(texts)
    for i, t in enumerate(texts):
        ids = torch.tensor(lm.tokenizer(t)["input_ids"])
        logits = lm.model(input_ids=ids[None]).logits[0, :-1]
        want = torch.nn.functional.cross_entropy(logits, ids[1:])
        torch.testing.assert_close(got[i], want, **TOL)


def test_fluency_sum_is_the_text_log_likelihood(lm):
    texts = ["a cat", "the quick brown fox jumps over the lazy dog"]
    total = Fluency(lm, reduction="sum").loss_texts(texts)
    mean = Fluency(lm).loss_texts(texts)
    for i, t in enumerate(texts):
        ids = torch.tensor(lm.tokenizer(t)["input_ids"])
        logp = torch.log_softmax(lm.model(input_ids=ids[None]).logits[0, :-1], -1)
        want = -logp[torch.arange(len(ids) - 1), ids[1:]].sum()
        torch.testing.assert_close(total[i], want, **TOL)
        torch.testing.assert_close(mean[i] * (len(ids) - 1), want, **TOL)
    with pytest.raises(ValueError, match="reduction"):
        Fluency(lm, reduction="max")


def test_padding_does_not_change_losses(lm, enc):
    texts = ["a cat", "the quick brown fox jumps over the lazy dog"]
    for obj in (Fluency(lm), Fluency(lm, reduction="sum"), Similarity(enc, "a small boat")):
        batch = obj.loss_texts(texts)
        single = torch.cat([obj.loss_texts([t]) for t in texts])
        torch.testing.assert_close(batch, single, **TOL)


def test_continuation_is_conditional_nll(lm):
    obj = Continuation(lm, " on a mat")
    got = obj.loss_texts(["a cat sat", "the fox"])
    for i, t in enumerate(["a cat sat", "the fox"]):
        full = torch.tensor(lm.tokenizer(t)["input_ids"] + obj.cont_ids.tolist())
        logits = lm.model(input_ids=full[None]).logits[0]
        n, m = obj.cont_ids.numel(), len(full) - obj.cont_ids.numel()
        want = torch.nn.functional.cross_entropy(logits[m - 1 : m + n - 1], full[m:])
        torch.testing.assert_close(got[i], want, **TOL)


def test_similarity_is_zero_for_the_target_itself(enc):
    obj = Similarity(enc, "a small boat on a lake")
    assert obj.loss_texts(["a small boat on a lake"]).abs().item() < 1e-5
    assert obj.loss_texts(["numbers and names"]).item() > 1e-3


def test_zero_shot_classifier_probabilities(enc):
    zs = ZeroShotClassifier(enc, SENTIMENT)
    ids, mask = encode_batch(enc.tokenizer, ["a cat", "the dog"])
    lp = zs.log_probs(enc.embed(ids), mask)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2), **TOL)
    # the label description itself is classified as its own label
    for label, desc in SENTIMENT.items():
        ids, mask = encode_batch(enc.tokenizer, [desc])
        assert zs.labels[int(zs.log_probs(enc.embed(ids), mask).argmax())] == label
    with pytest.raises(ValueError, match="unknown label"):
        ClassifierLabel(zs, "neutral")
    with pytest.raises(ValueError, match="at least two labels"):
        ZeroShotClassifier(enc, {"a": "x"})


def test_sequence_classifier_label_logprob():
    from transformers import BertConfig, BertForSequenceClassification

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=12, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                     num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    model = BertForSequenceClassification(cfg).eval()
    clf = ClassifierBackbone(model, tok, "tiny-clf")
    obj = ClassifierLabel(clf, "pos")
    ids, mask = encode_batch(tok, ["a cat on a mat"])
    want = -torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, -1)[:, 2]
    torch.testing.assert_close(obj.loss_texts(["a cat on a mat"]), want, **TOL)


def test_clip_text_tower_matches_transformers(lm):
    tok = bpe_tokenizer()
    clip = tiny_clip(tok)
    ids = torch.tensor([tok("a cat on a mat")["input_ids"] + [tok.eos_token_id]])
    ref = clip.model.get_text_features(input_ids=ids)
    ref = torch.nn.functional.normalize(ref if torch.is_tensor(ref) else ref.pooler_output, dim=-1)
    torch.testing.assert_close(clip.text_features(clip.embed(ids), ids), ref, **TOL)
    img = clip.image_features(torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    obj = ImageText(clip, img[0])
    x = clip.embed(ids).requires_grad_()
    loss = obj.loss(x, ids, torch.ones_like(ids))
    loss.sum().backward()
    assert x.grad.abs().sum() > 0 and 0 <= float(loss.detach()) <= 2


def test_gradients_reach_inputs_without_touching_parameters(lm):
    ids = torch.tensor([lm.tokenizer("a cat on a mat")["input_ids"]])
    x = lm.embed(ids).detach().requires_grad_()
    Fluency(lm).loss(x, ids, torch.ones_like(ids)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())


def test_as_objective_errors(lm, enc):
    assert isinstance(as_objective(lm), Fluency)
    with pytest.raises(ValueError, match="target_text"):
        as_objective(enc)
    with pytest.raises(ValueError, match="empty"):
        Similarity(enc, "  ")
    with pytest.raises(ValueError, match="cannot make an objective"):
        as_objective(object())
