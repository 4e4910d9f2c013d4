"""The IAM policy a Lambda authorizer answers with, evaluated as API Gateway evaluates it against a method ARN.

One cached policy covers many routes: it is evaluated per request, against that request's ARN
(`arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/path`). `*` in a resource matches any run of characters
(`/` included) and `?` one character, as IAM's wildcards; an explicit Deny beats any Allow, and no matching
Allow is a Deny. Wildcards are not matched by a regex of `.*`s: the path is the caller's, and such a regex
takes polynomial time on a long crafted one (Glob below).
What the gateway cannot evaluate faithfully (NotAction, Condition, ...) is refused as a broken answer, never
skipped: a skipped Deny would let callers through.
"""

from __future__ import annotations

import re
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
    allow: tuple[Glob, ...]  # the resources of the Allow statements that name execute-api:Invoke
    deny: tuple[Glob, ...]

    def allows(self, arn: str) -> bool:
        if any(glob.match(arn) for glob in self.deny):
            return False
        return any(glob.match(arn) for glob in self.allow)

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
        allow, deny = (tuple(map(Glob, dict.fromkeys(resources[effect]))) for effect in ("Allow", "Deny"))
        return cls(allow, deny)


def _strings(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise PolicyError(f"{where} must be a string or a non-empty list of strings")
    return items


class Glob:
    """A resource with IAM's wildcards, matched against the whole of a text: `*` any run of characters, `?`
    exactly one. Split at its `*`s into fixed-length parts (regexes of literals and `.`), found left to right:
    the leftmost fit is always right when only `*` lies between parts, so nothing is ever backtracked over an
    earlier star, and a match costs O(n*m) at worst."""

    __slots__ = ("first", "last", "last_length", "middle", "star")

    def __init__(self, pattern: str) -> None:
        texts = pattern.split("*")
        parts = [re.compile(re.escape(text).replace(r"\?", "."), re.DOTALL) for text in texts]
        self.star = len(parts) > 1
        self.first, self.last, self.middle = parts[0], parts[-1], parts[1:-1]
        self.last_length = len(texts[-1])

    def match(self, text: str) -> bool:
        if not self.star:
            return self.first.fullmatch(text) is not None
        end = len(text) - self.last_length
        start = self.first.match(text, 0, end)
        if start is None or self.last.match(text, end) is None:
            return False
        at = start.end()
        for part in self.middle:
            found = part.search(text, at, end)
            if found is None:
                return False
            at = found.end()
        return True
