"""Stored text (job names, errors, queue names, workflow names, worker ids and hosts) never
reaches the terminal raw: control characters and bidi overrides are printed as escapes, so a
job cannot clear the reader's screen, set the window title or the clipboard, or forge a
line. `--json` keeps the exact strings (escaped the JSON way).

The commands run as the real `gigq` console script on a pseudo-terminal: click strips some
escape sequences when its output is not a terminal, so only a terminal shows what a reader
would get.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import subprocess
import sys
import time
import tty
from pathlib import Path

import pluggy
import pytest

from gigq_cli import _format as fmt
from gigq_core import Job, JobQueue, Workflow
from gigq_core.logs import printable, setup_logging
from gigq_core.records import WorkerInfo
from tests.cli.helpers import run_one

GIGQ = str(Path(sys.executable).parent / "gigq")
ROOT = Path(__file__).resolve().parents[2]

#: Clipboard (OSC 52), screen clear (CSI 2J), window title (OSC 0), a forged line, a bare
#: carriage return, an 8-bit CSI (C1), DEL, a tab and a right-to-left override.
EVIL = "x\x1b]52;c;aGk=\x07\x1b[2J\x1b]0;pwned\x07\nforged line\r\x9b31m\x7f\t\u202ey"

#: Bytes that must never be printed raw (UTF-8 for the non-ASCII ones).
RAW = {
    "ESC": b"\x1b",
    "BEL": b"\x07",
    "CR": b"\r",
    "DEL": b"\x7f",
    "C1 CSI": "\x9b".encode(),
    "RLO": "\u202e".encode(),
}


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def run_tty(
    *args: str, stderr: bool = True, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, bytes]:
    """Run `gigq ARGS...` with stdout (and stderr, unless `stderr=False`) on a
    pseudo-terminal (raw: no "\\n" to "\\r\\n" translation); its exit code and every byte
    it wrote there."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    process = subprocess.Popen(
        [GIGQ, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave if stderr else subprocess.DEVNULL,
        env=_environment(**(env or {})),
        cwd=ROOT,
    )
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, bytes(output)


def assert_no_raw_controls(output: bytes) -> None:
    found = [name for name, raw in RAW.items() if raw in output]
    assert not found, (found, output)
    text = output.decode()
    assert not any(line.startswith("forged") for line in text.splitlines()), text


@pytest.fixture
def evil(queue: JobQueue, pm: pluggy.PluginManager) -> dict[str, str]:
    """A queue whose names, errors, queue names, workflow, worker ids and host hold EVIL."""
    job = queue.submit(
        Job(
            EVIL,
            "tests.jobs:fail",
            params={"message": EVIL},
            queue=EVIL,
            description=EVIL,
            max_attempts=1,
        )
    )
    assert run_one(queue.target, pm, worker_id=EVIL, queues=[EVIL])
    flow = Workflow(EVIL)
    first = flow.add_job(Job(EVIL, "tests.jobs:fail", params={"message": EVIL}, max_attempts=1))
    flow.add_job(Job(EVIL + "2", "tests.jobs:noop"), depends_on=[first])
    flow.submit_all(queue)
    assert run_one(queue.target, pm, worker_id="w2")
    now = queue.clock.now()
    queue.storage.register_worker(
        WorkerInfo(
            id=EVIL + "-live",
            host=EVIL,
            pid=1,
            queues=(EVIL,),
            started_at=now,
            last_heartbeat=now,
        )
    )
    return {"job": job, "workflow": flow.id}


def _commands(db: str, evil: dict[str, str]) -> dict[str, list[str]]:
    return {
        "list": ["--db", db, "list"],
        "status": ["--db", db, "status", evil["job"], "--show-executions"],
        "workflow show": ["--db", db, "workflow", "show", evil["workflow"]],
        "workflow show dot": ["--db", db, "workflow", "show", evil["workflow"], "--format=dot"],
        "workflow show mermaid": [
            "--db", db, "workflow", "show", evil["workflow"], "--format=mermaid",
        ],
        "workflow list": ["--db", db, "workflow", "list"],
        "queue list": ["--db", db, "queue", "list"],
        "workers": ["--db", db, "workers"],
        "stats": ["--db", db, "stats"],
        "wait": ["--db", db, "wait", evil["job"]],
    }  # fmt: skip


COMMANDS = list(_commands("", {"job": "", "workflow": ""}))


@pytest.mark.parametrize("command", COMMANDS)
def test_human_output_prints_control_characters_as_escapes(command, db, evil):
    # `wait` draws its own progress bar on a terminal's stderr.
    code, output = run_tty(*_commands(db, evil)[command], stderr=command != "wait")

    assert code in (0, 3), output  # `wait` on a failed job exits 3
    assert_no_raw_controls(output)
    text = output.decode()
    if command not in ("stats", "wait", "workflow show dot", "workflow show mermaid"):
        # The stored text is there, escaped (dot and mermaid quote it their own way).
        assert "x\\x1b]52;c;aGk=\\x07\\x1b[2J" in text, text


def test_status_keeps_an_errors_own_lines_but_escapes_the_rest(db, evil):
    code, output = run_tty("--db", db, "status", evil["job"])

    assert code == 0
    assert_no_raw_controls(output)
    lines = output.decode().splitlines()
    [error] = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    # The name, description and queue are one line each; the error breaks where it did.
    assert lines[error].endswith("x\\x1b]52;c;aGk=\\x07\\x1b[2J\\x1b]0;pwned\\x07")
    assert lines[error + 1].strip() == "forged line\\r\\x9b31m\\x7f\\t\\u202ey"
    assert any(line.startswith("Job:") and "\\nforged line\\r" in line for line in lines)


