"""gigq-notify against hostile or broken targets: redirects, drip-feeding servers, huge
events, settings that hold secrets, and job processes without the settings."""

from __future__ import annotations

import base64
import json
import logging
import sys
import time

import notify_jobs
import pytest
from click.testing import CliRunner
from gigq.plugin import ConfigError, Job, Worker
from gigq_cli import create_cli

from gigq_notify import NotifyConfig, deliver, load_config

SECRET = "s3cr3t-Tok3n-4711"

#: Records its argument list, its whole environment and its standard input.
RECORD = """
import json, os, sys
data = sys.stdin.read()
with open(sys.argv[1], "w") as out:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "stdin": data}, out)
"""


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_is_never_followed(make_server, status):
    elsewhere = make_server()
    hook = make_server()
    hook.statuses = [status]
    hook.answer_headers = {"Location": elsewhere.url}
    config = NotifyConfig(
        webhook_url=hook.url,
        headers={"Authorization": f"Bearer {SECRET}"},
        retries=2,
        backoff=0.01,
    )

    (outcome,) = deliver(config, {"event": "failed"})

    assert not outcome.ok
    assert outcome.tries == 1  # a redirect is not worth another try
    assert f"redirects to {elsewhere.url}" in outcome.detail
    assert outcome.detail.count(".") <= 4  # one sentence (the dots of the address aside)
    assert len(hook.requests) == 1
    assert elsewhere.requests == []


def test_notify_test_reports_a_redirect_as_failed(monkeypatch, make_server, pm):
    elsewhere = make_server()
    hook = make_server()
    hook.statuses = [302]
    hook.answer_headers = {"Location": f"http://admin:{SECRET}@127.0.0.1:1/x\x1b]52;c;YQ==\x07"}
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("GIGQ_NOTIFY_HEADERS", json.dumps({"Authorization": f"Bearer {SECRET}"}))

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 1
    assert "FAILED (HTTP 302 Found: the webhook redirects to http://***@127.0.0.1:1/x" in (
        result.stdout
    )
    assert SECRET not in result.output
    assert "\x1b" not in result.output
    assert elsewhere.requests == []


# -- a deadline per send -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_timeout_bounds_the_whole_send(drip_server):
    config = NotifyConfig(webhook_url=drip_server, timeout=1, retries=0)

    began = time.monotonic()
    (outcome,) = deliver(config, {"event": "failed"})
    spent = time.monotonic() - began

    assert not outcome.ok
    assert "timed out after 1 s" in outcome.detail
    assert spent < 3


@pytest.mark.timeout(60)
def test_notify_test_gives_up_on_a_drip_feeding_server_in_time(monkeypatch, drip_server, pm):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", drip_server)
    monkeypatch.setenv("GIGQ_NOTIFY_TIMEOUT", "1")
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "1")
    monkeypatch.setenv("GIGQ_NOTIFY_BACKOFF", "0")

    began = time.monotonic()
    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 1
    assert "timed out after 1 s" in result.stdout
    assert time.monotonic() - began < 5  # two tries of 1 s each


# -- events too big for an environment -----------------------------------------------------


def _huge_event(message: str) -> dict:
    return {
        "event": "failed",
        "job": {"id": "j-1", "name": "nightly", "error": f"ValueError: {message}"},
        "error": {"type": "ValueError", "message": message},
        "final": True,
    }


def test_a_200000_character_error_reaches_the_command_whole(tmp_path):
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    out = tmp_path / "out.json"
    message = ("x" * 99 + "\u00fc") * 2000  # 200,000 characters, some of them not ASCII
    event = _huge_event(message)
    config = NotifyConfig(command=(sys.executable, str(script), str(out)), retries=0)

    (outcome,) = deliver(config, event)

    assert outcome.ok, outcome.detail
    seen = json.loads(out.read_text())
    assert json.loads(seen["stdin"]) == event  # the whole event, on standard input
    env = seen["env"]
    assert env["GIGQ_EVENT"] == "failed"
    assert env["GIGQ_JOB_ID"] == "j-1"
    assert env["GIGQ_ERROR_TYPE"] == "ValueError"
    shown = env["GIGQ_ERROR_MESSAGE"]
    assert shown.startswith(message[:1000])
    assert shown.endswith("more characters: the whole event is on standard input]")
    assert len(shown.encode()) <= 8192
    payload = json.loads(env["GIGQ_PAYLOAD"])  # still JSON, its long strings shortened
    assert payload["truncated"] is True
    assert payload["job"]["id"] == "j-1"
    assert payload["error"]["message"].startswith(message[:100])
    assert len(env["GIGQ_PAYLOAD"]) <= 65536


