"""API keys of API routes (`fx apikey`, /system/apikeys): what is asked, what is stored, what is listed.

A key's value is shown once, in the answer that creates it; the controller stores its sha256 only (KV fx_api_keys,
which the gateways follow to check `x-api-key`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fx.api_models import BURST_MAX, RATE_MAX  # as routes' and APIs' throttles
from fx.models import NAME_MAX, NAME_RE

QUOTA_MAX = 10**12
QUOTA_RE = re.compile(r"^([0-9]+)/(day|month)\Z")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_name(value: str, what: str) -> str:
    if not value or len(value) > NAME_MAX or not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is invalid: use lower-case letters, digits and '-', starting and ending with a letter"
            f" or digit, at most {NAME_MAX} characters (e.g. 'mobile-app')"
        )
    return value


class QuotaSpec(_Model):
    """Requests a key may make per UTC day or month, all gateways together."""

    limit: Annotated[int, Field(ge=1, le=QUOTA_MAX)]
    period: Literal["day", "month"]

    @classmethod
    def parse(cls, text: str) -> QuotaSpec:
        """`N/day` or `N/month`, as `fx apikey create --quota` takes it."""
        match = QUOTA_RE.match(text.strip().lower())
        if not match:
            raise ValueError(f"quota {text!r} is not N/day or N/month (e.g. 1000/day)")
        if not 1 <= int(match[1]) <= QUOTA_MAX:
            raise ValueError(f"quota {text!r}: N is 1 to {QUOTA_MAX:,} requests")
        return cls(limit=int(match[1]), period=match[2])  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}"


class ApiKeySpec(_Model):
    """POST /system/apikeys. `rate`/`burst`: the key's token bucket (requests per second, bucket size), all
    gateways together; `burst` defaults to the rate rounded up. No rate: the key is throttled only by its routes'
    and API's throttles."""

    name: str
    api: str
    rate: Annotated[float, Field(gt=0, le=RATE_MAX)] | None = None
    burst: Annotated[int, Field(ge=1, le=BURST_MAX)] | None = None
    quota: QuotaSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "key name")

    @field_validator("api")
    @classmethod
    def _api(cls, value: str) -> str:
        return _check_name(value, "API name")

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> ApiKeySpec:
        if self.burst is not None and self.rate is None:
            raise ValueError("burst without a rate: give the key a rate too (e.g. --rate 10 --burst 20)")
        return self


class ApiKeyRecord(_Model):
    """KV fx_api_keys, key = the key's name. The gateways read this JSON with the stdlib (api/api_keys.py)."""

    id: str  # what metrics and usage name besides the name: never the key
    name: str
    api: str
    sha256: str  # hex digest of the key's value
    rate: float | None
    burst: int | None
    quota: QuotaSpec | None
    created_at: datetime


class ApiKeyInfo(_Model):
    """A key as listed: its limits and usage, never its value nor its hash."""

    id: str
    name: str
    api: str
    rate: float | None
    burst: int | None
    quota: QuotaSpec | None
    created_at: datetime
    used_today: int  # requests admitted this UTC day, all gateways (reported every --api-usage-interval)
    used_month: int  # ... this UTC month


class IssuedApiKey(ApiKeyInfo):
    value: str  # the key itself: in the answer that creates it, and nowhere else
