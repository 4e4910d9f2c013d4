"""`fx traffic`, `fx alias`, `fx promote` and `fx rollback`: which version answers whom."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, built, checked, client, print_json, seconds, traffic_text
from fx.errors import InputError

if TYPE_CHECKING:
    from fx.models import FunctionInfo

DEFAULT_INTERVAL = "30s"


def cmd_traffic(args: argparse.Namespace) -> int:
    weights = _weights(args.weights)
    sticky = _sticky(args)
    with client(args) as fx:
        fn = fx.set_traffic(args.name, weights, **sticky)
    return _changed(args, fn)


def cmd_alias(args: argparse.Namespace) -> int:
    from fx.models import check_alias

    alias = checked(check_alias, args.alias)
    if args.delete == (args.version is not None):
        raise InputError("give either a VERSION for the alias or --delete")
    with client(args) as fx:
        fn = fx.delete_alias(args.name, alias) if args.delete else fx.set_alias(args.name, alias, args.version)
    return _changed(args, fn)


def cmd_promote(args: argparse.Namespace) -> int:
    from fx.models import PromoteSpec

    if args.interval is not None and args.step is None:
        raise InputError("--interval needs --step PERCENT: without steps the version gets all traffic at once")
    spec = built(
        PromoteSpec,
        version=args.version,
        step=args.step,
        interval=_seconds(args.interval or DEFAULT_INTERVAL),
        max_error_rate=args.max_error_rate,
        min_requests=args.min_requests,
    )
    with client(args) as fx:
        fn = fx.promote(args.name, spec)
    return _changed(args, fn)


def cmd_rollback(args: argparse.Namespace) -> int:
    with client(args) as fx:
        fn = fx.rollback(args.name, force=args.force)
    return _changed(args, fn)


def _changed(args: argparse.Namespace, fn: FunctionInfo) -> int:
    """What a traffic command leaves behind: the split, aliases and any rollout in progress."""
    if args.output == "json":
        print_json(fn)
        return EXIT_OK
    line = f"{fn.name}: traffic {traffic_text(fn.traffic)}"
    if fn.sticky:
        line += f" (sticky by {fn.sticky})"
    if fn.aliases:
        line += "; aliases " + ", ".join(f"{a}→v{v}" for a, v in sorted(fn.aliases.items()))
    if r := fn.rollout:
        line += f"; promoting version {r.version}: +{r.step}% every {r.interval:g} s"
    print(line)
    return EXIT_OK


def _weights(pairs: list[str]) -> dict[int, int]:
    """["3=90", "4=10"] -> {3: 90, 4: 10}, checked as the server will check it."""
    from fx.models import check_split

    weights: dict[int, int] = {}
    for pair in pairs:
        version, sep, percent = pair.partition("=")
        if not sep or not version.strip().isdigit() or not percent.strip().isdigit():
            raise InputError(f"weight {pair!r} is not VERSION=PERCENT with whole numbers (e.g. 3=90 4=10)")
        if int(version) in weights:
            raise InputError(f"version {int(version)} is given twice")
        weights[int(version)] = int(percent)
    checked(check_split, weights)
    return weights


def _sticky(args: argparse.Namespace) -> dict[str, str | None]:
    """The sticky argument of set_traffic: none leaves the setting as it is, None turns it off."""
    from fx.models import check_sticky

    if args.no_sticky:
        return {"sticky": None}
    if args.sticky is None:
        return {}
    return {"sticky": checked(check_sticky, args.sticky)}


def _seconds(text: str) -> float:
    if (value := seconds(text)) is None:
        raise InputError(f"--interval {text!r} is not a duration such as 30s, 2m or 500ms")
    return value


def register(add: AddCommand) -> None:
    traffic = add("traffic", cmd_traffic, "split traffic between versions, e.g. `fx traffic hello 3=90 4=10`", OUTPUT)
    traffic.add_argument("name")
    traffic.add_argument("weights", nargs="+", metavar="VERSION=PERCENT", help="percents summing to 100")
    sticky = traffic.add_mutually_exclusive_group()
    sticky.add_argument(
        "--sticky", metavar="header:NAME|cookie:NAME", help="callers with the same value always get the same version"
    )
    sticky.add_argument("--no-sticky", action="store_true", help="turn sticky cohorts off")

    alias = add("alias", cmd_alias, "point an alias (e.g. live, beta) at a version, or remove it", OUTPUT)
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?", help="the version the alias points to")
    alias.add_argument("--delete", action="store_true", help="remove the alias")

    promote = add("promote", cmd_promote, "give a version all traffic, at once or step by step", OUTPUT)
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--step", type=int, metavar="PERCENT", help="add this percent every --interval")
    promote.add_argument(
        "--interval", help=f"time between steps, e.g. 30s, 2m (default {DEFAULT_INTERVAL}); only with --step"
    )
    promote.add_argument(
        "--max-error-rate", type=float, metavar="RATE", help="roll back by itself when the 5xx share passes RATE"
    )
    promote.add_argument(
        "--min-requests", type=int, default=20, metavar="N", help="requests a step needs before its error rate counts"
    )

    rollback = add("rollback", cmd_rollback, "go back to the previous traffic split at once", OUTPUT)
    rollback.add_argument("name")
    rollback.add_argument(
        "--force", action="store_true", help="go back even onto a version that failed to initialise (refused otherwise)"
    )
