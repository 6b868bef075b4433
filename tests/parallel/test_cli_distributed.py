"""``fuse optimize`` and ``fuse caption`` under torchrun with 2 gloo processes on tiny saved models print
once, record ``world_size`` 2 and give exactly what one process gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fuse.cli import main
from launch import torchrun
from parallel_scenarios import save_models
from tiny import bpe_tokenizer, tiny_clip

pytestmark = pytest.mark.usefixtures("one_thread")
VOLATILE = ("seconds", "evaluations_per_second", "world_size")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_models(root)
    clip = tiny_clip(bpe_tokenizer())
    clip.model.save_pretrained(root / "clip")
    clip.tokenizer.save_pretrained(root / "clip")
    (root / "images").mkdir()
    for i, v in enumerate((30, 130, 230)):
        Image.fromarray(np.full((24, 36, 3), v, np.uint8)).save(root / "images" / f"im{i}.png")
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def _strip(rec: dict, world: int) -> dict:
    assert rec["world_size"] == world
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def _in_process(args, capsys) -> str:
    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().out


def test_optimize_one_target_and_a_targets_job(setup, tmp_path, capsys, monkeypatch):
    env = {"FUSE_CACHE": str(setup / "cache")}
    monkeypatch.setenv("FUSE_CACHE", env["FUSE_CACHE"])
    common = ["optimize", "--primary", str(setup / "lm"), "--secondary", f"{setup / 'enc'}:1.0", "--budget", "24",
              "--batch-size", "8", "--n-tokens", "3", "--prefix", "An image of", "--micro-batch", "3", "--json", "--no-progress"]
    one = common + ["--target-text", "a cat on a mat"]
    proc = torchrun(["-m", "fuse", *one], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = _json_lines(proc.stdout)
    assert len(printed) == 1  # printed once
    assert _strip(printed[0], 2) == _strip(_json_lines(_in_process(one, capsys))[0], 1)

    targets = tmp_path / "targets.txt"
    targets.write_text("a cat on a mat\n# a comment\n\n{\"id\": \"boat-1\", \"target_text\": \"a small boat\", \"seed\": 1}\n"
                       "{\"target_text\": \"the sun over a lake\", \"n_tokens\": 2}\n")
    job = common + ["--targets", str(targets)]
    proc = torchrun(["-m", "fuse", *job, "--output", str(tmp_path / "two.jsonl")], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = _json_lines(proc.stdout)
    ref = _json_lines(_in_process(job + ["--output", str(tmp_path / "one.jsonl")], capsys))
    assert [r["key"] for r in two] == ["a cat on a mat", "boat-1", "the sun over a lake"]
    assert [_strip(r, 2) for r in two] == [_strip(r, 1) for r in ref]
    assert two[1]["seed"] == 1 and len(two[2]["best_text"]) < len(two[0]["best_text"]) + 20
    assert len((tmp_path / "two.jsonl").read_text().splitlines()) == 3
    # the finished file resumes to the same records without running anything again
    again = _json_lines(_in_process(job + ["--output", str(tmp_path / "two.jsonl")], capsys))
    assert [_strip(r, 2) for r in again] == [_strip(r, 2) for r in two]
    assert len((tmp_path / "two.jsonl").read_text().splitlines()) == 3


def test_caption_a_folder_as_a_sharded_job(setup, tmp_path, capsys, monkeypatch):
    env = {"FUSE_CACHE": str(setup / "cache")}
    monkeypatch.setenv("FUSE_CACHE", env["FUSE_CACHE"])
    args = ["caption", str(setup / "images"), "--lm", str(setup / "lm"), "--scorer", str(setup / "clip"), "--n-tokens", "2",
            "--batch-size", "4", "--beam-width", "2", "--json", "--no-progress"]
    proc = torchrun(["-m", "fuse", *args, "--output", str(tmp_path / "two.jsonl")], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout[proc.stdout.index("[") :])
    assert [r["image"] for r in two] == [str(setup / "images" / f"im{i}.png") for i in range(3)]  # sorted, .txt left out
    ref = json.loads(_in_process(args + ["--output", str(tmp_path / "one.jsonl")], capsys))
    assert [_strip(r, 2) for r in two] == [_strip(r, 1) for r in ref]
    assert all(r["caption"].startswith("An image of") for r in two)
    logged = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in logged) == [r["image"] for r in two]


def test_optimize_prompts_with_terms_split_by_model(setup, tmp_path, capsys, monkeypatch):
    """``--prompts`` with two LMs of different tokenizers under 2 gloo ranks, each rank running one model's terms:
    the same span, loss and steps as one process running both (one term per rank: the sums are the same floats)."""
    from parallel_scenarios import save_prompt_models

    save_prompt_models(setup)
    env = {"FUSE_CACHE": str(setup / "cache")}
    monkeypatch.setenv("FUSE_CACHE", env["FUSE_CACHE"])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "the quick{optim_str} over the lazy dog", "target": " a cat"}) + "\n" +
                       json.dumps({"prompt": "a picture of{optim_str}", "target": " the sun"}) + "\n")
    args = ["optimize", "--primary", str(setup / "bpe-lm"), "--model", str(setup / "llama3-lm"), "--prompts",
            str(prompts), "--budget", "24", "--batch-size", "8", "--n-tokens", "3", "--seed", "0", "--json",
            "--no-progress"]
    proc = torchrun(["-m", "fuse", *args, "--split-terms", "model"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = _json_lines(proc.stdout)
    assert len(printed) == 1
    one = _json_lines(_in_process(args, capsys))[0]
    assert _strip(printed[0], 2) == _strip(one, 1)
    assert len(one["losses"]) == 4 and one["evaluations"] > 0
    import fuse.parallel

    made = []  # the flag reaches the chain: in one process, a TermParallelChain holding every term
    real = fuse.parallel.TermParallelChain
    monkeypatch.setattr(fuse.parallel, "TermParallelChain", lambda chain, by: made.append(real(chain, by=by)) or made[-1])
    assert _strip(_json_lines(_in_process(args + ["--split-terms", "term"], capsys))[0], 1) == _strip(one, 1)
    assert [(c.by, c.mine) for c in made] == [("term", [0, 1, 2, 3])]
    capsys.readouterr()
    assert main(args + ["--split-terms", "model", "--micro-batch", "2"]) == 2
    assert "give one of them" in capsys.readouterr().err
