"""fx.yaml: the functions and APIs of a project, validated with the admin-API models before anything is built.

Every error names the file, the line and the field, e.g.
`fx.yaml:7: functions.hello.scale.min: Input should be greater than or equal to 0` or
`fx.yaml:12: apis.shop.routes."GET /users/{id}".function: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from fx.api_models import ApiSpec, RouteProblem, check_route_key
from fx.errors import InputError
from fx.models import FunctionSpec, TriggerSpec
from fx.paths import MANIFEST

# Validation of a zip function needs an artifact; the real digest exists only once the code is built.
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_STR_TAG = "tag:yaml.org,2002:str"
_SPEC_KEYS = frozenset(FunctionSpec.model_fields) - {"name", "artifact", "dependencies"}
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")  # a key shown as it is in a field path; others (routes) quoted


class ManifestError(InputError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class FunctionDef:
    """One function of fx.yaml: its validated settings and its code folder."""

    name: str
    code_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        return self.settings.get("runtime", FunctionSpec.model_fields["runtime"].default)

    @property
    def image(self) -> str | None:
        """A function whose code is a container image: nothing to build."""
        return self.settings.get("image")

    @property
    def trigger_keys(self) -> list[str]:
        """Its event triggers by key, e.g. 'users.created' or 'ORDERS/orders.>'."""
        return [TriggerSpec.model_validate(t).key for t in self.settings.get("triggers", [])]

    def spec(self, artifact: str | None = None, dependencies: str | None = None) -> FunctionSpec:
        code = {"artifact": artifact, "dependencies": dependencies}
        return FunctionSpec.model_validate({"name": self.name, **code, **self.settings})


@dataclass
class Project:
    """What fx.yaml declares: functions (built and deployed first) and APIs in front of them."""

    functions: list[FunctionDef]
    apis: list[ApiSpec]


def load(path: Path) -> list[FunctionDef]:
    """Read and validate a manifest; raise ManifestError listing every problem found. Its functions."""
    return load_project(path).functions


def load_project(path: Path) -> Project:
    """Read and validate a manifest, its functions and its APIs; ManifestError listing every problem found."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror}); run `fx init NAME` to create a project") from exc
    return parse_project(text, path)


def parse(text: str, path: Path) -> list[FunctionDef]:
    return parse_project(text, path).functions


