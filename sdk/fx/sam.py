"""AWS SAM templates as fx functions: `fx deploy -f template.yaml`.

Each `AWS::Serverless::Function` (its Properties over `Globals: Function`) becomes an fx function, named by its
`FunctionName` or its logical id in kebab case (HelloWorldFunction -> hello-world-function). The mapping:

- Handler, Runtime (python3.10 .. python3.13; provided*), CodeUri (a folder), MemorySize, Timeout,
  Environment.Variables: the fx.yaml settings of the same meaning.
- Events: `Api` -> the HTTP trigger with REST API (1.0) events, `HttpApi` -> HTTP API events (2.0, or 1.0 by
  PayloadFormatVersion), served under /function/NAME/ (/function/NAME/hello); and each Path and Method a route
  of one API named after the template's folder (as `sam init` names the stack), served at the gateway's root
  as on AWS: `GET /hello` -> the function, with that event format. `Schedule` / `ScheduleV2` -> a schedule
  trigger (a disabled one is left out). `SQS` / `Kinesis` / `MSK` -> a JetStream trigger on the stream named by
  the queue's or stream's logical id (`!GetAtt Orders.Arn` -> stream Orders) or the last part of its ARN, or by
  each MSK topic; it must exist (`fx stream create`). BatchSize -> batch, MaximumBatchingWindowInSeconds ->
  window_ms, MaximumRetryAttempts -> max_deliver (attempts + 1); ReportBatchItemFailures is how fx acks anyway.
- AutoPublishAlias: the alias points at each new version. DeploymentPreference `AllAtOnce` and
  `Linear<P>PercentEvery<N>Minute(s)`: a new version of a live function starts with no traffic, then a
  stepped promote (P % every N minutes).
- Description, Tags, Policies, Role, PermissionsBoundary and an Architectures that is this machine's have no
  effect on fx: ignored, and said so. Anything else (a property, an event type or property, a resource other
  than a function) is what fx cannot honour: listed by name, and nothing is deployed.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfn_flip import load_yaml
from pydantic import ValidationError

from fx import manifest
from fx.api_models import ApiSpec, RouteProblem
from fx.errors import InputError
from fx.manifest import FunctionDef
from fx.models import FunctionSpec, check_alias, check_name
from fx.protocol import gateway_path

TRANSFORM = "AWS::Serverless-2016-10-31"
FUNCTION_TYPE = "AWS::Serverless::Function"
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_NO_EFFECT = {"Description", "Tags", "Policies", "Role", "PermissionsBoundary"}
_MAPPED = {
    "Handler",
    "Runtime",
    "CodeUri",
    "MemorySize",
    "Timeout",
    "Environment",
    "Events",
    "AutoPublishAlias",
    "DeploymentPreference",
    "FunctionName",
    "Architectures",
}
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_LINEAR = re.compile(r"^Linear(\d+)PercentEvery(\d+)Minutes?\Z")
# SAM's batching property -> the durable trigger's setting and its value there
_BATCH_KEYS = {
    "BatchSize": ("batch", lambda n: n),
    "MaximumBatchingWindowInSeconds": ("window_ms", lambda n: n * 1000),
    "MaximumRetryAttempts": ("max_deliver", lambda n: n + 1),  # retries after the first delivery
}
_STREAM_NAME = re.compile(r"[^A-Za-z0-9_-]")


class TemplateRefused(InputError):
    """What fx cannot honour in a template, each by name; nothing was deployed."""


@dataclass
class Rollout:
    """What happens after a function's deploy: its alias moved, a stepped promote."""

    alias: str | None = None
    step: int | None = None
    interval_s: float = 0


@dataclass
class Template:
    functions: list[FunctionDef]
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the mapping, and what is ignored
    apis: list[ApiSpec] = field(default_factory=list)  # the Api/HttpApi events' routes, as one API


def is_sam(path: Path) -> bool:
    """Whether the file is a SAM (or CloudFormation) template rather than fx.yaml: no YAML parse needed."""
    try:
        head = path.read_text(errors="replace")[:20000]
    except OSError:
        return False
    return bool(re.search(r"^(Transform|AWSTemplateFormatVersion|Resources)\s*:", head, re.MULTILINE))


