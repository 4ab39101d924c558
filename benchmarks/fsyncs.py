"""Fsyncs per job, counted: one separate run of a workload under `strace -f -c`.

The timed runs are never traced. After them, each throughput workload of each system runs
once more, in a fresh process, `python -m benchmarks.fsyncs MODULE WORKLOAD N WORKDIR`,
under `strace -f -c -e trace=fsync,fdatasync` (with `--seccomp-bpf` where strace has it, so
only those two calls stop the tracee). `-f` follows every process the workload starts: the
drain workers, their job processes, huey's forked workers. A run's count includes a fixed
part, setup and checks (creating the database, filling the queue before a drain, worker
start-up and registration, the final checkpoint: about 20 fsyncs for GigQ's drain), so the
runner also traces a one-job run of the same workload and reports
(count(n) - count(1)) / (n - 1).

Tracing slows the traced run (little with `--seccomp-bpf`), so its rate is never reported as
the workload's; it is kept beside the count. Where commits are batched by time (GigQ's
outcomes, flushed together), a slower run may batch differently, so that count varies from
run to run more than a per-commit count does.

Where strace is missing or cannot trace (no ptrace), nothing is counted and the runner says
why; a number is never guessed.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, BenchmarkError, drain_timeout, subprocess_env

#: The system calls that make a write durable, as SQLite issues them on Linux.
SYSCALLS = ("fsync", "fdatasync")

#: A short program that calls fsync exactly once: the probe must count 1.
_PROBE = (
    "import os, tempfile\n"
    "with tempfile.TemporaryFile() as f:\n"
    "    f.write(b'x'); f.flush(); os.fsync(f.fileno())\n"
)


def parse_summary(text: str) -> dict[str, int]:
    """Calls per system call from the table `strace -c` writes (columns `% time`,
    `seconds`, `usecs/call`, `calls`, `errors` (blank when none), `syscall`); the `total`
    row and the rules are skipped. Empty output (no call made) is {}."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) not in (5, 6) or fields[-1] in ("syscall", "total"):
            continue
        try:
            calls = int(fields[3])
            float(fields[0])
        except ValueError:
            continue
        counts[fields[-1]] = counts.get(fields[-1], 0) + calls
    return counts


def _command(flags: tuple[str, ...], out: Path, program: list[str]) -> list[str]:
    return [
        "strace",
        "-f",
        *flags,
        "-c",
        "-e",
        f"trace={','.join(SYSCALLS)}",
        "-o",
        str(out),
        *program,
    ]


class Counter:
    """Counts the fsyncs of a workload run, once `probe()` found a way that works."""

    def __init__(self) -> None:
        #: Extra strace flags that worked in the probe.
        self.flags: tuple[str, ...] = ()
        #: Why nothing can be counted, or None when counting works.
        self.reason: str | None = "not probed"

    @property
    def method(self) -> str:
        """The tracing command, as the report states it."""
        return " ".join(["strace -f", *self.flags, "-c -e trace=" + ",".join(SYSCALLS)])

    def probe(self) -> str | None:
        """Check that strace counts one fsync as one; returns why it cannot (or None)."""
        if shutil.which("strace") is None:
            self.reason = "strace is not installed"
            return self.reason
        with tempfile.TemporaryDirectory(prefix="gigq-fsync-probe-") as tmp:
            out = Path(tmp) / "strace.txt"
            failure = "no output"
            for flags in (("--seccomp-bpf",), ()):
                done = subprocess.run(
                    _command(flags, out, [sys.executable, "-c", _PROBE]),
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                found = parse_summary(out.read_text()) if out.exists() else {}
                if done.returncode == 0 and found.get("fsync") == 1:
                    self.flags, self.reason = flags, None
                    return None
                last = done.stderr.strip().splitlines()[-1:]
                failure = last[0] if last else f"counted {found} for one fsync"
        self.reason = f"strace cannot count here ({failure})"
        return self.reason

    def count(self, module: str, workload: str, n: int, root: Path) -> tuple[int, float]:
        """The fsync and fdatasync calls of one run of `workload` of the system in
        `benchmarks.<module>`, `n` jobs, in a fresh directory under `root`, and that traced
        run's timed seconds (to show how much tracing slowed it)."""
        if self.reason is not None:
            raise BenchmarkError(f"fsyncs cannot be counted: {self.reason}")
        workdir = Path(tempfile.mkdtemp(prefix=f"fsyncs-{module}-{workload}-", dir=root))
        out = root / f"{workdir.name}.strace"
        try:
            program = [sys.executable, "-m", "benchmarks.fsyncs", module, workload, str(n)]
            done = subprocess.run(
                _command(self.flags, out, [*program, str(workdir)]),
                cwd=ROOT,
                env=subprocess_env(),
                capture_output=True,
                text=True,
                timeout=drain_timeout(n) * 2 + 60,
                check=False,
            )
            if done.returncode != 0:
                detail = done.stderr.strip()[-2000:] or "no output"
                raise BenchmarkError(f"traced run of {module} {workload} failed: {detail}")
            counts = parse_summary(out.read_text())
            seconds = float(done.stdout.split()[-1])
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"traced run of {module} {workload} timed out") from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            out.unlink(missing_ok=True)
        return sum(counts.get(name, 0) for name in SYSCALLS), seconds


def main(argv: list[str] | None = None) -> int:
    """Run one workload once (the traced process); prints its timed seconds."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fsyncs")
    parser.add_argument("module", help="gigq_bench, huey_bench, litequeue_bench or raw_bench")
    parser.add_argument("workload")
    parser.add_argument("jobs", type=int)
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"benchmarks.{args.module}")
    measure = module.WORKLOADS[args.workload]
    print(f"{measure(args.workdir, args.jobs):.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
