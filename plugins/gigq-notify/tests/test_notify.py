"""gigq-notify against a real HTTP server on 127.0.0.1 and real commands."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import tomllib
import uuid
from pathlib import Path

import notify_jobs
import pytest
from click.testing import CliRunner
from gigq.plugin import ConfigError, Job, Worker, hookimpl
from gigq_cli import create_cli

import gigq_notify
from gigq_notify import NotifyConfig, Sender, deliver, environment, load_config

HERE = Path(__file__).resolve().parent


def test_entry_point_names_the_module():
    with (HERE.parent / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]

    assert project["name"] == "gigq-notify"
    assert project["entry-points"]["gigq"] == {"notify": "gigq_notify"}
    assert "gigq" in project["dependencies"]


def test_every_hook_of_the_plugin_exists(pm):
    pm.check_pending()


# -- the webhook ---------------------------------------------------------------------------


def test_a_final_failure_posts_json_to_the_webhook(monkeypatch, server, queue, worker, flush):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    job_id = queue.submit(
        Job("nightly", notify_jobs.fail, params={"message": "disk"}, max_attempts=1)
    )

    worker.process_one()
    flush()

    (request,) = server.wait_for(1)
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["json"]
    assert body["event"] == "failed"
    assert body["final"] is True
    assert body["error"] == {"type": "ValueError", "message": "disk"}
    assert body["job"]["id"] == job_id
    assert body["job"]["name"] == "nightly"
    assert body["job"]["status"] == "failed"
    assert body["job"]["attempts"] == 1
    assert body["job"]["function"] == "notify_jobs:fail"


def test_by_default_only_jobs_that_ended_badly_are_sent(monkeypatch, server, queue, worker, flush):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    queue.submit(Job("ok", notify_jobs.add, params={"a": 1, "b": 2}))
    queue.submit(Job("retried", notify_jobs.fail, max_attempts=2, retry_delay=0))

    worker.process_one()  # ok: succeeded, not sent
    worker.process_one()  # retried: attempt 1 fails, retrying, not sent
    worker.process_one()  # attempt 2 fails for good: sent
    flush()

    assert [b["event"] for b in server.bodies()] == ["failed"]
    assert server.bodies()[0]["job"]["attempts"] == 2


def test_events_chosen_in_the_environment(monkeypatch, server, queue, worker, flush):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_EVENTS", "submitted, succeeded")
    job_id = queue.submit(Job("ok", notify_jobs.add, params={"a": 1, "b": 2}))

    worker.process_one()
    flush()

    bodies = server.wait_for(2)
    assert [b["json"]["event"] for b in bodies] == ["submitted", "succeeded"]
    assert {b["json"]["job"]["id"] for b in bodies} == {job_id}
    assert bodies[1]["json"]["duration"] >= 0
    assert "result" not in bodies[1]["json"]


def test_every_event_with_star(monkeypatch, server, queue, worker, flush):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_EVENTS", "*")
    job_id = queue.submit(Job("f", notify_jobs.fail, max_attempts=2, retry_delay=0))
    worker.process_one()
    other = queue.submit(Job("c", notify_jobs.add, params={"a": 1, "b": 1}))
    queue.cancel(other)
    flush()

    events = [(b["event"], b["job"]["id"]) for b in server.bodies()]
    assert events == [
        ("submitted", job_id),
        ("started", job_id),
        ("retrying", job_id),
        ("submitted", other),
        ("cancelled", other),
    ]
    retrying = server.bodies()[2]
    assert retrying["delay"] == 0
    assert retrying["error"]["type"] == "ValueError"
    assert server.bodies()[4]["reason"] == "cancelled by user"
    assert server.bodies()[1]["worker_id"] == "w-notify"


def test_settings_from_the_pyproject_table(tmp_path, server, queue, worker, flush):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.gigq]\n"
        "durability = 'normal'\n"
        "[tool.gigq.notify]\n"
        f"webhook_url = '{server.url}'\n"
        "events = ['succeeded']\n"
        "headers = {Authorization = 'Bearer s3cret'}\n"
    )
    queue.submit(Job("ok", notify_jobs.add, params={"a": 1, "b": 2}))

    worker.process_one()
    flush()

    (request,) = server.wait_for(1)
    assert request["json"]["event"] == "succeeded"
    assert request["headers"]["Authorization"] == "Bearer s3cret"


def test_the_environment_overrides_the_table(tmp_path, monkeypatch):
    (tmp_path / "gigq.toml").write_text(
        "[notify]\nwebhook_url = 'http://127.0.0.1:1/a'\ntimeout = 2\nretries = 4\n"
    )
    monkeypatch.setenv("GIGQ_NOTIFY_TIMEOUT", "0.5")

    config = load_config()

    assert config.webhook_url == "http://127.0.0.1:1/a"
    assert config.timeout == 0.5
    assert config.retries == 4
    assert config.events == {"failed", "timed_out"}


def test_nothing_configured_is_off():
    config = load_config(environ={}, table={})

    assert config == NotifyConfig()
    assert not config.is_enabled


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"webhook_url": "file:///etc/passwd"}, "http:// or https://"),
        ({"webhook_url": "ftp://example.invalid/x"}, "http:// or https://"),
        ({"events": ["failed", "exploded"]}, "a list of events"),
        ({"timeout": 0}, "positive number"),
        ({"timeout": "soon"}, "number of seconds"),
        ({"retries": -1}, "zero or more"),
        ({"queue_size": 0}, "at least 1"),
        ({"command": "echo hi"}, None),  # a string in the table is split, not refused
        ({"command": [1, 2]}, "list of strings"),
        ({"headers": {"X": 1}}, "string values"),
        ({"webhook": "http://x"}, "unknown setting 'webhook'"),
    ],
)
def test_bad_settings_are_refused_with_a_sentence(table, fragment):
    if fragment is None:
        assert load_config(environ={}, table=table).command == ("echo", "hi")
        return
    with pytest.raises(ConfigError, match=fragment):
        load_config(environ={}, table=table)


def test_bad_settings_turn_notifications_off_without_failing_jobs(
    monkeypatch, server, queue, worker, caplog
):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "many")
    job_id = queue.submit(Job("f", notify_jobs.fail, max_attempts=1))

    with caplog.at_level(logging.ERROR, logger="gigq.notify"):
        worker.process_one()

    assert queue.get_job(job_id).status.value == "failed"
    assert "gigq-notify is off" in caplog.text
    assert "GIGQ_NOTIFY_RETRIES" in caplog.text
    assert server.requests == []


def test_server_errors_are_retried(server):
    server.statuses = [500, 503]
    config = NotifyConfig(webhook_url=server.url, retries=2, backoff=0.01)

    (outcome,) = deliver(config, {"event": "failed"})

    assert outcome.ok
    assert outcome.tries == 3
    assert len(server.requests) == 3


def test_retries_are_bounded(server):
    server.statuses = [500, 500, 500, 500]
    config = NotifyConfig(webhook_url=server.url, retries=1, backoff=0.01)

    (outcome,) = deliver(config, {"event": "failed"})

    assert not outcome.ok
    assert outcome.tries == 2
    assert outcome.detail.startswith("HTTP 500")
    assert len(server.requests) == 2


def test_a_client_error_is_not_retried(server):
    server.statuses = [404]
    config = NotifyConfig(webhook_url=server.url, retries=3, backoff=0.01)

    (outcome,) = deliver(config, {"event": "failed"})

    assert (outcome.ok, outcome.tries, outcome.detail) == (False, 1, "HTTP 404 Not Found")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_retried_then_reported():
    config = NotifyConfig(
        webhook_url=f"http://127.0.0.1:{_closed_port()}/x", retries=1, backoff=0.01
    )

    (outcome,) = deliver(config, {"event": "failed"})

    assert not outcome.ok
    assert outcome.tries == 2
    assert "Refused" in outcome.detail


@pytest.mark.timeout(30)
def test_a_slow_webhook_never_blocks_the_worker(monkeypatch, server, queue, worker, caplog):
    server.delay = 20  # far longer than the timeout; released at teardown
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_TIMEOUT", "1")
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "0")
    ids = [queue.submit(Job("f", notify_jobs.fail, max_attempts=1)) for _ in range(3)]

    began = time.monotonic()
    for _ in ids:
        worker.process_one()
    spent = time.monotonic() - began

    # Three sends of 1 s each happen in the background, not in process_one.
    assert spent < 1.5
    assert [queue.get_job(i).status.value for i in ids] == ["failed"] * 3
    with caplog.at_level(logging.WARNING, logger="gigq.notify"):
        assert gigq_notify.current().sender.flush(10)
    assert "TimeoutError" in caplog.text or "timed out" in caplog.text


@pytest.mark.timeout(30)
def test_a_full_queue_drops_new_events_and_never_blocks(server, caplog):
    server.delay = 20
    sender = Sender(NotifyConfig(webhook_url=server.url, timeout=5, retries=0, queue_size=1))
    try:
        assert sender.submit({"event": "a"})
        server.wait_for(1)  # the thread is busy sending "a"
        assert sender.submit({"event": "b"})  # waits in the queue
        with caplog.at_level(logging.WARNING, logger="gigq.notify"):
            began = time.monotonic()
            assert not sender.submit({"event": "c"})
            assert time.monotonic() - began < 0.1
        assert sender.dropped == 1
        assert "1 notification(s) dropped" in caplog.text
    finally:
        server.release.set()
        assert sender.close(10)
    assert [b["event"] for b in server.bodies()] == ["a", "b"]


def test_flush_is_bounded(server):
    server.delay = 20
    sender = Sender(NotifyConfig(webhook_url=server.url, timeout=5, retries=0))
    sender.submit({"event": "a"})
    server.wait_for(1)

    began = time.monotonic()
    assert sender.flush(0.2) is False
    assert time.monotonic() - began < 1.0

    server.release.set()
    assert sender.close(10)


@pytest.mark.timeout(30)
def test_a_stopping_worker_sends_what_is_queued(monkeypatch, server, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_EVENTS", "worker_started,worker_stopped")
    worker = Worker(
        f"memory://notify_{uuid.uuid4().hex}",
        worker_id="w-stop",
        executor="inline",
        polling_interval=0.1,
        plugin_manager=pm,
    )

    class StopAtOnce:
        @hookimpl
        def gigq_worker_started(self):
            worker.stop()

    pm.register(StopAtOnce(), name="stopper")
    worker.start()

    # No flush here: the worker_stopped hook waited for the sender.
    assert [(b["event"], b["worker_id"]) for b in server.bodies()] == [
        ("worker_started", "w-stop"),
        ("worker_stopped", "w-stop"),
    ]


# -- the command ---------------------------------------------------------------------------

SCRIPT = """
import json, os, sys
with open(sys.argv[1], "w") as out:
    json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
               if k.startswith("GIGQ_")}}, out)
