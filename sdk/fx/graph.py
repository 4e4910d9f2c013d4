"""The architecture as a directed graph: what triggers each function and what each function publishes.

Nodes are functions, HTTP endpoints and API routes (fx.yaml `apis:`), NATS subjects, JetStream streams, KV
buckets, schedules and dead-letter subjects; edges say which way events flow. What a function publishes is its
fx.yaml NATS grant (`nats: {publish: [...]}`): a function gets NATS credentials for exactly those subjects, so
the grant is the complete list of what it can publish. A published subject reaches a trigger when their NATS
patterns overlap, and a stream when it overlaps one of the stream's subjects (known for deployed streams, or a
jetstream trigger's filter). Rendered as Mermaid or DOT, and by Graphviz's `dot` as SVG or PNG.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fx.errors import FxError, InputError

if TYPE_CHECKING:  # `fx --help` shows FORMATS and needs no pydantic
    from fx.api_models import ApiSpec
    from fx.models import FunctionSpec

FORMATS = ("mermaid", "dot", "svg", "png")
DOT_TIMEOUT_S = 60.0
# kind -> (Mermaid shape around the label, DOT shape)
_SHAPES = {
    "function": ('["%s"]', "box"),
    "http": ('>"%s"]', "cds"),
    "route": ('>"%s"]', "cds"),
    "subject": ('(["%s"])', "ellipse"),
    "stream": ('[("%s")]', "cylinder"),
    "bucket": ('[("%s")]', "cylinder"),
    "schedule": ('{{"%s"}}', "hexagon"),
    "dlq": ('[("%s")]', "cylinder"),
}


@dataclass
class Graph:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (kind, label)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, label)
    warnings: list[str] = field(default_factory=list)

    def node(self, kind: str, name: str, label: str | None = None) -> str:
        key = f"{kind}:{name}"
        self.nodes.setdefault(key, (kind, label or name))
        return key

    def edge(self, source: str, target: str, label: str = "") -> None:
        if (source, target, label) not in self.edges:
            self.edges.append((source, target, label))


def build(
    specs: list[FunctionSpec], stream_subjects: dict[str, list[str]] | None = None, apis: list[ApiSpec] | None = None
) -> Graph:
    """The graph of these functions; `stream_subjects`: each stream's subjects, when known (deployed); `apis`: the
    routes in front of them."""
    graph = Graph()
    _routes(graph, apis or [])
    streams = dict(stream_subjects or {})
    consumers: list[tuple[str, str, str]] = []  # (subject pattern, node it feeds, consuming function)
    for spec in specs:
        fn = graph.node("function", spec.name)
        graph.edge(graph.node("http", spec.name, f"HTTP /function/{spec.name}/ ({spec.http.event})"), fn)
        durable = False
        for trigger in spec.triggers:
            if trigger.nats is not None:
                subject = graph.node("subject", trigger.nats)
                graph.edge(subject, fn)
                consumers.append((trigger.nats, subject, spec.name))
            elif trigger.jetstream is not None:
                durable = True
                stream = graph.node("stream", trigger.jetstream.stream, f"stream {trigger.jetstream.stream}")
                graph.edge(stream, fn, trigger.jetstream.subject or "")
                known = streams.setdefault(trigger.jetstream.stream, [])
                if trigger.jetstream.subject and trigger.jetstream.stream not in (stream_subjects or {}):
                    known.append(trigger.jetstream.subject)  # the stream's subjects are unknown: its filter is one
            elif trigger.kv is not None:
                durable = True
                bucket = graph.node("bucket", trigger.kv.bucket, f"KV {trigger.kv.bucket}")
                graph.edge(bucket, fn, trigger.kv.keys if trigger.kv.keys != ">" else "")
            elif trigger.schedule is not None:
                durable = True
                graph.edge(graph.node("schedule", trigger.key), fn)
        if durable:  # its failed events are dead-lettered (async calls, stream records, KV changes)
            graph.edge(fn, graph.node("dlq", spec.name, f"DLQ fx.dlq.{spec.name}"), "failures")
    for stream, subjects in streams.items():
        stream_node = graph.node("stream", stream, f"stream {stream}")
        consumers += [(s, stream_node, f"stream {stream}") for s in subjects]
    _publishers(graph, specs, consumers)
    _cycles(graph)
    return graph


def _routes(graph: Graph, apis: list[ApiSpec]) -> None:
    """An edge from each function route to its function (labelled with the version or alias it pins), and to the
    Lambda authorizer that decides first; mock and upstream routes invoke no function and are left out."""
    from fx.api_models import split_function_ref

    for api in apis:
        for key, route in api.routes.items():
            if route.function is None:
                continue
            node = graph.node("route", f"{api.name} {key}", f"{api.name}: {key}")
            name, qualifier = split_function_ref(route.function)
            graph.edge(node, graph.node("function", name), qualifier or "")
            authorizer = api.authorizers[route.auth].lambda_ if route.auth else None
            if authorizer is not None:
                graph.edge(node, graph.node("function", split_function_ref(authorizer.function)[0]), "authorizes")


def _publishers(graph: Graph, specs: list[FunctionSpec], consumers: list[tuple[str, str, str]]) -> None:
    """Edges from each function to what it publishes and on to what consumes it; dangling subjects as warnings."""
    published: list[tuple[str, str]] = []
    for spec in specs:
        for pattern in spec.nats.publish if spec.nats else []:
            subject = graph.node("subject", pattern)
            graph.edge(graph.node("function", spec.name), subject, "publishes")
            published.append((pattern, spec.name))
            reached = [target for consumed, target, _ in consumers if overlaps(pattern, consumed)]
            for target in reached:
                if target != subject:
                    graph.edge(subject, target)
            if not reached:
                graph.warnings.append(f"subject {pattern}: published by {spec.name}, consumed by nobody")
    for pattern, target, consumer in consumers:
        if target.startswith("subject:") and not any(overlaps(p, pattern) for p, _ in published):
            graph.warnings.append(f"subject {pattern}: consumed by {consumer}, published by no function")
        elif target.startswith("stream:") and not any(overlaps(p, pattern) for p, _ in published):
            graph.warnings.append(f"{consumer} ({pattern}): published to by no function")


def _cycles(graph: Graph) -> None:
    """A warning for each cycle between functions: one's event triggers the next, back to the first."""
    functions = {key for key, (kind, _) in graph.nodes.items() if kind == "function"}
    following: dict[str, set[str]] = {}
    for source, target, _ in graph.edges:
        following.setdefault(source, set()).add(target)

    def next_functions(start: str) -> set[str]:
        """The functions an event of `start` reaches, through subjects and streams."""
        found: set[str] = set()
        todo, seen = [start], {start}
        while todo:
            for nxt in following.get(todo.pop(), ()):
                if nxt in functions:
                    found.add(nxt)
                elif nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return found

    steps = {fn: next_functions(fn) for fn in functions}
    reported: set[frozenset[str]] = set()
    for start in sorted(functions):
        # breadth-first over functions: the shortest cycle back to `start`
        todo = [[start]]
        while todo:
            chain = todo.pop(0)
            for nxt in sorted(steps[chain[-1]]):
                if nxt == start:
                    members = frozenset(chain)
                    if members not in reported:
                        reported.add(members)
                        names = " -> ".join(graph.nodes[n][1] for n in [*chain, start])
                        graph.warnings.append(f"cycle: {names} (each event triggers the next, without end)")
                elif nxt not in chain and len(chain) < len(functions):
                    todo.append([*chain, nxt])


