"""Handler results to bytes, by the rules of Lambda's Python runtime (awslambdaric)."""

from __future__ import annotations

import decimal
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .faults import Fault


def _default(obj: Any) -> Any:
    # awslambdaric writes Decimals as numbers (DynamoDB hands them out); the stdlib encoder needs int or float.
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj.is_finite() and obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# The C encoder made once, not per call as json.dumps with options does; awslambdaric's settings: default
# separators, non-ASCII kept, NaN allowed. No circular-reference markers: a cycle ends in RecursionError.
_encode = c_make_encoder(None, _default, encode_basestring, None, ": ", ", ", False, False, True)


def result_bytes(result: Any) -> bytes:
    """bytes pass through untouched; anything else is JSON (None -> null), or a Runtime.MarshalError."""
    if isinstance(result, bytes):
        return result
    try:
        return "".join(_encode(result, 0)).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