"""


def test_the_command_gets_job_fields_in_its_environment_never_its_command_line(
    monkeypatch, tmp_path, queue, worker, flush
):
    script = tmp_path / "record.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    hostile = "x; touch pwned $(touch pwned2) `touch pwned3` {name}"
    monkeypatch.setenv("GIGQ_NOTIFY_COMMAND", f"{sys.executable} {script} {out}")
    job_id = queue.submit(
        Job(hostile, notify_jobs.fail, params={"message": "$HOME"}, max_attempts=1)
    )

    worker.process_one()
    flush()

    seen = json.loads(out.read_text())
    assert seen["argv"] == [str(out)]
    env = seen["env"]
    assert env["GIGQ_EVENT"] == "failed"
    assert env["GIGQ_JOB_ID"] == job_id
    assert env["GIGQ_JOB_NAME"] == hostile
    assert env["GIGQ_JOB_STATUS"] == "failed"
    assert env["GIGQ_JOB_ATTEMPTS"] == "1"
    assert env["GIGQ_ERROR_TYPE"] == "ValueError"
    assert env["GIGQ_ERROR_MESSAGE"] == "$HOME"
    assert env["GIGQ_FINAL"] == "1"
    assert json.loads(env["GIGQ_PAYLOAD"])["job"]["name"] == hostile
    assert not list(tmp_path.glob("pwned*"))


def test_a_command_list_from_the_table_is_used_as_given(tmp_path):
    script = tmp_path / "record.py"
    script.write_text(SCRIPT)
    out = tmp_path / "with space.json"
    config = load_config(environ={}, table={"command": [sys.executable, str(script), str(out)]})

    (outcome,) = deliver(config, {"event": "failed", "job": {"name": "n"}})

    assert outcome.ok
    assert json.loads(out.read_text())["env"]["GIGQ_JOB_NAME"] == "n"


@pytest.mark.timeout(30)
def test_a_command_that_hangs_is_killed_after_the_timeout(tmp_path):
    config = NotifyConfig(
        command=(sys.executable, "-c", "import time; time.sleep(60)"), timeout=0.3, retries=0
    )

    began = time.monotonic()
    (outcome,) = deliver(config, {"event": "failed"})

    assert time.monotonic() - began < 5
    assert not outcome.ok
    assert "timed out after 0.3 s" in outcome.detail


def test_a_failing_command_is_retried_and_its_output_reported():
    config = NotifyConfig(
        command=(sys.executable, "-c", "import sys; print('no route'); sys.exit(3)"),
        retries=1,
        backoff=0.01,
    )

    (outcome,) = deliver(config, {"event": "failed"})

    assert (outcome.ok, outcome.tries) == (False, 2)
    assert outcome.detail == "exit 3: no route"


def test_a_missing_program_is_reported_once():
    config = NotifyConfig(command=("/nonexistent/notify-me",), retries=3, backoff=0.01)

    (outcome,) = deliver(config, {"event": "failed"})

    assert (outcome.ok, outcome.tries) == (False, 1)
    assert "cannot run '/nonexistent/notify-me'" in outcome.detail


def test_environment_flattens_the_event():
    env = environment(
        {
            "event": "retrying",
            "delay": 2.5,
            "final": False,
            "job": {"id": "j", "unique_key": None, "name": "a\0b"},
            "error": {"type": "E", "message": "m"},
        }
    )

    assert env["GIGQ_EVENT"] == "retrying"
    assert env["GIGQ_DELAY"] == "2.5"
    assert env["GIGQ_FINAL"] == "0"
    assert env["GIGQ_JOB_UNIQUE_KEY"] == ""
    assert env["GIGQ_JOB_NAME"] == "a\\0b"
    assert env["GIGQ_ERROR_TYPE"] == "E"


# -- gigq notify test ----------------------------------------------------------------------


def test_notify_test_sends_a_sample_to_the_webhook(monkeypatch, server, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 0, result.output
    assert f"webhook {server.url}: ok (HTTP 200, 1 try)" in result.stdout
    (body,) = server.bodies()
    assert body["event"] == "test"
    assert body["test"] is True
    assert body["job"]["name"] == "gigq-notify-test"


def test_notify_test_as_json_with_an_event_name(monkeypatch, server, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)

    result = CliRunner().invoke(create_cli(pm), ["--json", "notify", "test", "--event", "failed"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"target": "webhook", "ok": True, "detail": "HTTP 200", "tries": 1}
    ]
    assert server.bodies()[0]["event"] == "failed"


def test_notify_test_reports_a_failure_with_exit_1(monkeypatch, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{_closed_port()}/x")
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "0")

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "Error: the test notification failed for: webhook" in result.stderr
    assert "Traceback" not in result.output


def test_notify_test_without_settings_is_a_config_error(pm):
    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 78
    assert "gigq-notify has nowhere to send" in result.stderr
    assert "Traceback" not in result.output


def test_notify_test_with_bad_settings_is_a_config_error(monkeypatch, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", "file:///etc/passwd")

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 78
    assert "GIGQ_NOTIFY_WEBHOOK_URL" in result.stderr


def test_the_queue_keeps_working_without_the_plugin_configured(queue, worker):
    job_id = queue.submit(Job("ok", notify_jobs.add, params={"a": 2, "b": 3}))
    worker.process_one()

    assert queue.get_result(job_id) == 5
    assert gigq_notify.current() is not None
    assert not gigq_notify.current().config.is_enabled