def load(path: Path) -> Template:
    try:
        data = load_yaml(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from exc
    except Exception as exc:  # the YAML library's own errors (yaml.YAMLError and cfn-flip's)
        raise InputError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise InputError(f"{path}: a SAM template has a Resources mapping")
    refusals: list[str] = []
    template = Template(functions=[])
    transform = data.get("Transform")
    if TRANSFORM not in (transform if isinstance(transform, list) else [transform]):
        refusals.append(f"Transform: {transform!r}; fx reads SAM templates ({TRANSFORM})")
    globals_ = ((data.get("Globals") or {}).get("Function")) or {}
    for key in ("Parameters", "Conditions", "Mappings"):
        if data.get(key):
            refusals.append(f"{key}: fx resolves no template {key.lower()}; write the values in")
    if data.get("Outputs"):
        template.notes.append("Outputs: not used (they name AWS resources)")
    names: dict[str, str] = {}
    routes: dict[str, tuple[str, dict]] = {}  # route key -> (the event it came from, the route)
    for logical_id, resource in data["Resources"].items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind != FUNCTION_TYPE:
            refusals.append(f"Resources.{logical_id}: {kind}: fx deploys {FUNCTION_TYPE} resources only")
            continue
        properties = {**globals_, **(resource.get("Properties") or {})}
        converter = _Function(logical_id, properties, path.parent, template.notes)
        try:
            fn = converter.convert()
        except (AttributeError, TypeError, ValueError) as exc:  # a list where SAM has a mapping, and the like
            refusals.append(f"Resources.{logical_id}: not shaped as SAM's function ({exc})")
            continue
        refusals += converter.refusals
        if fn is None:
            continue
        if fn.name in names:
            refusals.append(f"Resources.{logical_id}: fx name {fn.name} is also Resources.{names[fn.name]}'s")
        names[fn.name] = logical_id
        template.functions.append(fn)
        template.rollouts[fn.name] = converter.rollout
        for key, (where, route) in converter.routes.items():
            if key in routes:
                refusals.append(f"{where}: {key} is also {routes[key][0]}'s route; one route has one function")
            routes[key] = (where, route)
    if routes and not refusals:
        api = _api(path, routes, refusals)
        if api is not None:
            template.apis = [api]
            template.notes.append(f"the routes -> API {api.name} (`fx routes {api.name}`)")
    if refusals:
        lines = [f"{path.name}: {r}" for r in refusals]
        raise TemplateRefused(
            "\n".join([*lines, f"nothing was deployed: fx cannot honour {len(refusals)} of its settings"])
        )
    if not template.functions:
        raise InputError(f"{path}: no {FUNCTION_TYPE} resources")
    return template


def _api(path: Path, routes: dict[str, tuple[str, dict]], refusals: list[str]) -> ApiSpec | None:
    """The routes of the Api/HttpApi events as one API, named after the template's folder (`sam-app`...)."""
    name = kebab(path.resolve().parent.name)
    try:
        name = check_name(name)
    except ValueError:
        name = "sam-app"  # sam init's default stack name
    try:
        return ApiSpec.model_validate({"name": name, "routes": {key: route for key, (_, route) in routes.items()}})
    except ValidationError as exc:
        for err in exc.errors():
            problem = err.get("ctx", {}).get("error")
            where = routes[problem.route][0] if isinstance(problem, RouteProblem) and problem.route in routes else ""
            refusals.append(f"{where or 'Events'}: {err['msg'].removeprefix('Value error, ')}")
        return None


def kebab(logical_id: str) -> str:
    """HelloWorldFunction -> hello-world-function (an fx name: lower-case letters, digits, '-')."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id)
    return re.sub(r"[^a-z0-9-]+", "-", words.lower()).strip("-")


class _Function:
    def __init__(self, logical_id: str, properties: dict, base: Path, notes: list[str]) -> None:
        self.id, self.props, self.base, self.notes = logical_id, properties, base, notes
        self.where = f"Resources.{logical_id}.Properties"
        self.refusals: list[str] = []
        self.rollout = Rollout()
        self.settings: dict[str, Any] = {}
        self.name = ""
        self.routes: dict[str, tuple[str, dict]] = {}  # route key -> (the event, the route)

    def refuse(self, what: str, why: str) -> None:
        self.refusals.append(f"{self.where}.{what}: {why}")

    def convert(self) -> FunctionDef | None:
        p = self.props
        name = p.get("FunctionName", kebab(self.id))
        if not isinstance(name, str):
            self.refuse("FunctionName", "an intrinsic function; write the name")
            return None
        try:
            self.name = name = check_name(name)
        except ValueError as exc:
            self.refuse("FunctionName", str(exc))
            return None
        for key in sorted(set(p) - _MAPPED - _NO_EFFECT):
            self.refuse(key, "fx has no such setting")
        ignored = sorted(set(p) & _NO_EFFECT)
        if ignored:
            self.notes.append(f"{self.id}: {', '.join(ignored)}: no effect on fx, ignored")
        self._code(p)
        self._architectures(p.get("Architectures"))
        for key, setting in (("Handler", "handler"), ("MemorySize", "memory"), ("Timeout", "timeout")):
            if key in p:
                self.settings[setting] = self._plain(key, p[key])
        env = (p.get("Environment") or {}).get("Variables") or {}
        self.settings["env"] = {k: str(self._plain(f"Environment.Variables.{k}", v)) for k, v in env.items()}
        for event_id, event in (p.get("Events") or {}).items():
            self._event(event_id, event or {})
        self._deployment(p)
        code_dir = self.settings.pop("path")
        try:
            FunctionSpec.model_validate({"name": name, "artifact": _PLACEHOLDER_DIGEST, **self.settings})
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"])
                self.refusals.append(f"{self.where}: {loc}: {err['msg'].removeprefix('Value error, ')}")
            return None
        self.notes.append(f"{self.id} -> fx function {name}")
        return FunctionDef(name=name, code_dir=code_dir, settings=self.settings)

    def _plain(self, key: str, value: Any) -> Any:
        if isinstance(value, dict):  # !Ref, !Sub, !GetAtt ... read by the YAML library as {"Ref": ...}
            self.refuse(key, f"{next(iter(value), 'an intrinsic')} is not resolved by fx; write the value")
        return value

    def _code(self, p: dict) -> None:
        code = p.get("CodeUri", ".")
        runtime = p.get("Runtime")
        if isinstance(code, str) and not code.startswith("s3://") and (self.base / code).is_dir():
            self.settings["path"] = (self.base / code).resolve()
        else:
            self.refuse("CodeUri", f"{code!r} is not a folder next to the template")
            self.settings["path"] = self.base
        if p.get("PackageType") == "Image":
            self.refuse("PackageType", "Image: name the image in fx.yaml (image:) instead")
        if isinstance(runtime, str) and runtime.startswith("provided"):
            self.settings["runtime"] = "provided"
        elif runtime is not None:
            self.settings["runtime"] = runtime  # an unknown one is refused by the model, naming the runtimes

    def _architectures(self, value: Any) -> None:
        if value is None:
            return
        here = _ARCHITECTURES.get(platform.machine().lower(), platform.machine())
        if value != [here]:
            self.refuse("Architectures", f"{value}: this machine runs {here}")

    def _event(self, event_id: str, event: dict) -> None:
        where = f"Events.{event_id}"
        kind, props = event.get("Type"), event.get("Properties") or {}
        if kind in ("Api", "HttpApi"):
            version = "v1" if kind == "Api" or str(props.get("PayloadFormatVersion")) == "1.0" else "v2"
            if self.settings.get("http", {}).get("event", version) != version:
                self.refuse(where, "an fx function has one HTTP event format: Api (1.0) and HttpApi (2.0) differ")
            self.settings["http"] = {"event": version}
            extra = sorted(set(props) - {"Path", "Method", "PayloadFormatVersion", "RestApiId", "ApiId"})
            for key in extra:
                self.refuse(f"{where}.Properties.{key}", "fx has no such HTTP setting")
            method, route = str(props.get("Method", "any")).upper(), props.get("Path", "/")
            key = f"{method} {route}"
            if gateway_path(str(route)):  # the gateway's own (e.g. /healthz): left to it, as before routes
                self.notes.append(
                    f"{self.id}: {where} ({kind} {key}) -> /function/{self.name}{route} only: the"
                    f" gateway serves {gateway_path(str(route))} itself"
                )
                return
            self.routes[key] = (f"{self.where}.{where}", {"function": self.name, "payload": version[1:] + ".0"})
            self.notes.append(f"{self.id}: {where} ({kind} {key}) -> route {key}, and /function/{self.name}{route}")
        elif kind == "Schedule":
            self._schedule(
                where, props, props.get("Schedule"), None, props.get("Enabled", True), {"Name", "Description"}
            )
        elif kind == "ScheduleV2":
            enabled = props.get("State", "ENABLED") != "DISABLED"
            known = {"Name", "Description", "ScheduleExpressionTimezone"}
            self._schedule(
                where, props, props.get("ScheduleExpression"), props.get("ScheduleExpressionTimezone"), enabled, known
            )
        elif kind in ("SQS", "Kinesis", "MSK"):
            self._stream(where, kind, props)
        else:
            self.refuse(where, f"event type {kind}: fx has Api, HttpApi, Schedule, ScheduleV2, SQS, Kinesis, MSK")

    def _schedule(self, where: str, props: dict, expression: Any, zone: Any, enabled: Any, known: set[str]) -> None:
        for key in sorted(set(props) - known - {"Schedule", "ScheduleExpression", "Enabled", "State"}):
            self.refuse(f"{where}.Properties.{key}", "fx sends its Scheduled Event; it has no such setting")
        if enabled is False:
            self.notes.append(f"{self.id}: {where} is disabled: not deployed")
            return
        trigger = {"schedule": self._plain(f"{where}.Properties", expression)}
        if zone:
            trigger["timezone"] = zone
        self.settings.setdefault("triggers", []).append(trigger)

    def _stream(self, where: str, kind: str, props: dict) -> None:
        source = props.get("Queue" if kind == "SQS" else "Stream")
        name = _source_name(source)
        if name is None:
            self.refuse(f"{where}.Properties", f"name the {kind} source with !GetAtt NAME.Arn or an ARN")
            return
        durable: dict[str, Any] = {}
        for key, (setting, convert) in _BATCH_KEYS.items():
            value = self._plain(f"{where}.Properties.{key}", props.get(key))
            if isinstance(value, int) and not isinstance(value, bool):
                durable[setting] = convert(value)
            elif value is not None and not isinstance(value, dict):  # an intrinsic is refused by _plain already
                self.refuse(f"{where}.Properties.{key}", f"{value!r}: give a whole number")
        known = {"Queue", "Stream", "Topics", "Enabled", "StartingPosition", "FunctionResponseTypes", *_BATCH_KEYS}
        for key in sorted(set(props) - known):
            self.refuse(f"{where}.Properties.{key}", "fx has no such setting for a JetStream trigger")
        if props.get("StartingPosition") not in (None, "TRIM_HORIZON"):
            self.refuse(
                f"{where}.Properties.StartingPosition", "fx starts from the stream's first message (TRIM_HORIZON)"
            )
        if props.get("Enabled") is False:
            self.notes.append(f"{self.id}: {where} is disabled: not deployed")
            return
        streams = [str(t) for t in props.get("Topics") or []] if kind == "MSK" else [name]
        for stream in streams:
            stream = _STREAM_NAME.sub("_", stream)
            self.settings.setdefault("triggers", []).append({"jetstream": {"stream": stream, **durable}})
            self.notes.append(
                f"{self.id}: {where} ({kind}) -> JetStream stream {stream} (create it: fx stream create {stream} ...)"
            )

    def _deployment(self, p: dict) -> None:
        alias = p.get("AutoPublishAlias")
        if alias is not None:
            try:
                self.rollout.alias = check_alias(str(alias).lower())
            except ValueError as exc:
                self.refuse("AutoPublishAlias", str(exc))
        preference = p.get("DeploymentPreference")
        if preference is None or preference.get("Enabled", True) is False:
            return
        for key in sorted(set(preference) - {"Type", "Enabled"}):
            self.refuse(f"DeploymentPreference.{key}", "fx rolls out by its own error rate; it has no such setting")
        kind = str(preference.get("Type", ""))
        if kind == "AllAtOnce":
            return
        if match := _LINEAR.match(kind):
            self.rollout.step, self.rollout.interval_s = int(match[1]), int(match[2]) * 60.0
            return
        self.refuse("DeploymentPreference.Type", f"{kind}: fx does AllAtOnce and Linear<P>PercentEvery<N>Minute(s)")


def _source_name(source: Any) -> str | None:
    """The queue's or stream's name: !GetAtt NAME.Arn -> NAME, !Ref NAME -> NAME, an ARN's last part."""
    if isinstance(source, dict):
        value = source.get("Fn::GetAtt") or source.get("Ref")
        if isinstance(value, list) and value:
            return str(value[0])
        return str(value).split(".", 1)[0] if value else None
    if isinstance(source, str) and source.startswith("arn:"):
        return re.split(r"[:/]", source)[-1] or None
    return None


def functions(path: Path) -> list[FunctionDef]:
    """The functions of fx.yaml or of a SAM template, whichever the file is (fx graph, fx local)."""
    return load(path).functions if is_sam(path) else manifest.load(path)
