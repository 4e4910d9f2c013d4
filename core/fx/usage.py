"""Billed usage (`fx usage`, GET /system/usage): invocations and GB-seconds per function version over a window,
in Lambda's billing units (each duration rounded up to 1 ms, times the memory size)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class UsageRow(BaseModel):
    function: str
    version: int
    invocations: int
    gb_seconds: float


class Usage(BaseModel):
    since: datetime  # the window, widened to whole hours (the controller keeps usage per hour)
    until: datetime
    rows: list[UsageRow]
