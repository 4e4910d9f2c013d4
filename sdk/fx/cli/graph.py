"""`fx graph`: the architecture of fx.yaml, or of what is deployed, as Mermaid, DOT, SVG or PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fx import graph
from fx.cli.common import EXIT_OK, AddCommand, client, err
from fx.errors import InputError
from fx.paths import MANIFEST

if TYPE_CHECKING:
    from fx.api_models import ApiSpec, RouteSpec
    from fx.models import FunctionSpec


def cmd_graph(args: argparse.Namespace) -> int:
    from fx import manifest, sam
    from fx.local_runtime import NO_ARTIFACT

    if args.deployed:
        specs, streams = _deployed(args)
        with client(args) as fx:
            apis = fx.apis()
    else:
        path = Path(args.file)
        defs = manifest.select(sam.functions(path), args.names, args.file)
        specs, streams = [fn.spec(None if fn.image else NO_ARTIFACT) for fn in defs], None
        apis = [] if sam.is_sam(path) else manifest.load_project(path).apis
    if args.format == "png" and args.out is None and sys.stdout.isatty():
        raise InputError("--format png writes an image: give --out FILE.png, or pipe it")
    if args.names:  # only the routes to the functions drawn
        apis = [api.model_copy(update={"routes": _routes_to(api, args.names)}) for api in apis]
    drawn = graph.build(specs, streams, apis)
    data = graph.render(drawn, args.format)
    if args.out is None:
        sys.stdout.buffer.write(data)
    else:
        try:
            Path(args.out).write_bytes(data)
        except OSError as exc:
            raise InputError(f"--out {args.out}: cannot write it ({exc.strerror})") from exc
        err(f"wrote {args.out}")
    for warning in drawn.warnings:
        err(f"warning: {warning}")
    return EXIT_OK


def _routes_to(api: ApiSpec, names: list[str]) -> dict[str, RouteSpec]:
    from fx.api_models import split_function_ref

    return {k: r for k, r in api.routes.items() if r.function and split_function_ref(r.function)[0] in names}


def _deployed(args: argparse.Namespace) -> tuple[list[FunctionSpec], dict[str, list[str]]]:
    """The specs of the versions that take traffic (the latest one of a function with none), and the streams."""
    with client(args) as fx:
        infos = fx.list_functions()
        streams = {s.name: s.subjects for s in fx.list_streams()}
    specs = []
    for info in infos:
        if args.names and info.name not in args.names:
            continue
        live = [v for v in info.versions if v.traffic] or [v for v in info.versions if v.version == info.latest]
        for version in live[:1]:  # versions of one function differ rarely in their triggers: the first live one
            specs.append(version.spec)
    missing = sorted(set(args.names) - {s.name for s in specs})
    if missing:
        raise InputError(f"no deployed function named {', '.join(missing)} (see `fx ls`)")
    return specs, streams


def register(add: AddCommand) -> None:
    g = add("graph", cmd_graph, "draw the functions and the events between them (Mermaid, DOT, SVG, PNG)")
    g.add_argument("names", nargs="*", metavar="NAME", help="only these functions")
    g.add_argument("-f", "--file", default=MANIFEST, help="the manifest (default fx.yaml), or a SAM template")
    g.add_argument("--deployed", action="store_true", help="draw what is deployed instead of fx.yaml")
    g.add_argument(
        "--format", choices=graph.FORMATS, default="mermaid", help="mermaid (default), dot; svg, png need Graphviz"
    )
    g.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