def parse_project(text: str, path: Path) -> Project:
    label = _label(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([f"{label}{line}: invalid YAML: {problem}"]) from exc

    found: list[tuple[int, str]] = []

    def report(node: yaml.Node | None, where: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        found.append((line, f"{label}{f':{line}' if line else ''}: {where}: {message}"))

    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        report(root, "(top level)", "expected a mapping with a 'functions' key")
        raise ManifestError([m for _, m in found])
    _check_keys(root, "", {"functions", "apis"}, report)
    functions_node = _child(root, "functions")
    functions = data.get("functions")
    apis = _apis(root, data, report)
    if functions_node is None and _child(root, "apis") is not None:
        functions_node, functions = yaml.MappingNode("tag:yaml.org,2002:map", []), {}  # an API of upstreams, mocks
    elif not isinstance(functions_node, yaml.MappingNode) or not isinstance(functions, dict) or not functions:
        report(functions_node or root, "functions", "expected a mapping of function name to settings")
        raise ManifestError([m for _, m in sorted(found)])

    defs: list[FunctionDef] = []
    for name, key_node, value_node, where in _entries(functions_node, "functions", "a function", report):
        settings = functions.get(name)
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            report(value_node, where, "expected a mapping of settings (handler, memory, scale, ...)")
            continue
        if isinstance(value_node, yaml.MappingNode):
            _check_keys(value_node, where, _SPEC_KEYS | {"path"}, report)
        settings = {k: v for k, v in settings.items() if k in _SPEC_KEYS or k == "path"}
        code_dir = path.parent / str(settings.pop("path", "."))
        if "image" not in settings and not code_dir.is_dir():
            report(_child(value_node, "path") or value_node, f"{where}.path", f"{code_dir} is not a folder")
        artifact = None if "image" in settings else _PLACEHOLDER_DIGEST
        try:
            FunctionSpec.model_validate({"name": str(name), "artifact": artifact, **settings})
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"]]
                node = key_node if loc[:1] == ["name"] else _deepest(value_node, loc)
                field_path = where if loc[:1] == ["name"] else ".".join([where, *loc])
                report(node, field_path, _message(err, node))
            continue
        defs.append(FunctionDef(name=str(name), code_dir=code_dir.resolve(), settings=settings))
    if found:
        raise ManifestError([m for _, m in sorted(found)])
    return Project(defs, apis)


def _entries(
    section: yaml.MappingNode, label: str, what: str, report
) -> Iterator[tuple[str, yaml.Node, yaml.Node, str]]:
    """A section's (name, key node, value node, "label.name") once per name; a name that is not a string (1:,
    true: or null: would find no settings under "1", "true") or comes twice is reported and skipped."""
    seen: set[str] = set()
    for key_node, value_node in section.value:
        name, where = key_node.value, f"{label}.{key_node.value}"
        if key_node.tag != _STR_TAG:
            report(key_node, where, f'{what} name is a string: write "{name}":')
        elif name in seen:
            report(key_node, where, "duplicate key")
        else:
            seen.add(name)
            yield name, key_node, value_node, where


def _apis(root: yaml.MappingNode, data: dict, report) -> list[ApiSpec]:
    """The `apis:` of fx.yaml, each validated as the controller will; problems reported at their lines."""
    apis_node, apis = _child(root, "apis"), data.get("apis")
    if apis_node is None:
        return []
    if not isinstance(apis_node, yaml.MappingNode) or not isinstance(apis, dict):
        report(apis_node, "apis", "expected a mapping of API name to its hosts, authorizers and routes")
        return []
    specs: list[ApiSpec] = []
    for name, key_node, value_node, where in _entries(apis_node, "apis", "an API", report):
        settings = apis.get(name)
        if not isinstance(settings, dict) or not isinstance(value_node, yaml.MappingNode):
            report(value_node, where, "expected a mapping with routes (and hosts, cors, authorizers, ...)")
            continue
        try:
            specs.append(ApiSpec.model_validate({**settings, "name": str(name)}))
        except ValidationError as exc:
            for err in exc.errors():
                problem = err.get("ctx", {}).get("error")
                loc = [str(p) for p in (problem.loc if isinstance(problem, RouteProblem) else err["loc"])]
                if loc[:1] == ["name"]:
                    report(key_node, where, _message(err, key_node, ApiSpec))
                    continue
                node = _api_node(value_node, loc)
                report(node, ".".join([where, *(_shown_key(p) for p in loc)]), _message(err, node, ApiSpec))
    return specs


def _api_node(api_node: yaml.Node, loc: list[str]) -> yaml.Node:
    """The node an API's error points at; a route found by its key as written ("get /x") or normalized."""
    if loc[:1] != ["routes"] or len(loc) < 2:
        return _deepest(api_node, loc)
    routes = _child(api_node, "routes")
    if not isinstance(routes, yaml.MappingNode):
        return _deepest(api_node, loc)
    for key_node, value_node in routes.value:
        if key_node.value == loc[1] or _normal_route(key_node.value) == loc[1]:
            return _deepest(value_node, loc[2:]) if len(loc) > 2 else key_node
    return routes


def _normal_route(key: object) -> str | None:
    try:
        return check_route_key(str(key))
    except ValueError:
        return None


def _shown_key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else f'"{key}"'


def locate(path: Path, function: str, field: str | None) -> str:
    """Where in the manifest a server-side refusal points: "fx.yaml:12: functions.NAME.FIELD" (the closest
    line that exists: a field fx.yaml leaves out, e.g. the artifact, points at the function)."""
    where = ".".join(["functions", function, *([field] if field else [])])
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return f"{_label(path)}: {where}"
    functions = _child(root, "functions")
    pairs = functions.value if isinstance(functions, yaml.MappingNode) else []
    entry = next(((k, v) for k, v in pairs if k.value == function), None)
    if entry is None:
        return f"{_label(path)}: {where}"
    key_node, value_node = entry
    node = _deepest(value_node, field.split(".")) if field else value_node
    line = (key_node if node is value_node else node).start_mark.line + 1
    return f"{_label(path)}:{line}: {where}"


def locate_api(path: Path, api: str, field: str | None) -> str:
    """Where in the manifest a server-side refusal of an API points, e.g.
    'fx.yaml:12: apis.shop.routes."GET /x".function'."""
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        root = None
    apis = _child(root, "apis")
    entry = (
        next(((k, v) for k, v in apis.value if k.value == api), None) if isinstance(apis, yaml.MappingNode) else None
    )
    if entry is None:
        return f"{_label(path)}: apis.{api}"
    key_node, value_node = entry
    loc = _field_loc(value_node, field) if field else []
    node = _api_node(value_node, loc) if loc else key_node
    shown = ".".join([f"apis.{api}", *(_shown_key(p) for p in loc)])
    return f"{_label(path)}:{node.start_mark.line + 1}: {shown}"


def _field_loc(api_node: yaml.Node, field: str) -> list[str]:
    """The server's field ("routes.GET /v1.0/x.function") as a location: a route key may hold dots, so the
    route is the one of fx.yaml whose key (as written or normalized) the field starts with."""
    routes = _child(api_node, "routes")
    if field.startswith("routes.") and isinstance(routes, yaml.MappingNode):
        for key_node, _ in routes.value:
            for key in (str(key_node.value), _normal_route(key_node.value)):
                if key and (field == f"routes.{key}" or field.startswith(f"routes.{key}.")):
                    return ["routes", key, *filter(None, field[len(f"routes.{key}.") :].split("."))]
    return field.split(".")


def select(defs: list[FunctionDef], names: list[str], label: str = MANIFEST) -> list[FunctionDef]:
    """The functions named on the command line, in manifest order; all of them when none is named."""
    if not names:
        return defs
    known = {d.name for d in defs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"{label}: no function named {', '.join(unknown)} (it has: {', '.join(sorted(known))})")
    return [d for d in defs if d.name in names]


def _label(path: Path) -> str:
    """The manifest as the user would type it: relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_keys(node: yaml.MappingNode, where: str, allowed: set[str] | frozenset[str], report) -> None:
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = key_node.value
        at = f"{where}.{key}" if where else key
        if key in seen:
            report(key_node, at, "duplicate key")
        elif key not in allowed:
            report(key_node, at, f"unknown key; expected one of: {', '.join(sorted(allowed))}")
        seen.add(key)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    if isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
        return node.value[int(key)]  # e.g. triggers.1
    return None


def _deepest(node: yaml.Node, loc: list[str]) -> yaml.Node:
    """The node a pydantic error location points at, or its closest existing ancestor."""
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
    return node


def _message(err: dict[str, Any], node: yaml.Node, model: type[BaseModel] = FunctionSpec) -> str:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        keys = _keys_at(model, loc[:-1])
        return f"unknown key; expected one of: {', '.join(keys)}" if keys else "unknown key"
    if err["type"] == "string_type" and len(loc) == 2 and loc[0] == "env" and isinstance(node, yaml.ScalarNode):
        return f'env values are strings: write {loc[1]}: "{node.value}"'  # YAML read 1 or true as a number, a bool
    return err["msg"].removeprefix("Value error, ")


def _keys_at(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the settings at a location in a function's or API's, e.g. a trigger's at ("triggers", 0) or a
    route's at ("routes", "GET /x")."""
    parts = iter(loc)
    for part in parts:
        fields = {f.alias or name: f for name, f in model.model_fields.items()} if model else {}
        field = fields.get(str(part))
        model = _model_in(field.annotation) if field else None
        if field and _collection(field.annotation):
            next(parts, None)  # a list's index or a mapping's key (a route, an authorizer's name)
    return sorted(f.alias or name for name, f in model.model_fields.items()) if model else []


def _collection(annotation: Any) -> bool:
    return get_origin(annotation) in (list, dict) or any(_collection(arg) for arg in get_args(annotation))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in an annotation such as list[TriggerSpec] or JetStreamTrigger | None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg))), None)
