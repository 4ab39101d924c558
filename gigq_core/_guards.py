"""Guards around plugins' hook implementations: a failure of one is reported with its
plugin's name, in the way its hook asks, and the call goes on with the others.

`GigQPluginManager` puts each implementation of a GigQ hook in one of these guards when it
registers a plugin; pluggy then calls the guarded twins as it would the originals.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from pluggy import HookImpl

from gigq_core.errors import GigQError

log = logging.getLogger("gigq.plugins")

#: The failures in extension hooks during the current `collect_failures()` block.
_call_failures: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gigq_call_failures", default=None
)


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


class LifecycleGuard(Guard):
    """A lifecycle hook: an Exception is logged with its traceback; the job is not touched."""

    def report(self, error: BaseException, state: object) -> bool:
        if not isinstance(error, Exception):
            return False
        log.error("plugin '%s' raised in %s", self.plugin, self.hook, exc_info=error)
        return True


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
        state = guard.prepare(args, kwargs)
        try:
            return function(*args, **kwargs)
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
        try:
            teardown = function(*args, **kwargs)
            if next(teardown, _DONE) is _DONE:
                raise RuntimeError(f"hook wrapper {name} did not yield")
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
            teardown.send(received)
        except StopIteration as stop:
            return stop.value
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


__all__ = [
    "CommandsGuard",
    "ExtensionGuard",
    "Guard",
    "LifecycleGuard",
    "collect_failures",
    "guarded_impl",
]
