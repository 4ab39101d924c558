"""Built-in retry strategies: fixed, linear, exponential, exponential_jitter.

A job stores its strategy as a name plus JSON parameters, so any worker can rebuild it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from gigq_core.errors import InvalidJobError
from gigq_core.hookspecs import hookimpl
from gigq_core.records import ErrorInfo

#: The strategy used when a job names none.
DEFAULT_STRATEGY = "exponential_jitter"


def _names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Type names as a tuple (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _names_or_empty(value: Sequence[str] | str | None) -> tuple[str, ...]:
    return _names(value) or ()


def _matches(error: ErrorInfo, names: tuple[str, ...]) -> bool:
    short = error.type.rpartition(".")[2]
    return error.type in names or short in names


@attrs.frozen(kw_only=True)
class _Base:
    #: Retry only errors of these type names (None: any).
    retry_on: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    #: Never retry errors of these type names.
    dont_retry_on: tuple[str, ...] = attrs.field(default=(), converter=_names_or_empty)

    def _allowed(self, error: ErrorInfo) -> bool:
        if self.dont_retry_on and _matches(error, self.dont_retry_on):
            return False
        return self.retry_on is None or _matches(error, self.retry_on)

    def delay(self, attempt: int, error: ErrorInfo) -> float | None:
        """Seconds before the next attempt, or None for no retry."""
        if not self._allowed(error):
            return None
        return max(0.0, self._wait(attempt))

    def _wait(self, attempt: int) -> float:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class Fixed(_Base):
    """The same delay before every retry."""

    delay_seconds: float = attrs.field(default=1.0, alias="delay")

    def _wait(self, attempt: int) -> float:
        return self.delay_seconds


@attrs.frozen(kw_only=True)
class Linear(_Base):
    """`base * attempt` seconds, capped."""

    base: float = 1.0
    cap: float = 3600.0

    def _wait(self, attempt: int) -> float:
        return min(self.cap, self.base * attempt)


@attrs.frozen(kw_only=True)
class Exponential(_Base):
    """`base * factor ** (attempt - 1)` seconds, capped."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0

    def _wait(self, attempt: int) -> float:
        try:
            return min(self.cap, self.base * self.factor ** (attempt - 1))
        except OverflowError:
            return self.cap


@attrs.frozen(kw_only=True)
class ExponentialJitter(Exponential):
    """Exponential backoff with full jitter: uniform in [0, exponential delay]."""

    def _wait(self, attempt: int) -> float:
        return random.uniform(0, super()._wait(attempt))


BUILTIN: dict[str, Callable[..., Any]] = {
    "fixed": Fixed,
    "linear": Linear,
    "exponential": Exponential,
    "exponential_jitter": ExponentialJitter,
}


def is_strategy_object(entry: Any) -> bool:
    """Whether a `gigq_retry_strategies` entry is a ready strategy (an object with a
    `delay` method) rather than a factory: a class is always a factory, even one that
    defines `delay`."""
    return not isinstance(entry, type) and callable(getattr(entry, "delay", None))


def build_strategy(factories: dict[str, Any], name: str, params: dict[str, Any]) -> Any:
    """The named strategy: a registered strategy object as it is (it takes no parameters),
    or what a registered factory builds from the parameters; else InvalidJobError."""
    factory = factories.get(name)
    if factory is None:
        known = ", ".join(sorted(factories))
        raise InvalidJobError(f"unknown retry strategy '{name}' (known: {known})")
    if is_strategy_object(factory):
        if params:
            raise InvalidJobError(
                f"retry strategy '{name}' is a ready strategy object and takes no "
                f"parameters, got {', '.join(sorted(params))}"
            )
        return factory
    if not callable(factory):
        raise InvalidJobError(
            f"retry strategy '{name}' is neither a strategy object (with a delay method) "
            f"nor a factory: {factory!r}"
        )
    try:
        return factory(**params)
    except TypeError as err:
        raise InvalidJobError(f"bad parameters for retry strategy '{name}': {err}") from None


def describe_strategy(factories: dict[str, Any], strategy: Any) -> tuple[str, dict[str, Any]]:
    """The (name, JSON parameters) that rebuild a strategy object, so any worker can apply
    it: the name of the object itself when it is registered as is, else of its class with
    its fields; InvalidJobError when neither is registered or its fields are not plain
    parameters."""
    same = [name for name, entry in factories.items() if entry is strategy]
    if same:
        return same[0], {}
    names = [name for name, factory in factories.items() if factory is type(strategy)]
    if not names or not attrs.has(type(strategy)):
        raise InvalidJobError(
            f"retry strategy {strategy!r} cannot be stored: a job keeps its strategy as a "
            "name plus parameters, so give a name, or an object of a strategy class "
            "registered by name (gigq_retry_strategies)"
        )
    params = {
        field.alias or field.name: getattr(strategy, field.name)
        for field in attrs.fields(type(strategy))
        if field.init
    }
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return names[0], params


@hookimpl
def gigq_retry_strategies() -> dict[str, Callable[..., Any]]:
    """The built-in strategies."""
    return dict(BUILTIN)


__all__ = [
    "BUILTIN",
    "DEFAULT_STRATEGY",
    "Exponential",
    "ExponentialJitter",
    "Fixed",
    "Linear",
    "build_strategy",
    "describe_strategy",
]
