"""Contract of `Storage.results`: the parent results a worker hands to a job, sized by the
storage before any is read, so results over the limit never reach memory."""

from __future__ import annotations

from tests.contract._factory import complete


def test_results_returns_each_stored_result_with_their_total_size(storage, clock, make_job):
    a, b, pending = make_job(), make_job(), make_job()
    storage.insert([a, b, pending], clock.now())
    complete(storage, clock.now(), a.id, result='"abc"')
    complete(storage, clock.now(), b.id, result='"é€😀"')  # 2 + 3 + 4 bytes, quotes 2

    total, found = storage.results([a.id, b.id, pending.id, "unknown-id"], 1_000)

    assert total == 5 + 11
    assert found == {a.id: '"abc"', b.id: '"é€😀"'}  # no result, unknown: left out


def test_results_counts_a_job_named_twice_once(storage, clock, make_job):
    a = make_job()
    storage.insert([a], clock.now())
    complete(storage, clock.now(), a.id, result="12345")

    assert storage.results([a.id, a.id], 5) == (5, {a.id: "12345"})


def test_results_over_the_limit_reads_none(storage, clock, make_job):
    a, b = make_job(), make_job()
    storage.insert([a, b], clock.now())
    complete(storage, clock.now(), a.id, result='"' + "x" * 600 + '"')
    complete(storage, clock.now(), b.id, result='"' + "é" * 300 + '"')  # 602 bytes

    assert storage.results([a.id, b.id], 1_203) == (1_204, {})
    total, found = storage.results([a.id, b.id], 1_204)
    assert total == 1_204
    assert set(found) == {a.id, b.id}


def test_results_of_no_job(storage, clock, make_job):
    a = make_job()
    storage.insert([a], clock.now())

    assert storage.results([], 10) == (0, {})
    assert storage.results([a.id, "unknown-id"], 0) == (0, {})
