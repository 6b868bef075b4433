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


def test_build_from_words_file_and_eval_any_word_list_with_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a, b = tiny_causal_lm(bpe_tokenizer(), d=8), tiny_encoder(wordpiece_tokenizer(), d=6)
    for name, m in (("a", a), ("b", b)):
        m.model.save_pretrained(tmp_path / name)
        m.tokenizer.save_pretrained(tmp_path / name)
    words = tmp_path / "trade.txt"
    words.write_text("\n".join(WORDS) + "\n")
    out = tmp_path / "ad"
    assert main(["adapter", "build", str(tmp_path / "a"), str(tmp_path / "b"), "--words-file", str(words),
                 "--holdout", "8", "--k", "4", "--out", str(out), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["word_source"].startswith("file:trade.txt#") and built["heldout_n_words"] > 0
    # eval finds the file's held-out words again, and scores any other list with a report and a PNG
    assert main(["adapter", "eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["heldout_top1"] == built["heldout_top1"]
    other = tmp_path / "other.txt"
    other.write_text("cat\ndog\nlake\nsunset\nboat\n")
    assert main(["adapter", "eval", str(out), "--words-file", str(other), "--plot", str(tmp_path / "q.png")]) == 0
    text = capsys.readouterr().out
    assert "worst-mapped words" in text and "top-1" in text and (tmp_path / "q.png").stat().st_size > 1000


def test_build_language_and_corpus_flags_are_validated(tmp_path, capsys):
    code = main(["adapter", "build", "x", "y", "--corpus", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")])
    assert code == 2 and "not a file" in capsys.readouterr().err
