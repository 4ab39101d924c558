"""The JSON serializer (the default) and its limits (docs/guarantees.md D6)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gigq_core.errors import SerializationError, UnreadableJobError
from gigq_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from gigq_core.ports import Serializer

#: Default cap on serialized params and results, in bytes.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: The cap may be raised up to this, in bytes.
MAX_PAYLOAD_LIMIT = 16 * 1024 * 1024


#: Compact JSON that refuses NaN and Infinity; one encoder for every call (json.dumps with
#: options builds a new one each time).
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _check_keys(obj: Any, depth: int = 0) -> None:
    """Refuse dict keys that JSON would turn into strings (the value would come back
    changed), and nesting deeper than 500 levels."""
    if depth > 500:
        raise SerializationError("value is nested too deeply (more than 500 levels)")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"dict key {key!r} is a {type(key).__name__}; JSON keys must be strings"
                )
            if isinstance(value, dict | list | tuple):
                _check_keys(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            if isinstance(value, dict | list | tuple):
                _check_keys(value, depth + 1)


class JsonSerializer:
    """JSON text; refuses NaN/Infinity, lone surrogates and non-string keys."""

    name = "json"

    def dumps(self, obj: Any) -> str:
        """Serialize `obj` as compact JSON, or raise SerializationError saying why not."""
        _check_keys(obj)
        try:
            text = _ENCODER.encode(obj)
        except ValueError as err:
            raise SerializationError(f"value cannot be stored as JSON: {err}") from None
        except TypeError as err:
            raise SerializationError(f"value cannot be stored as JSON: {err}") from None
        except RecursionError:
            raise SerializationError("value is nested too deeply (or refers to itself)") from None
        # A lone surrogate (in a key or a value) is copied as it is into the text, which
        # then cannot be stored as UTF-8: one check of the whole text finds it.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise SerializationError(
                f"a string contains a lone surrogate ({text[err.start]!r} at position "
                f"{err.start} of the JSON text)"
            ) from None
        return text

    def loads(self, data: str) -> Any:
        """Parse JSON text."""
        return json.loads(data)


def check_size(data: str, limit: int, what: str) -> None:
    """Raise SerializationError if `data` is larger than `limit` bytes (UTF-8)."""
    size = len(data.encode("utf-8")) if len(data) * 4 > limit else len(data)
    if size > limit:
        raise SerializationError(
            f"{what} is {size:,} bytes, over the {limit:,}-byte limit "
            "(raise the max_payload setting, up to 16 MiB, or pass a reference such as a path)"
        )


def decode(serializer: Serializer, data: str | None, job_id: str, what: str) -> Any:
    """Stored text decoded (None stays None); UnreadableJobError, naming the job and `what`,
    if it cannot be, as for text written into the store by hand or by another program."""
    if data is None:
        return None
    try:
        return serializer.loads(data)
    # Whatever the serializer (a plugin's, maybe) raises on stored text, even a
    # RecursionError for deep JSON, means that row cannot be read: one sentence.
    except Exception as err:
        raise UnreadableJobError(job_id, f"its {what} cannot be decoded ({err})") from None


@hookimpl
def gigq_serializers() -> dict[str, Any]:
    """The built-in serializers."""
    return {"json": JsonSerializer()}


__all__ = ["DEFAULT_MAX_PAYLOAD", "MAX_PAYLOAD_LIMIT", "JsonSerializer", "check_size", "decode"]
