"""The prompts file of ``fuse optimize --prompts FILE`` (fuse.optim.prompt_file): every accepted form reads to the
same pairs, and each malformed file is refused naming the place and the fix; the CLI runs one span for two tiny LMs
with different tokenizers and reports the same loss an exact rescoring gives."""

import json

import pytest

from fuse.optim.prompt_file import read_prompts

CHAT = [{"role": "user", "content": "Tell me a joke{optim_str}"}]
ITEMS = [{"id": "joke", "messages": CHAT, "target": "Sure"}, {"prompt": "Q: a color{optim_str}\nA:", "target": " Red"}]
EXPECTED = [(CHAT, "Sure"), ("Q: a color{optim_str}\nA:", " Red")]


@pytest.mark.parametrize("form", ["jsonl", "list", "prompts", "tasks"])
def test_every_form_reads_to_the_same_pairs(tmp_path, form):
    path = tmp_path / "p.json"
    if form == "jsonl":
        path.write_text("# a comment\n\n" + "\n".join(json.dumps(i) for i in ITEMS) + "\n")
    else:
        path.write_text(json.dumps(ITEMS if form == "list" else {form: ITEMS}))
    assert read_prompts(path) == EXPECTED


def test_one_object_is_one_prompt(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(ITEMS[0], indent=2))  # a multi-line single object: one JSON document, not JSONL
    assert read_prompts(path) == EXPECTED[:1]


@pytest.mark.parametrize("body, message", [
    ('{"messages": [{"role": "user", "content": "hi{optim_str}"}]}', "'target' must be a non-empty string"),
    ('{"prompt": "hi{optim_str}", "target": "  "}', "'target' must be a non-empty string"),
    ('{"prompt": "hi{optim_str}", "messages": [], "target": "x"}', "exactly one of 'messages'"),
    ('{"target": "x"}', "exactly one of 'messages'"),
    ('{"prompt": "hi", "target": "x"}', "exactly once, found it 0 times"),
    ('{"prompt": "{optim_str} and {optim_str}", "target": "x"}', "exactly once, found it 2 times"),
    ('{"prompt": "hi{optim_str}", "target": "x", "goal": "y"}', "unknown field\\(s\\) \\['goal'\\]"),
    ('{"prompt": "hi{optim_str}", "target": "x"}\n{"prompt": oops}', "p.jsonl:2: not valid JSON"),
    ('[1, 2]', "item 0: each prompt is a JSON object"),
    ('{"items": []}', "needs a 'prompts' list"),
    ('[]', "holds no prompt"),
    ('# only a comment\n', "holds no prompt"),
])
def test_a_malformed_file_is_refused_naming_what_is_wrong(tmp_path, body, message):
    path = tmp_path / "p.jsonl"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_prompts(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_prompts(tmp_path / "nope.jsonl")


def test_the_cli_optimizes_one_span_for_two_tokenizers(tmp_path, monkeypatch, capsys):
    import fuse.optim.prompt_chain as prompt_chain_module
    from fuse.cli import main
    from fuse.models.loading import load
    from fuse.optim.prompt_chain import PromptChain
    from tiny import WORDS, bpe_tokenizer, llama3_tokenizer, tiny_causal_lm

    monkeypatch.setenv("FUSE_CACHE", str(tmp_path / "cache"))
    real = prompt_chain_module.cached_adapter  # fitted on the tiny models' own words
    monkeypatch.setattr(prompt_chain_module, "cached_adapter", lambda a, b, config, **kw: real(a, b, config, words=WORDS, k=4))
    for name, tok, seed in (("a", bpe_tokenizer(), 0), ("b", llama3_tokenizer(), 2)):
        m = tiny_causal_lm(tok, d=16, seed=seed)
        m.model.save_pretrained(tmp_path / name)
        m.tokenizer.save_pretrained(tmp_path / name)
    prompts = tmp_path / "prompts.jsonl"
    pairs = [("the quick{optim_str} over the lazy dog", " a cat"), ("a picture of{optim_str}", " the sun")]
    prompts.write_text("\n".join(json.dumps({"prompt": p, "target": t}) for p, t in pairs))
    args = ["optimize", "--primary", str(tmp_path / "a"), "--model", str(tmp_path / "b"), "--prompts", str(prompts),
            "--budget", "24", "--batch-size", "8", "--n-tokens", "3", "--seed", "0", "--no-progress"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompts"] == 2 and len(out["models"]) == 2 and len(out["losses"]) == 4
    assert 0 < out["evaluations"] <= 24
    a, b = load(str(tmp_path / "a")), load(str(tmp_path / "b"))
    chain = PromptChain([a, b], pairs)  # rescored exactly, apart from the run: the reported loss is the span's
    ids = a.tokenizer(out["best_text"], add_special_tokens=False)["input_ids"]
    assert float(chain.evaluate_ids([ids]).total[0]) == pytest.approx(out["best_loss"], rel=1e-5)
    assert out["cascade_evaluations"] == 0
    assert main(args + ["--json", "--cascade", "0.25"]) == 0  # each step's best quarter by the primary goes on to b
    cascaded = json.loads(capsys.readouterr().out)
    assert cascaded["cascade_evaluations"] > 0 and 0 < cascaded["evaluations"] <= 24
    ids = a.tokenizer(cascaded["best_text"], add_special_tokens=False)["input_ids"]
    assert float(chain.evaluate_ids([ids]).total[0]) == pytest.approx(cascaded["best_loss"], rel=1e-5)
    missing = ["optimize", "--primary", str(tmp_path / "nowhere"), "--prompts", str(prompts), "--bridge-weight", "-1"]
    assert main(missing) == 2 and "fix --bridge-weight" in capsys.readouterr().err  # before any model loads
    assert main(args) == 0  # the plain report
    text = capsys.readouterr().out
    assert text.startswith(f"span: {out['best_text']!r}\nmean loss over 2 prompt(s) × 2 model(s) {out['best_loss']:.4f}")
    for extra, message in ((["--target-text", "x"], "drop --target-text"), (["--prefix", "an image of"], "drop --prefix"),
                           (["--chat-template", "zzz=gemma"], "not --primary or a --model"),
                           (["--bridge-weight", "-1"], "bridge_weight must be a finite number >= 0")):
        assert main(args + extra) == 2 and message in capsys.readouterr().err
    for extra in (["--model", "x"], ["--bridge-weight", "0"], ["--split-terms", "model"]):
        assert main(args[:3] + ["--target-text", "x", "--budget", "2", *extra]) == 2
        assert "go with --prompts FILE" in capsys.readouterr().err