def test_a_small_event_is_in_the_environment_unchanged(tmp_path):
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    out = tmp_path / "out.json"
    event = _huge_event("short")
    config = NotifyConfig(command=(sys.executable, str(script), str(out)), retries=0)

    (outcome,) = deliver(config, event)

    assert outcome.ok, outcome.detail
    seen = json.loads(out.read_text())
    assert json.loads(seen["env"]["GIGQ_PAYLOAD"]) == event
    assert seen["env"]["GIGQ_ERROR_MESSAGE"] == "short"
    assert json.loads(seen["stdin"]) == event


def test_a_job_failing_with_a_huge_error_is_notified(monkeypatch, tmp_path, queue, worker, flush):
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    out = tmp_path / "out.json"
    monkeypatch.setenv("GIGQ_NOTIFY_COMMAND", f"{sys.executable} {script} {out}")
    job_id = queue.submit(
        Job("big", notify_jobs.fail, params={"message": "y" * 200_000}, max_attempts=1)
    )

    worker.process_one()
    flush()

    event = json.loads(json.loads(out.read_text())["stdin"])
    assert event["job"]["id"] == job_id
    assert event["error"]["message"].startswith("y" * 1000)


def test_the_command_never_gets_the_notify_settings(monkeypatch, tmp_path, queue, worker, flush):
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    out = tmp_path / "out.json"
    monkeypatch.setenv("GIGQ_NOTIFY_COMMAND", f"{sys.executable} {script} {out}")
    monkeypatch.setenv("GIGQ_NOTIFY_HEADERS", json.dumps({"Authorization": f"Bearer {SECRET}"}))
    queue.submit(Job("f", notify_jobs.fail, max_attempts=1))

    worker.process_one()
    flush()

    env = json.loads(out.read_text())["env"]
    assert env["GIGQ_EVENT"] == "failed"
    assert [name for name in env if name.startswith("GIGQ_NOTIFY_")] == []
    assert not any(SECRET in value for value in env.values())


# -- job processes -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_process_worker_notifies_whatever_the_job_process_environment(
    monkeypatch, server, pm, tmp_path
):
    # The worker reads the settings at start, in the supervisor, and the supervisor sends:
    # a job process whose environment lacks GIGQ_NOTIFY_* changes nothing.
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", server.url)
    monkeypatch.setenv("GIGQ_NOTIFY_HEADERS", json.dumps({"Authorization": f"Bearer {SECRET}"}))
    worker = Worker(
        str(tmp_path / "q.db"),
        worker_id="w-process",
        executor="process",
        concurrency=1,
        polling_interval=0.05,
        plugin_manager=pm,
    )
    try:
        job_id = worker.queue.submit(Job("f", notify_jobs.fail_without_settings, max_attempts=1))
        worker.start(burst=True)
    finally:
        worker.close()

    (request,) = server.wait_for(1)
    assert request["json"]["event"] == "failed"
    assert request["json"]["job"]["id"] == job_id
    assert request["json"]["error"]["message"] == "no GIGQ_NOTIFY_* here"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"


