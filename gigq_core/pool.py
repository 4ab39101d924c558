"""The process executor: a pool of long-lived child processes that run jobs.

The supervisor (the worker process) alone touches storage. Each child is forked by the
supervisor, becomes the leader of its own process group and (on Linux) a child subreaper, so
a timeout or cancel kills the job and every process it started, even one in a session of its
own (`gigq_core._isolation`). It closes the pipes and sockets it inherited but its own
channel, drops GigQ's secrets from its environment, runs one job at a time, and reports the
attempt's result through a pipe, after ending what the job left running (Linux; see
`_end_leftovers`). A child is replaced after it is killed, after
`max_jobs_per_child` jobs, or when its resident memory passes `max_child_memory` MiB (read
from /proc, or from the peak `getrusage` reports where there is no /proc).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, Pipe
from typing import Any

import attrs

from gigq_core import _isolation
from gigq_core.context import JobContext
from gigq_core.execution import (
    AttemptResult,
    ModuleUnavailableError,
    PermanentError,
    load_function,
    run_attempt,
)
from gigq_core.ports import Serializer
from gigq_core.records import ErrorInfo, JobRecord

log = logging.getLogger("gigq")


@attrs.define
class Child:
    """A child process of the pool, as the supervisor sees it."""

    pid: int
    conn: Connection
    #: The token of the attempt it runs, or None when idle.
    token: str | None = None
    jobs_done: int = 0
    #: The pool's code generation it was forked at (see `ProcessPool.renew`).
    generation: int = 0


class ProcessPool:
    """Up to `size` children, each running one job at a time."""

    def __init__(
        self,
        size: int,
        serializer: Serializer,
        max_payload: int,
        allowed_modules: Sequence[str],
        max_jobs_per_child: int = 0,
        max_child_memory: int = 0,
        *,
        plugin_settings: Sequence[str] = (),
        kill_leftovers: bool = True,
        leftover_grace: float = 2.0,
    ) -> None:
        self.size = size
        self.serializer = serializer
        self.max_payload = max_payload
        self.allowed_modules = tuple(allowed_modules)
        self.max_jobs_per_child = max_jobs_per_child
        self.max_child_memory = max_child_memory
        #: Settings plugins declare, whose `GIGQ_<NAME>` variables children keep.
        self.plugin_settings = tuple(plugin_settings)
        #: Whether a child ends what a job left running when it returns, and how many
        #: seconds it gives those processes between SIGTERM and SIGKILL.
        self.leftovers = (kill_leftovers, leftover_grace)
        self.children: list[Child] = []
        #: One poll set for the pool's life (children's pipes and the caller's extra fds):
        #: cheaper than building a selector for every wait.
        self._poller = select.poll()
        self._by_fd: dict[int, Child] = {}
        self._extra: set[int] = set()
        self.woken = False
        #: Makes a child a subreaper (Linux); found once, before the first fork.
        self._subreaper: Callable[[], bool] | None = None
        #: The code generation asked for (`renew`, from any thread), the one this process's
        #: modules are ready for (new children are forked at it), the folders whose modules
        #: to forget for the next, and whether a child of an older one may be left.
        self.generation = 0
        self._ready = 0
        self._forget: tuple[str, ...] = ()
        self._stale = False

    # -- supervisor side -----------------------------------------------------------------

    def start(self) -> None:
        """Fork the children."""
        if self._subreaper is None:
            self._subreaper = _isolation.subreaper_switch()
        while len(self.children) < self.size:
            self.children.append(self._spawn())

    def _spawn(self) -> Child:
        parent_end, child_end = Pipe(duplex=True)
        keep = [child_end.fileno(), *_isolation.log_descriptors()]
        # Flush buffered output so the child does not write the parent's buffer again.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            parent_end.close()
            _child_main(
                child_end,
                self.serializer,
                self.max_payload,
                self.allowed_modules,
                self.max_jobs_per_child,
                self.max_child_memory,
                self._subreaper,
                keep,
                self.plugin_settings,
                self.leftovers,
            )
        child_end.close()
        child = Child(pid=pid, conn=parent_end, generation=self._ready)
        fd = parent_end.fileno()
        self._by_fd[fd] = child
        self._poller.register(fd, select.POLLIN)
        return child

    def idle(self) -> list[Child]:
        """Children without a job."""
        return [c for c in self.children if c.token is None]

    def busy(self) -> list[Child]:
        """Children running a job."""
        return [c for c in self.children if c.token is not None]

    def dispatch(self, child: Child, record: JobRecord, params: dict[str, Any] | str) -> None:
        """Send an attempt to an idle child: `params` as keyword arguments, or still
        serialized (the child decodes them, off the supervisor's path)."""
        assert record.token is not None
        child.token = record.token
        task = (record.token, record.id, record.name, record.function, record.attempts)
        _send(child.conn, ("run", task, record.worker_id or "", params))

    def watch(self, fd: int) -> None:
        """Also wake `poll` when `fd` is readable (the worker's wake-up pipe)."""
        if fd not in self._extra:
            self._extra.add(fd)
            self._poller.register(fd, select.POLLIN)

    def poll(self, timeout: float, extra: Sequence[Any] = ()) -> list[tuple[Child, Any]]:
        """Wait up to `timeout` s for messages; returns (child, message) pairs.

        A message is ("done", token, AttemptResult) or ("died", token or None, exit info),
        where token names the attempt. A child that retired or died is replaced. `extra`
        file descriptors (see `watch`) end the wait too.
        """
        for fd in extra:
            self.watch(fd)
        try:
            events = self._poller.poll(max(0, int(timeout * 1000 + 0.999)))
        except InterruptedError:
            events = []
        messages: list[tuple[Child, Any]] = []
        #: Whether one of the `extra` descriptors was readable.
        self.woken = False
        for fd, _ in events:
            child = self._by_fd.get(fd)
            if child is None:
                self.woken = self.woken or fd in self._extra
                continue
            try:
                message = _recv(child.conn)
            except (EOFError, OSError):
                token = child.token
                status = self._reap(child)
                messages.append((child, ("died", token, status)))
                self._replace(child)
                continue
            if message[0] == "done":
                child.token = None
                child.jobs_done += 1
                _, token, (status, result, error, permanent, duration, missing), retiring = message
                attempt = AttemptResult(
                    status=status,
                    result=result,
                    error=error,
                    permanent=permanent,
                    duration=duration,
                    unimportable=missing,
                )
                messages.append((child, ("done", token, attempt)))
                if retiring:
                    # It exits after this message: replace it before anything is sent to it.
                    self._reap(child)
                    self._replace(child)
        return messages

    def kill(self, token: str) -> None:
        """Kill the child running the attempt `token` with its process group and every
        process below it, and replace it."""
        for child in self.children:
            if child.token == token:
                _isolation.end_trees([child.pid])
                self._reap(child)
                self._replace(child)
                return

    def renew(self, folders: Sequence[str] = ()) -> None:
        """Ask for children that run the code as it is now (a development reload): see
        `renew_stale`, which the supervisor's loop calls. Safe from any thread."""
        self._forget = tuple(folders)
        self.generation += 1

    def renew_stale(self) -> None:
        """Replace the idle children forked before the last `renew`, after this process
        forgot the modules loaded from its folders (so the new children import them again);
        a busy one is replaced once its job ends (a later call). One comparison when nothing
        was asked."""
        wanted = self.generation
        if wanted != self._ready:
            from gigq_core.reload import forget_modules

            forget_modules(self._forget)
            self._ready = wanted
            self._stale = True
        if not self._stale:
            return
        for child in [c for c in self.children if c.token is None]:
            if child.generation != self._ready:
                with contextlib.suppress(OSError):
                    _send(child.conn, ("exit",))
                self._reap(child)
                self._replace(child)
        self._stale = any(c.generation != self._ready for c in self.children)

    def _reap(self, child: Child) -> str:
        fd = child.conn.fileno() if not child.conn.closed else -1
        if self._by_fd.pop(fd, None) is not None:
            self._poller.unregister(fd)
        child.conn.close()
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            return "gone"
        # Whatever the job started in the child's group goes too.
        _killpg(child.pid)
        if os.WIFSIGNALED(status):
            return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exited with code {os.WEXITSTATUS(status)}"

    def _replace(self, child: Child) -> None:
        if child in self.children:
            self.children.remove(child)
        if len(self.children) < self.size:
            self.children.append(self._spawn())

    def kill_all(self) -> None:
        """Kill every child with its process group and what runs below it (the supervisor
        is leaving now)."""
        _isolation.end_trees([child.pid for child in self.children])

    def shutdown(self) -> None:
        """Stop every child (killing any job still running) and reap them."""
        for child in self.children:
            if child.token is None:
                with contextlib.suppress(OSError):
                    _send(child.conn, ("exit",))
        _isolation.end_trees([child.pid for child in self.children if child.token is not None])
        for child in self.children:
            self._reap(child)
        self.children = []


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send a message through a pool pipe. Plain pickle: Connection.send's ForkingPickler
    copies its reducer table for every message, and nothing here needs its reducers."""
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _recv(conn: Connection) -> Any:
    """Receive a message sent by `_send`."""
    return pickle.loads(conn.recv_bytes())


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- child side ----------------------------------------------------------------------------


def _rss_mib() -> float:
    """This process's resident memory in MiB: the current size where /proc has it (Linux),
    else the peak size `getrusage` keeps (macOS, the BSDs), so `max_child_memory` recycles
    a child there too rather than silently never. A peak that passed the limit is reason
    enough: freed memory rarely goes back to the system."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mib()


def _peak_rss_mib() -> float:
    """The peak resident memory of this process in MiB (`ru_maxrss`: bytes on macOS,
    KiB elsewhere), or 0.0 without the `resource` module."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _child_main(
    conn: Connection,
    serializer: Serializer,
    max_payload: int,
    allowed: tuple[str, ...],
    max_jobs: int,
    max_memory: int,
    subreaper: Callable[[], bool] | None,
    keep: list[int],
    plugin_settings: tuple[str, ...] = (),
    leftovers: tuple[bool, float] = (True, 2.0),
) -> None:
    """Run jobs sent by the supervisor until told to exit; never returns."""
    global _child_pid
    code = 0
    adopts = False
    try:
        _child_pid = os.getpid()
        os.setpgid(0, 0)
        # Orphans of the job's processes come to this process, not to init: ending it
        # finds them, however they left the job's group or session.
        adopts = subreaper is not None and subreaper()
        # The wake-up pipe, the sibling children's pipes and the storage's sockets are not
        # the job's (`keep`: its channel, and the streams the worker logs to).
        _isolation.close_inherited(keep)
        _isolation.clean_environment(plugin_settings=plugin_settings)
        # What the supervisor had before the fork (frozen by the worker, or not) is never
        # garbage here: keep the collector from walking, and so copying, the inherited heap.
        gc.freeze()
        _die_with_parent(adopts)
        # The supervisor decides about shutdown (a grace period, then a hand-back): a
        # terminal's Ctrl-C is not for children, nor a SIGTERM sent to every process of
        # the worker at once (systemd's default KillMode, `pkill -f`). Handlers rather
        # than SIG_IGN: the processes a job starts get the default actions back at exec.
        signal.signal(signal.SIGINT, _leave_to_the_supervisor)
        signal.signal(signal.SIGTERM, _leave_to_the_supervisor)
        done = 0
        while True:
            message = _recv(conn)
            if message[0] != "run":
                break
            _, task, worker_id, params = message
            token = task[0]
            result = _run_in_child(task, worker_id, params, serializer, max_payload, allowed)
            # Before the outcome is reported: once it is recorded (and a dependent job may
            # start), nothing the job started still runs. One system call when nothing is
            # left, the usual case.
            if adopts and _isolation.has_children():
                _end_leftovers(task, leftovers)
            done += 1
            # Said with the result, so the supervisor never sends a job to a leaving child.
            retiring = bool(
                (max_jobs and done >= max_jobs) or (max_memory and _rss_mib() > max_memory)
            )
            _send(
                conn,
                (
                    "done",
                    token,
                    (
                        result.status,
                        result.result,
                        result.error,
                        result.permanent,
                        result.duration,
                        result.unimportable,
                    ),
                    retiring,
                ),
            )
            if retiring:
                break
    except (EOFError, OSError, KeyboardInterrupt):
        code = 0
    except BaseException:  # the child must never fall back into the supervisor's code
        code = 70
    finally:
        # What jobs left running ends with the child, in another session too (the
        # supervisor then kills the group). One system call when nothing is left.
        try:
            if adopts and _isolation.has_children():
                _isolation.end_descendants([os.getpid()])
        finally:
            # os._exit: never run the supervisor's atexit handlers or close its inherited
            # SQLite connection from here.
            os._exit(code)


#: The pid of this process when it is a pool child (0 in the supervisor).
_child_pid = 0


def _end_leftovers(task: tuple[str, str, str, str, int], leftovers: tuple[bool, float]) -> None:
    """End what the job of `task` left running below this child, with a warning naming it,
    unless `leftovers` says not to (then only the exited ones, such as a daemon's orphan
    adopted since, are reaped: nobody else waits for them)."""
    kill, grace = leftovers
    if not kill:
        _isolation.reap_exited()
        return
    ended = _isolation.end_leftovers(grace)
    if ended:
        _, job_id, name, _, _ = task
        log.warning(
            "job %s (%r) left %d process%s running (%s); terminated",
            job_id,
            name,
            len(ended),
            "" if len(ended) == 1 else "es",
            _isolation.describe(ended),
        )


def _leave_to_the_supervisor(signum: int, frame: Any) -> None:
    """SIGTERM or SIGINT in a child: nothing to do, the supervisor got it too or will end
    the job. A process a job forked without exec (multiprocessing, say) inherits this
    handler: there the signal does what it does by default."""
    if os.getpid() != _child_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _die_with_parent(adopts: bool) -> None:
    """Kill this child's whole process group (the job and what it started, and when it
    `adopts` orphans, every process below it) as soon as the supervisor is gone, however it
    died: a job must not run on unsupervised while a rescuer starts it again elsewhere."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        if adopts:
            _isolation.end_descendants([os.getpid()])
        os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="gigq-orphan-watch", daemon=True).start()


def _run_in_child(
    task: tuple[str, str, str, str, int],
    worker_id: str,
    params: dict[str, Any] | str,
    serializer: Serializer,
    max_payload: int,
    allowed_modules: tuple[str, ...],
) -> AttemptResult:
    """Run one attempt: `task` is (token, job id, name, function path, attempt)."""
    _, job_id, name, function_path, attempt = task
    try:
        function = load_function(function_path, allowed_modules)
        if isinstance(params, str):
            params = serializer.loads(params)
    except ModuleUnavailableError as err:  # the worker's problem: the job is handed back
        return AttemptResult.cannot_import(err)
    except PermanentError as err:
        return AttemptResult(
            status="failed",
            error=ErrorInfo(type="PermanentError", message=str(err)),
            permanent=True,
        )
    except Exception as err:  # undecodable params: the job can never run
        return AttemptResult(status="failed", error=ErrorInfo.from_exception(err), permanent=True)
    context = JobContext(id=job_id, name=name, attempt=attempt, worker_id=worker_id)
    assert isinstance(params, dict)
    return run_attempt(function, params, context, serializer, max_payload)


__all__ = ["Child", "ProcessPool"]
