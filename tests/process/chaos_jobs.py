"""Jobs for the process tests. Each one appends "<job_id> <attempt> <pid>" to its ledger
file before doing anything else, so every execution (even one killed a moment later) is
countable, and duplicates and losses show up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from gigq import Abort, current_job


def record(ledger: str) -> dict[str, Any]:
    """Append this execution to `ledger` in one O_APPEND write; returns what it wrote."""
    job = current_job()
    pid = os.getpid()
    line = f"{job.id} {job.attempt} {pid}\n".encode()
    fd = os.open(ledger, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"id": job.id, "attempt": job.attempt, "pid": pid}


def work(ledger: str, ms: float = 0.0) -> dict[str, Any]:
    """Record, then sleep `ms` milliseconds; returns the execution's attempt and pid."""
    execution = record(ledger)
    if ms:
        time.sleep(ms / 1000)
    return execution


def sleep_unless_marked(
    ledger: str, marker: str, long: float, short: float = 0.0
) -> dict[str, Any]:
    """Sleep `long` seconds on the first run (creating `marker`), `short` on later runs."""
    execution = record(ledger)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        time.sleep(short)
        return {**execution, "first": False}
    time.sleep(long)
    return {**execution, "first": True}


def spawn_grandchild(ledger: str, pidfile: str, seconds: float) -> dict[str, Any]:
    """Start `sleep 300` as a grandchild of the worker, write its pid, then sleep."""
    execution = record(ledger)
    child = subprocess.Popen(["sleep", "300"])
    fd = os.open(pidfile, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{child.pid}\n".encode())
    finally:
        os.close(fd)
    time.sleep(seconds)
    return {**execution, "grandchild": child.pid}


def kill_own_worker(ledger: str) -> None:
    """A poison job: SIGKILL the worker's supervisor (this child's parent)."""
    record(ledger)
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(10)  # never report: the supervisor is gone


def fail_first(ledger: str, marker: str) -> dict[str, Any]:
    """Raise (a retryable error) on the first run, creating `marker`; succeed afterwards."""
    execution = record(ledger)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return execution
    raise RuntimeError("first run fails")


def always_abort(ledger: str) -> None:
    """Fail at once, without retry (gigq.Abort)."""
    record(ledger)
    raise Abort("this job always aborts")


def terminate_a_forked_helper(ledger: str) -> int | None:
    """Fork a multiprocessing helper that sleeps, terminate it (SIGTERM), and return its
    exit code: a job's own processes keep SIGTERM's default action."""
    import multiprocessing

    record(ledger)
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
    helper.start()
    time.sleep(0.2)
    helper.terminate()
    helper.join(10)
    code = helper.exitcode
    if code is None:
        helper.kill()
        helper.join(5)
    return code


def ignored_signals_of_a_subprocess(ledger: str) -> list[int]:
    """Start `sleep` and return the signals it ignores (from /proc): a job's own processes
    start with the default actions."""
    record(ledger)
    child = subprocess.Popen(["sleep", "5"])
    try:
        with open(f"/proc/{child.pid}/status") as handle:
            mask = next(int(line.split()[1], 16) for line in handle if line.startswith("SigIgn"))
    finally:
        child.kill()
        child.wait()
    return [number for number in range(1, 65) if mask & (1 << (number - 1))]


def _write_pid(pidfile: str, pid: int) -> None:
    fd = os.open(pidfile, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)


#: Run by a throw-away interpreter: start `sleep SECONDS` in a session of its own, write its
#: pid and leave at once, so the sleep is an orphan the job never knew as a child (a daemon).
_DETACH = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(['sleep', sys.argv[2]], start_new_session=True)\n"
    "fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)\n"
    "os.write(fd, f'{child.pid}\\n'.encode())\n"
    "os._exit(0)\n"
)


def escape_the_group(
    ledger: str, pidfile: str, seconds: float, detach: bool = False, lasts: float = 300
) -> None:
    """Start `sleep LASTS` in a new session (out of the job's process group): as the job's
    own child, or (`detach`) through a helper that exits at once; write its pid, then sleep
    `seconds`."""
    record(ledger)
    if detach:
        command = [sys.executable, "-c", _DETACH, pidfile, f"{lasts:g}"]
        subprocess.run(command, check=True, timeout=30)
    else:
        child = subprocess.Popen(["sleep", f"{lasts:g}"], start_new_session=True)
        _write_pid(pidfile, child.pid)
    time.sleep(seconds)


def zombie_children(ledger: str) -> list[int]:
    """The exited, unreaped children of the job's process (from /proc)."""
    record(ledger)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
            if fields[0] == "Z" and int(fields[1]) == me:
                found.append(int(entry))
    return found


#: Run by a program a job starts: what its descriptors name, as JSON.
_LIST_DESCRIPTORS = (
    "import json, os\n"
    "found = {}\n"
    "for name in os.listdir('/proc/self/fd'):\n"
    "    try:\n"
    "        found[name] = os.readlink(f'/proc/self/fd/{name}')\n"
    "    except OSError:\n"
    "        pass\n"
    "print(json.dumps(found))\n"
)


def open_descriptors(ledger: str) -> dict[str, dict[str, str]]:
    """The job process's open file descriptors and what each one names (/proc/self/fd),
    and those of a program it runs with `close_fds=False` (all it may pass on)."""
    record(ledger)
    found = {}
    for name in os.listdir("/proc/self/fd"):
        # The descriptor listdir itself used is closed by now.
        with contextlib.suppress(OSError):
            found[name] = os.readlink(f"/proc/self/fd/{name}")
    program = subprocess.run(
        [sys.executable, "-c", _LIST_DESCRIPTORS],
        close_fds=False,
        stdout=subprocess.PIPE,
        check=True,
        timeout=30,
    )
    return {"job": found, "program": json.loads(program.stdout)}


def submit_follow_up(ledger: str, db: str) -> str:
    """Open the worker's own database from the job and submit a follow-up `work` job."""
    from gigq import Job, JobQueue

    record(ledger)
    with JobQueue(db) as queue:
        return queue.submit(
            Job("follow-up", "tests.process.chaos_jobs:work", params={"ledger": ledger})
        )


def environment(ledger: str) -> dict[str, str]:
    """The job process's environment."""
    record(ledger)
    return dict(os.environ)
