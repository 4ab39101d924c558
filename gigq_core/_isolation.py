"""Keeping a job process apart from its worker (the process executor).

A pool child starts clean: of the supervisor's descriptors it keeps its standard streams,
its own channel, the files the worker logs to and regular files (close-on-exec), never a
pipe or socket, and its environment has none of GigQ's secrets. On Linux it is a child
subreaper, so a process its job starts stays its descendant even when it leaves the job's
process group or session, or its parent exits (a daemon); ending a job ends that whole
tree, and so does a job's return (what it left running gets SIGTERM, then SIGKILL). Elsewhere
a timeout or cancel ends only the process group, and a return nothing.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Collection, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gigq_core.settings import DEFAULTS

#: prctl(2) option: orphaned descendants are re-parented to this process, not to init.
_PR_SET_CHILD_SUBREAPER = 36
#: Most rounds of stopping newly found descendants before they are killed: each round stops
#: what the last one found, so only a process forked meanwhile is left for the next.
_ROUNDS = 16
#: Most exited children reaped between two jobs.
_REAP_MAX = 1024
#: Longest wait between two looks for the leftovers of a job that are still running.
_LEFTOVER_POLL = 0.05
#: Most leftovers a log line names.
_NAMED_MAX = 5
#: GigQ's switches that hold no secret, besides its settings (`GIGQ_<SETTING>`).
_SWITCHES = frozenset({"GIGQ_DISABLE_PLUGINS", "GIGQ_TRACE_PLUGINS"})
#: Query parameters of a database URL that carry credentials.
_SECRET_WORDS = ("password", "passwd", "secret", "token")


def subreaper_switch() -> Callable[[], bool] | None:
    """A function that makes the calling process a child subreaper (Linux), or None.

    Called in the supervisor, before forking: loading ctypes and libc once there keeps that
    cost out of every child (the setting itself is not inherited, each child sets it).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # only here: a few ms that a worker pays once, other commands never

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def switch() -> bool:
        return bool(prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)

    return switch


# -- a new child ---------------------------------------------------------------------------


def close_inherited(keep: Iterable[int]) -> None:
    """Close every inherited descriptor but 0-2, `keep` and regular files, and make those
    files close-on-exec, so the programs a job runs never get them.

    Pipes, sockets and the like are channels: the wake-up pipe, the sibling children's
    pipes, a PostgreSQL session (a job could speak for the worker on it). Regular files
    (the database, its -wal and -shm, the files the application had open) stay: libraries
    in this process may still refer to them, SQLite above all, whose state about an open
    database fork copies; with those descriptors closed, a job that opens the worker's own
    database (to submit follow-up jobs) fails with "locking protocol". The job's user can
    open those files anyway. Nothing here uses what is closed: the supervisor's objects
    that held it are never used or freed in a child.
    """
    kept = {0, 1, 2, *keep}
    try:
        for fd in _open_descriptors():
            if fd in kept:
                continue
            try:
                is_file = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                continue  # the listing's own, closed by now
            if is_file:
                os.set_inheritable(fd, False)
            else:
                os.close(fd)
    finally:
        if faulthandler.is_enabled():
            # Its file may have been one of the closed descriptors (pytest's copy of stderr).
            faulthandler.enable(file=2)


def _open_descriptors() -> list[int]:
    """This process's open descriptors: exactly, from /proc (Linux) or /dev/fd (the BSDs,
    macOS); elsewhere every number below the limit (at most 65,536)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return [int(name) for name in os.listdir(path) if name.isdigit()]
        except OSError:
            continue
    limit = os.sysconf("SC_OPEN_MAX")
    return list(range(min(limit, 1 << 16) if limit > 0 else 1 << 16))


def log_descriptors() -> set[int]:
    """The descriptors of the streams logging's handlers write to: a child keeps them, so
    a job's log lines still reach the worker's log file."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    found = set()
    for logger in loggers:
        for handler in logger.handlers:
            stream: Any = getattr(handler, "stream", None)  # any file-like object, or None
            with contextlib.suppress(AttributeError, OSError, ValueError):
                fd = stream.fileno()
                if isinstance(fd, int):
                    found.add(fd)
    return found


def clean_environment(
    environ: MutableMapping[str, str] | None = None, plugin_settings: Iterable[str] = ()
) -> None:
    """Remove GigQ's variables that may hold secrets: every `GIGQ_*` but GigQ's own
    settings and switches, and those of the settings plugins declare (`plugin_settings`;
    none is a secret: a job that opens its own `JobQueue()` then finds the queue, function
    policy and plugin choices of its worker), and the credentials of a `GIGQ_DB` URL.
    Plugins' own variables (`GIGQ_NOTIFY_*`) all go."""
    environ = os.environ if environ is None else environ
    kept = _SWITCHES | {f"GIGQ_{key.upper()}" for key in (*DEFAULTS, *plugin_settings)}
    for name in [name for name in environ if name.startswith("GIGQ_")]:
        if name not in kept:
            del environ[name]
    if "GIGQ_DB" in environ:
        target = without_credentials(environ["GIGQ_DB"])
        if target is None:
            del environ["GIGQ_DB"]
        else:
            environ["GIGQ_DB"] = target


