"""The command line: adapter build/eval round trip on saved tiny models, models listing, errors."""

import json

import pytest

from fuse.cli import main
from tiny import WORDS
from tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder, wordpiece_tokenizer


def test_models_lists_bundled(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSE_CACHE", str(tmp_path))
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in out["bundled"]}
    assert {"bundled:smollm2-135m", "bundled:gemma3-270m", "bundled:minilm-l6"} <= names


def test_unknown_model_is_one_clear_line(capsys, tmp_path):
    code = main(["adapter", "build", "bundled:nope", "bundled:minilm-l6", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown bundled model" in err and "Traceback" not in err


def test_build_and_eval_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fuse.core.wordlist.frequent_words", lambda n, lang="en": (WORDS * (n // len(WORDS) + 1))[:n])
    a, b = tiny_causal_lm(bpe_tokenizer(), d=8), tiny_encoder(wordpiece_tokenizer(), d=6)
    for name, m in (("a", a), ("b", b)):
        m.model.save_pretrained(tmp_path / name)
        m.tokenizer.save_pretrained(tmp_path / name)
    out = tmp_path / "ad"
    assert main(["adapter", "build", str(tmp_path / "a"), str(tmp_path / "b"), "--words", "40", "--holdout", "10",
                 "--k", "4", "--out", str(out), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert main(["adapter", "eval", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert built["heldout_top1"] == again["heldout_top1"] and built["heldout_n_words"] == again["heldout_n_words"] > 0
