"""An API route's request as authorizers and limits see it: its head only (the body has not been read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl


@dataclass(slots=True)
class ApiRequest:
    api: str
    route_key: str  # "GET /users/{id}", or "$default"
    method: str
    path: str  # as the caller sent it, without the query
    query: str  # the raw query string, without "?"
    headers: dict[bytes, bytes]  # lower-case names; a repeated header's values joined by b","
    source_ip: str
    host: str
    stage: str = "$default"
    path_parameters: dict[str, str] = field(default_factory=dict)
    stage_variables: dict[str, str] = field(default_factory=dict)

    def identity(self, sources: list[str]) -> list[str] | None:
        """The values of API Gateway identity sources ($request.header.NAME, $request.querystring.NAME,
        $context.NAME, $stageVariables.NAME), in order; None if any is missing or empty (API Gateway then
        answers 401 without calling the authorizer)."""
        values = []
        for source in sources:
            value = self._source(source)
            if not value:
                return None
            values.append(value)
        return values

    def _source(self, source: str) -> str | None:
        kind, _, name = source.removeprefix("$").partition(".")
        if kind == "request":
            where, _, name = name.partition(".")
            if where == "header":
                value = self.headers.get(name.lower().encode("latin-1"))
                return value.decode("latin-1") if value is not None else None
            if where == "querystring":
                return dict(parse_qsl(self.query, keep_blank_values=True)).get(name)
            return None
        if kind == "stageVariables":
            return self.stage_variables.get(name)
        if kind == "context":
            return {"routeKey": self.route_key, "stage": self.stage, "identity.sourceIp": self.source_ip}.get(name)
        return None
