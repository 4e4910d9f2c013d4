"""The IAM policy a Lambda authorizer answers with, evaluated as API Gateway evaluates it against a method ARN.

One cached policy covers many routes: it is evaluated per request, against that request's ARN
(`arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/path`). `*` in a resource matches any run of characters
(`/` included) and `?` one character, as IAM's wildcards; an explicit Deny beats any Allow, and no matching
Allow is a Deny. Wildcards are matched by the glob algorithm that only ever stretches the last `*`, not by a
regex: the path is the caller's, and a regex of several `.*` takes polynomial time on a long crafted one.
What the gateway cannot evaluate faithfully (NotAction, Condition, ...) is refused as a broken answer, never
skipped: a skipped Deny would let callers through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"  # the runtime's default AWS_REGION, which fx's other ARNs name too
ACCOUNT_ID = "000000000000"  # the account fx's events and ARNs name (fx_runtime.http_events)
ACTIONS = frozenset({"execute-api:invoke", "execute-api:*", "*"})  # IAM compares actions case-insensitively
_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "Resource"})


class PolicyError(ValueError):
    """The policy is not one API Gateway would accept; the message says what is wrong."""


def method_arn(api: str, stage: str, method: str, path: str) -> str:
    """The ARN a request is authorized against: the caller's method and path (not the route template)."""
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api}/{stage}/{method}{path}"


@dataclass(frozen=True, slots=True)
class Policy:
    allow: tuple[str, ...]  # the resources of the Allow statements that name execute-api:Invoke
    deny: tuple[str, ...]

    def allows(self, arn: str) -> bool:
        if any(matches(resource, arn) for resource in self.deny):
            return False
        return any(matches(resource, arn) for resource in self.allow)

    @classmethod
    def parse(cls, document: Any) -> Policy:
        """A policyDocument (`Statement`: one statement or a list; `Action` and `Resource`: a string or a list)."""
        if not isinstance(document, dict):
            raise PolicyError("policyDocument must be an object")
        statements = document.get("Statement")
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise PolicyError("policyDocument.Statement must be a statement or a non-empty list of them")
        resources: dict[str, list[str]] = {"Allow": [], "Deny": []}
        for i, statement in enumerate(statements):
            where = f"policyDocument.Statement[{i}]"
            if not isinstance(statement, dict):
                raise PolicyError(f"{where} must be an object")
            unknown = sorted(set(statement) - _STATEMENT_KEYS)
            if unknown:
                raise PolicyError(f"{where}: {', '.join(unknown)} is not supported (only Effect, Action, Resource)")
            effect = statement.get("Effect")
            if effect not in resources:
                raise PolicyError(f"{where}.Effect must be Allow or Deny, not {effect!r}")
            actions = _strings(statement.get("Action"), f"{where}.Action")
            if any(action.lower() in ACTIONS for action in actions):
                resources[effect] += _strings(statement.get("Resource"), f"{where}.Resource")
        return cls(tuple(dict.fromkeys(resources["Allow"])), tuple(dict.fromkeys(resources["Deny"])))


def _strings(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise PolicyError(f"{where} must be a string or a non-empty list of strings")
    return items


def matches(pattern: str, text: str) -> bool:
    """IAM's wildcards over the whole of `text`: `*` any run of characters, `?` exactly one. O(n*m) at
    worst: on a mismatch only the last `*` is stretched by one character, never an earlier one."""
    p = t = 0
    star, resume = -1, 0  # the last `*` seen in the pattern, and where in the text it would resume
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])
