"""Two gloo processes under torchrun on tiny models: N processes give exactly the one-process result
(optimizers through DataParallelChain, a captioning job, the CLI), a killed or failed job resumes
without redoing or duplicating items, and only rank 0 prints."""

from __future__ import annotations

import json
import re

import pytest
import torch

from fuse.parallel import JobLog
from launch import ROOT, torchrun
from parallel_scenarios import caption_job, models, optimize_all, save_models

pytestmark = pytest.mark.usefixtures("one_thread")
LOSS_TOL = dict(rel=1e-5, abs=1e-6)  # only for micro_batch=None, where batch shapes differ from one process


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, saved):
    out = tmp_path_factory.mktemp("dp")
    proc = torchrun([str(ROOT / "tests" / "parallel" / "dp_worker.py"), str(out), str(saved)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return proc, ranks, out


@pytest.fixture(scope="module")
def one_process(saved):
    lm, enc, adapters = models(saved)
    return optimize_all(lm, enc, adapters), caption_job(lm, enc, adapters)


def test_collectives_gather_rows_of_every_length_and_broadcast_exact_bits(two_ranks):
    _, ranks, _ = two_ranks
    for res in ranks:
        assert res["world_size"] == 2
        assert res["rows"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]  # rank 0 gave 1 row, rank 1 two, in rank order
        assert res["broadcast"] == {"a": [[0.0, 1.0, 2.0], 1.5, "x"], "b": [None, [7.0, 7.0]], "types": ["tuple", "torch.float64"]}
        assert res["json"] == [{"rank": 0, "text": ""}, {"rank": 1, "text": "é"}]


def test_optimizers_through_data_parallel_chain_equal_one_process(two_ranks, one_process, saved):
    _, ranks, _ = two_ranks
    ref, _ = one_process
    for name, want in ref.items():
        for res in ranks:
            got = res["optim"][name]
            if name.endswith("None"):  # one contiguous piece per rank: equal up to float rounding
                assert got["text"] == want["text"], name
                assert got["loss"] == pytest.approx(want["loss"], **LOSS_TOL)
                assert got["evaluations"] == want["evaluations"]
            else:  # micro-batched: bit for bit, decisions, history and the evaluation count included
                assert got == want, name
    # the gathered evaluation is in input order: compare with the chain itself, text by text
    lm, enc, adapters = models(saved)
    from fuse.objectives import Fluency, Similarity
    from fuse.optim.chain import Chain
    from tiny import WORDS

    chain = Chain(lm, [(Fluency(lm), 1.0), (Similarity(enc, "a cat on a mat"), 2.0)], adapters=adapters)
    texts = [" ".join(WORDS[i : i + 1 + i % 5]) for i in range(11)]
    one_by_one = torch.cat([chain.evaluate([t]).total for t in texts])
    torch.testing.assert_close(torch.tensor(ranks[1]["optim"]["evaluate"]["total"]), one_by_one, rtol=1e-5, atol=1e-6)


def test_the_centers_cache_is_used_on_every_rank_and_equals_one_process(two_ranks, one_process):
    """GCG over a fixed prefix on a d = 64 LM: both ranks crop the center's KV cache (rank 0's, broadcast with the
    gradient) when they score their share, and the run equals one process's bit for bit."""
    _, ranks, _ = two_ranks
    ref, _ = one_process
    want = ref["gcg-center"]
    assert want["center_used"] >= want["scorings"] - 1 > 2
    for res in ranks:
        assert res["optim"]["gcg-center"] == want
    # AutoDAN ranking by the logits recorded in the gradient pass: every rank has them (sent with the gradient)
    assert ref["autodan-recorded"]["fallbacks"] == 0
    for res in ranks:
        assert res["optim"]["autodan-recorded"] == ref["autodan-recorded"]


def test_caption_job_equals_one_process_and_is_logged_once(two_ranks, one_process):
    _, ranks, out = two_ranks
    _, ref = one_process
    assert ranks[0]["captions"] == ref
    assert ranks[1]["captions"] is None  # only rank 0 returns the records
    lines = [json.loads(x) for x in (out / "captions.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in lines) == [f"img{i}" for i in range(5)]
    assert {r["world_size"] for r in lines} == {2} and all(r["caption"].startswith("An image of") for r in lines)


def test_only_rank_zero_prints_and_logs_info(two_ranks):
    proc, _, _ = two_ranks
    assert proc.stdout.count("PRINTED-ONCE") == 1
    assert (proc.stdout + proc.stderr).count("LOGGED-ONCE") == 1


def test_a_failed_then_killed_job_resumes_without_redoing_or_duplicating(tmp_path):
    worker = str(ROOT / "tests" / "parallel" / "job_worker.py")
    log = tmp_path / "results.jsonl"
    keys = [f"k{i:02d}" for i in range(12)]

    def finished_calls():
        return sorted(k for p in tmp_path.glob("calls-*.txt") for k in p.read_text().split())

    # 1. a process dies half-way (os._exit on k07): what was appended survives, and only that
    killed = torchrun([worker, str(tmp_path)], env={"KILL_KEY": "k07"})
    assert killed.returncode != 0
    first = JobLog(log).records()
    # the surviving rank is stopped by torchrun wherever it is: an item it computed but had not yet appended is
    # lost (at most one per rank) and computed again later; nothing appended is ever lost or computed twice
    assert "k07" not in first and set(first) <= set(finished_calls())
    redo = set(finished_calls()) - set(first)
    assert len(redo) <= 1, redo
    # 2. an item raises: a clear error on rank 0 naming the rank and the item; finished items are kept
    failed = torchrun([worker, str(tmp_path)], env={"FAIL_KEY": "k07"})
    assert failed.returncode != 0
    assert re.search(r"JOB-ERROR: rank [01] failed on item 'k07': ValueError: cannot process k07", failed.stderr), failed.stderr[-2000:]
    assert "rerun the same command to resume" in failed.stderr
    second = JobLog(log).records()
    assert "k07" not in second and set(first) <= set(second) and set(second) <= set(finished_calls())
    redo |= set(finished_calls()) - set(second)
    # 3. the rerun does only the rest: every item computed exactly once over all three runs, logged once
    done = torchrun([worker, str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    calls = finished_calls()
    assert sorted(set(calls)) == keys
    assert all(calls.count(k) == 1 or (k in redo and calls.count(k) == 2) for k in keys), calls
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(r["key"] for r in lines) == keys
    printed = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert [r["key"] for r in printed] == keys  # rank 0 printed every record once, in input order
    assert [r["value"] for r in printed] == [sum(map(ord, k)) / 7.0 for k in keys]
    # 4. the same file with other options: refused on every rank (none waits for another), nothing run
    other = torchrun([worker, str(tmp_path)], env={"JOB_ID": "job-2"})
    assert other.returncode != 0 and "holds results of a job with other options" in other.stderr
    assert finished_calls() == calls