def test_an_error_quoting_stored_text_is_printed_escaped(db, evil, tmp_path):
    # A live worker with this id and host: migrate names it in its refusal.
    code, output = run_tty("--db", db, "migrate", "--to", str(tmp_path / "copy.db"))

    assert code == 75, output
    assert_no_raw_controls(output)
    text = output.decode()
    assert text.startswith("Error: ") and text.count("\n") == 1, text
    assert "x\\x1b]52;c;aGk=" in text


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


@pytest.mark.parametrize(
    ("command", "wanted"),
    [
        ("list", {EVIL, EVIL + "2"}),
        ("status", {EVIL, f"ValueError: {EVIL}"}),
        ("workflow show", {EVIL, EVIL + "2", f"ValueError: {EVIL}"}),
        ("workflow list", {EVIL}),
        ("queue list", {EVIL}),
        ("workers", {EVIL + "-live", EVIL}),
    ],
)
def test_json_output_keeps_the_exact_strings_and_no_raw_control_byte(command, wanted, db, evil):
    args = _commands(db, evil)[command]
    if command == "status":
        args = [*args, "--show-params"]
    code, output = run_tty("--json", *args)

    assert code == 0, output
    # JSON escapes C0 itself; DEL, C1 and bidi overrides are \u-escaped too.
    assert_no_raw_controls(output)
    parsed = json.loads(output)
    strings = _strings(parsed)
    assert wanted <= strings, (wanted - strings, strings)
    if command == "status":
        assert (parsed["name"], parsed["queue"], parsed["description"]) == (EVIL, EVIL, EVIL)
        assert parsed["params"] == {"message": EVIL}
        assert parsed["executions"][0]["worker_id"] == EVIL


def test_to_json_round_trips_every_control_character():
    text = "".join(chr(c) for c in range(0xA0)) + "\u2028\u2029\u202a\u202e\u2066\u2069é→"
    dumped = fmt.to_json({"k": text})

    assert json.loads(dumped) == {"k": text}
    assert all(0x20 <= ord(c) < 0x7F or c in "\n" or ord(c) > 0xA0 for c in dumped)
    assert "é→" in dumped  # other non-ASCII text stays readable


def test_printable_escapes_controls_and_bidi_and_nothing_else():
    assert printable("a\x1b[2Jb\n\r\t\x00\x7f\x9b\u202e\u2066\u2028") == (
        "a\\x1b[2Jb\\n\\r\\t\\x00\\x7f\\x9b\\u202e\\u2066\\u2028"
    )
    assert printable("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    assert printable("é 日本 → ✓ 👍 \\x1b") == "é 日本 → ✓ 👍 \\x1b"
    # Invisible marks that reorder or hide text: RLM/LRM, ALM, zero-width space, BOM, SHY.
    assert printable("a\u200fb\u200ec\u061cd\u200be\ufefff\xadg") == (
        "a\\u200fb\\u200ec\\u061cd\\u200be\\ufefff\\xadg"
    )


# -- logs ----------------------------------------------------------------------------------


def test_a_worker_logs_each_record_on_one_line_whatever_the_job_name(db, queue):
    """`gigq worker` on a job whose name and error hold EVIL: no raw control byte in its
    log, no forged line, and every line is a record (a timestamp first) or a traceback's."""
    queue.submit(Job(EVIL, "tests.jobs:fail", params={"message": EVIL}, max_attempts=1))

    # Third-party plugins (the installed example logs through its own logger) stay out.
    code, output = run_tty(
        "--db", db, "worker", "--burst", "--executor", "inline",
        env={"GIGQ_DISABLE_PLUGINS": "*"},
    )  # fmt: skip

    assert code == 0, output
    assert_no_raw_controls(output)
    lines = output.decode().splitlines()
    records = [line for line in lines if line[:4].isdigit()]
    # The final failure's traceback follows its record, each line indented.
    assert all(line.startswith("  ") for line in lines if line not in records), lines
    [done] = [line for line in records if " attempt 1/1 failed for good " in line]
    assert "('x\\x1b]52;c;aGk=\\x07\\x1b[2J\\x1b]0;pwned\\x07\\nforged line" in done
    assert done.endswith(f"ValueError: {printable(EVIL)}")


def test_names_and_errors_are_logged_quoted_for_any_handler(queue, pm, caplog):
    """The worker's own records quote what a job's author wrote (`%r`), so even a handler
    that GigQ did not set up gets one line per record."""
    queue.submit(Job(EVIL, "tests.jobs:fail", params={"message": EVIL}, max_attempts=1))

    with caplog.at_level(logging.DEBUG, logger="gigq"):
        assert run_one(queue.target, pm)

    messages = [r.getMessage() for r in caplog.records if r.name == "gigq"]
    about_job = [m for m in messages if "forged line" in m]
    assert about_job, messages
    for message in about_job:
        assert "\n" not in message and "\x1b" not in message, message
        assert repr(EVIL) in message


def test_setup_logging_escapes_any_message_and_keeps_a_traceback_readable(capsys):
    logger = setup_logging("INFO")
    child = logging.getLogger("gigq.test-escapes")
    child.info("plugin says %s", EVIL)
    try:
        raise ValueError(EVIL)
    except ValueError:
        child.exception("failed")
    err = capsys.readouterr().err

    assert "\x1b" not in err and "\r" not in err and "\x9b" not in err
    lines = err.splitlines()
    assert lines[0].endswith("plugin says " + printable(EVIL))
    assert "Traceback (most recent call last):" in lines  # its own lines are kept
    assert f"ValueError: {printable(EVIL, keep_newlines=True)}" in err
    assert logger.name == "gigq"
