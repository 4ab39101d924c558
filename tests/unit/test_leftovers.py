"""Ending what a job left running (gigq_core._isolation.end_leftovers), in a process of its
own: SIGTERM first, SIGKILL after the grace for a process that ignores SIGTERM, every one
reaped, and a log line that names them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from gigq_core._isolation import describe

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="leftovers are found in /proc")

#: Starts a sleep that dies of SIGTERM and a shell that ignores it, both in new sessions,
#: ends them with the given grace, and prints what was found, how long it took and what is
#: left below this process.
_SCRIPT = """
import json, subprocess, sys, time
from gigq_core import _isolation
polite = subprocess.Popen(["sleep", "30"], start_new_session=True)
stubborn = subprocess.Popen(
    ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"],
    start_new_session=True, stdout=subprocess.PIPE, text=True,
)
stubborn.stdout.readline()
started = time.monotonic()
found = _isolation.end_leftovers(float(sys.argv[1]))
took = time.monotonic() - started
print(json.dumps({
    "found": sorted(pid for pid, _ in found),
    "expected": sorted([polite.pid, stubborn.pid]),
    "commands": [command for _, command in found],
    "took": took,
    "left": _isolation.descendants([_isolation.os.getpid()]),
    "again": _isolation.end_leftovers(1.0),
}))
"""


def _run(grace: float) -> Any:
    ran = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(grace)], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def test_what_ignores_sigterm_is_killed_after_the_grace_and_everything_is_reaped() -> None:
    result = _run(0.5)
    # The sleep may have forked nothing; the shell's own sleeps come and go.
    assert set(result["expected"]) <= set(result["found"]), result
    assert "sleep 30" in result["commands"], result
    assert 0.5 <= result["took"] < 5, result
    assert result["left"] == [] and result["again"] == [], result


def test_nothing_left_costs_no_wait() -> None:
    ran = subprocess.run(
        [sys.executable, "-c",
         "import time; from gigq_core import _isolation; t = time.monotonic(); "
         "print(_isolation.end_leftovers(5.0), time.monotonic() - t)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found, took = ran.stdout.split(" ")
    assert found == "[]" and float(took) < 0.5, ran.stdout + ran.stderr


def test_the_log_line_names_the_first_five() -> None:
    assert describe([(123, "sleep 20")]) == "pid 123: sleep 20"
    many = [(pid, "sleep 20") for pid in range(1, 8)]
    assert describe(many).endswith("pid 5: sleep 20 and 2 more")