def overlaps(a: str, b: str) -> bool:
    """Whether two NATS subject patterns can match one same subject ('*' one token, '>' one or more)."""
    x, y = a.split("."), b.split(".")
    for p, q in zip(x, y, strict=False):
        if ">" in (p, q):
            return True
        if p != q and "*" not in (p, q):
            return False
    return len(x) == len(y)


def mermaid(graph: Graph) -> str:
    ids = {key: f"n{i}" for i, key in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for key, (kind, label) in graph.nodes.items():
        lines.append(f"  {ids[key]}{_SHAPES[kind][0] % label.replace(chr(34), '#quot;')}")
    for source, target, label in graph.edges:
        arrow = " -.->" if target.startswith("dlq:") else " -->"
        text = f'|"{label}"|' if label else ""
        lines.append(f"  {ids[source]}{arrow}{text} {ids[target]}")
    return "\n".join(lines) + "\n"


def dot(graph: Graph) -> str:
    ids = {key: f"n{i}" for i, key in enumerate(graph.nodes)}
    lines = ["digraph fx {", "  rankdir=LR;"]
    for key, (kind, label) in graph.nodes.items():
        lines.append(f"  {ids[key]} [label={_quoted(label)}, shape={_SHAPES[kind][1]}];")
    for source, target, label in graph.edges:
        attributes = [f"label={_quoted(label)}"] if label else []
        if target.startswith("dlq:"):
            attributes.append("style=dashed")
        lines.append(f"  {ids[source]} -> {ids[target]}" + (f" [{', '.join(attributes)}]" if attributes else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, fmt: str) -> bytes:
    """The graph in `fmt` (one of FORMATS); SVG and PNG need Graphviz's `dot` on PATH."""
    if fmt == "mermaid":
        return mermaid(graph).encode()
    if fmt == "dot":
        return dot(graph).encode()
    program = shutil.which("dot")
    if program is None:
        raise InputError(
            f"--format {fmt} needs Graphviz's `dot` (Debian: apt-get install graphviz); or use --format dot or mermaid"
        )
    done = subprocess.run([program, f"-T{fmt}"], input=dot(graph).encode(), capture_output=True, timeout=DOT_TIMEOUT_S)
    if done.returncode != 0:
        raise FxError(0, "GraphvizFailed", f"dot -T{fmt}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
