"""The JSON serializer: exact round trips, and refusals of what JSON would change."""

from __future__ import annotations

import json
import math

import pytest

from gigq_core import SerializationError
from gigq_core.serializers import (
    DEFAULT_MAX_PAYLOAD,
    MAX_PAYLOAD_LIMIT,
    JsonSerializer,
    check_size,
)

SERIALIZER = JsonSerializer()


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1,
        2**63 + 1,
        0.1,
        1e300,
        "",
        "plain",
        "héllo wörld ✓ 日本語 \U0001f600",
        'quote " backslash \\ newline \n tab \t nul \x00',
        [],
        {},
        [1, "a", None, [2, [3, [4]]]],
        {"a": {"b": {"c": [1, 2, {"d": None}]}}},
        {"ключ": "значение", "": "empty key"},
    ],
)
def test_round_trip_is_exact(value):
    assert SERIALIZER.loads(SERIALIZER.dumps(value)) == value


def test_dumps_is_compact_text_and_keeps_unicode():
    text = SERIALIZER.dumps({"a": [1, 2], "é": "✓"})
    assert isinstance(text, str)
    assert text == '{"a":[1,2],"é":"✓"}'


def test_name_is_json():
    assert SERIALIZER.name == "json"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, math.nan], {"x": math.inf}])
def test_nan_and_infinity_are_refused(value):
    with pytest.raises(SerializationError, match="JSON"):
        SERIALIZER.dumps(value)


@pytest.mark.parametrize(
    "value", [{1: "a"}, {"ok": {2.5: "b"}}, [{None: 1}], {True: 1}, {("t",): 1}]
)
def test_non_string_keys_are_refused(value):
    with pytest.raises(SerializationError, match="keys must be strings"):
        SERIALIZER.dumps(value)


@pytest.mark.parametrize("value", ["\ud800", ["ok", "x\udfffy"], {"k": "\udc80"}, {"\ud83d": 1}])
def test_lone_surrogates_are_refused(value):
    with pytest.raises(SerializationError, match="lone surrogate"):
        SERIALIZER.dumps(value)


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), complex(1, 2), frozenset()])
def test_non_json_types_are_refused(value):
    with pytest.raises(SerializationError, match="cannot be stored as JSON"):
        SERIALIZER.dumps(value)


def test_deep_nesting_is_refused():
    value: list = []
    for _ in range(1000):
        value = [value]
    with pytest.raises(SerializationError, match="nested too deeply"):
        SERIALIZER.dumps(value)


def test_self_reference_is_refused():
    value: list = []
    value.append(value)
    with pytest.raises(SerializationError):
        SERIALIZER.dumps(value)


def test_moderate_nesting_is_fine():
    value: list = []
    for _ in range(100):
        value = [value]
    assert SERIALIZER.loads(SERIALIZER.dumps(value)) == value


def test_loads_reads_plain_json():
    assert SERIALIZER.loads(json.dumps({"a": [1]})) == {"a": [1]}


def test_serialization_error_is_a_value_error_with_exit_code_1():
    assert issubclass(SerializationError, ValueError)
    assert SerializationError.exit_code == 1


# -- size limits -----------------------------------------------------------------------------


def test_default_limits():
    assert DEFAULT_MAX_PAYLOAD == 1024 * 1024
    assert MAX_PAYLOAD_LIMIT == 16 * 1024 * 1024


def test_check_size_at_and_over_the_limit():
    check_size("x" * 100, 100, "params")
    with pytest.raises(SerializationError, match="101 bytes, over the 100-byte limit"):
        check_size("x" * 101, 100, "params")


def test_check_size_counts_utf8_bytes():
    check_size("é" * 50, 100, "params")
    with pytest.raises(SerializationError, match="102 bytes"):
        check_size("é" * 51, 100, "params")


def test_check_size_message_names_what_and_the_fix():
    with pytest.raises(SerializationError, match=r"params of job 'x'.*max_payload"):
        check_size("x" * 20, 10, "params of job 'x'")
