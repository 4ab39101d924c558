"""Guards around plugins' hook implementations: a failure of one is reported with its
plugin's name, in the way its hook asks, and the call goes on with the others.

`GigQPluginManager` puts each implementation of a GigQ hook in one of these guards when it
registers a plugin; pluggy then calls the guarded twins as it would the originals.

Inside a worker's loop (`bounded_hooks`), lifecycle implementations also run under a
deadline, on a helper thread (`HookRunner`): one that hangs costs the loop a bounded wait,
never its heartbeats, its shutdown or the jobs it holds.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from pluggy import HookImpl

from gigq_core.errors import GigQError

log = logging.getLogger("gigq.plugins")

#: The failures in extension hooks during the current `collect_failures()` block.
_call_failures: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gigq_call_failures", default=None
)


class Abandoned(Exception):
    """A bounded implementation did not return in time, or its plugin hung before: the call
    goes on without it."""


class HookRunner:
    """Runs the lifecycle hook implementations a worker's loop calls on a helper thread,
    so that one that hangs never holds the worker.

    A plain implementation is posted (`post`) and the loop goes on at once: implementations
    run in the order they were posted, each after the commit it reports. One that has run
    for more than `timeout` seconds is given up on (`check`, called with each post and while
    closing): it is reported once and left on its thread (Python cannot stop a thread), its
    plugin's lifecycle hooks are skipped from then on, and the calls waiting behind it move
    to a fresh helper thread. A wrapper (rare) needs its answer, so `call` waits for it, as
    long as `timeout`. Closing waits for what was posted, but never past the grace period of
    a stopping worker (`grace_left` says how much of it is left, None while the worker
    runs), and then only `LAST_CALLS` seconds more.
    """

    #: Least wait for what is left once a stopping worker's grace period is over (the last
    #: hooks: the final commit's, the hand-back's, gigq_worker_stopped).
    LAST_CALLS = 1.0
    #: How often a wait looks at the clock and the grace period.
    SLICE = 0.05

    def __init__(self, timeout: float, grace_left: Callable[[], float | None]) -> None:
        #: The process it serves: a process forked from it (a job's) has no helper thread.
        self.pid = os.getpid()
        self.timeout = timeout
        self._grace_left = grace_left
        #: Plugin name -> the hook it hung in.
        self.hung: dict[str, str] = {}
        self._lock = threading.Condition()
        self._helper: _Helper | None = None

    def post(self, hook: str, plugin: str, function: Callable[[], Any]) -> None:
        """Run `function()` on the helper thread, after what was posted before; what it
        raises is logged as the plugin's failure there."""
        self.check()
        if plugin in self.hung:
            return
        with self._lock:
            self._current().tasks.append(_Task(hook, plugin, function, wanted=False))
            self._lock.notify_all()

    def call(self, hook: str, plugin: str, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on the helper thread, waited for: its value, or what it raised
        (re-raised here); Abandoned when the plugin hung now or before."""
        self.check()
        if plugin in self.hung:
            raise Abandoned(plugin)
        task = _Task(hook, plugin, functools.partial(function, *args), wanted=True)
        with self._lock:
            self._current().tasks.append(task)
            self._lock.notify_all()
        started = time.monotonic()
        while not task.done.wait(self.SLICE):
            left = self._grace_left()
            over = left is not None and left <= 0 and time.monotonic() - started >= self.LAST_CALLS
            if self.check(force=over) or plugin in self.hung:
                raise Abandoned(plugin)
        if task.error is not None:
            raise task.error
        return task.value

    def check(self, force: bool = False) -> bool:
        """Give up on the call running past `timeout` (at once with `force`); True if one
        was given up on."""
        with self._lock:
            helper = self._helper
            running = helper.running if helper is not None else None
            if helper is None or running is None:
                return False
            waited = time.monotonic() - helper.since
            if waited < self.timeout and not force:
                return False
            self.hung[running.plugin] = running.hook
            # The calls waiting behind it go on in a fresh helper; the stuck thread ends if
            # its call ever returns.
            waiting = [t for t in helper.tasks if t.plugin not in self.hung]
            helper.retired = True
            helper.tasks.clear()
            self._helper = None
            if waiting:
                self._current().tasks.extend(waiting)
            self._lock.notify_all()
        log.error(
            "plugin '%s' has not returned from %s after %.1f s; the worker goes on without "
            "it and calls none of its lifecycle hooks again (a thread stays inside it)",
            running.plugin,
            running.hook,
            waited,
        )
        return True

    def close(self) -> None:
        """Wait for what was posted (bounded as the class says), then let the helper end."""
        started = time.monotonic()
        while True:
            with self._lock:
                helper = self._helper
                if helper is None or (not helper.tasks and helper.running is None):
                    break
            left = self._grace_left()
            over = left is not None and left <= 0 and time.monotonic() - started >= self.LAST_CALLS
            self.check(force=over)
            time.sleep(0.005)
        with self._lock:
            if self._helper is not None:
                self._helper.retired = True
                self._helper = None
            self._lock.notify_all()

    def _current(self) -> _Helper:
        """The live helper (started on first use); call with the lock held."""
        if self._helper is None:
            self._helper = _Helper(self._lock)
        return self._helper


class _Task:
    """One call for the helper thread, and its outcome."""

    def __init__(self, hook: str, plugin: str, function: Callable[[], Any], wanted: bool) -> None:
        self.hook = hook
        self.plugin = plugin
        self.function = function
        #: Whether a caller waits for the outcome (else a failure is logged here).
        self.wanted = wanted
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.value = self.function()
        # A waiting caller reports it as the plugin's; a posted call's is logged here.
        except BaseException as error:
            if self.wanted:
                self.error = error
            else:
                log.error("plugin '%s' raised in %s", self.plugin, self.hook, exc_info=error)
        finally:
            self.done.set()


class _Helper:
    """A helper thread and the calls waiting for it."""

    def __init__(self, lock: threading.Condition) -> None:
        self._lock = lock
        self.tasks: collections.deque[_Task] = collections.deque()
        #: The call it runs now, and since when.
        self.running: _Task | None = None
        self.since = 0.0
        #: Set when it was given up on (or closed): it takes no more calls.
        self.retired = False
        thread = threading.Thread(target=self._serve, name="gigq-hooks")
        thread.daemon = True  # a hung hook must not keep the process alive
        thread.start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self.tasks and not self.retired:
                    self._lock.wait()
                if self.retired:
                    return
                task = self.tasks.popleft()
                self.running, self.since = task, time.monotonic()
            task.run()
            with self._lock:
                if self.running is task:
                    self.running = None
                self._lock.notify_all()


#: None: implementations run in the caller's thread, unbounded.
_runner: contextvars.ContextVar[HookRunner | None] = contextvars.ContextVar(
    "gigq_hook_runner", default=None
)


def _active_runner() -> HookRunner | None:
    """The runner of this thread's worker loop; None outside one, and in a process forked
    from it (a job process submitting jobs), where its helper thread does not exist."""
    runner = _runner.get()
    return runner if runner is not None and runner.pid == os.getpid() else None


@contextlib.contextmanager
def bounded_hooks(runner: HookRunner) -> Iterator[HookRunner]:
    """Inside the block, lifecycle hook implementations called from this thread run on
    `runner` (threads started meanwhile do not inherit it); closes it after."""
    token = _runner.set(runner)
    try:
        yield runner
    finally:
        _runner.reset(token)
        runner.close()


class Guard:
    """What a failure of one implementation of a GigQ hook leads to: `report` logs it with
    the plugin's name and returns True (the call goes on without this answer), or returns
    False (the error goes on to the caller)."""

    def __init__(self, hook: str, impl: HookImpl) -> None:
        self.hook = hook
        self.plugin = impl.plugin_name
        self.argnames = impl.argnames

    def prepare(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> object:
        """What `report` needs to undo a failure, taken before the implementation runs."""
        return None

    def report(self, error: BaseException, state: object) -> bool:
        """Report `error`; True when the call goes on."""
        raise NotImplementedError

    def runner(self) -> HookRunner | None:
        """Where the implementation runs, when not in the caller's thread."""
        return None


class LifecycleGuard(Guard):
    """A lifecycle hook: an Exception is logged with its traceback; the job is not touched.

    Inside a worker's loop the implementation runs on the loop's `HookRunner`, so whatever
    it raises there, KeyboardInterrupt and SystemExit too, is the plugin's own (the worker
    handles SIGINT itself) and is logged the same way; elsewhere those two go on to the
    caller, who may have pressed Ctrl-C.
    """

    def report(self, error: BaseException, state: object) -> bool:
        if not isinstance(error, Exception) and _active_runner() is None:
            return False
        log.error("plugin '%s' raised in %s", self.plugin, self.hook, exc_info=error)
        return True

    def runner(self) -> HookRunner | None:
        return _active_runner()


class ExtensionGuard(Guard):
    """An extension hook: an Exception is logged on one line and noted for
    `collect_failures`; a GigQError is the plugin's answer to the user (e.g. an unreachable
    server) and goes on to the caller."""

    def report(self, error: BaseException, state: object) -> bool:
        if isinstance(error, GigQError) or not isinstance(error, Exception):
            return False
        message = f"plugin '{self.plugin}' failed in {self.hook}: {error!r}"
        log.warning("%s", message)
        failures = _call_failures.get()
        if failures is not None:
            failures[self.hook] = message
        return True


class CommandsGuard(Guard):
    """gigq_register_commands: it runs on every gigq command, so whatever the plugin raises
    (even SystemExit) is logged on one line and recorded in `failures`, and the commands it
    added before are taken out; the others and the built-in commands work."""

    def __init__(self, hook: str, impl: HookImpl, failures: dict[str, str]) -> None:
        super().__init__(hook, impl)
        self.failures = failures

    def prepare(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> object:
        named = {**dict(zip(self.argnames, args, strict=False)), **kwargs}
        commands = getattr(named.get("cli"), "commands", None)  # a click.Group's name -> command
        return (commands, dict(commands)) if isinstance(commands, dict) else None

    def report(self, error: BaseException, state: object) -> bool:
        if isinstance(state, tuple):
            commands, before = state
            commands.clear()
            commands.update(before)
        message = f"plugin '{self.plugin}' failed to add its commands: {error!r}"
        self.failures[self.plugin] = message
        log.warning("%s", message)
        return True


@contextlib.contextmanager
def collect_failures() -> Iterator[dict[str, str]]:
    """Hook name -> failure, of the extension hook calls made inside the block."""
    failures: dict[str, str] = {}
    token = _call_failures.set(failures)
    try:
        yield failures
    finally:
        _call_failures.reset(token)


def guarded_impl(impl: HookImpl, guard: Guard) -> HookImpl:
    """`impl`, its function run inside `guard`."""
    if impl.wrapper or impl.hookwrapper:
        function = _guarded_wrapper(impl.function, guard)
    else:
        function = _guarded_call(impl.function, guard)
    return HookImpl(impl.plugin, impl.plugin_name, function, impl.opts)


def _guarded_call(function: Callable[..., Any], guard: Guard) -> Callable[..., Any]:
    """`function` (wrapped, so pluggy reads its own arguments) run inside `guard`."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        runner = guard.runner()
        if runner is not None:  # a worker's loop: posted, never waited for
            runner.post(guard.hook, guard.plugin, functools.partial(function, *args, **kwargs))
            return None
        state = guard.prepare(args, kwargs)
        step = _stepper(guard)
        try:
            return step(functools.partial(function, *args, **kwargs))
        except Abandoned:  # it hung: reported once by the runner
            return None
        # Plugin isolation: the guard reports the failure and says whether the call goes on.
        except BaseException as error:
            if not guard.report(error, state):
                raise
            return None

    return call


def _guarded_wrapper(
    function: Callable[..., Any], guard: Guard
) -> Callable[..., Generator[None, Any, Any]]:
    """A pluggy wrapper (`wrapper=True`, or old-style `hookwrapper=True`), its code before
    and after the `yield` each run inside `guard`: a failure in either is reported and the
    call goes on with the result unchanged."""
    name = function.__qualname__

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
        state = guard.prepare(args, kwargs)
        step = _stepper(guard)
        try:
            teardown = function(*args, **kwargs)
            if step(functools.partial(next, teardown, _DONE)) is _DONE:
                raise RuntimeError(f"hook wrapper {name} did not yield")
        except Abandoned:
            return (yield)
        except BaseException as error:  # plugin isolation, as in _guarded_call
            if not guard.report(error, state):
                raise
            return (yield)
        try:
            received = yield
        except BaseException as exc:
            # Not a plugin's failure (those stop at their guard): the wrapper sees it.
            try:
                teardown.throw(exc)
            except StopIteration as stop:
                return stop.value
            teardown.close()
            raise
        state = guard.prepare(args, kwargs)
        try:
            step(functools.partial(teardown.send, received))
        except StopIteration as stop:
            return stop.value
        except Abandoned:
            return received
        except BaseException as error:  # plugin isolation, as in _guarded_call
            if not guard.report(error, state):
                raise
            return received
        teardown.close()
        twice = RuntimeError(f"hook wrapper {name} yielded twice")
        if not guard.report(twice, state):
            raise twice
        return received

    return call


#: What `next()` returns for a wrapper that ended without yielding.
_DONE = object()


def _stepper(guard: Guard) -> Callable[[Callable[[], Any]], Any]:
    """How the guarded code of one call runs: on the guard's runner (bounded), or here."""
    runner = guard.runner()
    if runner is None:
        return _here
    return functools.partial(runner.call, guard.hook, guard.plugin)


def _here(step: Callable[[], Any]) -> Any:
    """Run `step` in the caller's thread."""
    return step()


__all__ = [
    "Abandoned",
    "CommandsGuard",
    "ExtensionGuard",
    "Guard",
    "HookRunner",
    "LifecycleGuard",
    "bounded_hooks",
    "collect_failures",
    "guarded_impl",
]