# -- secrets are never shown ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GIGQ_NOTIFY_WEBHOOK_URL", f"ftp://admin:{SECRET}@hooks.example.invalid/x"),
        ("GIGQ_NOTIFY_WEBHOOK_URL", f"https:///x?token={SECRET}"),
        ("GIGQ_NOTIFY_WEBHOOK_URL", f"http://[::1/x?token={SECRET}"),
        ("GIGQ_NOTIFY_WEBHOOK_URL", f"http://admin:{SECRET}@127.0.0.1:99999/x"),
        ("GIGQ_NOTIFY_HEADERS", f'{{"Authorization": "Bearer {SECRET}"'),
        ("GIGQ_NOTIFY_HEADERS", f'{{"Authorization": "Bearer {SECRET}", "X-Tries": 3}}'),
        ("GIGQ_NOTIFY_HEADERS", f'["Authorization", "Bearer {SECRET}"]'),
        ("GIGQ_NOTIFY_COMMAND", f"curl -H 'Authorization: Bearer {SECRET}"),
    ],
)
def test_an_invalid_setting_never_shows_its_secret(monkeypatch, pm, name, value):
    monkeypatch.setenv(name, value)

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 78
    assert name in result.stderr
    assert SECRET not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "table",
    [
        {"command": ["curl", "-u", f"admin:{SECRET}", "--retry", 3]},
        {"command": ["notify", f"--token={SECRET}", None]},
        {"headers": {"X-Api-Key": SECRET, "X-Tries": 3}},
        {"webhook_url": f"gopher://hooks.example.invalid/{SECRET}?key={SECRET}"},
        {"webhook_url": ["https://hooks.example.invalid/x", f"Bearer {SECRET}"]},
    ],
)
def test_an_invalid_table_setting_never_shows_its_secret(table):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, table=table)

    assert SECRET not in str(caught.value)


def test_a_worker_with_an_invalid_setting_logs_it_without_its_secret(
    monkeypatch, queue, worker, caplog
):
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", f"ftp://admin:{SECRET}@hooks.example.invalid/")
    queue.submit(Job("f", notify_jobs.fail, max_attempts=1))

    with caplog.at_level(logging.DEBUG, logger="gigq.notify"):
        worker.process_one()

    assert "gigq-notify is off" in caplog.text
    assert "ftp://***@hooks.example.invalid/" in caplog.text
    assert SECRET not in caplog.text


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(monkeypatch, server, pm):
    url = server.url.replace("http://", f"http://admin:{SECRET}@") + f"?token={SECRET}"
    monkeypatch.setenv("GIGQ_NOTIFY_WEBHOOK_URL", url)

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 0, result.output
    shown = server.url.replace("http://", "http://***@") + "?token=***"
    assert f"webhook {shown}: ok (HTTP 200, 1 try)" in result.stdout
    assert SECRET not in result.output
    (request,) = server.requests
    assert request["path"] == f"/hook?token={SECRET}"
    expected = base64.b64encode(f"admin:{SECRET}".encode()).decode()
    assert request["headers"]["Authorization"] == f"Basic {expected}"


def test_a_failing_command_never_shows_a_secret(monkeypatch, pm):
    code = (
        "import sys; print('token', sys.argv[1], 'Bearer " + SECRET + "',"
        " 'http://u:" + SECRET + "@h/', '" + SECRET + "'); sys.exit(3)"
    )
    monkeypatch.setenv("GIGQ_NOTIFY_COMMAND", f'{sys.executable} -c "{code}" --token={SECRET}')
    monkeypatch.setenv("GIGQ_NOTIFY_HEADERS", json.dumps({"X-Api-Key": SECRET}))
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "0")

    result = CliRunner().invoke(create_cli(pm), ["notify", "test"])

    assert result.exit_code == 1
    assert "FAILED (exit 3: token --token=***" in result.stdout
    assert "--token=***: FAILED" in result.stdout
    assert SECRET not in result.output


def test_a_failed_send_is_logged_without_a_secret(monkeypatch, queue, worker, flush, caplog):
    code = f"import sys; print('the key is {SECRET}'); sys.exit(1)"
    monkeypatch.setenv("GIGQ_NOTIFY_COMMAND", f'{sys.executable} -c "{code}"')
    monkeypatch.setenv("GIGQ_NOTIFY_HEADERS", json.dumps({"Authorization": f"Bearer {SECRET}"}))
    monkeypatch.setenv("GIGQ_NOTIFY_RETRIES", "0")
    queue.submit(Job("f", notify_jobs.fail, max_attempts=1))

    with caplog.at_level(logging.WARNING, logger="gigq.notify"):
        worker.process_one()
        flush()

    assert "command for event failed failed after 1 tries: exit 1: the key is ***" in caplog.text
    assert SECRET not in caplog.text
