"""fuse.parallel in one process: sharding arithmetic (properties), the pass-through and micro-batched
DataParallelChain, the JobLog (atomic lines, torn lines, resume, other options refused), run_job,
targets files, folder expansion, config and CLI errors."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.parallel import (DataParallelChain, JobError, JobLog, ParallelConfig, all_gather_json, all_gather_rows,
                           broadcast_object, init_from_env, job_id, main_stdout, run_job, shard, shard_bounds, world_size)
from fuse.parallel.collectives import _spec
from fuse.parallel.files import expand_folders
from fuse.parallel.targets import read_targets
from tiny import WORDS, tiny_chain

pytestmark = pytest.mark.usefixtures("one_thread")


# -- sharding arithmetic -----------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 200), parts=st.integers(1, 9), align=st.integers(1, 12))
def test_shard_bounds_partition_in_order_aligned_and_balanced(n, parts, align):
    b = shard_bounds(n, parts, align)
    assert len(b) == parts and b[0][0] == 0 and b[-1][1] == n
    assert all(b[i][1] == b[i + 1][0] for i in range(parts - 1))  # contiguous, in rank order
    assert all(start % align == 0 or start == n for start, _ in b)  # every piece starts on a micro-batch
    units = [-(-(stop - start) // align) for start, stop in b]
    assert max(units) - min(units) <= 1


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 100), world=st.integers(1, 8), how=st.sampled_from(["round_robin", "contiguous"]))
def test_shard_deals_every_item_to_exactly_one_rank(n, world, how):
    parts = [shard(n, r, world, how) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    if how == "contiguous":
        assert [i for p in parts for i in p] == list(range(n))
    else:
        assert all(i % world == r for r, p in enumerate(parts) for i in p)


def test_shard_errors():
    with pytest.raises(ValueError, match="unknown shard"):
        shard(3, 0, 1, "random")
    with pytest.raises(ValueError, match="rank"):
        shard(3, 2, 2)
    with pytest.raises(ValueError, match="parts"):
        shard_bounds(3, 0)


# -- one process: everything is the identity ---------------------------------------------------
def test_single_process_runtime_and_collectives_are_identities(capsys):
    assert init_from_env() is False and world_size() == 1
    x = torch.arange(6.0).reshape(3, 2)
    assert all_gather_rows(x) is x
    assert all_gather_json({"a": [1, "é"]}) == [{"a": [1, "é"]}]
    obj = {"t": (x, 1.5, None)}
    assert broadcast_object(obj) is obj
    with main_stdout():
        print("shown")
    assert capsys.readouterr().out == "shown\n"
    with pytest.raises(ValueError, match="cannot carry a set"):
        _spec({"a": {1, 2}}, [])
    with pytest.raises(ValueError, match="string keys"):
        _spec({1: 2}, [])


@pytest.fixture(scope="module")
def chain():
    return tiny_chain()


TEXTS = [" ".join(WORDS[i : i + 1 + i % 6]) for i in range(13)]


def test_pass_through_without_micro_batches(chain):
    dp = DataParallelChain(chain, micro_batch=None)
    a, b = dp.evaluate(TEXTS, batch_size=4), chain.evaluate(TEXTS, batch_size=4)
    assert torch.equal(a.total, b.total) and torch.equal(a.parts, b.parts)
    assert dp.primary is chain.primary and dp.labels == chain.labels and torch.equal(dp.weights, chain.weights)
    assert dp.decode([5, 6]) == chain.decode([5, 6]) and dp.world_size == 1
    ids = chain.primary.tokenizer("a cat on a mat")["input_ids"]
    (l1, p1, g1), (l2, p2, g2) = dp.gradient(ids), chain.gradient(ids)
    assert l1 == l2 and torch.equal(p1, p2) and torch.equal(g1, g2)
    assert dp.stats["gradient_calls"] == 1 and dp.stats["evaluate_calls"] == 1


@pytest.mark.parametrize("m", [1, 3, 5, 13, 20])
def test_micro_batches_score_each_text_in_the_same_batch_for_any_split(chain, m):
    got = DataParallelChain(chain, micro_batch=m).evaluate(TEXTS, batch_size=64)
    want = [chain.evaluate(TEXTS[i : i + m], batch_size=m) for i in range(0, len(TEXTS), m)]
    assert torch.equal(got.total, torch.cat([w.total for w in want]))
    assert torch.equal(got.parts, torch.cat([w.parts for w in want]))
    torch.testing.assert_close(got.total, chain.evaluate(TEXTS).total, rtol=1e-5, atol=1e-6)  # batch shape: rounding only


def test_data_parallel_chain_errors(chain):
    dp = DataParallelChain(chain)
    with pytest.raises(ValueError, match="already split across ranks"):
        DataParallelChain(dp)
    with pytest.raises(ValueError, match="wraps a fuse chain"):
        DataParallelChain(object())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="micro_batch"):
            DataParallelChain(chain, micro_batch=bad)
    with pytest.raises(ValueError, match="no texts"):
        dp.evaluate([])
    with pytest.raises(ValueError, match="non-empty"):
        dp.evaluate(["ok", "  "])
    with pytest.raises(AttributeError):
        dp.no_such_thing  # noqa: B018


def test_parallel_config_validates():
    assert ParallelConfig().micro_batch == 8 and ParallelConfig(micro_batch=None).micro_batch is None
    with pytest.raises(ValueError, match="micro_batch"):
        ParallelConfig(micro_batch=0)
    with pytest.raises(ValueError, match="shard"):
        ParallelConfig(shard="zigzag")


# -- the job log and run_job ------------------------------------------------------------------
def test_job_log_appends_whole_lines_and_survives_a_torn_line(tmp_path, caplog):
    log = JobLog(tmp_path / "sub" / "r.jsonl", job="abc")
    log.append({"key": "a", "v": 1})
    with open(log.path, "a") as f:
        f.write('{"key": "b", "v"')  # a writer killed mid-line
    log.append({"key": "c", "v": 3})
    with caplog.at_level(logging.WARNING):
        recs = log.records()
    assert recs == {"a": {"key": "a", "v": 1}, "c": {"key": "c", "v": 3}}
    assert "incomplete line" in caplog.text
    lines = log.path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"job": "abc", "key": "c", "v": 3}  # the torn line did not swallow it
    with pytest.raises(ValueError, match="other options"):
        JobLog(log.path, job="xyz").records()
    with pytest.raises(ValueError, match=r"\.jsonl"):
        JobLog(tmp_path / "r.json")
    with pytest.raises(ValueError, match="key"):
        log.append({"v": 1})
    assert job_id({"a": 1, "b": 2}) == job_id({"b": 2, "a": 1}) != job_id({"a": 1, "b": 3})


def test_run_job_resumes_and_keeps_what_finished_before_a_failure(tmp_path):
    calls = []

    def fn(x):
        calls.append(x)
        if x == "boom":
            raise RuntimeError("no good")
        return {"double": x * 2}

    items = [(f"k{i}", s) for i, s in enumerate(["a", "b", "boom", "d"])]
    log = JobLog(tmp_path / "r.jsonl", job=job_id({"n": 1}))
    with pytest.raises(JobError, match=r"rank 0 failed on item 'k2': RuntimeError: no good.*rerun the same command"):
        run_job(items, fn, log=log)
    assert set(log.records()) == {"k0", "k1"}
    calls.clear()
    items[2] = ("k2", "c")
    rows = run_job(items, fn, log=log)
    assert calls == ["c", "d"]  # finished items are not redone
    assert [r["key"] for r in rows] == ["k0", "k1", "k2", "k3"] and [r["double"] for r in rows] == ["aa", "bb", "cc", "dd"]
    assert all(r["world_size"] == 1 for r in rows)
    assert len(log.path.read_text().splitlines()) == 4  # nothing duplicated
    assert run_job(items, fn, log=log) == rows and calls == ["c", "d"]
    with pytest.raises(ValueError, match="more than once"):
        run_job([("a", 1), ("a", 2)], fn)
    with pytest.raises(ValueError, match="string key"):
        run_job([(1, 1)], fn)


# -- inputs of the dataset commands -----------------------------------------------------------
def test_read_targets_plain_and_json_lines(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a ship\n\n# note\n{\"id\": \"s2\", \"target_text\": \"a ship\", \"seed\": 2, \"prefix\": \"A\"}\n")
    assert read_targets(f) == [("a ship", {"target_text": "a ship"}),
                               ("s2", {"target_text": "a ship", "seed": 2, "prefix": "A"})]
    for body, match in [("a\na\n", "repeats line 1"), ("{\"target_text\": \"x\", \"lr\": 1}\n", "unknown field"),
                        ("{\"target_text\": \"x\", \"seed\": \"1\"}\n", "must be a int"), ("{oops\n", "not valid JSON"),
                        ("{\"id\": \"x\"}\n", "target_text"), ("# only\n", "no targets"), ("[1]\n", "")]:
        f.write_text(body)
        if body == "[1]\n":  # not JSON-object syntax: taken as a plain target text
            assert read_targets(f) == [("[1]", {"target_text": "[1]"})]
            continue
        with pytest.raises(ValueError, match=match):
            read_targets(f)
    with pytest.raises(ValueError, match="does not exist"):
        read_targets(tmp_path / "missing.txt")


def test_expand_folders_sorted_and_filtered(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("b.PNG", "a.jpg", "c.txt"):
        (d / name).write_bytes(b"x")
    (d / "sub").mkdir()
    got = expand_folders([str(tmp_path / "x.png"), str(d)], {".png", ".jpg"})
    assert got == [str(tmp_path / "x.png"), str(d / "a.jpg"), str(d / "b.PNG")]
    with pytest.raises(ValueError, match="given twice"):
        expand_folders([str(d), str(d / "a.jpg")], {".jpg"})
    with pytest.raises(ValueError, match="holds no files"):
        expand_folders([str(d / "sub")], {".png"})


def test_cli_rejects_conflicting_dataset_options(tmp_path, capsys):
    from fuse.cli import main

    base = ["optimize", "--primary", "bundled:smollm2-135m", "--no-progress"]
    assert main(base + ["--output", str(tmp_path / "r.jsonl")]) == 2
    assert "--output FILE.jsonl goes with --targets" in capsys.readouterr().err
    assert main(base + ["--targets", "t.txt", "--target-text", "x"]) == 2
    assert "either --target-text or --targets" in capsys.readouterr().err
    assert main(base + ["--micro-batch", "-2"]) == 2
    assert "micro_batch" in capsys.readouterr().err
