"""A worker rides out a storage outage: it backs off and goes on, losing no job."""

from __future__ import annotations

import logging
import threading

import pytest

from gigq_core import Job, JobQueue, Worker
from gigq_core.errors import NotADatabaseError, StorageUnavailableError
from gigq_core.memory import MemoryStorage
from tests import jobs


class FlakyStorage(MemoryStorage):
    """Claims fail `failures` times (the database is unreachable), then work."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__("flaky")
        self.failures = failures
        self.error = error

    def claim(self, *args, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return super().claim(*args, **kwargs)


@pytest.mark.timeout(30)
def test_worker_backs_off_and_recovers_after_an_outage(pm, caplog):
    storage = FlakyStorage(2, StorageUnavailableError("the server is down"))
    with JobQueue(storage, plugin_manager=pm) as queue:
        job_id = queue.submit(Job("n", jobs.noop))
        worker = Worker(queue, executor="inline", polling_interval=0.1)
        runner = threading.Thread(target=worker.start)
        with caplog.at_level(logging.WARNING, logger="gigq"):
            runner.start()
            try:
                assert queue.wait([job_id], timeout=20)[job_id] == "completed"
            finally:
                worker.stop()
                runner.join(timeout=20)
        assert not runner.is_alive()
        assert storage.failures == 0
        assert "trying again" in caplog.text


@pytest.mark.timeout(30)
def test_a_file_that_is_not_a_database_ends_the_worker(pm):
    storage = FlakyStorage(1, NotADatabaseError("jobs.db is not a GigQ database"))
    with JobQueue(storage, plugin_manager=pm) as queue:
        worker = Worker(queue, executor="inline", polling_interval=0.1)
        with pytest.raises(NotADatabaseError):
            worker.start()
