"""Load: many conversations at once over several API keys against a real server (a child process on 127.0.0.1, or
the app in this process where its memory is looked at), for a bounded time. Nothing is lost, nothing crosses keys,
and memory does not grow with the number of requests served."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc

import pytest
from pydantic import SecretStr

from hugginggpt.server.app import create_app
from hugginggpt.server.load import load_pipeline, measure, run_load
from hugginggpt.server.runs import Run
from serverkit import LiveServer, settings_for

pytestmark = pytest.mark.slow


def test_fifty_conversations_over_five_keys_lose_nothing_and_see_nothing_of_each_other():
    report = run_load(conversations=50, keys=5, seconds=20)
    print("\n".join(report.lines()))
    assert report.requests >= 50 and report.conversations == 50 and report.keys == 5
    assert report.errors == 0 and report.lost == 0, report.problems
    assert report.answered == report.requests  # each with its own request's token, in its own conversation
    assert report.cross_key_leaks == 0, report.problems
    # each conversation, and each of its runs (twice: the run and its events) and files (twice: the row and
    # the bytes) were asked for with another key, plus that key's two lists
    assert report.cross_key_reads >= 50 * 3 + 2 * report.requests + 2 * report.files
    assert report.files > 50  # an upload per conversation and the recordings of its `say` requests
    assert 0 < report.rss_start_mb <= report.rss_peak_mb


def test_memory_does_not_grow_with_the_requests_served(tmp_path):
    """The app in this process: after a warm-up, rounds of load (200 requests or more) leave no run behind and
    traced memory grows by less than 1 KiB a request (a run kept with its events, or the scripted LLM keeping each
    warmed prefix as it once did, is several KiB a request; what is left after the warm-up is 10-70 KiB in all)."""
    keys = ["sk-memory-a", "sk-memory-b"]
    settings = settings_for(tmp_path, api_keys=SecretStr(",".join(keys)), max_runs_per_key=10)
    app = create_app(load_pipeline(settings), settings)
    with LiveServer(app) as server:
        tracemalloc.start(1)
        try:
            asyncio.run(measure(server.url, os.getpid(), keys, 10, 3))  # caches, pools, first-call costs
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            served = 0
            while served < 200:  # rounds until enough requests that what one keeps would show
                report = asyncio.run(measure(server.url, os.getpid(), keys, 10, 5))
                assert report.errors == report.lost == report.cross_key_leaks == 0, report.problems
                served += report.requests
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        svc = app.state.services
        assert not svc.runs._live and not svc.runs._retrying and not svc.limiter._running
    assert sum(type(o) is Run for o in gc.get_objects()) == 0  # `type`: isinstance would poke lazy modules
    print(f"{grown / 1024:.0f} KiB more after {served} requests")
    assert grown < served * 1024, f"{grown / 1024:.0f} KiB more after {served} requests"


@pytest.mark.integration
def test_a_few_concurrent_conversations_on_the_embedded_stack():
    report = run_load(conversations=3, keys=2, seconds=1, embedded=True)
    print("\n".join(report.lines()))
    assert report.requests == 3  # one request each: the time is up before any conversation's first answer
    assert report.errors == report.lost == report.cross_key_leaks == 0, report.problems
    assert report.answered == 3
