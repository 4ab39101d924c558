"""`JobContext`: what a running job knows about itself."""

from __future__ import annotations

from gigq_core.context import JobContext


def test_request_stop_makes_the_job_cancelled() -> None:
    context = JobContext(id="j1", name="job", attempt=1, worker_id="w1")
    assert not context.is_cancelled()
    context.request_stop()
    assert context.is_cancelled()
    context.request_stop()  # asking twice is harmless
    assert context.is_cancelled()