def without_credentials(target: str) -> str | None:
    """`target` without a URL's password and secret query parameters; None when it is a URL
    that cannot be read (so it cannot be told free of secrets)."""
    if "://" not in target:
        return target  # a file path
    try:
        parts = urlsplit(target)
        password = parts.password
    except ValueError:
        return None
    netloc = parts.netloc
    if password is not None:
        user = netloc.rpartition("@")[0].partition(":")[0]
        host = netloc.rpartition("@")[2]
        netloc = f"{user}@{host}" if user else host
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    clean = [(k, v) for k, v in pairs if not any(w in k.lower() for w in _SECRET_WORDS)]
    if len(clean) != len(pairs):
        query = urlencode(clean)
    if netloc == parts.netloc and query == parts.query:
        return target
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# -- process trees -------------------------------------------------------------------------


def has_children() -> bool:
    """Whether this process has a child, running or exited (one cheap system call)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def reap_exited() -> None:
    """Reap this process's children that have exited: in a subreaper they include the
    orphans its jobs left (a daemon's), which nobody else waits for."""
    for _ in range(_REAP_MAX):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _processes() -> dict[int, tuple[int, bytes]]:
    """The parent and state (R, S, Z...) of every process (Linux /proc); empty where there
    is no /proc."""
    found: dict[int, tuple[int, bytes]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
            fields = data.rpartition(b")")[2].split()
            found[int(entry)] = (int(fields[1]), fields[0])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def descendants(roots: Collection[int], *, running: bool = False) -> list[int]:
    """Every process below the `roots` (exited ones not yet reaped included, unless
    `running`), from one look at /proc."""
    children: dict[int, list[int]] = {}
    processes = _processes()
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    stack = list(roots)
    while stack and len(found) <= len(processes):
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    if running:
        return [pid for pid in found if processes[pid][1] not in (b"Z", b"X")]
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def end_descendants(roots: Collection[int]) -> None:
    """SIGKILL every process below the `roots`, whatever its group or session: first stop
    them (a stopped process forks no more), round after round until no new one shows up,
    then kill them all. Where there is no /proc, nothing is found."""
    stopped: set[int] = set()
    for _ in range(_ROUNDS):
        new = [pid for pid in descendants(roots) if pid not in stopped]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    # Forked in the last round's gap (or past the bound): killed as found, no more rounds.
    for pid in descendants(roots):
        if pid not in stopped:
            _signal(pid, signal.SIGKILL)


def command_line(pid: int) -> str:
    """What process `pid` runs, as a log line shows it (its arguments, else its name in
    brackets, at most 80 characters), or "?" where /proc does not tell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            text = handle.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        if not text:
            with open(f"/proc/{pid}/comm", "rb") as handle:
                text = f"[{handle.read().strip().decode(errors='replace')}]"
    except OSError:
        return "?"
    return text if len(text) <= 80 else text[:77] + "..."


def end_leftovers(grace: float) -> list[tuple[int, str]]:
    """End every process still running below this one (a subreaper, so whatever its group
    or session): SIGTERM first, so it may clean up, then after `grace` seconds SIGKILL
    (`end_descendants`) for what is still there; reap them. Returns what was running, as
    (pid, command line). One look at /proc when nothing is left."""
    me = os.getpid()
    reap_exited()
    found = descendants([me], running=True)
    described = [(pid, command_line(pid)) for pid in found]
    told: set[int] = set()
    deadline = time.monotonic() + grace
    while found:
        for pid in found:
            if pid not in told:  # one SIGTERM each, and a SIGCONT should it be stopped
                _signal(pid, signal.SIGTERM)
                _signal(pid, signal.SIGCONT)
                told.add(pid)
        left = deadline - time.monotonic()
        if left <= 0:
            end_descendants([me])
            break
        time.sleep(min(left, _LEFTOVER_POLL))
        reap_exited()
        found = descendants([me], running=True)
    reap_exited()
    return described


def describe(processes: Collection[tuple[int, str]]) -> str:
    """`processes` as (pid, command line) for a log line: "pid 123: sleep 20, ...", the
    first few named."""
    named = [f"pid {pid}: {command}" for pid, command in list(processes)[:_NAMED_MAX]]
    more = len(processes) - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def end_trees(roots: Collection[int]) -> None:
    """SIGKILL each process of `roots` (each the leader of its own process group), its
    group, and every process below it. Stopped first, so a job forks nothing meanwhile."""
    if not roots:
        return
    for root in roots:
        _signal_group(root, signal.SIGSTOP)
        _signal(root, signal.SIGSTOP)
    end_descendants(roots)
    for root in roots:
        _signal_group(root, signal.SIGKILL)
        _signal(root, signal.SIGKILL)


__all__ = [
    "clean_environment",
    "close_inherited",
    "command_line",
    "descendants",
    "describe",
    "end_descendants",
    "end_leftovers",
    "end_trees",
    "has_children",
    "log_descriptors",
    "reap_exited",
    "subreaper_switch",
    "without_credentials",
]
