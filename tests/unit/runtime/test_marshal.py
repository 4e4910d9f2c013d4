"""Results and errors are serialised the way Lambda's Python runtime does it."""

import decimal
import json

import pytest
from fx_runtime import faults, marshal
from fx_runtime.faults import Fault


def test_json_rules():
    value = {"name": "Zoë", "n": decimal.Decimal("12"), "x": decimal.Decimal("1.5"), "none": None, "list": (1, 2)}
    out = marshal.result_bytes(value)
    assert "Zoë" in out.decode()  # non-ASCII kept, not \\u-escaped
    assert json.loads(out) == {"name": "Zoë", "n": 12, "x": 1.5, "none": None, "list": [1, 2]}


def test_none_is_null_and_bytes_pass_through():
    assert marshal.result_bytes(None) == b"null"
    assert marshal.result_bytes(b"\x00raw") == b"\x00raw"


def test_unserialisable_result_is_a_marshal_error():
    with pytest.raises(Fault) as info:
        marshal.result_bytes({"when": object()})
    assert info.value.error_type == "Runtime.MarshalError"
    assert info.value.message.startswith("Unable to marshal response: Object of type object is not JSON serializable")


def test_error_shape_from_a_user_exception():
    def user_code():
        return 1 / 0

    try:
        user_code()
    except ZeroDivisionError as e:
        err = faults.from_exception(e, "rid-1")
    assert set(err) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert (err["errorType"], err["errorMessage"], err["requestId"]) == (
        "ZeroDivisionError",
        "division by zero",
        "rid-1",
    )
    assert "user_code" in "".join(err["stackTrace"])
    assert faults.log_text(err).startswith(
        "[ERROR] ZeroDivisionError: division by zero\nTraceback (most recent call last):"
    )
